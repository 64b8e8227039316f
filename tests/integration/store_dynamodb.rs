//! `DynamoDbStore` against moto: what the lister and fetcher rely on.

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use chrono::{DateTime, Duration, Utc};
use integration_tests::moto::{Moto, unique};
use shared::model::{
    BlobState, CloudKind, ContentBlob, ContentType, CredentialRef, Cursor, DirectorySync,
    Endpoints, LedgerEntry, SecretRef, Tenant, TenantId, TokenEndpoint, Versioned,
};
use shared::store::{Claim, DynamoDbStore, StateStore, StoreError};

async fn store() -> (Moto, DynamoDbStore) {
    let moto = Moto::connect().await;
    let table = moto.table().await;
    let store = DynamoDbStore::new(moto.ddb.clone(), table);
    (moto, store)
}

fn tenant_id() -> TenantId {
    TenantId::parse(&uuid::Uuid::new_v4().to_string()).expect("a GUID")
}

fn tenant(id: TenantId, enabled: bool) -> Tenant {
    Tenant {
        publisher_id: id.to_string(),
        id,
        name: Some("Contoso (test)".into()),
        cloud: CloudKind::GccHigh,
        endpoints: Endpoints::preset(CloudKind::GccHigh).expect("a preset"),
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        credential: CredentialRef::Secret {
            secret: SecretRef::SecretsManager(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:contoso".into(),
            ),
        },
        token_endpoint: TokenEndpoint::V1,
        content_types: ContentType::ALL.to_vec(),
        enabled,
    }
}

fn blob(id: &str, expiration: DateTime<Utc>) -> ContentBlob {
    ContentBlob {
        content_type: ContentType::Exchange,
        content_id: id.into(),
        content_uri: format!("https://manage.office.com/api/v1.0/t/activity/feed/audit/{id}"),
        content_created: expiration - Duration::days(7),
        content_expiration: expiration,
    }
}

fn entry(state: BlobState, at: DateTime<Utc>) -> LedgerEntry {
    LedgerEntry {
        state,
        updated_at: at,
        records: None,
        object_key: None,
        reason: None,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now")
}

#[tokio::test]
async fn create_table_enables_ttl_and_is_idempotent() {
    let (moto, store) = store().await;
    DynamoDbStore::create_table(&moto.ddb, store.table())
        .await
        .unwrap();
    let ttl = moto
        .ddb
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let d = ttl.time_to_live_description().unwrap();
    assert_eq!(d.attribute_name(), Some("expires_at"));
    assert_eq!(d.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

#[tokio::test]
async fn tenants_round_trip_ordered_by_id() {
    let (_moto, store) = store().await;
    assert!(store.list_tenants().await.unwrap().is_empty());
    let mut ids = [tenant_id(), tenant_id(), tenant_id()];
    for (i, id) in ids.iter().enumerate() {
        store.put_tenant(&tenant(id.clone(), i != 1)).await.unwrap();
    }
    ids.sort();
    let listed = store.list_tenants().await.unwrap();
    assert_eq!(listed.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), ids);
    let t0 = listed.iter().find(|t| t.id == ids[0]).unwrap().clone();
    assert_eq!(
        t0.endpoints,
        Endpoints::preset(CloudKind::GccHigh).unwrap(),
        "every field kept"
    );

    let mut changed = t0.clone();
    changed.enabled = !t0.enabled;
    changed.content_types = vec![ContentType::DlpAll];
    store.put_tenant(&changed).await.unwrap();
    let listed = store.list_tenants().await.unwrap();
    assert_eq!(listed.len(), 3, "replaced, not duplicated");
    assert_eq!(listed[0], changed);

    assert!(store.delete_tenant(&ids[1]).await.unwrap());
    assert!(!store.delete_tenant(&ids[1]).await.unwrap());
    assert_eq!(store.list_tenants().await.unwrap().len(), 2);
}

#[tokio::test]
async fn cursor_saves_are_conditional_on_the_version() {
    let (_moto, store) = store().await;
    let t = tenant_id();
    let ct = ContentType::General;
    assert_eq!(store.load_cursor(&t, ct).await.unwrap(), None);
    let c1 = Cursor {
        listed_until: now(),
        deep_relist_at: None,
    };
    assert_eq!(store.save_cursor(&t, ct, &c1, None).await.unwrap(), 1);
    // A second "first" save loses.
    let err = store.save_cursor(&t, ct, &c1, None).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected: None, .. }),
        "{err}"
    );

    let c2 = Cursor {
        listed_until: c1.listed_until + Duration::minutes(30),
        deep_relist_at: Some(c1.listed_until),
    };
    assert_eq!(store.save_cursor(&t, ct, &c2, Some(1)).await.unwrap(), 2);
    // A writer still holding version 1 is stale.
    let err = store.save_cursor(&t, ct, &c1, Some(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: Some(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable());
    // A version that never existed is stale too.
    let err = store
        .save_cursor(&t, ContentType::Exchange, &c1, Some(7))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    assert_eq!(
        store.load_cursor(&t, ct).await.unwrap(),
        Some(Versioned {
            value: c2,
            version: 2
        })
    );
}

#[tokio::test]
async fn a_second_claim_sees_the_first() {
    let (_moto, store) = store().await;
    let t = tenant_id();
    let now = now();
    let b = blob(
        "20261122$claim$audit_exchange$na0001",
        now + Duration::days(7),
    );
    assert_eq!(store.claim_blob(&t, &b, now).await.unwrap(), Claim::New);
    assert_eq!(
        store
            .claim_blob(&t, &b, now + Duration::seconds(3))
            .await
            .unwrap(),
        Claim::Existing(entry(BlobState::Pending, now))
    );
    assert_eq!(
        store.claim_blob(&tenant_id(), &b, now).await.unwrap(),
        Claim::New,
        "the ledger is per tenant"
    );
}

#[tokio::test]
async fn concurrent_claims_have_exactly_one_winner() {
    let (_moto, store) = store().await;
    let t = tenant_id();
    let now = now();
    let b = blob("20261122$race", now + Duration::days(7));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, t, b) = (store.clone(), t.clone(), b.clone());
        tasks.spawn(async move { store.claim_blob(&t, &b, now).await });
    }
    let claims: Vec<_> = tasks.join_all().await;
    let new = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::New)))
        .count();
    let existing = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Existing(_))))
        .count();
    assert_eq!((new, existing), (1, 7), "{claims:?}");
}

