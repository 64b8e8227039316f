//! Configuration: the only place that reads the environment (Lambda) or a config file (local
//! runs). Everything is parsed and checked up front, with errors that name the setting and the
//! fix.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use chrono::Duration;
use serde::Deserialize;

use crate::app::fetcher::FetcherSettings;
use crate::app::lister::ListerSettings;
use crate::model::{
    AssertionAlg, CloudKind, ContentType, CredentialRef, Endpoints, SecretRef, Tenant, TenantId,
    TokenEndpoint,
};

/// A configuration error: which setting, what is wrong, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {setting}: {message}")]
pub struct ConfigError {
    /// The setting (environment variable, or TOML path).
    pub setting: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn err(setting: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        message: message.into(),
    }
}

/// Settings of the Lambda functions, from their environment (set by template.yaml).
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// DynamoDB table of tenants, cursors and the ledger (`STATE_TABLE`).
    pub state_table: String,
    /// S3 bucket of the events (`BUCKET`).
    pub bucket: String,
    /// Fetch queue URL (`QUEUE_URL`).
    pub queue_url: String,
    /// Dead-letter queue URL (`DLQ_URL`).
    pub dlq_url: String,
    /// Lister knobs (`RELIST_BAND_MINUTES`, `RECONCILE_EVERY_MINUTES`, `FIRST_RUN_LOOKBACK_HOURS`,
    /// `CONTENT_TYPES`: comma-separated, the content types listed of those each tenant has;
    /// unset or empty = all).
    pub lister: ListerSettings,
    /// Fetcher knobs (`FETCHER_MAX_RECEIVES`, `FETCHER_MAX_BLOB_MB`, `ARCHIVE_RAW`,
    /// `CROSS_BLOB_DEDUPE`).
    pub fetcher: FetcherSettings,
    /// Endpoint override for every AWS service (`AWS_ENDPOINT_URL`; tests point it at moto).
    pub aws_endpoint_url: Option<String>,
    /// How finely metrics are broken down (`METRICS_DETAIL`: `feed`, `tenant` (default),
    /// `deployment` or `off`).
    pub metrics_detail: crate::metrics::Detail,
}

