//! Listing cursors and the blob ledger.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How far listing has got for one tenant and content type.
///
/// The cursor is an optimisation: it says where the live tail resumes. Whether a blob is
/// collected is decided by the ledger, and the reconciliation pass re-lists the whole 7 days
/// Microsoft keeps content, so nothing depends on the cursor being right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Every blob with `contentCreated` before this was listed and durably handed on (modulo
    /// late publication, which the re-list band and the reconciliation pass catch).
    pub listed_until: DateTime<Utc>,
    /// Start of the next window of the reconciliation pass under way (`None`: no pass is
    /// under way; one starts when the last finished `reconcile_every` ago).
    #[serde(default)]
    pub reconcile_from: Option<DateTime<Utc>>,
    /// When the reconciliation pass under way started.
    #[serde(default)]
    pub reconcile_started: Option<DateTime<Utc>>,
    /// When the last reconciliation pass completed.
    #[serde(default)]
    pub reconciled_at: Option<DateTime<Utc>>,
    /// Microsoft's clock minus ours, in milliseconds, as last measured from the API's `Date`
    /// header ("now" is Microsoft's).
    #[serde(default)]
    pub skew_ms: i64,
    /// Where the feed's first listing started (`FIRST_RUN_LOOKBACK_HOURS`): reconciliation never
    /// reaches back before it (`None`: the whole 7 days).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
}

impl Cursor {
    /// A cursor at `listed_until` with no reconciliation state.
    pub fn at(listed_until: DateTime<Utc>) -> Cursor {
        Cursor {
            listed_until,
            reconcile_from: None,
            reconcile_started: None,
            reconciled_at: None,
            skew_ms: 0,
            since: None,
        }
    }
}

/// A stored value with its version, for conditional updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version (increments on every save).
    pub version: u64,
}

/// Where a blob is in its life. Entries only move forward: `pending` → `enqueued` → `done`,
/// or → `failed` (reason, attempts, next retry) → `enqueued` again … → `done` or `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobState {
    /// Claimed by a lister, which enqueues its job next. The lister records the hand-over in
    /// the feed's listed-blob summary; a claim that never made it there is re-driven by the
    /// next listing of its window (the live band or the reconciliation pass) after a grace
    /// period that lets a concurrent lister finish.
    Pending,
    /// Re-driven by the sweep (a fetch job is on the queue again).
    Enqueued,
    /// Its records are durably written.
    Done,
    /// Microsoft expired it before it could be fetched (data lost upstream, reported).
    Expired,
    /// A fetch failed: retried by the sweep at `next_attempt_at` (with a growing back-off)
    /// until Microsoft expires the blob; without `next_attempt_at` it can never succeed
    /// (foreign URI, unknown tenant) and stays failed, reported.
    Failed,
}

impl BlobState {
    /// Every state.
    pub const ALL: [BlobState; 5] = [
        BlobState::Pending,
        BlobState::Enqueued,
        BlobState::Done,
        BlobState::Expired,
        BlobState::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobState::Pending => "pending",
            BlobState::Enqueued => "enqueued",
            BlobState::Done => "done",
            BlobState::Expired => "expired",
            BlobState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<BlobState> {
        BlobState::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// Done or expired: nothing more will happen to the blob.
    pub fn is_terminal(self) -> bool {
        matches!(self, BlobState::Done | BlobState::Expired)
    }

    /// True when an entry in state `self` may be replaced by one in state `new` (entries only
    /// move forward): done is final (a re-fetch may record its details again); expired yields
    /// only to done (a fetch that finished
    /// after all); failed and enqueued alternate while the sweep retries; a claim (`pending`)
    /// is only ever written over nothing.
    pub fn may_become(self, new: BlobState) -> bool {
        match new {
            BlobState::Done => true,
            BlobState::Expired => !self.is_terminal(),
            BlobState::Failed | BlobState::Enqueued => !self.is_terminal(),
            BlobState::Pending => false,
        }
    }
}

impl std::fmt::Display for BlobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// State.
    pub state: BlobState,
    /// When the state was last set.
    pub updated_at: DateTime<Utc>,
    /// Records written (when done).
    #[serde(default)]
    pub records: Option<u64>,
    /// Object key written (when done).
    #[serde(default)]
    pub object_key: Option<String>,
    /// Why it failed or expired.
    #[serde(default)]
    pub reason: Option<String>,
    /// Times the sweep re-drove it after a failure.
    #[serde(default)]
    pub attempts: u32,
    /// When the sweep retries a failed blob (`None`: not retried).
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When a lister first listed it (lateness = this − `contentCreated`).
    #[serde(default)]
    pub listed_at: Option<DateTime<Utc>>,
}

impl LedgerEntry {
    /// An entry in `state` set at `at`, with nothing else.
    pub fn new(state: BlobState, at: DateTime<Utc>) -> LedgerEntry {
        LedgerEntry {
            state,
            updated_at: at,
            records: None,
            object_key: None,
            reason: None,
            attempts: 0,
            next_attempt_at: None,
            listed_at: None,
        }
    }

