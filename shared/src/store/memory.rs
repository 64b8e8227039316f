//! [`StateStore`] in memory, for unit tests of the use cases.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::{
    Claim, RecordClaim, StateStore, StoreError, ledger_ttl, may_replace, record_key, seen_ttl,
};
use crate::model::{
    BlobState, ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, LedgerItem, Tenant,
    TenantId, Versioned,
};

/// True when a ledger item whose TTL attribute is `expires_at` (epoch seconds, as DynamoDB
/// stores it) is past its TTL at `now`. Shared by the adapters so they agree to the second.
pub(super) fn is_expired(expires_at: i64, now: DateTime<Utc>) -> bool {
    expires_at <= now.timestamp()
}

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<TenantId, Tenant>,
    cursors: BTreeMap<(TenantId, ContentType), Versioned<Cursor>>,
    /// Blob, entry and the entry's TTL (epoch seconds).
    ledger: BTreeMap<(TenantId, String), (ContentBlob, LedgerEntry, i64)>,
    /// Listed-blob summaries: digests and TTL, by tenant, content type and hour (epoch s).
    seen: BTreeMap<(TenantId, ContentType, i64), (HashSet<u64>, i64)>,
    /// Record claims: owning content id and TTL (epoch seconds), by tenant and record id.
    records: BTreeMap<(TenantId, String), (String, i64)>,
    /// Directory sync state per tenant.
    directory: BTreeMap<TenantId, DirectorySync>,
}

