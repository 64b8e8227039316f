//! [`StateStore`] on one DynamoDB table (layout in the [module docs](super)).
//!
//! Tenants are stored as the JSON of [`Tenant`] (attribute `tenant`) plus `tenant_id` and
//! `enabled`; cursors as `listed_until` / `deep_relist_at` (RFC 3339) with a numeric `version`
//! for conditional writes; ledger entries as `state`, `updated_at`, `records`, `object_key`,
//! `reason` and the numeric TTL attribute `expires_at` (epoch seconds); the directory sync item
//! as `delta_link`, `synced_at` (RFC 3339) and the number `users`. DynamoDB deletes expired
//! items late (and moto never), so every read treats an item past `expires_at` as absent and
//! every claim may overwrite one.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{StreamExt, TryStreamExt};

use super::{Claim, StateStore, StoreError, ledger_ttl, may_replace};
use crate::aws::classify;
use crate::model::{
    BlobState, ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, Tenant, TenantId,
    Versioned,
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
const DIRECTORY_SK: &str = "DIRECTORY";
/// Record claims written at once by one [`StateStore::claim_records`] call.
const CLAIM_CONCURRENCY: usize = 32;

/// The state store on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
}

impl DynamoDbStore {
    /// A store on `table` (the stack's `STATE_TABLE`).
    pub fn new(client: Client, table: String) -> DynamoDbStore {
        DynamoDbStore { client, table }
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
    /// unclaimed, claimed by this same blob, or past its TTL.
    async fn claim_record(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let res = send_retrying!(
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(record_pk(tenant, record_id)))
                .item("sk", s(RECORD_SK))
                .item("blob", s(content_id))
                .item("expires_at", n(expires_at))
                .condition_expression(
                    "attribute_not_exists(pk) OR #b = :blob OR expires_at <= :now"
                )
                .expression_attribute_names("#b", "blob")
                .expression_attribute_values(":blob", s(content_id))
                .expression_attribute_values(":now", n(now))
        );
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(CONDITIONAL_CHECK_FAILED) => Ok(false),
            Err(e) => Err(self.err("claim_records", &e)),
        }
    }
}

/// Creates a table with this store's layout (on-demand billing, string `pk`/`sk`, TTL on
/// `expires_at`), for tests and local runs; the stack creates the real one. A table that
/// already exists is kept (its TTL is still switched on).
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
            key("pk", KeyType::Hash)?,
            key("sk", KeyType::Range)?,
            attr("pk")?,
            attr("sk")?,
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()?,
        ))
    })();
    let (pk, sk, pk_def, sk_def, ttl) = built.map_err(|e| StoreError::Backend {
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
        .attribute_definitions(pk_def)
        .attribute_definitions(sk_def)
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
    format!("BLOB#{content_id}")
}

fn record_pk(tenant: &TenantId, record_id: &str) -> String {
    format!("REC#{tenant}#{record_id}")
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

fn ledger_item(tenant: &TenantId, blob: &ContentBlob, entry: &LedgerEntry) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), s(tenant_pk(tenant)));
    item.insert("sk".into(), s(blob_sk(&blob.content_id)));
    item.insert("state".into(), s(entry.state.as_str()));
    item.insert("updated_at".into(), s(time(entry.updated_at)));
    item.insert("content_type".into(), s(blob.content_type.as_str()));
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
    }))
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
        let deep_relist_at = get_s(&item, "deep_relist_at")
            .map(|v| parse_time(v, "deep_relist_at", &what))
            .transpose()?;
        Ok(Some(Versioned {
            value: Cursor {
                listed_until,
                deep_relist_at,
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
        if let Some(d) = cursor.deep_relist_at {
            req = req.item("deep_relist_at", s(time(d)));
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
            state: BlobState::Pending,
            updated_at: now,
            records: None,
            object_key: None,
            reason: None,
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
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(ledger_item(tenant, blob, entry)));
        if !may_replace(BlobState::Done, entry.state) {
            // Never turn a (live) done entry into another state.
            req = req
                .condition_expression(
                    "attribute_not_exists(pk) OR #s <> :done OR expires_at <= :now",
                )
                .expression_attribute_names("#s", "state")
                .expression_attribute_values(":done", s(BlobState::Done.as_str()))
                .expression_attribute_values(":now", n(entry.updated_at.timestamp()));
        }
        match send_retrying!(req) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(CONDITIONAL_CHECK_FAILED) => {
                tracing::debug!(
                    new_state = entry.state.as_str(),
                    "ledger entry is already done; state kept"
                );
                Ok(())
            }
            Err(e) => Err(self.err("set_blob_state", &e)),
        }
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
    ) -> Result<Vec<bool>, StoreError> {
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
        let e = LedgerEntry {
            state: BlobState::Done,
            updated_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            records: Some(12),
            object_key: Some("k/1.json.gz".into()),
            reason: None,
        };
        let item = ledger_item(&t, &b, &e);
        assert_eq!(get_s(&item, "sk"), Some("BLOB#a$b"));
        assert_eq!(decode_ledger(&item, Utc::now(), "x").unwrap(), Some(e));
        let later = ledger_ttl(&b) + chrono::Duration::seconds(1);
        assert_eq!(decode_ledger(&item, later, "x").unwrap(), None);
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