    /// With a reason.
    pub fn because(mut self, reason: impl Into<String>) -> LedgerEntry {
        self.reason = Some(reason.into());
        self
    }

    /// True when the sweep must drive it at `now`: failed with a retry due.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.state == BlobState::Failed && self.next_attempt_at.is_some_and(|t| t <= now)
    }

    /// True when it is still open (not done, not expired, not failed for good).
    pub fn is_open(&self) -> bool {
        match self.state {
            BlobState::Done | BlobState::Expired => false,
            BlobState::Failed => self.next_attempt_at.is_some(),
            BlobState::Pending | BlobState::Enqueued => true,
        }
    }
}

/// The sweep's back-off after the `attempts`-th failed re-drive: 5 min, 15 min, 45 min, 2 h 15,
/// then every 6 h, until Microsoft expires the blob.
pub fn retry_backoff(attempts: u32) -> Duration {
    let minutes = 5i64.saturating_mul(3i64.saturating_pow(attempts.min(8)));
    Duration::minutes(minutes.min(6 * 60))
}

/// A blob of the ledger with its entry (what the sweep, `status` and local runs read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerItem {
    /// The blob as listed.
    pub blob: super::ContentBlob,
    /// Its entry.
    pub entry: LedgerEntry,
}

/// The digest under which a listed blob is kept in a feed's listed-blob summary: the first
/// 8 bytes of SHA-256 of its content id (stable across processes and versions). Two blobs of
/// one feed-hour collide with probability about n²/2⁶⁵ (below 10⁻¹² for 5,000 blobs an hour).
pub fn seen_digest(content_id: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(content_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The hour bucket (of `contentCreated`) a blob's summary entry lives in.
pub fn seen_hour(content_created: DateTime<Utc>) -> DateTime<Utc> {
    let secs = content_created.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0).unwrap_or(content_created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        use BlobState::*;
        assert!(!Done.may_become(Enqueued));
        assert!(!Done.may_become(Failed));
        assert!(
            !Expired.may_become(Enqueued),
            "a late mark never revives an expired blob"
        );
        assert!(!Expired.may_become(Failed));
        assert!(Expired.may_become(Done));
        assert!(Failed.may_become(Enqueued));
        assert!(Enqueued.may_become(Failed));
        assert!(Pending.may_become(Done));
        assert!(!Pending.may_become(Pending));
    }

    #[test]
    fn backoff_grows_from_minutes_to_hours_and_stops_growing() {
        assert_eq!(retry_backoff(0), Duration::minutes(5));
        assert_eq!(retry_backoff(1), Duration::minutes(15));
        assert!(retry_backoff(3) > Duration::hours(2));
        assert_eq!(retry_backoff(10), Duration::hours(6));
        assert_eq!(retry_backoff(u32::MAX), Duration::hours(6));
    }

    #[test]
    fn hour_buckets_and_digests_are_stable() {
        let t = DateTime::parse_from_rfc3339("2026-12-05T01:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(seen_hour(t).to_rfc3339(), "2026-12-05T01:00:00+00:00");
        assert_eq!(seen_digest("a$b"), seen_digest("a$b"));
        assert_ne!(seen_digest("a$b"), seen_digest("a$c"));
    }
}