impl LambdaConfig {
    /// Reads the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the missing or invalid variable.
    #[allow(clippy::disallowed_methods)]
    pub fn from_env() -> Result<LambdaConfig, ConfigError> {
        LambdaConfig::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (tests inject a map).
    ///
    /// # Errors
    /// [`ConfigError`] naming the missing or invalid variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<LambdaConfig, ConfigError> {
        let required = |k: &str| {
            get(k).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                err(
                    k,
                    "is not set; template.yaml sets it — deploy with `sam deploy`",
                )
            })
        };
        let number = |k: &str, default: i64, min: i64, max: i64| -> Result<i64, ConfigError> {
            match get(k).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<i64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(err(
                        k,
                        format!("`{v}` is not a whole number between {min} and {max}"),
                    )),
                },
            }
        };
        let defaults = ListerSettings::default();
        let content_types = match get("CONTENT_TYPES").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => Some(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse::<ContentType>()
                            .map_err(|e| err("CONTENT_TYPES", e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let reconcile = number("RECONCILE_EVERY_MINUTES", 360, 0, 7 * 24 * 60)?;
        let lister = ListerSettings {
            relist_band: Duration::minutes(number("RELIST_BAND_MINUTES", 150, 0, 24 * 60)?),
            reconcile_every: (reconcile > 0).then(|| Duration::minutes(reconcile)),
            concurrency: usize::try_from(number("LISTER_CONCURRENCY", 16, 1, 256)?).unwrap_or(16),
            first_run_lookback: Duration::hours(number("FIRST_RUN_LOOKBACK_HOURS", 24, 1, 167)?),
            content_types,
            ..defaults
        };
        let archive_raw = match get("ARCHIVE_RAW").as_deref().map(str::trim) {
            None | Some("") | Some("true") => true,
            Some("false") => false,
            Some(v) => return Err(err("ARCHIVE_RAW", format!("`{v}` is not true or false"))),
        };
        let cross_blob_dedupe = match get("CROSS_BLOB_DEDUPE").as_deref().map(str::trim) {
            None | Some("") | Some("true") => true,
            Some("false") => false,
            Some(v) => {
                return Err(err(
                    "CROSS_BLOB_DEDUPE",
                    format!("`{v}` is not true or false"),
                ));
            }
        };
        let fetcher = FetcherSettings {
            max_receives: u32::try_from(number("FETCHER_MAX_RECEIVES", 5, 1, 1000)?).unwrap_or(5),
            cross_blob_dedupe,
            max_blob_bytes: usize::try_from(number("FETCHER_MAX_BLOB_MB", 512, 1, 4096)?)
                .unwrap_or(512)
                * 1024
                * 1024,
            archive_raw,
            ..FetcherSettings::default()
        };
        let metrics_detail = match get("METRICS_DETAIL").filter(|v| !v.trim().is_empty()) {
            None => crate::metrics::Detail::default(),
            Some(v) => crate::metrics::Detail::parse(&v).ok_or_else(|| {
                err(
                    "METRICS_DETAIL",
                    format!("`{v}` is not one of feed, tenant, deployment, off"),
                )
            })?,
        };
        Ok(LambdaConfig {
            metrics_detail,
            state_table: required("STATE_TABLE")?,
            bucket: required("BUCKET")?,
            queue_url: required("QUEUE_URL")?,
            dlq_url: required("DLQ_URL")?,
            lister,
            fetcher,
            aws_endpoint_url: get("AWS_ENDPOINT_URL").filter(|v| !v.trim().is_empty()),
        })
    }
}

/// A tenant as written in a config file or on the `tenants add` command line.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Tenant GUID.
    pub id: String,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// `commercial`, `gcc`, `gcc-high`, `dod` or `custom`.
    #[serde(default)]
    pub cloud: CloudKind,
    /// Custom cloud: login base URL.
    #[serde(default)]
    pub login_url: Option<String>,
    /// Custom cloud: Management API base URL.
    #[serde(default)]
    pub manage_url: Option<String>,
    /// Custom cloud: Graph base URL.
    #[serde(default)]
    pub graph_url: Option<String>,
    /// Custom cloud: token resource of the Management API (default `https://manage.office.com`).
    #[serde(default)]
    pub manage_resource: Option<String>,
    /// Custom cloud: token resource of Graph (default `https://graph.microsoft.com`).
    #[serde(default)]
    pub graph_resource: Option<String>,
    /// Application (client) id.
    pub client_id: String,
    /// File holding the client secret value.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// Environment variable holding the client secret value.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Secrets Manager ARN (or name) of the client secret value.
    #[serde(default)]
    pub client_secret_arn: Option<String>,
    /// PEM file with the private key and the certificate uploaded to the app.
    #[serde(default)]
    pub certificate_file: Option<String>,
    /// Secrets Manager ARN (or name) of that PEM.
    #[serde(default)]
    pub certificate_arn: Option<String>,
    /// `RS256` (default) or `PS256`.
    #[serde(default)]
    pub assertion_alg: AssertionAlg,
    /// `v2` (default) or `v1`.
    #[serde(default)]
    pub token_endpoint: TokenEndpoint,
    /// Content types (default: all five).
    #[serde(default)]
    pub content_types: Option<Vec<String>>,
    /// PublisherIdentifier (default: the tenant id).
    #[serde(default)]
    pub publisher_id: Option<String>,
    /// Collect this tenant (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

fn check_url(setting: &str, v: &str) -> Result<String, ConfigError> {
    let u = url::Url::parse(v).map_err(|e| err(setting, format!("`{v}` is not a URL ({e})")))?;
    if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
        return Err(err(setting, format!("`{v}` must be an http(s) URL")));
    }
    Ok(v.trim_end_matches('/').to_owned())
}

