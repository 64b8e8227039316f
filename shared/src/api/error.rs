//! Management Activity API errors (fact sheet §2.7), each with what locates it, a class that
//! tells the caller what to do next, and a fix for the operator.

use std::fmt;

use crate::auth::AuthError;
use crate::model::ContentType;

/// Which Management Activity API operation was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `GET …/subscriptions/content`.
    ListContent,
    /// `GET {contentUri}`.
    FetchBlob,
    /// `POST …/subscriptions/start`.
    StartSubscription,
    /// `GET …/subscriptions/list`.
    ListSubscriptions,
}

impl Operation {
    /// Stable name for logs and stats: `list_content`, `fetch_blob`, `start_subscription`,
    /// `list_subscriptions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ListContent => "list_content",
            Operation::FetchBlob => "fetch_blob",
            Operation::StartSubscription => "start_subscription",
            Operation::ListSubscriptions => "list_subscriptions",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failed call was about: tenant, operation, and content type or content id when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// Tenant id.
    pub tenant: String,
    /// Operation.
    pub operation: Operation,
    /// Content type, when the call names one.
    pub content_type: Option<ContentType>,
    /// Content id, for blob fetches.
    pub content_id: Option<String>,
}

impl fmt::Display for CallInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant `{}`: {}", self.tenant, self.operation)?;
        if let Some(ct) = self.content_type {
            write!(f, " `{ct}`")?;
        }
        if let Some(id) = &self.content_id {
            write!(f, " blob `{id}`")?;
        }
        Ok(())
    }
}

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Only a person can fix it (consent, credential, cloud, audit log off): stop this tenant
    /// and tell the operator.
    Config,
    /// The subscription is missing or disabled: start it, then retry.
    Resubscribe,
    /// The listing window was refused: re-clamp it and check the clock.
    Window,
    /// Transient: retry later (retries inside the client were exhausted or cut by the deadline).
    Retry,
    /// The blob expired upstream: its data is lost at Microsoft; record it, don't retry.
    Expired,
    /// The blob does not exist (any more): skip it.
    Gone,
    /// Refused by the collector itself (a content URI on a foreign host, a blob over the size
    /// limit, a redirect): never retried.
    Refused,
}

