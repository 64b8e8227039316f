//! `demo`: start the bundled emulator, collect a day of all five content types into a folder with
//! the same use cases a deployment runs, and check the result against the emulator's ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use shared::api::http_client;
use shared::app::SystemClock;
use shared::app::clients::TenantClients;
use shared::app::local::{LocalSettings, run_once};
use shared::config::LocalConfig;
use shared::retry::RetryPolicy;
use shared::secrets::LocalSecrets;
use shared::sink::FolderSink;
use shared::store::RedbStore;

/// Record ids found in the output folder, per (tenant, content type), with duplicates counted.
struct Collected {
    ids: BTreeMap<(String, String), BTreeSet<String>>,
    duplicates: u64,
    files: u64,
}

fn read_output(root: &Path) -> Result<Collected, String> {
    let mut out = Collected {
        ids: BTreeMap::new(),
        duplicates: 0,
        files: 0,
    };
    let mut stack = vec![root.join("ocsf")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !path.to_string_lossy().ends_with(".ndjson.gz") {
                continue;
            }
            out.files += 1;
            let file =
                std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for line in BufReader::new(flate2::read::GzDecoder::new(file)).lines() {
                let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
                let v: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| format!("{}: {e}", path.display()))?;
                let key = partition(&path);
                let id = v["metadata"]["uid"].as_str().unwrap_or("").to_owned();
                if !out.ids.entry(key).or_default().insert(id) {
                    out.duplicates += 1;
                }
            }
        }
    }
    Ok(out)
}

/// (tenant, content type) of an events file, from its Hive-style path.
fn partition(path: &Path) -> (String, String) {
    let mut tenant = String::new();
    let mut content_type = String::new();
    for part in path.iter().filter_map(|p| p.to_str()) {
        if let Some(t) = part.strip_prefix("tenant_id=") {
            tenant = t.to_owned();
        } else if let Some(c) = part.strip_prefix("content_type=") {
            content_type = c.to_owned();
        }
    }
    (tenant, content_type)
}

/// `o365-collector demo [--out DIR]`.
pub async fn run(out: &Path) -> Result<ExitCode, String> {
    let scenario = o365_emulator::Scenario::demo().map_err(|e| e.to_string())?;
    let tenant = scenario
        .tenants
        .first()
        .ok_or("demo scenario has no tenant")?
        .clone();
    let app = scenario
        .apps
        .first()
        .ok_or("demo scenario has no app")?
        .clone();
    let secret = app
        .secrets
        .first()
        .ok_or("demo scenario app has no secret")?
        .value
        .clone();
    // Fresh every time: the emulator's content is generated relative to now.
    for stale in ["ocsf", "raw", "state.redb"] {
        let p = out.join(stale);
        if p.is_dir() {
            std::fs::remove_dir_all(&p)
                .map_err(|e| format!("cannot clear {}: {e}", p.display()))?;
        } else if p.exists() {
            std::fs::remove_file(&p).map_err(|e| format!("cannot clear {}: {e}", p.display()))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let secret_file = out.join("demo-client-secret.txt");
    std::fs::write(&secret_file, &secret)
        .map_err(|e| format!("cannot write {}: {e}", secret_file.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600));
    }
    let emu = o365_emulator::Emulator::start(scenario)
        .await
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    let base = emu.base_url();
    println!(
        "emulator of Microsoft's endpoints at {base} (tenant {}, {})",
        tenant.id, tenant.domain
    );
    let config_text = format!(
        r#"
[storage]
output = "."
state = "state.redb"

[collection]
first_run_lookback_hours = 26
fetch_workers = 8

[[tenant]]
id = "{tenant}"
name = "Contoso (emulated)"
cloud = "custom"
login_url = "{base}"
manage_url = "{base}"
graph_url = "{base}"
client_id = "{client}"
client_secret_file = "demo-client-secret.txt"
"#,
        tenant = tenant.id,
        client = app.client_id,
    );
    std::fs::write(out.join("demo-config.toml"), &config_text).map_err(|e| e.to_string())?;
    let cfg = LocalConfig::from_toml(&config_text, Some(out)).map_err(|e| e.to_string())?;
    let store = Arc::new(
        RedbStore::open(&out.join("state.redb"))
            .await
            .map_err(|e| e.to_string())?,
    );
    for t in &cfg.tenants {
        shared::store::StateStore::put_tenant(store.as_ref(), t)
            .await
            .map_err(|e| e.to_string())?;
    }
    let sink = Arc::new(FolderSink::new(out.to_path_buf()));
    let apis = Arc::new(TenantClients::new(
        http_client(),
        LocalSecrets,
        RetryPolicy::default(),
    ));
    let settings = LocalSettings {
        lister: cfg.lister.clone(),
        fetcher: cfg.fetcher.clone(),
        workers: cfg.workers,
        queue_capacity: cfg.queue_capacity,
        ..LocalSettings::default()
    };
    let started = emu.now();
    let report = run_once(store, sink, apis, Arc::new(SystemClock), &settings)
        .await
        .map_err(|e| e.to_string())?;
    crate::run::print_report(&report);

    let summary = emu.request_summary();
    let refused: u64 = summary
        .by_endpoint_status
        .iter()
        .filter(|(k, _)| {
            k.ends_with(" 403") || k.ends_with(" 429") || k.ends_with(" 500") || k.ends_with(" 503")
        })
        .map(|(_, n)| n)
        .sum();
    println!(
        "  API calls to the emulator: {} ({refused} throttled or failed by the emulator and retried; \
         400s are AF20022 'no subscription' answers, after which the collector started the subscription)",
        summary.total
    );
    for (k, n) in &summary.by_endpoint_status {
        println!("    {k:<20} {n:>6}");
    }

    // Every record listable when the pass began must be there; nothing may be there that was
    // not listable by the end (content keeps appearing while the pass runs).
    let collected = read_output(out)?;
    let must = emu.record_ids_available_by(started, false);
    let may = emu.record_ids_available_by(emu.now(), true);
    let mut missing = 0usize;
    let mut extra = 0usize;
    let keys: BTreeSet<&(String, String)> = must.keys().chain(collected.ids.keys()).collect();
    for key in keys {
        let got = collected.ids.get(key).cloned().unwrap_or_default();
        if let Some(want) = must.get(key) {
            missing += want.difference(&got).count();
        }
        let allowed = may.get(key).cloned().unwrap_or_default();
        extra += got.difference(&allowed).count();
    }
    let total: usize = collected.ids.values().map(BTreeSet::len).sum();
    println!(
        "  output: {} ({} objects of OCSF events; the blobs as received are under {})",
        out.join("ocsf").display(),
        collected.files,
        out.join("raw").display()
    );
    if missing == 0 && extra == 0 && collected.duplicates == 0 {
        println!(
            "verified against the emulator's ground truth: all {total} records collected exactly once"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "MISMATCH against the ground truth: {missing} missing, {extra} unexpected, {} duplicated (of {total})",
            collected.duplicates
        );
        Ok(ExitCode::from(1))
    }
}
