//! The emulator's world: clock, tenants, generated blobs, subscriptions, directory users with
//! their change history, the request log and the ground truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

use crate::data::{self, DirectoryUser, RecordContext};
use crate::faults::FaultEngine;
use crate::scenario::{CONTENT_TYPES, Endpoint, Scenario, SubscriptionState, TenantSpec};
use crate::token::TokenService;

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the emulator's state
/// stays usable for the assertions of the test that panicked).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The emulator clock: wall time plus an offset that tests can advance.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset: Mutex<Duration>,
}

impl Clock {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + *lock(&self.offset)
    }
    pub(crate) fn advance(&self, by: Duration) {
        *lock(&self.offset) += by;
    }
}

/// One content blob.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) content_id: String,
    pub(crate) content_type: &'static str,
    pub(crate) content_created: DateTime<Utc>,
    /// When it becomes listable (`content_created`, or later for late content).
    pub(crate) available_at: DateTime<Utc>,
    pub(crate) expiration: DateTime<Utc>,
    pub(crate) body: Bytes,
    pub(crate) record_ids: Vec<String>,
    /// Position in its tenant's and content type's generation order (from 1): with those, the
    /// blob's stable key for `blob_fraction` fault rules ([`blob_key`]).
    pub(crate) seq: u64,
}

/// The stable key of a blob for `blob_fraction` fault rules: unlike its content id (which holds
/// times relative to the emulator's start), the same in every run of a scenario.
pub(crate) fn blob_key(tenant: &str, content_type: &str, seq: u64) -> String {
    format!("{}/{content_type}/{seq}", tenant.to_ascii_lowercase())
}

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    Enabled { started_at: DateTime<Utc> },
    Disabled,
}

/// One change of the directory, for Graph delta queries.
#[derive(Debug, Clone)]
pub(crate) struct UserChange {
    pub(crate) version: u64,
    pub(crate) user_id: String,
    pub(crate) removed: bool,
}

/// The directory of one tenant.
#[derive(Debug)]
pub(crate) struct Directory {
    pub(crate) users: Vec<DirectoryUser>,
    pub(crate) version: u64,
    pub(crate) changes: Vec<UserChange>,
}

/// A tenant at run time.
#[derive(Debug)]
pub(crate) struct TenantState {
    pub(crate) spec: TenantSpec,
    /// Per content type, sorted by (`available_at`, `content_id`).
    pub(crate) blobs: BTreeMap<&'static str, Vec<Blob>>,
    pub(crate) blob_index: HashMap<String, (&'static str, usize)>,
    pub(crate) subs: Mutex<HashMap<&'static str, Sub>>,
    pub(crate) directory: Mutex<Directory>,
}

/// One logged request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Which endpoint family.
    pub endpoint: &'static str,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Status answered (0 = connection dropped).
    pub status: u16,
    /// The `PublisherIdentifier` query parameter, if sent.
    pub publisher_identifier: Option<String>,
    /// Tenant named by the request, if any.
    pub tenant: Option<String>,
    /// Fault fired, if any.
    pub fault: Option<String>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) scenario: Scenario,
    pub(crate) clock: Clock,
    pub(crate) tokens: TokenService,
    pub(crate) tenants: HashMap<String, TenantState>,
    pub(crate) faults: Mutex<FaultEngine>,
    pub(crate) log: Mutex<Vec<RequestRecord>>,
}