/// A Management Activity API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with an error (`{"error":{"code","message"}}`).
    #[error("{}", service_text(call, *status, code, message, server_date.as_deref()))]
    Service {
        /// The call.
        call: Box<CallInfo>,
        /// HTTP status.
        status: u16,
        /// `error.code` (e.g. `AF20022`), or `HTTP <status>` when the body had none.
        code: String,
        /// `error.message`, first line, at most 300 characters (or the first 200 characters of a
        /// non-JSON body).
        message: String,
        /// The server's `Date` header, for diagnosing clock skew on window errors.
        server_date: Option<String>,
    },
    /// Unified audit logging is off for the tenant (the `DataServiceException` answer).
    #[error(
        "{call}: unified audit logging is off for tenant `{}`: turn it on in Purview (Audit → Start recording), it takes up to 60 minutes ({detail})",
        call.tenant
    )]
    AuditDisabled {
        /// The call.
        call: Box<CallInfo>,
        /// The service's message, first line.
        detail: String,
    },
    /// Every attempt failed with a retryable error.
    #[error(
        "{call}: still failing after {attempts} attempt(s){}: {message}; retry later",
        status.map(|s| format!(", last HTTP {s}{}", code.as_ref().map(|c| format!(" `{c}`")).unwrap_or_default())).unwrap_or_default()
    )]
    Exhausted {
        /// The call.
        call: Box<CallInfo>,
        /// Attempts made.
        attempts: u32,
        /// Last HTTP status (`None` for network failures).
        status: Option<u16>,
        /// Last error code.
        code: Option<String>,
        /// Last error message.
        message: String,
    },
    /// The deadline came before the call could succeed (no sleep crosses it).
    #[error(
        "{call}: deadline reached after {attempts} attempt(s){}; the work is left for a later run",
        last.as_ref().map(|l| format!(" (last error: {l})")).unwrap_or_default()
    )]
    Deadline {
        /// The call.
        call: Box<CallInfo>,
        /// Attempts made.
        attempts: u32,
        /// Last error, if an attempt failed.
        last: Option<String>,
    },
    /// The connection failed while reading a response body (e.g. dropped mid-blob).
    #[error("{call}: {message}; retry later")]
    Transport {
        /// The call.
        call: Box<CallInfo>,
        /// What failed.
        message: String,
    },
    /// The service answered with a redirect; redirects are never followed (the bearer token
    /// must not travel elsewhere).
    #[error(
        "{call}: the service answered HTTP {status} (a redirect), which the collector refuses to follow; check endpoints.manage"
    )]
    Redirect {
        /// The call.
        call: Box<CallInfo>,
        /// HTTP status.
        status: u16,
    },
    /// A success answer could not be understood.
    #[error("{call}: unexpected answer: {message}")]
    Decode {
        /// The call.
        call: Box<CallInfo>,
        /// What was wrong.
        message: String,
    },
    /// `NextPageUri` paging did not end (page limit reached or a page repeated).
    #[error("{call}: paging did not end: {message}; list the window again later")]
    Paging {
        /// The call.
        call: Box<CallInfo>,
        /// What happened.
        message: String,
    },
    /// A content URI or next-page link points outside this tenant's Management API: refused
    /// without sending anything (the bearer token never leaves the configured host).
    #[error("tenant `{tenant}`: refused URL `{uri}`: {reason}")]
    ForeignUri {
        /// Tenant id.
        tenant: String,
        /// The URL (at most 200 characters).
        uri: String,
        /// Why it was refused.
        reason: String,
    },
    /// A blob is larger than the caller's limit; nothing past the limit was buffered.
    #[error(
        "{call}: the blob is larger than the limit of {limit} bytes{}; raise the limit (max_blob_bytes) or stream it",
        size.map(|s| format!(" ({s} bytes announced)")).unwrap_or_default()
    )]
    TooLarge {
        /// The call.
        call: Box<CallInfo>,
        /// The limit.
        limit: usize,
        /// The announced `Content-Length`, if any.
        size: Option<u64>,
    },
    /// The tenant's Management API base URL is not a valid URL.
    #[error("tenant `{tenant}`: invalid endpoints.manage: {message}")]
    Endpoint {
        /// Tenant id.
        tenant: String,
        /// What is wrong.
        message: String,
    },
    /// No access token.
    #[error("{call}: {source}")]
    Auth {
        /// The call.
        call: Box<CallInfo>,
        /// Why.
        #[source]
        source: Box<AuthError>,
    },
}

fn service_text(
    call: &CallInfo,
    status: u16,
    code: &str,
    message: &str,
    date: Option<&str>,
) -> String {
    let mut s = format!(
        "{call}: HTTP {status} `{code}`: {message}; {}",
        code_fix(code, status)
    );
    if let (ErrorClass::Window, Some(d)) = (code_class(code, status), date) {
        s.push_str(&format!(
            " (server Date `{d}`, local clock `{}`)",
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT")
        ));
    }
    s
}

/// The class of a service error code (fact sheet §2.7), falling back on the HTTP status.
pub fn code_class(code: &str, status: u16) -> ErrorClass {
    match code.to_ascii_uppercase().as_str() {
        "AF10001" | "AF20001" | "AF20002" | "AF20003" | "AF20010" | "AF20011" | "AF20012"
        | "AF20013" | "AF20020" | "AF20021" | "AF20024" | "AF20052" | "AF20053" | "AF20054" => {
            ErrorClass::Config
        }
        "AF20022" | "AF20023" => ErrorClass::Resubscribe,
        "AF20030" | "AF20055" => ErrorClass::Window,
        "AF20031" | "AF429" | "AF50000" | "AF50005" | "AF50006" => ErrorClass::Retry,
        "AF20050" => ErrorClass::Gone,
        "AF20051" => ErrorClass::Expired,
        _ => match status {
            404 | 410 => ErrorClass::Gone,
            408 | 429 | 500..=599 => ErrorClass::Retry,
            _ => ErrorClass::Config,
        },
    }
}

/// True for answers retried inside the client: throttling, server errors, timeouts.
pub(crate) fn code_retryable(code: &str, status: u16) -> bool {
    matches!(
        code.to_ascii_uppercase().as_str(),
        "AF429" | "AF50000" | "AF50005" | "AF50006"
    ) || matches!(status, 408 | 429 | 500..=599)
}

