//! Pure domain types: no I/O.

mod content;
mod cursor;
mod job;
mod tenant;
mod user;

pub use content::{
    ContentBlob, ContentType, MAX_LOOKBACK, MAX_WINDOW, UnknownContentType, Window, WindowError,
};
pub use cursor::{
    BlobState, Cursor, LedgerEntry, LedgerItem, Versioned, retry_backoff, seen_digest, seen_hour,
};
pub use job::{FetchJob, JOB_VERSION, JobError, MAX_JOB_BYTES};
pub use tenant::{
    AssertionAlg, CloudKind, CredentialRef, Endpoints, InvalidTenantId, SecretRef, Tenant,
    TenantId, TokenEndpoint,
};
pub use user::{DirectorySnapshot, DirectorySync, DirectoryUser};
