//! In-memory fakes for the use-case unit tests.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use super::{ApiProvider, Clock, SetupError};
use crate::api::{ActivityApi, ApiError, BlobBody, StartOutcome, Subscription};
use crate::model::{
    ContentBlob, ContentType, CredentialRef, Endpoints, SecretRef, Tenant, TenantId, TokenEndpoint,
    Window,
};

pub(crate) const TENANT: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";

pub(crate) fn tenant(content_types: Vec<ContentType>) -> Tenant {
    Tenant {
        id: TenantId::parse(TENANT).unwrap(),
        name: None,
        cloud: crate::model::CloudKind::Commercial,
        endpoints: Endpoints::preset(crate::model::CloudKind::Commercial).unwrap(),
        client_id: "a6099727-6b7b-482c-b509-1df309acc563".into(),
        credential: CredentialRef::Secret {
            secret: SecretRef::Env("X".into()),
        },
        token_endpoint: TokenEndpoint::V2,
        content_types,
        publisher_id: TENANT.into(),
        enabled: true,
    }
}

/// A blob and its records.
type Stored = (ContentBlob, Vec<serde_json::Value>);

/// One listing call: content type and window.
type Listing = (ContentType, DateTime<Utc>, DateTime<Utc>);

/// A Management API holding fixed blobs; records each listing window.
#[derive(Default)]
pub(crate) struct StaticApi {
    pub(crate) blobs: Mutex<Vec<Stored>>,
    pub(crate) listings: Mutex<Vec<Listing>>,
    /// Bodies served as they are instead of the records (by content URI), in these chunks.
    pub(crate) raw: Mutex<std::collections::HashMap<String, Vec<bytes::Bytes>>>,
    /// What `server_skew` answers (Microsoft's clock minus ours).
    pub(crate) skew: Mutex<Option<Duration>>,
    /// Blobs listable only from this time (by content id): published late.
    pub(crate) listable_from: Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
    /// The clock deciding what is listable (set by tests that publish late).
    pub(crate) now: Mutex<Option<DateTime<Utc>>>,
    /// How long a blob download takes to start (slow blobs).
    pub(crate) fetch_delay: Mutex<Option<std::time::Duration>>,
    /// Blob downloads started.
    pub(crate) fetches: std::sync::atomic::AtomicUsize,
}

impl StaticApi {
    pub(crate) fn add(
        &self,
        ct: ContentType,
        id: &str,
        created: DateTime<Utc>,
        records: Vec<serde_json::Value>,
    ) {
        self.blobs.lock().unwrap().push((
            ContentBlob {
                content_type: ct,
                content_id: id.into(),
                content_uri: format!(
                    "https://manage.office.com/api/v1.0/{TENANT}/activity/feed/audit/{id}"
                ),
                content_created: created,
                content_expiration: created + Duration::days(7),
            },
            records,
        ));
    }

    /// A blob whose body is exactly `chunks`, concatenated (broken blobs).
    pub(crate) fn add_raw(
        &self,
        ct: ContentType,
        id: &str,
        created: DateTime<Utc>,
        chunks: Vec<Vec<u8>>,
    ) {
        self.add(ct, id, created, Vec::new());
        let uri = format!("https://manage.office.com/api/v1.0/{TENANT}/activity/feed/audit/{id}");
        self.raw
            .lock()
            .unwrap()
            .insert(uri, chunks.into_iter().map(bytes::Bytes::from).collect());
    }
}

impl ActivityApi for StaticApi {
    async fn list_content(
        &self,
        ct: ContentType,
        w: &Window,
    ) -> Result<Vec<ContentBlob>, ApiError> {
        self.listings.lock().unwrap().push((ct, w.start(), w.end()));
        let now = *self.now.lock().unwrap();
        let from = self.listable_from.lock().unwrap().clone();
        Ok(self
            .blobs
            .lock()
            .unwrap()
            .iter()
            .filter(|(b, _)| {
                b.content_type == ct
                    && b.content_created >= w.start()
                    && b.content_created < w.end()
                    && match (now, from.get(&b.content_id)) {
                        (Some(now), Some(t)) => now >= *t,
                        _ => true,
                    }
            })
            .map(|(b, _)| b.clone())
            .collect())
    }
    async fn fetch_blob(&self, uri: &str) -> Result<BlobBody, ApiError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let delay = *self.fetch_delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(chunks) = self.raw.lock().unwrap().get(uri) {
            return Ok(BlobBody::from_chunks(chunks.clone()));
        }
        let blobs = self.blobs.lock().unwrap();
        let (_, records) = blobs
            .iter()
            .find(|(b, _)| b.content_uri == uri)
            .expect("known blob");
        Ok(BlobBody::from_bytes(
            serde_json::to_vec(records).unwrap().into(),
        ))
    }
    async fn start_subscription(&self, _ct: ContentType) -> Result<StartOutcome, ApiError> {
        Ok(StartOutcome::AlreadyEnabled)
    }
    /// As the HTTP client measures it: Microsoft's clock (the test's `now` plus `skew`) minus
    /// the system clock.
    fn server_skew(&self) -> Option<Duration> {
        let skew = (*self.skew.lock().unwrap())?;
        let now = (*self.now.lock().unwrap())?;
        Some(now + skew - Utc::now())
    }
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, ApiError> {
        Ok(Vec::new())
    }
}

pub(crate) struct OneApi(pub(crate) Arc<StaticApi>);

impl ApiProvider for OneApi {
    type Api = StaticApi;
    async fn api(&self, _tenant: &Tenant) -> Result<Arc<StaticApi>, SetupError> {
        Ok(self.0.clone())
    }
}

pub(crate) struct FixedClock(pub(crate) Mutex<DateTime<Utc>>);

impl FixedClock {
    pub(crate) fn at(t: DateTime<Utc>) -> FixedClock {
        FixedClock(Mutex::new(t))
    }
    pub(crate) fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}
