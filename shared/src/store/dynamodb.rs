//! [`StateStore`] on one DynamoDB table (layout in the [module docs](super)).
//!
//! Tenants are stored as the JSON of [`Tenant`] (attribute `tenant`) plus `tenant_id` and
//! `enabled`; cursors as `listed_until`, `reconcile_from`, `reconcile_started`,
//! `reconciled_at`, `since` (RFC 3339, absent when `None`) and the number `skew_ms` (absent: 0) with a
//! numeric `version` for conditional writes; ledger entries as the whole blob (`content_type`,
//! `content_uri`, `content_created`, `content_expiration`; the content id is in `sk`), `state`,
//! `updated_at`, `records`, `object_key`, `reason`, `attempts`, `next_attempt_at`, `listed_at`
//! and the numeric TTL attribute `expires_at` (epoch seconds), plus the sparse index attributes
//! `open_pk` and `due` on a failed entry that the sweep retries; listed-blob summaries as the
//! binary set `ids` (8-byte big-endian digests); the directory sync item as `delta_link`,
//! `synced_at` (RFC 3339) and the number `users`. DynamoDB deletes expired items late (and moto
//! never), so every read treats an item past `expires_at` as absent and every claim may
//! overwrite one.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TimeToLiveSpecification, TimeToLiveStatus,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{StreamExt, TryStreamExt};

use super::{Claim, RecordClaim, StateStore, StoreError, ledger_ttl, record_key, seen_ttl};
use crate::aws::classify;
use crate::model::{
    BlobState, ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, LedgerItem, Tenant,
    TenantId, Versioned,
};

type Item = HashMap<String, AttributeValue>;

/// Attempts of one call (each of which the SDK itself may retry a few times): throttling, 5xx
/// and dropped connections are tried again with jittered backoff, so a busy table slows a
/// tick down instead of failing it. A conditional write retried after a lost answer is safe:
/// the ledger treats "already there" as claimed, a claim by the same blob as owned, and a
/// cursor conflict as "re-read next tick".
const CALL_RETRY: crate::retry::RetryPolicy = crate::retry::RetryPolicy {
    max_attempts: 6,
    base_delay: Duration::from_millis(50),
    max_delay: Duration::from_secs(2),
    deadline: None,
};