impl TenantSpec {
    /// Checks the spec and turns it into a [`Tenant`]. `base` resolves relative file paths.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field and the fix.
    pub fn into_tenant(self, base: Option<&Path>) -> Result<Tenant, ConfigError> {
        let id = TenantId::parse(&self.id).map_err(|e| err("tenant.id", e.to_string()))?;
        let at = |field: &str| format!("tenant {id}: {field}");
        let endpoints = match Endpoints::preset(self.cloud) {
            Some(e) => {
                if self.login_url.is_some() || self.manage_url.is_some() || self.graph_url.is_some()
                {
                    return Err(err(
                        at("cloud"),
                        "login_url/manage_url/graph_url are only for cloud = \"custom\"",
                    ));
                }
                e
            }
            None => {
                let need = |f: &str, v: &Option<String>| {
                    v.as_deref()
                        .ok_or_else(|| err(at(f), "is required when cloud = \"custom\""))
                        .and_then(|v| check_url(&at(f), v))
                };
                let manage = need("manage_url", &self.manage_url)?;
                Endpoints {
                    login: need("login_url", &self.login_url)?,
                    graph: need("graph_url", &self.graph_url)?,
                    manage,
                    manage_resource: self
                        .manage_resource
                        .clone()
                        .unwrap_or_else(|| "https://manage.office.com".into()),
                    graph_resource: self
                        .graph_resource
                        .clone()
                        .unwrap_or_else(|| "https://graph.microsoft.com".into()),
                }
            }
        };
        let path = |p: &String| -> String {
            match base {
                Some(b) if Path::new(p).is_relative() => b.join(p).display().to_string(),
                _ => p.clone(),
            }
        };
        let mut creds: Vec<CredentialRef> = Vec::new();
        if let Some(f) = &self.client_secret_file {
            creds.push(CredentialRef::Secret {
                secret: SecretRef::File(path(f)),
            });
        }
        if let Some(v) = &self.client_secret_env {
            creds.push(CredentialRef::Secret {
                secret: SecretRef::Env(v.clone()),
            });
        }
        if let Some(a) = &self.client_secret_arn {
            creds.push(CredentialRef::Secret {
                secret: SecretRef::SecretsManager(a.clone()),
            });
        }
        if let Some(f) = &self.certificate_file {
            creds.push(CredentialRef::Certificate {
                pem: SecretRef::File(path(f)),
                alg: self.assertion_alg,
            });
        }
        if let Some(a) = &self.certificate_arn {
            creds.push(CredentialRef::Certificate {
                pem: SecretRef::SecretsManager(a.clone()),
                alg: self.assertion_alg,
            });
        }
        if creds.len() != 1 {
            return Err(err(
                at("credential"),
                "give exactly one of client_secret_file, client_secret_env, client_secret_arn, certificate_file, certificate_arn",
            ));
        }
        let content_types = match &self.content_types {
            None => ContentType::ALL.to_vec(),
            Some(list) if list.is_empty() => {
                return Err(err(
                    at("content_types"),
                    "is empty: leave it out to collect all five",
                ));
            }
            Some(list) => {
                let mut v = Vec::new();
                for s in list {
                    let ct = s
                        .parse::<ContentType>()
                        .map_err(|e| err(at("content_types"), e.to_string()))?;
                    if !v.contains(&ct) {
                        v.push(ct);
                    }
                }
                v
            }
        };
        if uuid::Uuid::parse_str(&self.client_id).is_err() {
            return Err(err(
                at("client_id"),
                format!(
                    "`{}` is not a GUID: use the Application (client) ID of the app registration",
                    self.client_id
                ),
            ));
        }
        let publisher_id = match self.publisher_id {
            None => id.to_string(),
            Some(p) => TenantId::parse(&p)
                .map_err(|_| err(at("publisher_id"), "must be a GUID (your own tenant id)"))?
                .to_string(),
        };
        Ok(Tenant {
            id,
            name: self.name,
            cloud: self.cloud,
            endpoints,
            client_id: self.client_id.to_ascii_lowercase(),
            credential: creds.remove(0),
            token_endpoint: self.token_endpoint,
            content_types,
            publisher_id,
            enabled: self.enabled,
        })
    }
}

/// Settings of a local run (`o365-collector run --config FILE`), documented in docs/config.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfigFile {
    /// Where objects and state go.
    pub storage: StorageSpec,
    /// Collection knobs.
    #[serde(default)]
    pub collection: CollectionSpec,
    /// Tenants.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantSpec>,
}

/// Storage of a local run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// Folder the events are written to (or `s3://bucket`).
    pub output: String,
    /// State file (redb), or `dynamodb://table`.
    pub state: String,
}

/// Collection knobs of a local run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSpec {
    /// Re-list band in minutes.
    #[serde(default = "band")]
    pub relist_band_minutes: i64,
    /// A reconciliation pass over the whole 7 days completes this often, in minutes (0 =
    /// never).
    #[serde(default = "reconcile")]
    pub reconcile_every_minutes: i64,
    /// First-run lookback in hours (1–167).
    #[serde(default = "lookback")]
    pub first_run_lookback_hours: i64,
    /// Fetch workers.
    #[serde(default = "workers")]
    pub fetch_workers: usize,
    /// Capacity of the in-process job queue.
    #[serde(default = "capacity")]
    pub queue_capacity: usize,
    /// Attempts per blob before it is dead-lettered.
    #[serde(default = "attempts")]
    pub max_attempts: u32,
    /// Seconds between passes when running continuously.
    #[serde(default = "interval")]
    pub interval_seconds: u64,
    /// Also keep each blob as received under `raw/`.
    #[serde(default = "yes")]
    pub archive_raw: bool,
}

fn band() -> i64 {
    150
}
fn reconcile() -> i64 {
    360
}
fn lookback() -> i64 {
    24
}
fn workers() -> usize {
    8
}
fn capacity() -> usize {
    256
}
fn attempts() -> u32 {
    5
}
fn interval() -> u64 {
    300
}