/// The state store in memory, with the same semantics as the others (versions, conditional
/// saves, claims, done never reverting, TTL filtering on read). Clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateStore for MemoryStore {
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.lock()
            .tenants
            .insert(tenant.id.clone(), tenant.clone());
        Ok(())
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        Ok(self.lock().tenants.values().cloned().collect())
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        Ok(self.lock().tenants.remove(id).is_some())
    }

    async fn load_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
    ) -> Result<Option<Versioned<Cursor>>, StoreError> {
        Ok(self
            .lock()
            .cursors
            .get(&(tenant.clone(), content_type))
            .cloned())
    }

    async fn save_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        cursor: &Cursor,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let key = (tenant.clone(), content_type);
        let current = state.cursors.get(&key).map(|c| c.version);
        if current != expected {
            return Err(StoreError::Conflict {
                what: format!("cursor {tenant}/{content_type}"),
                expected,
            });
        }
        let version = expected.map_or(1, |v| v + 1);
        state.cursors.insert(
            key,
            Versioned {
                value: cursor.clone(),
                version,
            },
        );
        Ok(version)
    }

    async fn claim_blob(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut state = self.lock();
        let key = (tenant.clone(), blob.content_id.clone());
        if let Some((_, entry, expires_at)) = state.ledger.get(&key)
            && !is_expired(*expires_at, now)
        {
            return Ok(Claim::Existing(entry.clone()));
        }
        let mut entry = LedgerEntry::new(BlobState::Pending, now);
        entry.listed_at = Some(now);
        state
            .ledger
            .insert(key, (blob.clone(), entry, ledger_ttl(blob).timestamp()));
        Ok(Claim::New)
    }

    async fn set_blob_state(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        entry: &LedgerEntry,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let key = (tenant.clone(), blob.content_id.clone());
        if let Some((_, current, expires_at)) = state.ledger.get(&key)
            && !is_expired(*expires_at, entry.updated_at)
            && !may_replace(current.state, entry.state)
        {
            return Ok(false);
        }
        state.ledger.insert(
            key,
            (blob.clone(), entry.clone(), ledger_ttl(blob).timestamp()),
        );
        Ok(true)
    }

    async fn due_entries(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        let state = self.lock();
        let mut due: Vec<LedgerItem> = state
            .ledger
            .iter()
            .filter(|((t, _), (_, e, ttl))| {
                t == tenant
                    && !is_expired(*ttl, now)
                    && e.state == BlobState::Failed
                    && e.next_attempt_at.is_some()
            })
            .map(|(_, (blob, entry, _))| LedgerItem {
                blob: blob.clone(),
                entry: entry.clone(),
            })
            .collect();
        due.sort_by_key(|i| i.entry.next_attempt_at);
        due.truncate(limit);
        Ok(due)
    }

    async fn ledger(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        Ok(self
            .lock()
            .ledger
            .iter()
            .filter(|((t, _), (_, _, ttl))| t == tenant && !is_expired(*ttl, now))
            .map(|(_, (blob, entry, _))| LedgerItem {
                blob: blob.clone(),
                entry: entry.clone(),
            })
            .collect())
    }

    async fn seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
    ) -> Result<HashSet<u64>, StoreError> {
        Ok(self
            .lock()
            .seen
            .get(&(tenant.clone(), content_type, hour.timestamp()))
            .map(|(s, _)| s.clone())
            .unwrap_or_default())
    }

    async fn add_seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
        digests: &[u64],
    ) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let slot = state
            .seen
            .entry((tenant.clone(), content_type, hour.timestamp()))
            .or_insert_with(|| (HashSet::new(), seen_ttl(hour).timestamp()));
        slot.0.extend(digests.iter().copied());
        Ok(())
    }

    async fn take_over_record(
        &self,
        tenant: &TenantId,
        record_id: &str,
        from: &str,
        to: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let key = (tenant.clone(), record_key(record_id).into_owned());
        match state.records.get(&key) {
            Some((holder, _)) if holder == to => Ok(true),
            Some((holder, _)) if holder != from => Ok(false),
            _ => {
                state
                    .records
                    .insert(key, (to.to_owned(), expires_at.timestamp()));
                Ok(true)
            }
        }
    }

    async fn blob_entry(
        &self,
        tenant: &TenantId,
        content_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        Ok(self
            .lock()
            .ledger
            .get(&(tenant.clone(), content_id.to_owned()))
            .filter(|(_, _, expires_at)| !is_expired(*expires_at, now))
            .map(|(_, entry, _)| entry.clone()))
    }

    async fn claim_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RecordClaim>, StoreError> {
        if record_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.lock();
        let owned = record_ids
            .iter()
            .map(|id| {
                let key = (tenant.clone(), record_key(id).into_owned());
                if let Some((blob, ttl)) = state.records.get(&key)
                    && blob != content_id
                    && !is_expired(*ttl, now)
                {
                    return RecordClaim::HeldBy(blob.clone());
                }
                state
                    .records
                    .insert(key, (content_id.to_owned(), expires_at.timestamp()));
                RecordClaim::Owned
            })
            .collect();
        Ok(owned)
    }

    async fn release_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        for id in record_ids {
            let key = (tenant.clone(), record_key(id).into_owned());
            if state
                .records
                .get(&key)
                .is_some_and(|(b, _)| b == content_id)
            {
                state.records.remove(&key);
            }
        }
        Ok(())
    }

    async fn load_directory_sync(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<DirectorySync>, StoreError> {
        Ok(self.lock().directory.get(tenant).cloned())
    }

    async fn save_directory_sync(
        &self,
        tenant: &TenantId,
        sync: &DirectorySync,
    ) -> Result<(), StoreError> {
        self.lock().directory.insert(tenant.clone(), sync.clone());
        Ok(())
    }
}

/// The contract every [`StateStore`] adapter keeps, run against the in-process ones (the
/// DynamoDB one is checked against moto by the integration tests).
#[cfg(test)]
pub(super) mod contract {
    use chrono::Duration;

    use super::*;
    use crate::model::{CloudKind, CredentialRef, Endpoints, SecretRef, TokenEndpoint};