/// Sends a fluent request, retrying what may succeed later ([`CALL_RETRY`]).
macro_rules! send_retrying {
    ($req:expr) => {{
        let req = $req;
        let mut attempt: u32 = 1;
        loop {
            match req.clone().send().await {
                Err(e) if CALL_RETRY.allows_another(attempt) && classify(&e).retryable => {
                    tracing::warn!(attempt, error = %classify(&e).message, "DynamoDB call failed; retrying");
                    tokio::time::sleep(CALL_RETRY.backoff(attempt - 1)).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

const TENANTS_PK: &str = "TENANTS";
const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailedException";
const RECORD_SK: &str = "REC";
const BLOB_PREFIX: &str = "BLOB#";
/// The sparse global secondary index of retryable failed entries (`open_pk`, `due`).
pub const OPEN_INDEX: &str = "open";
const DIRECTORY_SK: &str = "DIRECTORY";
/// Record claims written at once by one [`StateStore::claim_records`] call.
const CLAIM_CONCURRENCY: usize = 32;

/// The state store on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    /// Listed-blob summaries this process has read or written: they only grow, so what is
    /// cached is always true, and a warm Lambda re-lists its band and reconciles without
    /// reading them again (a blob another lister added since costs a claim attempt instead).
    seen_cache: std::sync::Arc<std::sync::Mutex<SeenCache>>,
}

/// Summaries by (tenant, content type, hour).
type SeenCache = std::collections::HashMap<(String, ContentType, i64), HashSet<u64>>;

/// Summaries older than this are dropped from the cache (Microsoft keeps content 7 days).
const SEEN_CACHE_HOURS: i64 = 8 * 24;

impl DynamoDbStore {
    /// A store on `table` (the stack's `STATE_TABLE`).
    pub fn new(client: Client, table: String) -> DynamoDbStore {
        DynamoDbStore {
            client,
            table,
            seen_cache: std::sync::Arc::default(),
        }
    }

    fn seen_cache(&self) -> std::sync::MutexGuard<'_, SeenCache> {
        self.seen_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates a table with this store's layout; see [`create_table`].
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
        create_table(client, name).await
    }

    fn err<E>(&self, operation: &'static str, err: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        backend_error(operation, &self.table, err)
    }

    async fn get(
        &self,
        operation: &'static str,
        pk: String,
        sk: String,
    ) -> Result<Option<Item>, StoreError> {
        let out = send_retrying!(
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S(sk))
                .consistent_read(true)
        )
        .map_err(|e| self.err(operation, &e))?;
        Ok(out.item.filter(|i| !i.is_empty()))
    }

    /// One record claim of [`StateStore::claim_records`]: a put conditional on the record being
    /// unclaimed, claimed by this same blob, or past its TTL; when another blob holds it, that
    /// blob (from the old item the failed condition returns, else a read).
    async fn claim_record(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<RecordClaim, StoreError> {
        let pk = record_pk(tenant, record_id);
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk.clone()))
            .item("sk", s(RECORD_SK))
            .item("blob", s(content_id))
            .item("expires_at", n(expires_at))
            .condition_expression("attribute_not_exists(pk) OR #b = :blob OR expires_at <= :now")
            .expression_attribute_names("#b", "blob")
            .expression_attribute_values(":blob", s(content_id))
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        // The holder may expire or be deleted between the put and the read: try again.
        for _ in 0..3 {
            let err = match send_retrying!(req.clone()) {
                Ok(_) => return Ok(RecordClaim::Owned),
                Err(e) => e,
            };
            if err.code() != Some(CONDITIONAL_CHECK_FAILED) {
                return Err(self.err("claim_records", &err));
            }
            let old = match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                _ => None,
            };
            let old = match old {
                Some(item) if !item.is_empty() => Some(item),
                // Not returned by this backend: read it.
                _ => {
                    self.get("claim_records", pk.clone(), RECORD_SK.into())
                        .await?
                }
            };
            if let Some(item) = old {
                let what = format!("record claim {tenant}");
                let holder = req_s(&item, "blob", &what)?;
                let live = get_n::<i64>(&item, "expires_at", &what)?.is_none_or(|e| e > now);
                if live && holder != content_id {
                    return Ok(RecordClaim::HeldBy(holder.to_owned()));
                }
            }
        }
        Err(StoreError::Backend {
            operation: "claim_records",
            message: format!("a record claim of {tenant} kept changing during the claim"),
            retryable: true,
        })
    }

    /// The decoded items of a query, all pages, stopping at `limit` kept items. `decode` skips
    /// an item by returning `None` (past its TTL).
    async fn query_all<T: Send>(
        &self,
        operation: &'static str,
        req: QueryFluentBuilder,
        limit: Option<usize>,
        mut decode: impl FnMut(&Item) -> Result<Option<T>, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut page = req.clone().set_exclusive_start_key(start.take());
            if let Some(limit) = limit {
                let left = limit.saturating_sub(out.len()).max(1);
                page = page.limit(i32::try_from(left).unwrap_or(i32::MAX));
            }
            let res = send_retrying!(page).map_err(|e| self.err(operation, &e))?;
            for item in res.items() {
                if let Some(v) = decode(item)? {
                    out.push(v);
                }
            }
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            match res.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        if let Some(limit) = limit {
            out.truncate(limit);
        }
        Ok(out)
    }
}

/// Creates a table with this store's layout (on-demand billing, string `pk`/`sk`, the sparse
/// global secondary index [`OPEN_INDEX`] on string `open_pk`/`due` projecting every attribute,
/// TTL on `expires_at`), for tests and local runs; the stack creates the real one. A table
/// that already exists is kept (its TTL is still switched on).
///
/// # Errors
/// [`StoreError::Backend`].
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
    };
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let built = (|| {
        Ok::<_, aws_sdk_dynamodb::error::BuildError>((
            [key("pk", KeyType::Hash)?, key("sk", KeyType::Range)?],
            vec![attr("pk")?, attr("sk")?, attr("open_pk")?, attr("due")?],
            GlobalSecondaryIndex::builder()
                .index_name(OPEN_INDEX)
                .key_schema(key("open_pk", KeyType::Hash)?)
                .key_schema(key("due", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()?,
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()?,
        ))
    })();
    let ([pk, sk], defs, open, ttl) = built.map_err(|e| StoreError::Backend {
        operation: "create_table",
        message: e.to_string(),
        retryable: false,
    })?;
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(pk)
        .key_schema(sk)
        .set_attribute_definitions(Some(defs))
        .global_secondary_indexes(open)
        .send()
        .await;
    if let Err(e) = created
        && e.code() != Some("ResourceInUseException")
    {
        return Err(backend_error("create_table", name, &e));
    }
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(Duration::from_secs(120))
        .await
        .map_err(|e| StoreError::Backend {
            operation: "create_table",
            message: format!("table {name} did not become active: {e}"),
            retryable: true,
        })?;
    let status = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| backend_error("describe_time_to_live", name, &e))?;
    let enabled = status
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status())
        .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
    if !enabled {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| backend_error("update_time_to_live", name, &e))?;
    }
    Ok(())
}

