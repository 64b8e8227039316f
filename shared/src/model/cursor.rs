//! Listing cursors and the blob ledger.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How far listing has got for one tenant and content type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Every blob with `contentCreated` before this was listed and durably enqueued (modulo
    /// late publication, which the re-list band and the deep re-list catch).
    pub listed_until: DateTime<Utc>,
    /// When the last deep re-list (over the last 24 h) finished.
    #[serde(default)]
    pub deep_relist_at: Option<DateTime<Utc>>,
}

/// A stored value with its version, for conditional updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version (increments on every save).
    pub version: u64,
}

/// Where a blob is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobState {
    /// Claimed by a lister; not yet known to be enqueued (a crash here is re-driven by the next
    /// listing).
    Pending,
    /// A fetch job is on the queue.
    Enqueued,
    /// Its records are durably written.
    Done,
    /// Microsoft expired it before it could be fetched (data lost upstream, reported).
    Expired,
    /// Dead-lettered after repeated failures.
    Failed,
}

impl BlobState {
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
        [
            BlobState::Pending,
            BlobState::Enqueued,
            BlobState::Done,
            BlobState::Expired,
            BlobState::Failed,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
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
}