    pub(crate) fn tenant(id: &str, enabled: bool) -> Tenant {
        Tenant {
            id: TenantId::parse(id).unwrap(),
            name: Some(format!("tenant {id}")),
            cloud: CloudKind::Commercial,
            endpoints: Endpoints::preset(CloudKind::Commercial).unwrap(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            credential: CredentialRef::Secret {
                secret: SecretRef::Env("O365_SECRET".into()),
            },
            token_endpoint: TokenEndpoint::V2,
            content_types: vec![ContentType::Exchange, ContentType::General],
            publisher_id: id.into(),
            enabled,
        }
    }

    pub(crate) fn blob(id: &str, expiration: DateTime<Utc>) -> ContentBlob {
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
            records: (state == BlobState::Done).then_some(42),
            object_key: (state == BlobState::Done)
                .then(|| "tenant/Audit.Exchange/x.json.gz".into()),
            listed_at: (state == BlobState::Pending).then_some(at),
            ..LedgerEntry::new(state, at)
        }
    }

    /// Runs every check on a fresh, empty store.
    pub(crate) async fn run<S: StateStore>(store: &S) {
        tenants(store).await;
        cursors(store).await;
        ledger(store).await;
        forward_only_and_due(store).await;
        summaries(store).await;
        records(store).await;
        record_takeover(store).await;
        directory(store).await;
    }

    async fn directory<S: StateStore>(store: &S) {
        let t = TenantId::parse("dddddddd-0000-4000-8000-000000000004").unwrap();
        let other = TenantId::parse("eeeeeeee-0000-4000-8000-000000000005").unwrap();
        assert_eq!(store.load_directory_sync(&t).await.unwrap(), None);
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let first = DirectorySync {
            delta_link: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a%27b".into(),
            synced_at: at,
            users: 7,
        };
        store.save_directory_sync(&t, &first).await.unwrap();
        assert_eq!(store.load_directory_sync(&t).await.unwrap(), Some(first));
        let second = DirectorySync {
            delta_link: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=c".into(),
            synced_at: at + Duration::seconds(300),
            users: 8,
        };
        store.save_directory_sync(&t, &second).await.unwrap();
        assert_eq!(store.load_directory_sync(&t).await.unwrap(), Some(second));
        assert_eq!(store.load_directory_sync(&other).await.unwrap(), None);
    }

    async fn tenants<S: StateStore>(store: &S) {
        let b = tenant("bbbbbbbb-0000-4000-8000-000000000002", false);
        let a = tenant("aaaaaaaa-0000-4000-8000-000000000001", true);
        assert!(store.list_tenants().await.unwrap().is_empty());
        store.put_tenant(&b).await.unwrap();
        store.put_tenant(&a).await.unwrap();
        assert_eq!(
            store.list_tenants().await.unwrap(),
            vec![a.clone(), b.clone()],
            "ordered by id"
        );
        let mut b2 = b.clone();
        b2.enabled = true;
        store.put_tenant(&b2).await.unwrap();
        assert_eq!(
            store.list_tenants().await.unwrap(),
            vec![a.clone(), b2],
            "replaced"
        );
        assert!(store.delete_tenant(&b.id).await.unwrap());
        assert!(!store.delete_tenant(&b.id).await.unwrap());
        assert_eq!(store.list_tenants().await.unwrap(), vec![a]);
    }