/// Maps an SDK error: a missing table names the table and the fix; throttling, 5xx and
/// timeouts are retryable.
fn backend_error<E>(
    operation: &'static str,
    table: &str,
    err: &SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let c = classify(err);
    if c.code.as_deref() == Some("ResourceNotFoundException") {
        return StoreError::Backend {
            operation,
            message: format!(
                "DynamoDB table {table} does not exist (or is not in this region/account): deploy the stack or set STATE_TABLE to the stack's table ({})",
                c.message
            ),
            retryable: false,
        };
    }
    StoreError::Backend {
        operation,
        message: format!("DynamoDB table {table}: {}", c.message),
        retryable: c.retryable,
    }
}

fn tenant_pk(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}")
}

fn cursor_sk(ct: ContentType) -> String {
    format!("CURSOR#{ct}")
}

fn blob_sk(content_id: &str) -> String {
    format!("{BLOB_PREFIX}{content_id}")
}

fn seen_sk(ct: ContentType, hour: DateTime<Utc>) -> String {
    format!("SEEN#{ct}#{}", time(hour))
}

/// The key of a record claim: the id, or its SHA-256 past 512 bytes ([`record_key`]).
fn record_pk(tenant: &TenantId, record_id: &str) -> String {
    format!("REC#{tenant}#{}", record_key(record_id))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A time as a fixed-width string whose byte order is time order (the index's sort key `due`,
/// so the index returns the oldest due first): [`time`]'s optional fraction would sort
/// `…:00.5Z` before `…:00Z`.
fn sortable_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.into(),
    }
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn req_s<'a>(item: &'a Item, name: &str, what: &str) -> Result<&'a str, StoreError> {
    get_s(item, name).ok_or_else(|| corrupt(what, format!("missing string attribute {name}")))
}

fn get_n<T: std::str::FromStr>(
    item: &Item,
    name: &str,
    what: &str,
) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| corrupt(what, format!("attribute {name} is not a valid number"))),
        Some(_) => Err(corrupt(what, format!("attribute {name} is not a number"))),
    }
}

fn parse_time(v: &str, name: &str, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| corrupt(what, format!("attribute {name} is not an RFC 3339 time")))
}

/// An optional time attribute (absent: `None`).
fn opt_time(item: &Item, name: &str, what: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get_s(item, name)
        .map(|v| parse_time(v, name, what))
        .transpose()
}

