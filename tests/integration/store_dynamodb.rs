//! `DynamoDbStore` against moto: what the lister and fetcher rely on.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::{AttributeValue, ProjectionType, TimeToLiveStatus};
use chrono::{DateTime, Duration, Utc};
use integration_tests::moto::{Moto, unique};
use shared::model::{
    BlobState, CloudKind, ContentBlob, ContentType, CredentialRef, Cursor, DirectorySync,
    Endpoints, LedgerEntry, SecretRef, Tenant, TenantId, TokenEndpoint, Versioned, seen_digest,
    seen_hour,
};
use shared::store::{Claim, DynamoDbStore, RecordClaim, StateStore, StoreError};

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
    LedgerEntry::new(state, at)
}

/// The entry a claim at `at` writes.
fn claimed(at: DateTime<Utc>) -> LedgerEntry {
    LedgerEntry {
        listed_at: Some(at),
        ..LedgerEntry::new(BlobState::Pending, at)
    }
}

/// A failed entry, retried at `next` (`None`: for good).
fn failed(at: DateTime<Utc>, next: Option<DateTime<Utc>>) -> LedgerEntry {
    LedgerEntry {
        next_attempt_at: next,
        attempts: 2,
        ..entry(BlobState::Failed, at).because("503 from Microsoft")
    }
}