/// What to do about a service error code.
pub fn code_fix(code: &str, status: u16) -> &'static str {
    match code.to_ascii_uppercase().as_str() {
        "AF10001" => {
            "grant admin consent for ActivityFeed.Read in the app registration (API permissions → Office 365 Management APIs → Application permissions → ActivityFeed.Read → Grant admin consent)"
        }
        "AF20001" | "AF20002" | "AF20003" => {
            "the collector sent an invalid request: this is a bug, please report it with this message"
        }
        "AF20010" => {
            "the token's tenant differs from the tenant in the URL: check the tenant id and that tokens are requested from that tenant"
        }
        "AF20011" => {
            "the tenant is unknown to this Management API host: check the tenant id and the cloud (GCC, GCC High and DoD tenants need their cloud set)"
        }
        "AF20012" => {
            "the tenant is incorrectly configured at Microsoft: check its Microsoft 365 subscription, or open a support case"
        }
        "AF20013" => "the tenant id is not a GUID: use the Directory (tenant) ID",
        "AF20020" => {
            "the content type is not valid: use Audit.AzureActiveDirectory, Audit.Exchange, Audit.SharePoint, Audit.General or DLP.All"
        }
        "AF20021" => "the webhook could not be validated: it must be HTTPS and answer HTTP 200",
        "AF20022" => {
            "no subscription for this content type: start it (the collector does so and retries)"
        }
        "AF20023" => {
            "the subscription was disabled by an admin: start it again (the collector does so and retries)"
        }
        "AF20024" => "the subscription is already enabled: nothing to do",
        "AF20030" | "AF20055" => {
            "the listing window was refused: windows must be under 24 h and start less than 7 days ago; compare this host's clock with the server's Date"
        }
        "AF20031" => "the next-page link was refused: list the window again from its start",
        "AF20050" => "the blob does not exist (any more): it is skipped",
        "AF20051" => {
            "the blob expired at Microsoft before it was fetched: its records are lost upstream; fetch sooner after listing"
        }
        "AF20052" => {
            "the content id is invalid: often a tenant of another cloud reached through the wrong endpoints; check the tenant's cloud"
        }
        "AF20053" | "AF20054" => "invalid Accept-Language header: this is a bug, please report it",
        "AF429" => {
            "throttled: the collector backs off; if it persists, lower concurrency or ask Microsoft for a higher quota"
        }
        "AF50000" | "AF50005" | "AF50006" => {
            "an error inside Microsoft's service: retried automatically"
        }
        _ => match status {
            401 => {
                "the access token was refused twice: check endpoints.manage and endpoints.manage_resource match the tenant's cloud"
            }
            403 => "access denied: check the app's permissions and the tenant's cloud",
            404 | 410 => "not found: it is skipped",
            408 | 429 | 500..=599 => "a transient failure: retried automatically",
            _ => "unexpected answer: check the tenant's endpoints and report it if it persists",
        },
    }
}