impl Default for CollectionSpec {
    fn default() -> Self {
        CollectionSpec {
            relist_band_minutes: band(),
            reconcile_every_minutes: reconcile(),
            first_run_lookback_hours: lookback(),
            fetch_workers: workers(),
            queue_capacity: capacity(),
            max_attempts: attempts(),
            interval_seconds: interval(),
            archive_raw: true,
        }
    }
}

/// A checked local configuration.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Output folder or `s3://bucket`.
    pub output: String,
    /// State file or `dynamodb://table`.
    pub state: String,
    /// Tenants.
    pub tenants: Vec<Tenant>,
    /// Lister knobs.
    pub lister: ListerSettings,
    /// Fetcher knobs.
    pub fetcher: FetcherSettings,
    /// Fetch workers.
    pub workers: usize,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Pause between passes.
    pub interval: StdDuration,
}

impl LocalConfig {
    /// Reads and checks a TOML file; relative paths are resolved against its folder.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the setting.
    pub fn from_file(path: &Path) -> Result<LocalConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), format!("cannot read: {e}")))?;
        LocalConfig::from_toml(&text, path.parent())
    }

    /// Parses and checks TOML text.
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting.
    pub fn from_toml(text: &str, base: Option<&Path>) -> Result<LocalConfig, ConfigError> {
        let file: LocalConfigFile =
            toml::from_str(text).map_err(|e| err("config file", e.to_string()))?;
        let c = &file.collection;
        if !(1..=167).contains(&c.first_run_lookback_hours) {
            return Err(err(
                "collection.first_run_lookback_hours",
                "must be between 1 and 167 (7 days)",
            ));
        }
        if c.relist_band_minutes < 0 || c.reconcile_every_minutes < 0 {
            return Err(err("collection", "minutes must not be negative"));
        }
        if c.fetch_workers == 0 || c.queue_capacity == 0 || c.max_attempts == 0 {
            return Err(err(
                "collection",
                "fetch_workers, queue_capacity and max_attempts must be at least 1",
            ));
        }
        let resolve = |p: &str| -> String {
            if p.contains("://") {
                return p.to_owned();
            }
            match base {
                Some(b) if Path::new(p).is_relative() => b.join(p).display().to_string(),
                _ => p.to_owned(),
            }
        };
        let mut tenants = Vec::new();
        for t in file.tenants.clone() {
            let tenant = t.into_tenant(base)?;
            if tenants.iter().any(|x: &Tenant| x.id == tenant.id) {
                return Err(err(format!("tenant {}", tenant.id), "is listed twice"));
            }
            tenants.push(tenant);
        }
        Ok(LocalConfig {
            output: resolve(&file.storage.output),
            state: resolve(&file.storage.state),
            tenants,
            lister: ListerSettings {
                relist_band: Duration::minutes(c.relist_band_minutes),
                reconcile_every: (c.reconcile_every_minutes > 0)
                    .then(|| Duration::minutes(c.reconcile_every_minutes)),
                first_run_lookback: Duration::hours(c.first_run_lookback_hours),
                ..ListerSettings::default()
            },
            fetcher: FetcherSettings {
                max_receives: c.max_attempts,
                archive_raw: c.archive_raw,
                ..FetcherSettings::default()
            },
            workers: c.fetch_workers,
            queue_capacity: c.queue_capacity,
            interval: StdDuration::from_secs(c.interval_seconds.max(10)),
        })
    }
}

