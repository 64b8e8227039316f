//! Which state `status`, `redrive` and `backfill` work on: a local run configuration, a local
//! state file or a deployment's table (chosen as `doctor` chooses), and reading a state file
//! that a running `run` holds.

use std::path::{Path, PathBuf};

use shared::config::LocalConfig;
use shared::model::{Tenant, TenantId};
use shared::store::{DynamoDbStore, RedbStore, StateStore};

use crate::local::AnyStore;

/// Where the state is (the same options as `doctor`).
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// A local run configuration (`run --config`): its state and tenants.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A local state file (redb), as in a `run` configuration.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The deployment's state table (stack output StateTableName).
    #[arg(long, env = "STATE_TABLE")]
    pub table: Option<String>,
    /// A local AWS endpoint (e.g. moto) instead of AWS.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
}

/// The state chosen, before it is opened.
#[derive(Debug, Clone)]
pub enum Target {
    /// A local run configuration (its `state` may itself be a DynamoDB table).
    Config(PathBuf, Box<LocalConfig>),
    /// A redb file.
    File(PathBuf),
    /// A DynamoDB table.
    Table(String),
}

/// An opened state, with what people should know about it.
#[derive(Debug)]
pub struct Opened {
    /// The store.
    pub store: AnyStore,
    /// For people: which state this is.
    pub source: String,
    /// Read from a private copy because a running collector holds the file.
    pub snapshot: bool,
    /// The configuration's tenants (with `--config`).
    pub config_tenants: Option<Vec<Tenant>>,
    /// Removed when dropped (the copy).
    _copy: Option<TempCopy>,
}

/// A file deleted when dropped.
#[derive(Debug)]
struct TempCopy(PathBuf);

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn blank(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl StateArgs {
    /// The state chosen: `--config`, else `--state`, else `--table` (or `STATE_TABLE`).
    ///
    /// # Errors
    /// When none is given, or `--config` and `--state` both are, or the configuration is bad.
    pub fn target(&self) -> Result<Target, String> {
        if self.config.is_some() && self.state.is_some() {
            return Err("give either --config FILE or --state FILE, not both".into());
        }
        if let Some(path) = &self.config {
            let cfg = LocalConfig::from_file(path).map_err(|e| e.to_string())?;
            return Ok(Target::Config(path.clone(), Box::new(cfg)));
        }
        if let Some(path) = &self.state {
            return Ok(Target::File(path.clone()));
        }
        if let Some(table) = blank(self.table.as_deref()) {
            return Ok(Target::Table(table));
        }
        Err("give --config FILE (a local run configuration), --state FILE (a local state file) or --table NAME (a deployment's StateTableName, or STATE_TABLE)".into())
    }

    /// The SDK configuration (with `--aws-endpoint-url`).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        shared::aws::sdk_config(blank(self.aws_endpoint_url.as_deref()).as_deref()).await
    }

    /// Opens the state for reading. A redb file that a running collector holds (redb allows
    /// one open handle per file) is copied to a temporary file and the copy is read instead.
    ///
    /// # Errors
    /// A message naming what cannot be opened.
    pub async fn open_read(&self) -> Result<Opened, String> {
        self.open(true).await
    }

    /// Opens the state for writing (no snapshot: a file in use is an error).
    ///
    /// # Errors
    /// A message naming what cannot be opened.
    pub async fn open_write(&self) -> Result<Opened, String> {
        self.open(false).await
    }

    async fn open(&self, read_only: bool) -> Result<Opened, String> {
        let (spec, config_tenants) = match self.target()? {
            Target::Config(_, cfg) => (cfg.state.clone(), Some(cfg.tenants)),
            Target::File(p) => (p.display().to_string(), None),
            Target::Table(t) => (format!("dynamodb://{t}"), None),
        };
        if let Some(table) = spec.strip_prefix("dynamodb://") {
            let conf = self.sdk_config().await;
            return Ok(Opened {
                store: AnyStore::Dynamo(DynamoDbStore::new(
                    aws_sdk_dynamodb::Client::new(&conf),
                    table.to_owned(),
                )),
                source: format!("table {table}"),
                snapshot: false,
                config_tenants,
                _copy: None,
            });
        }
        let path = PathBuf::from(&spec);
        if !path.exists() {
            return Err(format!(
                "state file {} does not exist: give the `state` of your run configuration (or run `o365-collector run` first)",
                path.display()
            ));
        }
        match RedbStore::open(&path).await {
            Ok(s) => Ok(Opened {
                store: AnyStore::Redb(s),
                source: format!("state file {}", path.display()),
                snapshot: false,
                config_tenants,
                _copy: None,
            }),
            Err(e) if read_only && e.to_string().contains("already open") => {
                let (store, copy) = open_snapshot(&path).await?;
                Ok(Opened {
                    store: AnyStore::Redb(store),
                    source: format!(
                        "state file {} (snapshot of a state file in use)",
                        path.display()
                    ),
                    snapshot: true,
                    config_tenants,
                    _copy: Some(copy),
                })
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Copies a redb file a running collector holds and opens the copy. The copy is taken while
/// the collector may be committing: it is retried until the file did not change while being
/// copied, and redb's checksums refuse a copy torn anyway (then it is taken again).
async fn open_snapshot(path: &Path) -> Result<(RedbStore, TempCopy), String> {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| Ok((m.len(), m.modified()?)))
            .ok()
    };
    let mut last_error = String::new();
    for attempt in 0..10u32 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
        }
        let copy = TempCopy(std::env::temp_dir().join(format!(
            "o365-collector-snapshot-{}.redb",
            uuid::Uuid::new_v4().simple()
        )));
        let before = stamp(path);
        std::fs::copy(path, &copy.0)
            .map_err(|e| format!("cannot copy {} to read it: {e}", path.display()))?;
        let steady = before.is_some() && before == stamp(path);
        // A copy taken while the file changed is still used once the attempts run out, if
        // redb accepts it (its checksums cover every page it reads).
        if !steady && attempt < 5 {
            continue;
        }
        match RedbStore::open(&copy.0).await {
            Ok(store) => return Ok((store, copy)),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(format!(
        "{} is in use by a running collector and no consistent copy of it could be read ({last_error}); try again, or stop the run",
        path.display()
    ))
}

/// The tenants to work on: the configuration's (with `--config`) or the store's; only `only`
/// when given (then even if disabled), else the enabled ones (or all with `disabled_too`).
///
/// # Errors
/// A bad tenant id, an unknown tenant, or a store error.
pub async fn tenants(
    opened: &Opened,
    only: Option<&str>,
    disabled_too: bool,
) -> Result<Vec<Tenant>, String> {
    let mut tenants = match &opened.config_tenants {
        Some(t) => t.clone(),
        None => opened
            .store
            .list_tenants()
            .await
            .map_err(|e| e.to_string())?,
    };
    match only {
        Some(id) => {
            let id = TenantId::parse(id).map_err(|e| e.to_string())?;
            tenants.retain(|t| t.id == id);
            if tenants.is_empty() {
                return Err(format!("tenant {id} is not configured"));
            }
        }
        None if !disabled_too => tenants.retain(|t| t.enabled),
        None => {}
    }
    Ok(tenants)
}