#[tokio::test]
async fn done_never_reverts() {
    let (_moto, store) = store().await;
    let t = tenant_id();
    let now = now();
    let b = blob("20261122$done", now + Duration::days(7));
    assert_eq!(store.claim_blob(&t, &b, now).await.unwrap(), Claim::New);
    let enqueued = entry(BlobState::Enqueued, now + Duration::seconds(1));
    store.set_blob_state(&t, &b, &enqueued).await.unwrap();
    assert_eq!(
        store.blob_entry(&t, &b.content_id, now).await.unwrap(),
        Some(enqueued.clone())
    );

    let done = LedgerEntry {
        records: Some(1234),
        object_key: Some(format!("{t}/Audit.Exchange/2026/11/22/done.json.gz")),
        ..entry(BlobState::Done, now + Duration::seconds(2))
    };
    store.set_blob_state(&t, &b, &done).await.unwrap();
    // A late duplicate job (lister re-drive) and a late failure must not undo it.
    store.set_blob_state(&t, &b, &enqueued).await.unwrap();
    let failed = LedgerEntry {
        reason: Some("gave up".into()),
        ..entry(BlobState::Failed, now + Duration::seconds(3))
    };
    store.set_blob_state(&t, &b, &failed).await.unwrap();
    assert_eq!(
        store.blob_entry(&t, &b.content_id, now).await.unwrap(),
        Some(done.clone())
    );
    assert_eq!(
        store.claim_blob(&t, &b, now).await.unwrap(),
        Claim::Existing(done)
    );

    // A missing entry is created (a job whose claim aged out still gets recorded).
    let other = blob("20261122$unclaimed", now + Duration::days(7));
    store.set_blob_state(&t, &other, &failed).await.unwrap();
    assert_eq!(
        store.blob_entry(&t, &other.content_id, now).await.unwrap(),
        Some(failed)
    );
}

#[tokio::test]
async fn expired_ledger_items_read_as_absent() {
    let (moto, store) = store().await;
    let t = tenant_id();
    let now = now();
    // Expired upstream in 2023: the item's TTL (a day later) is long past, but moto (like
    // DynamoDB for up to days) still returns it.
    let old = blob(
        "2023$old",
        DateTime::from_timestamp(1_690_000_000, 0).unwrap(),
    );
    let done = entry(BlobState::Done, now - Duration::days(900));
    store.set_blob_state(&t, &old, &done).await.unwrap();
    let raw = moto
        .ddb
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("TENANT#{t}")))
        .key("sk", AttributeValue::S("BLOB#2023$old".into()))
        .send()
        .await
        .unwrap();
    let item = raw.item().expect("moto keeps expired items");
    let expires_at = item.get("expires_at").unwrap().as_n().unwrap();
    assert_eq!(
        expires_at,
        &(1_690_000_000 + 86_400).to_string(),
        "numeric epoch TTL"
    );

    assert_eq!(
        store.blob_entry(&t, &old.content_id, now).await.unwrap(),
        None
    );
    // Read before the TTL it is there.
    let before = DateTime::from_timestamp(1_690_000_000, 0).unwrap();
    assert_eq!(
        store.blob_entry(&t, &old.content_id, before).await.unwrap(),
        Some(done)
    );
    // A claim overwrites the expired item, even a done one.
    assert_eq!(store.claim_blob(&t, &old, now).await.unwrap(), Claim::New);
    assert_eq!(
        store.blob_entry(&t, &old.content_id, before).await.unwrap(),
        Some(entry(BlobState::Pending, now))
    );
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|&i| i.to_owned()).collect()
}

