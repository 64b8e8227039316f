//! The fetch job: one SQS message per content blob.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ContentBlob, ContentType, TenantId};

/// Version of the job message format.
pub const JOB_VERSION: u32 = 1;

/// Largest job message accepted (a real one is under 1 KiB).
pub const MAX_JOB_BYTES: usize = 16 * 1024;

/// Fetch one blob of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchJob {
    /// Message format version ([`JOB_VERSION`]).
    pub v: u32,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Content type.
    pub content_type: ContentType,
    /// Content id.
    pub content_id: String,
    /// Where to GET it (must be on the tenant's Management API origin).
    pub content_uri: String,
    /// When it became available.
    pub content_created: DateTime<Utc>,
    /// When it stops being retrievable.
    pub content_expiration: DateTime<Utc>,
    /// When the lister found it.
    pub listed_at: DateTime<Utc>,
}

/// A queue message that is not a valid job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Larger than [`MAX_JOB_BYTES`].
    #[error(
        "job message is {size} bytes, over the {MAX_JOB_BYTES}-byte limit: not a message the lister writes"
    )]
    TooLarge {
        /// Size in bytes.
        size: usize,
    },
    /// Not the JSON the lister writes.
    #[error(
        "job message is malformed ({reason}): expected the JSON the lister writes (see events/fetcher/)"
    )]
    Malformed {
        /// The parser's complaint.
        reason: String,
    },
    /// Another format version.
    #[error(
        "job message has format version {found}, this fetcher reads version {JOB_VERSION}: deploy lister and fetcher together"
    )]
    Version {
        /// Version found.
        found: u32,
    },
    /// An empty content id.
    #[error("job message has an empty contentId")]
    EmptyContentId,
}

impl FetchJob {
    /// A job for a listed blob.
    pub fn new(tenant_id: TenantId, blob: &ContentBlob, listed_at: DateTime<Utc>) -> FetchJob {
        FetchJob {
            v: JOB_VERSION,
            tenant_id,
            content_type: blob.content_type,
            content_id: blob.content_id.clone(),
            content_uri: blob.content_uri.clone(),
            content_created: blob.content_created,
            content_expiration: blob.content_expiration,
            listed_at,
        }
    }

    /// Parses and checks a queue message body.
    ///
    /// # Errors
    /// [`JobError`] saying what is wrong with the message.
    pub fn parse(body: &str) -> Result<FetchJob, JobError> {
        if body.len() > MAX_JOB_BYTES {
            return Err(JobError::TooLarge { size: body.len() });
        }
        let job: FetchJob = serde_json::from_str(body).map_err(|e| JobError::Malformed {
            reason: e.to_string(),
        })?;
        if job.v != JOB_VERSION {
            return Err(JobError::Version { found: job.v });
        }
        if job.content_id.trim().is_empty() {
            return Err(JobError::EmptyContentId);
        }
        Ok(job)
    }

    /// The message body.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and timestamps always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The blob this job is about.
    pub fn blob(&self) -> ContentBlob {
        ContentBlob {
            content_type: self.content_type,
            content_id: self.content_id.clone(),
            content_uri: self.content_uri.clone(),
            content_created: self.content_created,
            content_expiration: self.content_expiration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> FetchJob {
        let blob = ContentBlob {
            content_type: ContentType::Exchange,
            content_id: "2026$2026$audit_exchange$Audit_Exchange$na0001".into(),
            content_uri: "https://manage.office.com/api/v1.0/t/activity/feed/audit/x".into(),
            content_created: Utc::now(),
            content_expiration: Utc::now(),
        };
        FetchJob::new(
            TenantId::parse("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d").unwrap(),
            &blob,
            Utc::now(),
        )
    }

    #[test]
    fn round_trips() {
        let j = job();
        assert_eq!(FetchJob::parse(&j.to_json()), Ok(j));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        assert!(matches!(
            FetchJob::parse("not json"),
            Err(JobError::Malformed { .. })
        ));
        assert!(matches!(
            FetchJob::parse(&"x".repeat(MAX_JOB_BYTES + 1)),
            Err(JobError::TooLarge { .. })
        ));
        let mut j = job();
        j.v = 2;
        assert_eq!(
            FetchJob::parse(&j.to_json()),
            Err(JobError::Version { found: 2 })
        );
        let bad_tenant = job()
            .to_json()
            .replace("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d", "contoso");
        let err = FetchJob::parse(&bad_tenant).unwrap_err();
        assert!(err.to_string().contains("GUID"), "{err}");
        let extra = job().to_json().replacen('{', "{\"evil\":1,", 1);
        assert!(matches!(
            FetchJob::parse(&extra),
            Err(JobError::Malformed { .. })
        ));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn content_type() -> impl Strategy<Value = ContentType> {
            proptest::sample::select(ContentType::ALL.to_vec())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever bytes arrive on the queue, parsing answers (never panics), and an error
            /// names what is wrong.
            #[test]
            fn arbitrary_bodies_never_panic(body in ".{0,400}") {
                match FetchJob::parse(&body) {
                    Ok(j) => prop_assert!(!j.content_id.trim().is_empty()),
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }

            /// Every job the lister can write parses back to itself.
            #[test]
            fn every_job_round_trips(
                ct in content_type(),
                id in "[A-Za-z0-9$_.]{1,120}",
                uri in "https://[a-z.]{1,30}/api/v1\\.0/[a-z0-9-]{1,36}/activity/feed/audit/[A-Za-z0-9$_.]{1,80}",
                created in 0i64..4_000_000_000,
                ttl in 0i64..1_000_000,
            ) {
                let created = DateTime::from_timestamp(created, 0).unwrap_or_default();
                let blob = ContentBlob {
                    content_type: ct,
                    content_id: id,
                    content_uri: uri,
                    content_created: created,
                    content_expiration: created + chrono::Duration::seconds(ttl),
                };
                let tenant = TenantId::parse("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d").unwrap();
                let j = FetchJob::new(tenant, &blob, created);
                prop_assert_eq!(FetchJob::parse(&j.to_json()), Ok(j));
            }

            /// A job cut short or with a byte flipped is refused, not half-read.
            #[test]
            fn damaged_jobs_are_refused(cut in 1usize..200, flip in 0usize..400) {
                let body = job().to_json();
                let cut = cut.min(body.len() - 1);
                prop_assert!(FetchJob::parse(&body[..body.len() - cut]).is_err());
                let mut bytes = body.into_bytes();
                let at = flip % bytes.len();
                if matches!(bytes[at], b'{' | b'}' | b'"' | b',') {
                    bytes[at] = b'#';
                    let damaged = String::from_utf8(bytes).unwrap_or_default();
                    prop_assert!(FetchJob::parse(&damaged).is_err(), "{}", damaged);
                }
            }
        }
    }
}