fn ledger_item(tenant: &TenantId, blob: &ContentBlob, entry: &LedgerEntry) -> Item {
    let pk = tenant_pk(tenant);
    let mut item = Item::new();
    if is_retried(entry)
        && let Some(next) = entry.next_attempt_at
    {
        // In the sparse index of what the sweep retries.
        item.insert("open_pk".into(), s(pk.clone()));
        item.insert("due".into(), s(sortable_time(next)));
    }
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(blob_sk(&blob.content_id)));
    item.insert("state".into(), s(entry.state.as_str()));
    item.insert("updated_at".into(), s(time(entry.updated_at)));
    item.insert("content_type".into(), s(blob.content_type.as_str()));
    item.insert("content_uri".into(), s(blob.content_uri.clone()));
    item.insert("content_created".into(), s(time(blob.content_created)));
    item.insert(
        "content_expiration".into(),
        s(time(blob.content_expiration)),
    );
    item.insert("expires_at".into(), n(ledger_ttl(blob).timestamp()));
    if let Some(r) = entry.records {
        item.insert("records".into(), n(r));
    }
    if let Some(k) = &entry.object_key {
        item.insert("object_key".into(), s(k.clone()));
    }
    if let Some(r) = &entry.reason {
        item.insert("reason".into(), s(r.clone()));
    }
    if entry.attempts > 0 {
        item.insert("attempts".into(), n(entry.attempts));
    }
    if let Some(t) = entry.next_attempt_at {
        item.insert("next_attempt_at".into(), s(time(t)));
    }
    if let Some(t) = entry.listed_at {
        item.insert("listed_at".into(), s(time(t)));
    }
    item
}

/// Decodes a ledger item; `None` when it is past its TTL at `now`.
fn decode_ledger(
    item: &Item,
    now: DateTime<Utc>,
    what: &str,
) -> Result<Option<LedgerEntry>, StoreError> {
    if let Some(exp) = get_n::<i64>(item, "expires_at", what)?
        && exp <= now.timestamp()
    {
        return Ok(None);
    }
    let state = req_s(item, "state", what)?;
    let state = BlobState::parse(state).ok_or_else(|| corrupt(what, "unknown state"))?;
    let updated_at = parse_time(req_s(item, "updated_at", what)?, "updated_at", what)?;
    Ok(Some(LedgerEntry {
        state,
        updated_at,
        records: get_n(item, "records", what)?,
        object_key: get_s(item, "object_key").map(str::to_owned),
        reason: get_s(item, "reason").map(str::to_owned),
        attempts: get_n(item, "attempts", what)?.unwrap_or(0),
        next_attempt_at: opt_time(item, "next_attempt_at", what)?,
        listed_at: opt_time(item, "listed_at", what)?,
    }))
}

/// Decodes a ledger item with its blob; `None` when it is past its TTL at `now`, or written
/// before entries kept the whole blob (no `content_uri`: such an entry was never retried and
/// ages out within days).
fn decode_ledger_item(
    tenant: &TenantId,
    item: &Item,
    now: DateTime<Utc>,
) -> Result<Option<LedgerItem>, StoreError> {
    let sk = req_s(item, "sk", &format!("ledger entry {tenant}/?"))?;
    let content_id = sk.strip_prefix(BLOB_PREFIX).unwrap_or(sk);
    let what = format!("ledger entry {tenant}/{content_id}");
    let Some(entry) = decode_ledger(item, now, &what)? else {
        return Ok(None);
    };
    let Some(content_uri) = get_s(item, "content_uri") else {
        tracing::debug!(%tenant, "ledger entry without its blob (an older version wrote it); skipped");
        return Ok(None);
    };
    let content_type = req_s(item, "content_type", &what)?
        .parse::<ContentType>()
        .map_err(|_| corrupt(&what, "attribute content_type is not a content type"))?;
    let blob = ContentBlob {
        content_type,
        content_id: content_id.to_owned(),
        content_uri: content_uri.to_owned(),
        content_created: parse_time(
            req_s(item, "content_created", &what)?,
            "content_created",
            &what,
        )?,
        content_expiration: parse_time(
            req_s(item, "content_expiration", &what)?,
            "content_expiration",
            &what,
        )?,
    };
    Ok(Some(LedgerItem { blob, entry }))
}

/// True when the sweep retries the entry (what the index [`OPEN_INDEX`] holds): failed with a
/// next attempt.
fn is_retried(entry: &LedgerEntry) -> bool {
    entry.state == BlobState::Failed && entry.next_attempt_at.is_some()
}

/// A listed-blob summary's digests from its binary set `ids`.
fn decode_seen(item: &Item, what: &str) -> Result<HashSet<u64>, StoreError> {
    match item.get("ids") {
        None | Some(AttributeValue::Null(_)) => Ok(HashSet::new()),
        Some(AttributeValue::Bs(set)) => set
            .iter()
            .map(|b| {
                <[u8; 8]>::try_from(b.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt(what, "a digest of attribute ids is not 8 bytes"))
            })
            .collect(),
        Some(_) => Err(corrupt(what, "attribute ids is not a binary set")),
    }
}

