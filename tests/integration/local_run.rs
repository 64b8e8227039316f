//! Local mode through the CLI binary: `run --once` twice (the second adds only new content),
//! and `demo`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use integration_tests::runtime::function_binary;

use crate::support::*;

pub(crate) fn objects(root: &Path, prefix: &str) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.join(prefix)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".gz") {
                out.insert(p.clone(), e.metadata().unwrap().modified().unwrap());
            }
        }
    }
    out
}

pub(crate) fn read_written(files: &BTreeMap<PathBuf, SystemTime>) -> Written {
    let mut w: Written = BTreeMap::new();
    for p in files.keys() {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        add_lines(&mut w, &p.to_string_lossy(), &lines);
    }
    w
}

/// Jobs enqueued, from the report's `listing: N jobs enqueued` line.
fn first_jobs(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("listing: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no listing line:\n{stdout}"))
}

async fn run_once(config: &Path) -> std::process::Output {
    let bin = function_binary("o365-collector");
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["run", "--once", "--config"])
            .arg(&config)
            .env("O365_LOG", "warn,o365_collector=info")
            .output()
            .expect("run the CLI")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_once_twice_collects_everything_once_and_the_second_run_adds_only_new_content() {
    let emu = o365_emulator::Emulator::start(scenario(""))
        .await
        .expect("emulator");
    let dir = std::env::temp_dir().join(format!("o365-local-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.pem"), &cert().pem).unwrap();
    std::fs::write(dir.join("b.secret"), SECRET).unwrap();
    let base = emu.base_url();
    let high = emu.cloud_url(o365_emulator::Cloud::GccHigh);
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
output = "out"
state = "state/collector.redb"

[collection]
relist_band_minutes = 60
fetch_workers = 4

[[tenant]]
id = "{TENANT_CERT}"
cloud = "custom"
login_url = "{base}"
manage_url = "{base}"
graph_url = "{base}"
client_id = "{APP_CERT}"
certificate_file = "a.pem"

[[tenant]]
id = "{TENANT_SECRET}"
cloud = "custom"
login_url = "{high}"
manage_url = "{high}"
graph_url = "{high}"
manage_resource = "https://manage.office365.us"
graph_resource = "https://graph.microsoft.us"
client_id = "{APP_SECRET}"
client_secret_file = "b.secret"
"#
        ),
    )
    .unwrap();
    let out = dir.join("out");

    let t0 = emu.now();
    let first = run_once(&config).await;
    let stdout = String::from_utf8_lossy(&first.stdout);
    // The scenario expires some blobs before they can be fetched: exit status 3 (data lost
    // upstream), everything else collected.
    assert_eq!(
        first.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("LOST UPSTREAM"),
        "expired blobs must be reported:\n{stdout}"
    );
    // Not a terminal: plain progress lines, the last one matching the report.
    let stderr = String::from_utf8_lossy(&first.stderr);
    let last = stderr
        .lines()
        .rfind(|l| l.contains("progress: "))
        .unwrap_or_else(|| panic!("no progress line:\n{stderr}"));
    let total = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("total"))
        .and_then(|l| l.split_whitespace().last())
        .expect("a total line");
    let jobs = first_jobs(&stdout);
    assert!(
        last.contains(&format!("blobs {jobs}/{jobs} fetched, {total} records")),
        "{last}\n{stdout}"
    );
    let after_first = objects(&out, "ocsf");
    let raw_first = objects(&out, "raw");
    assert_exactly_once(&emu, &read_written(&after_first), t0, emu.now());

    emu.advance_clock(chrono::Duration::seconds(1800));
    let t1 = emu.now();
    let second = run_once(&config).await;
    let stdout2 = String::from_utf8_lossy(&second.stdout);
    // 3 only when content newly available in the half hour expired too.
    assert!(
        second.status.success()
            || (second.status.code() == Some(3) && stdout2.contains("LOST UPSTREAM")),
        "{}\n{stdout2}",
        second.status
    );
    let after_second = objects(&out, "ocsf");
    let raw_second = objects(&out, "raw");
    for (path, mtime) in &after_first {
        assert_eq!(
            after_second.get(path),
            Some(mtime),
            "{} was rewritten by the second run",
            path.display()
        );
    }
    for (path, mtime) in &raw_first {
        assert_eq!(
            raw_second.get(path),
            Some(mtime),
            "{} was fetched again",
            path.display()
        );
    }
    let new = raw_second.len() - raw_first.len();
    assert!(new > 0, "the second run found no new content");
    let newly_available = emu
        .truth()
        .iter()
        .filter(|b| b.available_at > t0 && b.available_at <= t1 && !b.expired)
        .count();
    assert!(
        new >= newly_available,
        "{new} new blobs fetched for {newly_available} newly available"
    );
    assert_exactly_once(&emu, &read_written(&after_second), t1, emu.now());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_collects_a_day_and_verifies_it_against_the_ground_truth() {
    let dir = std::env::temp_dir().join(format!("o365-demo-{}", uuid::Uuid::new_v4()));
    let bin = function_binary("o365-collector");
    let d = dir.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["demo", "--out"])
            .arg(&d)
            .output()
            .expect("run the demo")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("collected exactly once"), "{stdout}");
    for ct in [
        "Audit.AzureActiveDirectory",
        "Audit.Exchange",
        "Audit.SharePoint",
        "Audit.General",
        "DLP.All",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(ct))
            .unwrap_or_default();
        let n: u64 = line
            .split_whitespace()
            .last()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "no {ct} records in the demo:\n{stdout}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalize_rebuilds_the_events_of_a_raw_archive_and_keeps_unparsable_lines() {
    let dir = std::env::temp_dir().join(format!("o365-normalize-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = function_binary("o365-collector");
    let tenant = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";
    // A raw archive object as the fetcher writes it.
    let raw_dir = dir.join(format!(
        "raw/tenant_id={tenant}/content_type=Audit.Exchange/date=2026-11-22"
    ));
    std::fs::create_dir_all(&raw_dir).unwrap();
    let records = serde_json::json!([
        {"Id": "a1", "CreationTime": "2026-11-22T10:00:00", "Operation": "Send", "RecordType": 2,
         "UserId": "alice@contoso.com", "Workload": "Exchange", "ClientIP": "[2001:db8::1]:443"},
        {"Id": "a2", "CreationTime": "2026-11-21T23:59:59", "Operation": "New-InboxRule", "RecordType": "1",
         "UserId": "bob@contoso.com", "Workload": "Exchange", "ClientIP": "::ffff:198.51.100.7"}
    ]);
    let raw_file = raw_dir.join("x%24y%24audit_exchange.json.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, records.to_string().as_bytes()).unwrap();
    std::fs::write(&raw_file, gz.finish().unwrap()).unwrap();
    let out = std::process::Command::new(&bin)
        .arg("normalize")
        .arg(&raw_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    check_ocsf("Audit.Exchange", &events[0]);
    check_ocsf("Audit.Exchange", &events[1]);
    assert_eq!(events[0]["src_endpoint"]["ip"], "2001:db8::1");
    assert_eq!(events[0]["src_endpoint"]["port"], 443);
    assert_eq!(
        events[1]["src_endpoint"]["ip"], "198.51.100.7",
        "::ffff: mapped → IPv4"
    );
    assert_eq!(
        events[0]["o365"]["content_id"], "x$y$audit_exchange",
        "content id from the archive path"
    );
    assert_eq!(events[0]["metadata"]["tenant_uid"], tenant);

    // NDJSON on stdin with a line that is not JSON: kept raw with a parse-error marker.
    let mut child = std::process::Command::new(&bin)
        .arg("normalize")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"{\"Id\":\"b1\",\"CreationTime\":\"2026-11-22T10:00:00\",\"Operation\":\"FileAccessed\",\"Workload\":\"SharePoint\",\"RecordType\":6}\n{not json at all\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "the unparsable line is kept, not dropped");
    assert_eq!(
        lines[0]["class_uid"], 6006,
        "a SharePoint file operation is File Hosting Activity"
    );
    assert!(
        lines[1].to_string().contains("not json at all"),
        "raw text kept: {}",
        lines[1]
    );
    let _ = std::fs::remove_dir_all(dir);
}