fn owned_of(claims: &[RecordClaim]) -> Vec<bool> {
    claims.iter().map(RecordClaim::is_owned).collect()
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

    let table = moto
        .ddb
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let gsi = table.table().unwrap().global_secondary_indexes();
    assert_eq!(gsi.len(), 1, "{gsi:?}");
    assert_eq!(gsi[0].index_name(), Some("open"));
    let keys: Vec<&str> = gsi[0]
        .key_schema()
        .iter()
        .map(|k| k.attribute_name())
        .collect();
    assert_eq!(keys, ["open_pk", "due"]);
    assert_eq!(
        gsi[0].projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::All)
    );
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
    let c1 = Cursor::at(now());
    assert_eq!(store.save_cursor(&t, ct, &c1, None).await.unwrap(), 1);
    // A second "first" save loses.
    let err = store.save_cursor(&t, ct, &c1, None).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected: None, .. }),
        "{err}"
    );

    let c2 = Cursor {
        listed_until: c1.listed_until + Duration::minutes(30),
        reconcile_from: Some(c1.listed_until - Duration::days(6)),
        reconcile_started: Some(c1.listed_until),
        reconciled_at: Some(c1.listed_until - Duration::hours(4)),
        skew_ms: -1500,
        since: Some(c1.listed_until - Duration::hours(24)),
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
        Claim::Existing(claimed(now))
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
    assert!(store.set_blob_state(&t, &b, &enqueued).await.unwrap());
    assert_eq!(
        store.blob_entry(&t, &b.content_id, now).await.unwrap(),
        Some(enqueued.clone())
    );

    let done = LedgerEntry {
        records: Some(1234),
        object_key: Some(format!("{t}/Audit.Exchange/2026/11/22/done.json.gz")),
        ..entry(BlobState::Done, now + Duration::seconds(2))
    };
    assert!(store.set_blob_state(&t, &b, &done).await.unwrap());
    // A late duplicate job (lister re-drive) and a late failure must not undo it.
    assert!(!store.set_blob_state(&t, &b, &enqueued).await.unwrap());
    let failed = LedgerEntry {
        reason: Some("gave up".into()),
        ..entry(BlobState::Failed, now + Duration::seconds(3))
    };
    assert!(!store.set_blob_state(&t, &b, &failed).await.unwrap());
    assert_eq!(
        store.blob_entry(&t, &b.content_id, now).await.unwrap(),
        Some(done.clone())
    );
    assert_eq!(
        store.claim_blob(&t, &b, now).await.unwrap(),
        Claim::Existing(done.clone())
    );
    // Done may be rewritten by done (a re-fetch records its new details).
    let done2 = LedgerEntry {
        records: Some(1235),
        ..entry(BlobState::Done, now + Duration::seconds(4))
    };
    assert!(store.set_blob_state(&t, &b, &done2).await.unwrap());
    assert_eq!(
        store.blob_entry(&t, &b.content_id, now).await.unwrap(),
        Some(done2)
    );

    // A missing entry is created (a job whose claim aged out still gets recorded).
    let other = blob("20261122$unclaimed", now + Duration::days(7));
    assert!(store.set_blob_state(&t, &other, &failed).await.unwrap());
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
    assert!(store.set_blob_state(&t, &old, &done).await.unwrap());
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
        Some(claimed(now))
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
        owned_of(
            &store
                .claim_records(&t, first, &many, ttl, now)
                .await
                .unwrap()
        ),
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
    let expected: Vec<RecordClaim> = overlap
        .iter()
        .map(|id| {
            if id.starts_with("rec-") {
                RecordClaim::HeldBy(first.into())
            } else {
                RecordClaim::Owned
            }
        })
        .collect();
    assert_eq!(
        owned, expected,
        "the overlap stays with the first blob, which is named, in order"
    );
    assert_eq!(
        owned_of(
            &store
                .claim_records(&t, first, &many, ttl, now + Duration::seconds(5))
                .await
                .unwrap()
        ),
        vec![true; 70],
        "a retry of the first blob still owns its records"
    );
    assert_eq!(
        store
            .claim_records(&tenant_id(), second, &ids(&["rec-000"]), ttl, now)
            .await
            .unwrap(),
        [RecordClaim::Owned],
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
        [RecordClaim::Owned, RecordClaim::Owned],
        "expired claims are taken over"
    );
    assert_eq!(
        store
            .claim_records(&t, first, &ids(&["rec-005", "rec-007"]), later, ttl)
            .await
            .unwrap(),
        [RecordClaim::HeldBy(second.into()), RecordClaim::Owned],
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

/// The raw items of the sparse index `open` for tenant `t`, oldest due first: (content id,
/// `due`).
async fn open_index(moto: &Moto, store: &DynamoDbStore, t: &TenantId) -> Vec<(String, String)> {
    let out = moto
        .ddb
        .query()
        .table_name(store.table())
        .index_name("open")
        .key_condition_expression("open_pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("TENANT#{t}")))
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .map(|i| {
            let sk = i.get("sk").unwrap().as_s().unwrap();
            let due = i.get("due").unwrap().as_s().unwrap();
            (sk.trim_start_matches("BLOB#").to_owned(), due.clone())
        })
        .collect()
}

#[tokio::test]
async fn entries_only_move_forward_and_the_sweep_reads_only_retryable_failures() {
    let (_moto, store) = store().await;
    let t = tenant_id();
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let (a, b, c, d) = (
        blob("20261122$a", now + Duration::days(6)),
        blob("20261122$b", now + Duration::days(6)),
        blob("20261122$c", now + Duration::days(6)),
        blob("20261122$d", now + Duration::days(6)),
    );
    for x in [&a, &b, &c, &d] {
        assert_eq!(store.claim_blob(&t, x, now).await.unwrap(), Claim::New);
    }
    assert!(store.due_entries(&t, now, 10).await.unwrap().is_empty());
    // a: failed, retry due in 5 minutes; b: failed for good; c: expired; d: done.
    let a_failed = failed(now, Some(now + Duration::minutes(5)));
    assert!(store.set_blob_state(&t, &a, &a_failed).await.unwrap());
    assert!(
        store
            .set_blob_state(&t, &b, &failed(now, None))
            .await
            .unwrap()
    );
    let expired = entry(BlobState::Expired, now).because("AF20051");
    assert!(store.set_blob_state(&t, &c, &expired).await.unwrap());
    assert!(
        store
            .set_blob_state(&t, &d, &entry(BlobState::Done, now))
            .await
            .unwrap()
    );
    // A late mark never moves an entry back: expired stays expired, with its reason.
    let late = entry(BlobState::Enqueued, now + Duration::seconds(1));
    assert!(!store.set_blob_state(&t, &c, &late).await.unwrap());
    assert!(!store.set_blob_state(&t, &d, &late).await.unwrap());
    assert!(
        !store
            .set_blob_state(&t, &c, &failed(now, Some(now)))
            .await
            .unwrap(),
        "expired yields only to done"
    );
    assert_eq!(
        store.blob_entry(&t, &c.content_id, now).await.unwrap(),
        Some(expired.clone())
    );
    let due = store.due_entries(&t, now, 10).await.unwrap();
    assert_eq!(due.len(), 1, "only the retryable failure: {due:?}");
    assert!(!due[0].entry.is_due(now), "not yet due");
    let later = now + Duration::minutes(6);
    let due = store.due_entries(&t, later, 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert!(due[0].entry.is_due(later));
    assert_eq!(
        due[0].blob, a,
        "the blob comes back whole (its URI for the job)"
    );
    assert_eq!(due[0].entry, a_failed);
    // Re-driven: out of the due set; a claim is never written over an entry.
    let redriven = LedgerEntry {
        attempts: 3,
        ..entry(BlobState::Enqueued, later)
    };
    assert!(store.set_blob_state(&t, &a, &redriven).await.unwrap());
    assert!(!store.set_blob_state(&t, &a, &claimed(later)).await.unwrap());
    assert!(store.due_entries(&t, later, 10).await.unwrap().is_empty());
    let all = store.ledger(&t, later).await.unwrap();
    let states: Vec<(&str, BlobState)> = all
        .iter()
        .map(|i| (i.blob.content_id.as_str(), i.entry.state))
        .collect();
    assert_eq!(
        states,
        [
            ("20261122$a", BlobState::Enqueued),
            ("20261122$b", BlobState::Failed),
            ("20261122$c", BlobState::Expired),
            ("20261122$d", BlobState::Done),
        ]
    );
    assert_eq!(all[2].blob, c, "the ledger returns whole blobs");
    assert_eq!(all[2].entry, expired);
    // Many due entries: at most `limit`, the oldest due first (across result pages), one of
    // them due at a fraction of a second (the index sorts it by time, not text).
    for i in 0..5i64 {
        let x = blob(&format!("20261122$due{i}"), now + Duration::days(6));
        let next = now - Duration::minutes(10 - i) + Duration::milliseconds(i * 250);
        assert!(
            store
                .set_blob_state(&t, &x, &failed(now, Some(next)))
                .await
                .unwrap()
        );
    }
    let due = store.due_entries(&t, now, 3).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|i| i.blob.content_id.as_str()).collect();
    assert_eq!(ids, ["20261122$due0", "20261122$due1", "20261122$due2"]);
    assert_eq!(store.due_entries(&t, now, 100).await.unwrap().len(), 5);
    assert!(
        store
            .due_entries(&tenant_id(), now, 100)
            .await
            .unwrap()
            .is_empty(),
        "per tenant"
    );
    // Past their TTL, due entries are left out.
    let gone = now + Duration::days(8);
    assert!(store.due_entries(&t, gone, 100).await.unwrap().is_empty());
    assert!(store.ledger(&t, gone).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_open_index_holds_only_retryable_failed_entries() {
    let (moto, store) = store().await;
    let t = tenant_id();
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let b = blob("20261122$open", now + Duration::days(6));
    let other = blob("20261122$other", now + Duration::days(6));
    assert_eq!(store.claim_blob(&t, &b, now).await.unwrap(), Claim::New);
    assert_eq!(store.claim_blob(&t, &other, now).await.unwrap(), Claim::New);
    assert!(
        open_index(&moto, &store, &t).await.is_empty(),
        "a claim is not open"
    );
    assert!(
        store
            .set_blob_state(&t, &other, &failed(now, None))
            .await
            .unwrap()
    );
    assert!(
        open_index(&moto, &store, &t).await.is_empty(),
        "failed for good is not open"
    );

    let next = now + Duration::minutes(5);
    assert!(
        store
            .set_blob_state(&t, &b, &failed(now, Some(next)))
            .await
            .unwrap()
    );
    assert_eq!(
        open_index(&moto, &store, &t).await,
        [(
            b.content_id.clone(),
            "2027-01-15T08:05:00.000000000Z".to_owned()
        )]
    );
    let before = next - Duration::seconds(1);
    let listed = store.due_entries(&t, before, 10).await.unwrap();
    assert_eq!(listed.len(), 1, "retried entries are listed due or not");
    assert!(!listed[0].entry.is_due(before));
    let listed = store.due_entries(&t, next, 10).await.unwrap();
    assert!(listed[0].entry.is_due(next), "due at that time");

    // Re-driven: leaves the index; failing again re-enters it with the later retry.
    let enqueued = entry(BlobState::Enqueued, next);
    assert!(store.set_blob_state(&t, &b, &enqueued).await.unwrap());
    assert!(open_index(&moto, &store, &t).await.is_empty());
    let again = next + Duration::minutes(15);
    assert!(
        store
            .set_blob_state(&t, &b, &failed(next, Some(again)))
            .await
            .unwrap()
    );
    assert_eq!(open_index(&moto, &store, &t).await.len(), 1);
    let listed = store.due_entries(&t, next, 10).await.unwrap();
    assert_eq!(listed[0].entry.next_attempt_at, Some(again));
    assert!(!listed[0].entry.is_due(next));

    // Done: gone for good.
    assert!(
        store
            .set_blob_state(&t, &b, &entry(BlobState::Done, again))
            .await
            .unwrap()
    );
    assert!(open_index(&moto, &store, &t).await.is_empty());
    assert!(store.due_entries(&t, again, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn listed_blob_summaries_are_atomic_unions_of_8_byte_digests() {
    let (moto, store) = store().await;
    let t = tenant_id();
    let hour = seen_hour(DateTime::from_timestamp(1_800_000_123, 0).unwrap());
    let ct = ContentType::Exchange;
    assert!(store.seen(&t, ct, hour).await.unwrap().is_empty());
    store.add_seen(&t, ct, hour, &[]).await.unwrap();
    store
        .add_seen(&t, ct, hour, &[1, 2, u64::MAX, 2])
        .await
        .unwrap();
    store.add_seen(&t, ct, hour, &[2, 3]).await.unwrap();
    assert_eq!(
        store.seen(&t, ct, hour).await.unwrap(),
        HashSet::from([1, 2, 3, u64::MAX]),
        "a union"
    );
    assert!(
        store
            .seen(&t, ct, hour + Duration::hours(1))
            .await
            .unwrap()
            .is_empty(),
        "per hour"
    );
    assert!(
        store
            .seen(&t, ContentType::General, hour)
            .await
            .unwrap()
            .is_empty(),
        "per content type"
    );
    assert!(
        store.seen(&tenant_id(), ct, hour).await.unwrap().is_empty(),
        "per tenant"
    );

    // Concurrent listers never lose each other's additions.
    let mut tasks = tokio::task::JoinSet::new();
    for lister in 0..8u64 {
        let (store, t) = (store.clone(), t.clone());
        tasks.spawn(async move {
            let digests: Vec<u64> = (0..50).map(|i| 1_000 + lister * 50 + i).collect();
            store.add_seen(&t, ct, hour, &digests).await
        });
    }
    for r in tasks.join_all().await {
        r.unwrap();
    }
    let seen = store.seen(&t, ct, hour).await.unwrap();
    assert_eq!(seen.len(), 4 + 400);
    let listed = seen_digest("20261122$listed$audit_exchange");
    store.add_seen(&t, ct, hour, &[listed]).await.unwrap();
    assert!(store.seen(&t, ct, hour).await.unwrap().contains(&listed));

    let raw = moto
        .ddb
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("TENANT#{t}")))
        .key(
            "sk",
            AttributeValue::S("SEEN#Audit.Exchange#2027-01-15T08:00:00Z".into()),
        )
        .send()
        .await
        .unwrap();
    let item = raw.item().expect("the summary item");
    let ids = item.get("ids").unwrap().as_bs().expect("a binary set");
    assert!(ids.iter().all(|b| b.as_ref().len() == 8));
    assert_eq!(
        item.get("expires_at").unwrap().as_n().unwrap(),
        &(hour + Duration::days(8)).timestamp().to_string(),
        "kept 8 days after the hour"
    );
}

#[tokio::test]
async fn record_claims_name_their_holder_and_move_only_from_it() {
    let (moto, store) = store().await;
    let t = tenant_id();
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let ttl = now + Duration::days(8);
    // Longer than a DynamoDB key may be (2,048 bytes): claimed under its SHA-256.
    let long = "x".repeat(3000);
    let claims = store
        .claim_records(&t, "x$1", &ids(&["r1", &long]), ttl, now)
        .await
        .unwrap();
    assert_eq!(
        claims,
        [RecordClaim::Owned, RecordClaim::Owned],
        "a 3 KB id is fine"
    );
    assert_eq!(
        store
            .claim_records(&t, "y$2", &ids(&["r1", &long]), ttl, now)
            .await
            .unwrap(),
        [
            RecordClaim::HeldBy("x$1".into()),
            RecordClaim::HeldBy("x$1".into())
        ]
    );
    assert_eq!(
        store
            .claim_records(&t, "x$1", &ids(&[&long]), ttl, now)
            .await
            .unwrap(),
        [RecordClaim::Owned],
        "the holder keeps its 3 KB id on a retry"
    );
    assert!(
        !store
            .take_over_record(&t, "r1", "z$3", "y$2", ttl)
            .await
            .unwrap(),
        "only from the blob that holds it"
    );
    assert!(
        !store
            .take_over_record(&t, &long, "z$3", "y$2", ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_over_record(&t, "r1", "x$1", "y$2", ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_over_record(&t, &long, "x$1", "y$2", ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_over_record(&t, &long, "x$1", "y$2", ttl)
            .await
            .unwrap(),
        "a retried take-over still holds"
    );
    assert!(
        store
            .take_over_record(&t, "never-claimed", "x$1", "y$2", ttl)
            .await
            .unwrap(),
        "an unclaimed record is simply taken"
    );
    assert_eq!(
        store
            .claim_records(&t, "y$2", &ids(&["r1", &long]), ttl, now)
            .await
            .unwrap(),
        [RecordClaim::Owned, RecordClaim::Owned],
        "the new holder keeps it on a retry"
    );
    assert_eq!(
        store
            .claim_records(&t, "x$1", &ids(&["r1", &long]), ttl, now)
            .await
            .unwrap(),
        [
            RecordClaim::HeldBy("y$2".into()),
            RecordClaim::HeldBy("y$2".into())
        ]
    );

    // The long id's claim item is keyed by its digest and owned by the new holder.
    let pk = format!("REC#{t}#{}", shared::store::record_key(&long));
    assert!(pk.len() < 200, "{pk}");
    let raw = moto
        .ddb
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk))
        .key("sk", AttributeValue::S("REC".into()))
        .send()
        .await
        .unwrap();
    let item = raw.item().expect("the claim item of the 3 KB id");
    assert_eq!(item.get("blob").unwrap().as_s().unwrap(), "y$2");
}