impl World {
    pub(crate) fn new(scenario: Scenario) -> World {
        let clock = Clock::default();
        clock.advance(Duration::seconds(scenario.clock_offset_secs));
        let start_now = clock.now();
        let mut key = [0u8; 32];
        StdRng::seed_from_u64(scenario.seed ^ 0x5eed_70c3).fill(&mut key);
        let tokens = TokenService::new(&scenario, &key);
        let tenants = scenario
            .tenants
            .iter()
            .map(|t| {
                (
                    t.id.to_ascii_lowercase(),
                    build_tenant(&scenario, t, start_now),
                )
            })
            .collect();
        let faults = Mutex::new(FaultEngine::new(&scenario.faults, scenario.seed));
        World {
            scenario,
            clock,
            tokens,
            tenants,
            faults,
            log: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn tenant(&self, id: &str) -> Option<&TenantState> {
        self.tenants.get(&id.to_ascii_lowercase())
    }

    pub(crate) fn record(&self, r: RequestRecord) {
        lock(&self.log).push(r);
    }
}

fn seed_for(seed: u64, parts: &[&str]) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(seed.to_le_bytes());
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

fn short_name(ct: &str) -> (String, String) {
    // "Audit.SharePoint" -> ("audit_sharepoint", "Audit_SharePoint")
    let under = ct.replace('.', "_");
    (under.to_ascii_lowercase(), under)
}

fn id_stamp(t: DateTime<Utc>) -> String {
    // 23 digits: yyyyMMddHHmmss + 9 digits of sub-second, as in real content ids.
    format!(
        "{}{:09}",
        t.format("%Y%m%d%H%M%S"),
        t.timestamp_subsec_nanos()
    )
}

fn build_tenant(scenario: &Scenario, spec: &TenantSpec, now: DateTime<Utc>) -> TenantState {
    let mut rng = StdRng::seed_from_u64(seed_for(scenario.seed, &[&spec.id, "users"]));
    let users = data::make_users(&mut rng, &spec.domain, spec.users.max(1));
    let d = &spec.data;
    // Not hour-aligned: the last slot's blobs always become available in the half hour after
    // the emulator starts, whatever the wall-clock minute, so tests that move the clock see new
    // content.
    let start = d.start.unwrap_or(now - Duration::hours(d.hours_back));
    let hours = if d.start.is_some() {
        ((now - start).num_hours() + d.hours_ahead).max(0)
    } else {
        d.hours_back + d.hours_ahead
    };
    let mut blobs = BTreeMap::new();
    let mut blob_index = HashMap::new();
    for ct in CONTENT_TYPES {
        let rate = d
            .records_per_hour
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(ct))
            .map_or(0, |(_, v)| *v);
        if rate == 0 {
            continue;
        }
        let list = build_blobs(scenario, spec, &users, ct, start, hours, rate);
        for (i, b) in list.iter().enumerate() {
            blob_index.insert(b.content_id.clone(), (ct, i));
        }
        blobs.insert(ct, list);
    }
    let subs = spec
        .subscriptions
        .iter()
        .filter_map(|(ct, st)| {
            let ct = crate::scenario::canonical_content_type(ct)?;
            Some((
                ct,
                match st {
                    SubscriptionState::Enabled => Sub::Enabled {
                        started_at: now - Duration::days(30),
                    },
                    SubscriptionState::Disabled => Sub::Disabled,
                },
            ))
        })
        .collect();
    TenantState {
        spec: spec.clone(),
        blobs,
        blob_index,
        subs: Mutex::new(subs),
        directory: Mutex::new(Directory {
            users,
            version: 1,
            changes: Vec::new(),
        }),
    }
}

fn build_blobs(
    scenario: &Scenario,
    spec: &TenantSpec,
    users: &[DirectoryUser],
    ct: &'static str,
    start: DateTime<Utc>,
    hours: i64,
    rate: u32,
) -> Vec<Blob> {
    let d = &spec.data;
    let mut rng = StdRng::seed_from_u64(seed_for(scenario.seed, &[&spec.id, ct]));
    let (lower, upper) = short_name(ct);
    let per_blob = d.records_per_blob.max(1) as usize;
    let mut out: Vec<Blob> = Vec::new();
    // Records chosen to reappear (same Id) in the next blob.
    let mut carry: Vec<serde_json::Value> = Vec::new();
    let mut seq = 0u64;
    for h in 0..hours {
        let hour = start + Duration::hours(h);
        let mut records: Vec<serde_json::Value> = (0..rate)
            .map(|_| {
                // Mostly inside the hour; some hours or days older than the blob.
                let mut t = hour + Duration::seconds(rng.random_range(0..3600));
                if rng.random_bool(0.05) {
                    t -= Duration::minutes(rng.random_range(60..48 * 60));
                }
                let id: Uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
                let ctx = RecordContext {
                    tenant_id: &spec.id,
                    tenant_domain: &spec.domain,
                    users,
                    creation_time: t,
                    id,
                };
                data::make_record(&mut rng, ct, &ctx)
            })
            .collect();
        for chunk_start in (0..records.len()).step_by(per_blob) {
            let end = (chunk_start + per_blob).min(records.len());
            let mut body_records: Vec<serde_json::Value> = records[chunk_start..end].to_vec();
            body_records.append(&mut carry);
            for r in &records[chunk_start..end] {
                if d.duplicate_fraction > 0.0 && rng.random_bool(d.duplicate_fraction) {
                    carry.push(r.clone());
                }
            }
            body_records.shuffle(&mut rng);
            seq += 1;
            let created = hour
                + Duration::minutes(60)
                + Duration::seconds(rng.random_range(30..1800))
                + Duration::milliseconds(rng.random_range(0..1000));
            let available_at = if d.late_fraction > 0.0 && rng.random_bool(d.late_fraction) {
                let delay = match d.late_by_secs_max {
                    Some(max) if max > d.late_by_secs => rng.random_range(d.late_by_secs..=max),
                    _ => d.late_by_secs,
                };
                created + Duration::seconds(delay)
            } else {
                created
            };
            let expiration = if d.expired_fraction > 0.0 && rng.random_bool(d.expired_fraction) {
                available_at + Duration::seconds(d.expire_after_secs)
            } else {
                created + Duration::days(scenario.retention_days)
            };
            let first = created - Duration::seconds(rng.random_range(60..900));
            let content_id = format!(
                "{}${}${lower}${upper}$na{:04}",
                id_stamp(first),
                id_stamp(created),
                seq % 10_000
            );
            let record_ids = body_records
                .iter()
                .filter_map(|r| r.get("Id").and_then(|v| v.as_str()).map(str::to_owned))
                .collect();
            let body = Bytes::from(serde_json::to_vec(&body_records).unwrap_or_default());
            out.push(Blob {
                content_id,
                content_type: ct,
                content_created: created,
                available_at,
                expiration,
                body,
                record_ids,
                seq,
            });
        }
        records.clear();
    }
    out.sort_by(|a, b| (a.available_at, &a.content_id).cmp(&(b.available_at, &b.content_id)));
    out
}

/// What the emulator made available, for tests to compare a collection against.
#[derive(Debug, Clone, Serialize)]
pub struct BlobTruth {
    /// Tenant GUID.
    pub tenant: String,
    /// Content type.
    pub content_type: &'static str,
    /// Content id.
    pub content_id: String,
    /// `contentCreated` as listed.
    pub content_created: DateTime<Utc>,
    /// When it became (or becomes) listable.
    pub available_at: DateTime<Utc>,
    /// `contentExpiration` as listed.
    pub expiration: DateTime<Utc>,
    /// Record `Id`s inside, in blob order (may repeat ids of other blobs).
    pub record_ids: Vec<String>,
    /// Listable at the time the truth was taken.
    pub available: bool,
    /// Expired at the time the truth was taken.
    pub expired: bool,
    /// Listed late: `available_at` after `content_created`.
    pub late: bool,
    /// Kinds of the fault rules with a `blob_fraction` that select this blob (it meets them on
    /// every request; with `every = 1`, e.g. a `truncate`, it can never be fetched).
    pub targeted_by: Vec<String>,
}

impl World {
    pub(crate) fn truth(&self) -> Vec<BlobTruth> {
        let now = self.clock.now();
        let mut out = Vec::new();
        let mut tenants: Vec<&TenantState> = self.tenants.values().collect();
        tenants.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        for t in tenants {
            for blobs in t.blobs.values() {
                for b in blobs {
                    let key = blob_key(&t.spec.id, b.content_type, b.seq);
                    let targeted_by = self
                        .scenario
                        .faults
                        .iter()
                        .enumerate()
                        .filter(|(i, f)| {
                            f.endpoints.contains(&Endpoint::Blob)
                                && f.tenant
                                    .as_ref()
                                    .is_none_or(|x| x.eq_ignore_ascii_case(&t.spec.id))
                                && f.blob_fraction.is_some_and(|fr| {
                                    crate::faults::selects_blob(self.scenario.seed, *i, &key, fr)
                                })
                        })
                        .map(|(_, f)| {
                            serde_json::to_value(f.kind)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default()
                        })
                        .collect();
                    out.push(BlobTruth {
                        tenant: t.spec.id.clone(),
                        content_type: b.content_type,
                        content_id: b.content_id.clone(),
                        content_created: b.content_created,
                        available_at: b.available_at,
                        expiration: b.expiration,
                        record_ids: b.record_ids.clone(),
                        available: b.available_at <= now,
                        expired: b.expiration <= now,
                        late: b.available_at > b.content_created,
                        targeted_by,
                    });
                }
            }
        }
        out
    }

    /// Applies a directory change and records it for delta queries.
    pub(crate) fn change_user(
        &self,
        tenant: &str,
        f: impl FnOnce(&mut Vec<DirectoryUser>) -> Option<(String, bool)>,
    ) -> bool {
        let Some(t) = self.tenant(tenant) else {
            return false;
        };
        let mut dir = lock(&t.directory);
        match f(&mut dir.users) {
            Some((user_id, removed)) => {
                dir.version += 1;
                let version = dir.version;
                dir.changes.push(UserChange {
                    version,
                    user_id,
                    removed,
                });
                true
            }
            None => false,
        }
    }
}

/// Which endpoint family a request is for, with its tenant, for faults and the log.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) endpoint: Endpoint,
    pub(crate) tenant: Option<String>,
    pub(crate) publisher_identifier: Option<String>,
    pub(crate) method_name: &'static str,
    /// The stable key of the blob requested ([`blob_key`]), for `blob_fraction` rules.
    pub(crate) blob: Option<String>,
}