    async fn cursors<S: StateStore>(store: &S) {
        let t = TenantId::parse("cccccccc-0000-4000-8000-000000000003").unwrap();
        let ct = ContentType::SharePoint;
        assert_eq!(store.load_cursor(&t, ct).await.unwrap(), None);
        let c1 = Cursor::at(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        assert!(matches!(
            store.save_cursor(&t, ct, &c1, Some(1)).await,
            Err(StoreError::Conflict {
                expected: Some(1),
                ..
            })
        ));
        assert_eq!(store.save_cursor(&t, ct, &c1, None).await.unwrap(), 1);
        let err = store.save_cursor(&t, ct, &c1, None).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { expected: None, .. }),
            "{err}"
        );
        assert!(err.is_retryable());
        let c2 = Cursor {
            listed_until: c1.listed_until + Duration::hours(1),
            reconcile_from: Some(c1.listed_until - Duration::days(6)),
            reconcile_started: Some(c1.listed_until),
            reconciled_at: Some(c1.listed_until - Duration::hours(4)),
            skew_ms: -1500,
            since: Some(c1.listed_until - Duration::hours(24)),
        };
        assert_eq!(store.save_cursor(&t, ct, &c2, Some(1)).await.unwrap(), 2);
        assert!(matches!(
            store.save_cursor(&t, ct, &c1, Some(1)).await,
            Err(StoreError::Conflict {
                expected: Some(1),
                ..
            })
        ));
        assert_eq!(
            store.load_cursor(&t, ct).await.unwrap(),
            Some(Versioned {
                value: c2,
                version: 2
            })
        );
        assert_eq!(
            store.load_cursor(&t, ContentType::Exchange).await.unwrap(),
            None,
            "per content type"
        );
    }

    async fn ledger<S: StateStore>(store: &S) {
        let t = TenantId::parse("dddddddd-0000-4000-8000-000000000004").unwrap();
        let other = TenantId::parse("eeeeeeee-0000-4000-8000-000000000005").unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let b = blob("20261122$abc$audit_exchange", now + Duration::days(7));

        assert_eq!(
            store.blob_entry(&t, &b.content_id, now).await.unwrap(),
            None
        );
        assert_eq!(store.claim_blob(&t, &b, now).await.unwrap(), Claim::New);
        let pending = entry(BlobState::Pending, now);
        assert_eq!(
            store
                .claim_blob(&t, &b, now + Duration::seconds(5))
                .await
                .unwrap(),
            Claim::Existing(pending.clone()),
            "the second claim sees the first"
        );
        assert_eq!(
            store.claim_blob(&other, &b, now).await.unwrap(),
            Claim::New,
            "per tenant"
        );
        assert_eq!(
            store.blob_entry(&t, &b.content_id, now).await.unwrap(),
            Some(pending)
        );

        let enqueued = entry(BlobState::Enqueued, now + Duration::seconds(1));
        store.set_blob_state(&t, &b, &enqueued).await.unwrap();
        assert_eq!(
            store.blob_entry(&t, &b.content_id, now).await.unwrap(),
            Some(enqueued.clone())
        );
        let done = entry(BlobState::Done, now + Duration::seconds(2));
        store.set_blob_state(&t, &b, &done).await.unwrap();
        // A late duplicate job must not turn done back into enqueued (or failed).
        store.set_blob_state(&t, &b, &enqueued).await.unwrap();
        store
            .set_blob_state(
                &t,
                &b,
                &entry(BlobState::Failed, now + Duration::seconds(3)),
            )
            .await
            .unwrap();
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
            records: Some(43),
            ..entry(BlobState::Done, now + Duration::seconds(4))
        };
        store.set_blob_state(&t, &b, &done2).await.unwrap();
        assert_eq!(
            store.blob_entry(&t, &b.content_id, now).await.unwrap(),
            Some(done2)
        );

        // set_blob_state creates a missing entry (a job whose claim aged out).
        let fresh = blob("20261122$fresh", now + Duration::days(7));
        let expired_state = LedgerEntry {
            reason: Some("contentExpiration passed".into()),
            ..entry(BlobState::Expired, now)
        };
        store
            .set_blob_state(&t, &fresh, &expired_state)
            .await
            .unwrap();
        assert_eq!(
            store.blob_entry(&t, &fresh.content_id, now).await.unwrap(),
            Some(expired_state)
        );

        // Past its TTL (a day after contentExpiration) an entry reads as absent and a claim
        // overwrites it, even a done one.
        let old = blob("20261115$old", now - Duration::hours(25));
        store
            .set_blob_state(&t, &old, &entry(BlobState::Done, now - Duration::days(2)))
            .await
            .unwrap();
        assert_eq!(
            store.blob_entry(&t, &old.content_id, now).await.unwrap(),
            None
        );
        let before_ttl = now - Duration::hours(2);
        assert!(
            store
                .blob_entry(&t, &old.content_id, before_ttl)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.claim_blob(&t, &old, now).await.unwrap(), Claim::New);
        assert_eq!(
            store
                .blob_entry(&t, &old.content_id, now - Duration::days(1))
                .await
                .unwrap(),
            Some(entry(BlobState::Pending, now)),
            "the expired done entry was replaced by the new claim"
        );
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|&i| i.to_owned()).collect()
    }

    async fn forward_only_and_due<S: StateStore>(store: &S) {
        let t = TenantId::parse("abababab-0000-4000-8000-000000000008").unwrap();
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
        let failed = |at: DateTime<Utc>, next: Option<DateTime<Utc>>| LedgerEntry {
            next_attempt_at: next,
            attempts: 2,
            ..entry(BlobState::Failed, at).because("503 from Microsoft")
        };
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
        assert_eq!(
            store.blob_entry(&t, &c.content_id, now).await.unwrap(),
            Some(expired.clone())
        );
        let due = store.due_entries(&t, now, 10).await.unwrap();
        assert_eq!(due.len(), 1, "only the retryable failure: {due:?}");
        assert!(!due[0].entry.is_due(now), "not yet due");
        let later = now + Duration::minutes(6);
        let due = store.due_entries(&t, later, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(due[0].entry.is_due(later));
        assert_eq!(
            due[0].blob, a,
            "the blob comes back whole (its URI for the job)"
        );
        assert_eq!(due[0].entry, a_failed);
        // Re-driven: out of the due set; failing again puts it back with a later retry.
        let redriven = LedgerEntry {
            attempts: 3,
            ..entry(BlobState::Enqueued, later)
        };
        assert!(store.set_blob_state(&t, &a, &redriven).await.unwrap());
        assert!(store.due_entries(&t, later, 10).await.unwrap().is_empty());
        let all = store.ledger(&t, later).await.unwrap();
        let states: Vec<(String, BlobState)> = all
            .iter()
            .map(|i| (i.blob.content_id.clone(), i.entry.state))
            .collect();
        assert_eq!(
            states,
            [
                ("20261122$a".to_owned(), BlobState::Enqueued),
                ("20261122$b".to_owned(), BlobState::Failed),
                ("20261122$c".to_owned(), BlobState::Expired),
                ("20261122$d".to_owned(), BlobState::Done),
            ]
        );
        // Many due entries: at most `limit`, the oldest due first.
        for i in 0..5i64 {
            let x = blob(&format!("20261122$due{i}"), now + Duration::days(6));
            let e = failed(now, Some(now - Duration::minutes(10 - i)));
            store.set_blob_state(&t, &x, &e).await.unwrap();
        }
        let due = store.due_entries(&t, now, 3).await.unwrap();
        let ids: Vec<&str> = due.iter().map(|i| i.blob.content_id.as_str()).collect();
        assert_eq!(ids, ["20261122$due0", "20261122$due1", "20261122$due2"]);
    }

    async fn summaries<S: StateStore>(store: &S) {
        let t = TenantId::parse("acacacac-0000-4000-8000-000000000009").unwrap();
        let hour = DateTime::from_timestamp(1_799_996_400, 0).unwrap();
        let ct = ContentType::Exchange;
        assert!(store.seen(&t, ct, hour).await.unwrap().is_empty());
        store.add_seen(&t, ct, hour, &[]).await.unwrap();
        store
            .add_seen(&t, ct, hour, &[1, 2, u64::MAX])
            .await
            .unwrap();
        store.add_seen(&t, ct, hour, &[2, 3]).await.unwrap();
        let seen = store.seen(&t, ct, hour).await.unwrap();
        assert_eq!(seen, HashSet::from([1, 2, 3, u64::MAX]), "a union");
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
    }

    async fn record_takeover<S: StateStore>(store: &S) {
        let t = TenantId::parse("adadadad-0000-4000-8000-00000000000a").unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ttl = now + Duration::days(8);
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
        assert!(
            !store
                .take_over_record(&t, "r1", "z$3", "y$2", ttl)
                .await
                .unwrap(),
            "only from the blob that holds it"
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
                .claim_records(&t, "x$1", &ids(&["r1"]), ttl, now)
                .await
                .unwrap(),
            [RecordClaim::HeldBy("y$2".into())]
        );
        // Released only by its holder; then free for anyone.
        store
            .release_records(&t, "x$1", &ids(&["r1", &long]))
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_records(&t, "z$3", &ids(&["r1"]), ttl, now)
                .await
                .unwrap(),
            [RecordClaim::HeldBy("y$2".into())]
        );
        store
            .release_records(&t, "y$2", &ids(&["r1", &long]))
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_records(&t, "z$3", &ids(&["r1", &long]), ttl, now)
                .await
                .unwrap(),
            [RecordClaim::Owned, RecordClaim::Owned]
        );
    }

    async fn records<S: StateStore>(store: &S) {
        let t = TenantId::parse("ffffffff-0000-4000-8000-000000000006").unwrap();
        let other = TenantId::parse("aaaaaaaa-0000-4000-8000-000000000007").unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ttl = now + Duration::days(8);
        let (first, second) = ("20261122$first", "20261122$second");

        assert!(
            store
                .claim_records(&t, first, &[], ttl, now)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .claim_records(&t, first, &ids(&["r1", "r2", "r3"]), ttl, now)
                .await
                .unwrap()
                .iter()
                .map(RecordClaim::is_owned)
                .collect::<Vec<_>>(),
            [true, true, true],
            "unclaimed records go to the first blob"
        );
        assert_eq!(
            store
                .claim_records(&t, second, &ids(&["r4", "r2", "r5", "r3"]), ttl, now)
                .await
                .unwrap()
                .iter()
                .map(RecordClaim::is_owned)
                .collect::<Vec<_>>(),
            [true, false, true, false],
            "the overlap stays with the first blob, in input order"
        );
        assert_eq!(
            store
                .claim_records(&t, first, &ids(&["r3", "r1", "r4", "r2"]), ttl, now)
                .await
                .unwrap()
                .iter()
                .map(RecordClaim::is_owned)
                .collect::<Vec<_>>(),
            [true, true, false, true],
            "a retry of the first blob still owns its records"
        );
        assert_eq!(
            store
                .claim_records(&other, second, &ids(&["r1"]), ttl, now)
                .await
                .unwrap()
                .iter()
                .map(RecordClaim::is_owned)
                .collect::<Vec<_>>(),
            [true],
            "per tenant"
        );
        assert_eq!(
            store
                .claim_records(&t, second, &ids(&["r1", "r1"]), ttl, now)
                .await
                .unwrap()
                .iter()
                .map(RecordClaim::is_owned)
                .collect::<Vec<_>>(),
            [false, false],
            "a repeated id does not panic"
        );
        // At (and past) expires_at a claim is gone: another blob takes the record over.
        assert_eq!(
            store
                .claim_records(
                    &t,
                    second,
                    &ids(&["r1", "r2"]),
                    ttl + Duration::days(8),
                    ttl
                )
                .await
                .unwrap()
                .iter()
                .map(RecordClaim::is_owned)
                .collect::<Vec<_>>(),
            [true, true],
            "expired claims are taken over"
        );
        assert_eq!(
            store
                .claim_records(
                    &t,
                    first,
                    &ids(&["r1", "r6"]),
                    ttl,
                    ttl + Duration::seconds(1)
                )
                .await
                .unwrap()
                .iter()
                .map(RecordClaim::is_owned)
                .collect::<Vec<_>>(),
            [false, true],
            "the new claim lives until its own expiry"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        contract::run(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn clones_share_state() {
        let a = MemoryStore::default();
        let b = a.clone();
        let t = contract::tenant("aaaaaaaa-0000-4000-8000-000000000001", true);
        a.put_tenant(&t).await.unwrap();
        assert_eq!(b.list_tenants().await.unwrap(), vec![t]);
    }
}