#[tokio::test]
async fn record_claims_dedupe_across_blobs() {
    let (moto, store) = store().await;
    let t = tenant_id();
    let now = now();
    let ttl = now + Duration::days(8);
    let (first, second) = ("20261122$first$audit_exchange", "20261122$second");

    assert!(
        store
            .claim_records(&t, first, &[], ttl, now)
            .await
            .unwrap()
            .is_empty()
    );
    // More ids than the concurrency bound, to check the order is kept.
    let many: Vec<String> = (0..70).map(|i| format!("rec-{i:03}")).collect();
    assert_eq!(
        store
            .claim_records(&t, first, &many, ttl, now)
            .await
            .unwrap(),
        vec![true; 70],
        "unclaimed records go to the first blob"
    );
    let mut overlap = ids(&["new-1", "rec-005", "new-2", "rec-069"]);
    overlap.extend((60..70).map(|i| format!("rec-{i:03}")));
    overlap.extend((0..40).map(|i| format!("other-{i:03}")));
    let owned = store
        .claim_records(&t, second, &overlap, ttl, now)
        .await
        .unwrap();
    let expected: Vec<bool> = overlap.iter().map(|id| !id.starts_with("rec-")).collect();
    assert_eq!(
        owned, expected,
        "the overlap stays with the first blob, in order"
    );
    assert_eq!(
        store
            .claim_records(&t, first, &many, ttl, now + Duration::seconds(5))
            .await
            .unwrap(),
        vec![true; 70],
        "a retry of the first blob still owns its records"
    );
    assert_eq!(
        store
            .claim_records(&tenant_id(), second, &ids(&["rec-000"]), ttl, now)
            .await
            .unwrap(),
        [true],
        "per tenant"
    );

    let raw = moto
        .ddb
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("REC#{t}#rec-005")))
        .key("sk", AttributeValue::S("REC".into()))
        .send()
        .await
        .unwrap();
    let item = raw.item().expect("a claim item");
    assert_eq!(item.get("blob").unwrap().as_s().unwrap(), first);
    assert_eq!(
        item.get("expires_at").unwrap().as_n().unwrap(),
        &ttl.timestamp().to_string(),
        "numeric epoch TTL"
    );

    // At its expires_at a claim is gone (moto never deletes it): another blob takes over.
    let later = ttl + Duration::days(8);
    assert_eq!(
        store
            .claim_records(&t, second, &ids(&["rec-005", "rec-006"]), later, ttl)
            .await
            .unwrap(),
        [true, true],
        "expired claims are taken over"
    );
    assert_eq!(
        store
            .claim_records(&t, first, &ids(&["rec-005", "rec-007"]), later, ttl)
            .await
            .unwrap(),
        [false, true],
        "the new claim holds; the old one elsewhere has expired too"
    );
}

#[tokio::test]
async fn a_missing_table_says_how_to_fix_it() {
    let moto = Moto::connect().await;
    let table = unique("missing");
    let store = DynamoDbStore::new(moto.ddb.clone(), table.clone());
    let err = store.list_tenants().await.unwrap_err();
    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(text.contains(&table), "{text}");
    assert!(
        text.contains("deploy the stack or set STATE_TABLE"),
        "{text}"
    );
    let err = store
        .claim_blob(&tenant_id(), &blob("x", now()), now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Backend {
                retryable: false,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_directory_sync_state_round_trips_under_the_tenant_and_is_replaced() {
    let (moto, store) = store().await;
    let t = tenant_id();
    assert_eq!(store.load_directory_sync(&t).await.unwrap(), None);
    // An opaque link with characters DynamoDB and URLs care about, kept verbatim.
    let first = DirectorySync {
        delta_link: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a%27b_c-d=&x=1"
            .into(),
        synced_at: DateTime::from_timestamp(1_800_000_000, 123_000_000).unwrap(),
        users: 4_321,
    };
    store.save_directory_sync(&t, &first).await.unwrap();
    assert_eq!(
        store.load_directory_sync(&t).await.unwrap(),
        Some(first.clone())
    );
    let item = moto
        .ddb
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("TENANT#{t}")))
        .key("sk", AttributeValue::S("DIRECTORY".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("item at TENANT#{tenant} / DIRECTORY");
    assert_eq!(
        item.get("delta_link").and_then(|v| v.as_s().ok()),
        Some(&first.delta_link)
    );
    assert!(
        !item.contains_key("expires_at"),
        "the sync state does not expire"
    );
    let second = DirectorySync {
        delta_link: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=next".into(),
        synced_at: first.synced_at + Duration::minutes(30),
        users: 4_320,
    };
    store.save_directory_sync(&t, &second).await.unwrap();
    assert_eq!(store.load_directory_sync(&t).await.unwrap(), Some(second));
    assert_eq!(store.load_directory_sync(&tenant_id()).await.unwrap(), None);
    // Not a cursor or ledger item: the tenant list and cursors are unaffected.
    assert!(store.list_tenants().await.unwrap().is_empty());
}