/// Where a local run's relative paths are resolved.
pub fn config_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TenantSpec {
        toml::from_str(
            r#"
id = "3F2A9C1D-7B4E-4C2A-9D11-5E6F7A8B9C0D"
client_id = "a6099727-6b7b-482c-b509-1df309acc563"
client_secret_file = "secret.txt"
"#,
        )
        .unwrap()
    }

    #[test]
    fn a_minimal_tenant_gets_commercial_endpoints_all_types_and_its_own_publisher_id() {
        let t = spec().into_tenant(Some(Path::new("/etc/o365"))).unwrap();
        assert_eq!(t.id.as_str(), "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d");
        assert_eq!(t.endpoints.manage, "https://manage.office.com");
        assert_eq!(t.content_types, ContentType::ALL.to_vec());
        assert_eq!(t.publisher_id, t.id.as_str());
        assert_eq!(
            t.credential,
            CredentialRef::Secret {
                secret: SecretRef::File("/etc/o365/secret.txt".into())
            }
        );
    }

    #[test]
    fn presets_follow_the_fact_sheet() {
        for (cloud, manage, login) in [
            (
                CloudKind::Gcc,
                "https://manage-gcc.office.com",
                "https://login.microsoftonline.com",
            ),
            (
                CloudKind::GccHigh,
                "https://manage.office365.us",
                "https://login.microsoftonline.us",
            ),
            (
                CloudKind::Dod,
                "https://manage.protection.apps.mil",
                "https://login.microsoftonline.us",
            ),
        ] {
            let t = TenantSpec { cloud, ..spec() }.into_tenant(None).unwrap();
            assert_eq!(
                (t.endpoints.manage.as_str(), t.endpoints.login.as_str()),
                (manage, login)
            );
        }
    }

    #[test]
    fn bad_tenants_are_refused_with_the_field_named() {
        let e = TenantSpec {
            id: "contoso".into(),
            ..spec()
        }
        .into_tenant(None)
        .unwrap_err();
        assert!(e.to_string().contains("GUID"), "{e}");
        let e = TenantSpec {
            cloud: CloudKind::Custom,
            ..spec()
        }
        .into_tenant(None)
        .unwrap_err();
        assert!(e.to_string().contains("manage_url"), "{e}");
        let e = TenantSpec {
            certificate_file: Some("c.pem".into()),
            ..spec()
        }
        .into_tenant(None)
        .unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        let e = TenantSpec {
            content_types: Some(vec!["Audit.Nope".into()]),
            ..spec()
        }
        .into_tenant(None)
        .unwrap_err();
        assert!(e.to_string().contains("DLP.All"), "{e}");
    }

    #[test]
    fn lambda_config_names_the_missing_variable_and_checks_numbers() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let e = LambdaConfig::from_lookup(env(&[("BUCKET", "b")])).unwrap_err();
        assert_eq!(e.setting, "STATE_TABLE");
        let full: &'static [(&str, &str)] = &[
            ("STATE_TABLE", "t"),
            ("BUCKET", "b"),
            ("QUEUE_URL", "q"),
            ("DLQ_URL", "d"),
            ("RELIST_BAND_MINUTES", "45"),
            ("RECONCILE_EVERY_MINUTES", "0"),
        ];
        let c = LambdaConfig::from_lookup(env(full)).unwrap();
        assert_eq!(c.lister.relist_band, Duration::minutes(45));
        assert_eq!(c.lister.reconcile_every, None);
        assert!(c.fetcher.archive_raw, "the raw archive is on by default");
        assert!(
            c.fetcher.cross_blob_dedupe,
            "records are de-duplicated across blobs by default"
        );
        let mut off = full.to_vec();
        off.push(("CROSS_BLOB_DEDUPE", "false"));
        let lookup = |k: &str| {
            off.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        assert!(
            !LambdaConfig::from_lookup(lookup)
                .unwrap()
                .fetcher
                .cross_blob_dedupe
        );
        let mut bad = full.to_vec();
        bad.push(("CROSS_BLOB_DEDUPE", "maybe"));
        let lookup = |k: &str| {
            bad.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(
            LambdaConfig::from_lookup(lookup).unwrap_err().setting,
            "CROSS_BLOB_DEDUPE"
        );
        assert_eq!(
            c.lister.content_types, None,
            "every content type by default"
        );
        let e = LambdaConfig::from_lookup(env(&[
            ("STATE_TABLE", "t"),
            ("BUCKET", "b"),
            ("QUEUE_URL", "q"),
            ("DLQ_URL", "d"),
            ("CONTENT_TYPES", "Audit.Exchange, Audit.Nope"),
        ]))
        .unwrap_err();
        assert_eq!(e.setting, "CONTENT_TYPES");
        let c = LambdaConfig::from_lookup(env(&[
            ("STATE_TABLE", "t"),
            ("BUCKET", "b"),
            ("QUEUE_URL", "q"),
            ("DLQ_URL", "d"),
            ("CONTENT_TYPES", "Audit.Exchange,DLP.All"),
        ]))
        .unwrap();
        assert_eq!(
            c.lister.content_types,
            Some(vec![ContentType::Exchange, ContentType::DlpAll])
        );
        let e = LambdaConfig::from_lookup(env(&[
            ("STATE_TABLE", "t"),
            ("BUCKET", "b"),
            ("QUEUE_URL", "q"),
            ("DLQ_URL", "d"),
            ("FIRST_RUN_LOOKBACK_HOURS", "500"),
        ]))
        .unwrap_err();
        assert_eq!(e.setting, "FIRST_RUN_LOOKBACK_HOURS");
    }
}