impl StateStore for DynamoDbStore {
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let json = serde_json::to_string(tenant).map_err(|e| StoreError::Backend {
            operation: "put_tenant",
            message: format!("tenant {} cannot be encoded: {e}", tenant.id),
            retryable: false,
        })?;
        send_retrying!(
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(TENANTS_PK))
                .item("sk", s(tenant_pk(&tenant.id)))
                .item("tenant_id", s(tenant.id.as_str()))
                .item("enabled", AttributeValue::Bool(tenant.enabled))
                .item("tenant", s(json))
        )
        .map_err(|e| self.err("put_tenant", &e))?;
        Ok(())
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut tenants = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = send_retrying!(
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(TENANTS_PK))
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
            )
            .map_err(|e| self.err("list_tenants", &e))?;
            for item in out.items() {
                let sk = get_s(item, "sk").unwrap_or("?");
                let what = format!("tenant item {sk}");
                let json = req_s(item, "tenant", &what)?;
                let tenant: Tenant =
                    serde_json::from_str(json).map_err(|e| corrupt(&what, e.to_string()))?;
                tenants.push(tenant);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(tenants)
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let out = send_retrying!(
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(TENANTS_PK))
                .key("sk", s(tenant_pk(id)))
                .return_values(ReturnValue::AllOld)
        )
        .map_err(|e| self.err("delete_tenant", &e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn load_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
    ) -> Result<Option<Versioned<Cursor>>, StoreError> {
        let Some(item) = self
            .get("load_cursor", tenant_pk(tenant), cursor_sk(content_type))
            .await?
        else {
            return Ok(None);
        };
        let what = format!("cursor {tenant}/{content_type}");
        let version = get_n::<u64>(&item, "version", &what)?
            .ok_or_else(|| corrupt(&what, "missing number attribute version"))?;
        let listed_until = parse_time(req_s(&item, "listed_until", &what)?, "listed_until", &what)?;
        Ok(Some(Versioned {
            value: Cursor {
                listed_until,
                reconcile_from: opt_time(&item, "reconcile_from", &what)?,
                reconcile_started: opt_time(&item, "reconcile_started", &what)?,
                reconciled_at: opt_time(&item, "reconciled_at", &what)?,
                skew_ms: get_n(&item, "skew_ms", &what)?.unwrap_or(0),
                since: opt_time(&item, "since", &what)?,
            },
            version,
        }))
    }

    async fn save_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        cursor: &Cursor,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let version = expected.map_or(1, |v| v + 1);
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(tenant_pk(tenant)))
            .item("sk", s(cursor_sk(content_type)))
            .item("listed_until", s(time(cursor.listed_until)))
            .item("version", n(version));
        for (name, t) in [
            ("reconcile_from", cursor.reconcile_from),
            ("reconcile_started", cursor.reconcile_started),
            ("reconciled_at", cursor.reconciled_at),
            ("since", cursor.since),
        ] {
            if let Some(t) = t {
                req = req.item(name, s(time(t)));
            }
        }
        if cursor.skew_ms != 0 {
            req = req.item("skew_ms", n(cursor.skew_ms));
        }
        req = match expected {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", n(v)),
        };
        match send_retrying!(req) {
            Ok(_) => Ok(version),
            Err(e) if e.code() == Some(CONDITIONAL_CHECK_FAILED) => Err(StoreError::Conflict {
                what: format!("cursor {tenant}/{content_type}"),
                expected,
            }),
            Err(e) => Err(self.err("save_cursor", &e)),
        }
    }

    async fn claim_blob(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let entry = LedgerEntry {
            listed_at: Some(now),
            ..LedgerEntry::new(BlobState::Pending, now)
        };
        let what = format!("ledger entry {tenant}/{}", blob.content_id);
        // An item past its TTL counts as absent: the condition lets the claim overwrite it.
        for _ in 0..3 {
            let res = send_retrying!(
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(ledger_item(tenant, blob, &entry)))
                    .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                    .expression_attribute_values(":now", n(now.timestamp()))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
            );
            let err = match res {
                Ok(_) => return Ok(Claim::New),
                Err(e) => e,
            };
            if err.code() != Some(CONDITIONAL_CHECK_FAILED) {
                return Err(self.err("claim_blob", &err));
            }
            let old = match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                _ => None,
            };
            let old = match old {
                Some(item) if !item.is_empty() => Some(item),
                // Not returned by this backend: read it.
                _ => {
                    self.get("claim_blob", tenant_pk(tenant), blob_sk(&blob.content_id))
                        .await?
                }
            };
            if let Some(item) = old
                && let Some(existing) = decode_ledger(&item, now, &what)?
            {
                return Ok(Claim::Existing(existing));
            }
            // Deleted (or expired) between the put and the read: try again.
        }
        Err(StoreError::Backend {
            operation: "claim_blob",
            message: format!("{what} kept changing during the claim"),
            retryable: true,
        })
    }

    async fn set_blob_state(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        entry: &LedgerEntry,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(ledger_item(tenant, blob, entry)));
        // Entries only move forward: the put applies over nothing, over an item past its TTL
        // or over an entry in a state that may become the new one.
        let from: Vec<BlobState> = BlobState::ALL
            .into_iter()
            .filter(|s| s.may_become(entry.state))
            .collect();
        if from.len() < BlobState::ALL.len() {
            let mut condition = String::from("attribute_not_exists(pk) OR expires_at <= :now");
            req = req.expression_attribute_values(":now", n(entry.updated_at.timestamp()));
            if !from.is_empty() {
                let names: Vec<String> = (0..from.len()).map(|i| format!(":s{i}")).collect();
                condition.push_str(&format!(" OR #state IN ({})", names.join(", ")));
                req = req.expression_attribute_names("#state", "state");
                for (name, state) in names.into_iter().zip(&from) {
                    req = req.expression_attribute_values(name, s(state.as_str()));
                }
            }
            req = req.condition_expression(condition);
        }
        match send_retrying!(req) {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(CONDITIONAL_CHECK_FAILED) => {
                tracing::debug!(
                    new_state = entry.state.as_str(),
                    "ledger entry is further along; state kept"
                );
                Ok(false)
            }
            Err(e) => Err(self.err("set_blob_state", &e)),
        }
    }

    async fn due_entries(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let req = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OPEN_INDEX)
            .key_condition_expression("open_pk = :pk")
            .expression_attribute_values(":pk", s(tenant_pk(tenant)))
            .scan_index_forward(true);
        self.query_all("due_entries", req, Some(limit), |item| {
            // The index is eventually consistent: check the entry itself is still retried.
            Ok(decode_ledger_item(tenant, item, now)?.filter(|i| is_retried(&i.entry)))
        })
        .await
    }

    async fn ledger(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        let req = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :blob)")
            .expression_attribute_values(":pk", s(tenant_pk(tenant)))
            .expression_attribute_values(":blob", s(BLOB_PREFIX))
            .consistent_read(true);
        self.query_all("ledger", req, None, |item| {
            decode_ledger_item(tenant, item, now)
        })
        .await
    }

    async fn seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
    ) -> Result<HashSet<u64>, StoreError> {
        let key = (tenant.to_string(), content_type, hour.timestamp());
        if let Some(cached) = self.seen_cache().get(&key) {
            return Ok(cached.clone());
        }
        let sk = seen_sk(content_type, hour);
        // Eventually consistent: a summary only grows, and a digest missing from a stale read
        // costs a claim attempt (which finds the blob), never a second job.
        let out = send_retrying!(
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(tenant_pk(tenant)))
                .key("sk", AttributeValue::S(sk.clone()))
                .consistent_read(false)
        )
        .map_err(|e| self.err("seen", &e))?;
        let set = match out.item.filter(|i| !i.is_empty()) {
            None => HashSet::new(),
            Some(item) => decode_seen(&item, &format!("listed-blob summary {tenant}/{sk}"))?,
        };
        let mut cache = self.seen_cache();
        let oldest = Utc::now().timestamp() - SEEN_CACHE_HOURS * 3600;
        cache.retain(|k, _| k.2 >= oldest);
        cache.entry(key).or_default().extend(set.iter().copied());
        Ok(set)
    }

    async fn add_seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
        digests: &[u64],
    ) -> Result<(), StoreError> {
        // A set parameter must not repeat a value.
        let unique: HashSet<u64> = digests.iter().copied().collect();
        if unique.is_empty() {
            return Ok(());
        }
        let set: Vec<Blob> = unique
            .into_iter()
            .map(|d| Blob::new(d.to_be_bytes()))
            .collect();
        send_retrying!(
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(tenant_pk(tenant)))
                .key("sk", s(seen_sk(content_type, hour)))
                .update_expression("ADD ids :set SET expires_at = :ttl")
                .expression_attribute_values(":set", AttributeValue::Bs(set))
                .expression_attribute_values(":ttl", n(seen_ttl(hour).timestamp()))
        )
        .map_err(|e| self.err("add_seen", &e))?;
        // Only what is durably in the summary enters the cache (and only for a summary read
        // before: a partial set must not stand in for one never read).
        if let Some(cached) =
            self.seen_cache()
                .get_mut(&(tenant.to_string(), content_type, hour.timestamp()))
        {
            cached.extend(digests.iter().copied());
        }
        Ok(())
    }

    async fn blob_entry(
        &self,
        tenant: &TenantId,
        content_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let Some(item) = self
            .get("blob_entry", tenant_pk(tenant), blob_sk(content_id))
            .await?
        else {
            return Ok(None);
        };
        decode_ledger(&item, now, &format!("ledger entry {tenant}/{content_id}"))
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
        let (expires_at, now) = (expires_at.timestamp(), now.timestamp());
        // The futures are built up front (lazy: nothing is sent before `buffered` polls them);
        // a closure inside the stream would trip the `Send` check of this future.
        let claims: Vec<_> = record_ids
            .iter()
            .map(|id| self.claim_record(tenant, content_id, id, expires_at, now))
            .collect();
        futures_util::stream::iter(claims)
            .buffered(CLAIM_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn take_over_record(
        &self,
        tenant: &TenantId,
        record_id: &str,
        from: &str,
        to: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let res = send_retrying!(
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(record_pk(tenant, record_id)))
                .item("sk", s(RECORD_SK))
                .item("blob", s(to))
                .item("expires_at", n(expires_at.timestamp()))
                .condition_expression("attribute_not_exists(pk) OR #b = :from OR #b = :to")
                .expression_attribute_names("#b", "blob")
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to))
        );
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(CONDITIONAL_CHECK_FAILED) => Ok(false),
            Err(e) => Err(self.err("take_over_record", &e)),
        }
    }

    async fn release_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
    ) -> Result<(), StoreError> {
        for id in record_ids {
            let res = send_retrying!(
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(record_pk(tenant, id)))
                    .key("sk", s(RECORD_SK))
                    .condition_expression("#b = :me")
                    .expression_attribute_names("#b", "blob")
                    .expression_attribute_values(":me", s(content_id))
            );
            match res {
                Ok(_) => {}
                Err(e) if e.code() == Some(CONDITIONAL_CHECK_FAILED) => {}
                Err(e) => return Err(self.err("release_records", &e)),
            }
        }
        Ok(())
    }

    async fn load_directory_sync(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<DirectorySync>, StoreError> {
        let Some(item) = self
            .get(
                "load_directory_sync",
                tenant_pk(tenant),
                DIRECTORY_SK.into(),
            )
            .await?
        else {
            return Ok(None);
        };
        let what = format!("directory sync {tenant}");
        Ok(Some(DirectorySync {
            delta_link: req_s(&item, "delta_link", &what)?.to_owned(),
            synced_at: parse_time(req_s(&item, "synced_at", &what)?, "synced_at", &what)?,
            users: get_n(&item, "users", &what)?.unwrap_or(0),
        }))
    }

    async fn save_directory_sync(
        &self,
        tenant: &TenantId,
        sync: &DirectorySync,
    ) -> Result<(), StoreError> {
        send_retrying!(
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(tenant_pk(tenant)))
                .item("sk", s(DIRECTORY_SK))
                .item("delta_link", s(sync.delta_link.clone()))
                .item("synced_at", s(time(sync.synced_at)))
                .item("users", n(sync.users))
        )
        .map_err(|e| self.err("save_directory_sync", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> ContentBlob {
        ContentBlob {
            content_type: ContentType::General,
            content_id: "a$b".into(),
            content_uri: "https://manage.office.com/x".into(),
            content_created: Utc::now(),
            content_expiration: Utc::now() + chrono::Duration::days(7),
        }
    }

    #[test]
    fn ledger_items_round_trip_and_expire() {
        let t = TenantId::parse("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d").unwrap();
        let b = blob();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let e = LedgerEntry {
            records: Some(12),
            object_key: Some("k/1.json.gz".into()),
            attempts: 3,
            listed_at: Some(at - chrono::Duration::minutes(7)),
            ..LedgerEntry::new(BlobState::Done, at)
        };
        let item = ledger_item(&t, &b, &e);
        assert_eq!(get_s(&item, "sk"), Some("BLOB#a$b"));
        assert_eq!(
            decode_ledger(&item, Utc::now(), "x").unwrap(),
            Some(e.clone())
        );
        assert_eq!(
            decode_ledger_item(&t, &item, Utc::now()).unwrap(),
            Some(LedgerItem {
                blob: b.clone(),
                entry: e
            }),
            "the whole blob comes back"
        );
        let later = ledger_ttl(&b) + chrono::Duration::seconds(1);
        assert_eq!(decode_ledger(&item, later, "x").unwrap(), None);
        assert_eq!(decode_ledger_item(&t, &item, later).unwrap(), None);
    }

    #[test]
    fn only_retryable_failures_carry_the_index_attributes() {
        let t = TenantId::parse("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d").unwrap();
        let at = DateTime::from_timestamp(1_800_000_000, 500_000_000).unwrap();
        let retry = LedgerEntry {
            next_attempt_at: Some(at),
            ..LedgerEntry::new(BlobState::Failed, at)
        };
        let item = ledger_item(&t, &blob(), &retry);
        assert_eq!(get_s(&item, "open_pk"), get_s(&item, "pk"));
        assert_eq!(get_s(&item, "due"), Some("2027-01-15T08:00:00.500000000Z"));
        for e in [
            LedgerEntry::new(BlobState::Failed, at),
            LedgerEntry {
                next_attempt_at: Some(at),
                ..LedgerEntry::new(BlobState::Enqueued, at)
            },
            LedgerEntry::new(BlobState::Done, at),
        ] {
            let item = ledger_item(&t, &blob(), &e);
            assert!(
                !item.contains_key("open_pk") && !item.contains_key("due"),
                "{e:?}"
            );
        }
        // Byte order of the sort key is time order, fractions or not.
        let whole = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(sortable_time(whole) < sortable_time(at));
        assert!(sortable_time(at) < sortable_time(whole + chrono::Duration::seconds(1)));
    }

    #[test]
    fn summaries_decode_8_byte_digests() {
        let mut item = Item::new();
        item.insert(
            "ids".into(),
            AttributeValue::Bs(vec![
                Blob::new(1u64.to_be_bytes()),
                Blob::new(u64::MAX.to_be_bytes()),
            ]),
        );
        assert_eq!(
            decode_seen(&item, "x").unwrap(),
            HashSet::from([1, u64::MAX])
        );
        item.insert(
            "ids".into(),
            AttributeValue::Bs(vec![Blob::new(vec![1, 2])]),
        );
        assert!(matches!(
            decode_seen(&item, "x"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn long_record_ids_are_keyed_by_their_digest() {
        let t = TenantId::parse("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d").unwrap();
        let long = "x".repeat(3000);
        let pk = record_pk(&t, &long);
        assert!(pk.len() < 200 && pk.contains("sha256:"), "{pk}");
        assert_eq!(record_pk(&t, "r1"), format!("REC#{t}#r1"));
    }

    #[test]
    fn undecodable_items_are_corrupt_without_contents() {
        let mut item = Item::new();
        item.insert("state".into(), s("bogus-state"));
        item.insert("updated_at".into(), s("2026-01-01T00:00:00Z"));
        let err = decode_ledger(&item, Utc::now(), "ledger entry t/c").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(!err.to_string().contains("bogus-state"), "{err}");
    }
}
