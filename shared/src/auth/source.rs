//! Where a credential comes from, so that a [`super::TokenProvider`] can read it again after an
//! operator rotated the client secret or the certificate (issue finding #10).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{AuthError, Credential};

/// How long a loaded credential is used before it is read again from its source (before the
/// next token is minted), when nothing says otherwise.
pub const DEFAULT_CREDENTIAL_TTL: Duration = Duration::from_secs(3600);

/// After a failed re-read, the next re-read on age is tried this long later (or after the TTL,
/// if shorter); a refusal of the credential by Entra still triggers one at once.
pub const RELOAD_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What [`CredentialSource::load`] returns.
pub type CredentialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Credential, AuthError>> + Send + 'a>>;

/// Reads a tenant's credential (client secret or certificate PEM) from where it is stored: a
/// file, an environment variable, an AWS Secrets Manager secret.
///
/// Implemented for closures `Fn() -> impl Future<Output = Result<Credential, AuthError>>`.
/// Errors must name the source and the fix, never the value.
pub trait CredentialSource: Send + Sync {
    /// Reads the credential now.
    fn load(&self) -> CredentialFuture<'_>;
}

impl<F, Fut> CredentialSource for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<Credential, AuthError>> + Send + 'static,
{
    fn load(&self) -> CredentialFuture<'_> {
        Box::pin(self())
    }
}

/// Why a credential was read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReloadReason {
    /// It was older than the provider's credential TTL.
    Ttl,
    /// Entra refused it (see [`AuthError::is_credential_refused`]).
    Rejected,
}

impl ReloadReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReloadReason::Ttl => "ttl",
            ReloadReason::Rejected => "rejected",
        }
    }
}

impl fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a re-read ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reload {
    /// A different credential is now in use (read by this caller or by a concurrent one).
    Changed,
    /// The source holds the same credential (or another caller just found so).
    Unchanged,
    /// The source could not be read or its value is unusable: the old credential stays.
    Failed,
    /// The provider has no source (a credential given once, e.g. in tests).
    NoSource,
}