impl ApiError {
    /// What the caller should do next.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Service { code, status, .. } => code_class(code, *status),
            ApiError::AuditDisabled { .. } | ApiError::Endpoint { .. } => ErrorClass::Config,
            ApiError::Exhausted { .. }
            | ApiError::Deadline { .. }
            | ApiError::Transport { .. }
            | ApiError::Decode { .. }
            | ApiError::Paging { .. } => ErrorClass::Retry,
            ApiError::Redirect { .. } | ApiError::ForeignUri { .. } | ApiError::TooLarge { .. } => {
                ErrorClass::Refused
            }
            ApiError::Auth { source, .. } => {
                if source.is_config() {
                    ErrorClass::Config
                } else {
                    ErrorClass::Retry
                }
            }
        }
    }

    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retry
    }

    /// The service's error code (`AF…`), if the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Service { code, .. } => Some(code),
            ApiError::Exhausted { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// What to do about it, in plain language.
    pub fn fix(&self) -> &'static str {
        match self {
            ApiError::Service { code, status, .. } => code_fix(code, *status),
            ApiError::AuditDisabled { .. } => {
                "turn on unified audit logging in Purview (Audit → Start recording); it takes up to 60 minutes"
            }
            ApiError::Exhausted { .. } | ApiError::Transport { .. } | ApiError::Decode { .. } => {
                "a transient failure: the work is retried later"
            }
            ApiError::Deadline { .. } => {
                "the run ran out of time: the work is left for the next run"
            }
            ApiError::Paging { .. } => "the listing is retried later from the window's start",
            ApiError::Redirect { .. } | ApiError::Endpoint { .. } => {
                "check endpoints.manage: it must be the Management API host of the tenant's cloud"
            }
            ApiError::ForeignUri { .. } => {
                "the URL does not belong to this tenant's Management API: the job was forged or corrupted and is refused"
            }
            ApiError::TooLarge { .. } => "raise the blob size limit or stream the blob",
            ApiError::Auth { source, .. } => source.fix(),
        }
    }

    /// The call the error is about, when it is known.
    pub fn call(&self) -> Option<&CallInfo> {
        match self {
            ApiError::Service { call, .. }
            | ApiError::AuditDisabled { call, .. }
            | ApiError::Exhausted { call, .. }
            | ApiError::Deadline { call, .. }
            | ApiError::Transport { call, .. }
            | ApiError::Redirect { call, .. }
            | ApiError::Decode { call, .. }
            | ApiError::Paging { call, .. }
            | ApiError::TooLarge { call, .. }
            | ApiError::Auth { call, .. } => Some(call.as_ref()),
            ApiError::ForeignUri { .. } | ApiError::Endpoint { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Box<CallInfo> {
        Box::new(CallInfo {
            tenant: "t1".into(),
            operation: Operation::ListContent,
            content_type: Some(ContentType::Exchange),
            content_id: None,
        })
    }

    fn service(code: &str, status: u16) -> ApiError {
        ApiError::Service {
            call: call(),
            status,
            code: code.into(),
            message: "m".into(),
            server_date: Some("Mon, 02 Mar 2026 10:00:00 GMT".into()),
        }
    }

    #[test]
    fn codes_map_to_classes() {
        use ErrorClass::*;
        let cases = [
            ("AF10001", 401, Config),
            ("AF20010", 403, Config),
            ("AF20011", 400, Config),
            ("AF20012", 400, Config),
            ("AF20013", 400, Config),
            ("AF20020", 400, Config),
            ("AF20021", 400, Config),
            ("AF20001", 400, Config),
            ("AF20002", 400, Config),
            ("AF20003", 400, Config),
            ("AF20022", 400, Resubscribe),
            ("AF20023", 400, Resubscribe),
            ("AF20030", 400, Window),
            ("AF20055", 400, Window),
            ("AF20031", 400, Retry),
            ("AF429", 403, Retry),
            ("AF50000", 500, Retry),
            ("af50005", 503, Retry),
            ("AF20051", 400, Expired),
            ("AF20050", 404, Gone),
            ("AF20052", 400, Config),
            ("NotFound", 404, Gone),
            ("HTTP 502", 502, Retry),
            ("Weird", 400, Config),
        ];
        for (code, status, class) in cases {
            assert_eq!(service(code, status).class(), class, "{code}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let s = service("AF10001", 401).to_string();
        assert!(
            s.contains("grant admin consent for ActivityFeed.Read in the app registration"),
            "{s}"
        );
        assert!(s.contains("`t1`") && s.contains("Audit.Exchange"), "{s}");
        let s = service("AF20055", 400).to_string();
        assert!(
            s.contains("server Date `Mon, 02 Mar 2026 10:00:00 GMT`"),
            "{s}"
        );
        let s = ApiError::AuditDisabled {
            call: call(),
            detail: "x".into(),
        }
        .to_string();
        assert!(
            s.contains("unified audit logging is off for tenant `t1`: turn it on in Purview (Audit → Start recording), it takes up to 60 minutes"),
            "{s}"
        );
    }

    #[test]
    fn auth_errors_are_config_only_when_a_person_must_act() {
        let refused = ApiError::Auth {
            call: call(),
            source: Box::new(AuthError::Credential {
                message: "x".into(),
            }),
        };
        assert_eq!(refused.class(), ErrorClass::Config);
        let network = ApiError::Auth {
            call: call(),
            source: Box::new(AuthError::Http {
                tenant: "t".into(),
                client_id: "c".into(),
                status: None,
                attempts: 4,
                message: "connection failed".into(),
            }),
        };
        assert_eq!(network.class(), ErrorClass::Retry);
        assert!(network.is_retryable());
    }
}
