//! Secrets never reach the logs: every line the function binaries and the CLI print during an
//! end-to-end run at `trace` level (ours and every dependency's) is searched for the client
//! secret, the private key, and any JWT (access tokens and client assertions).

use std::time::Duration;

use integration_tests::runtime::{LambdaProcess, function_binary};
use integration_tests::stack::Stack;
use serde_json::Value;

use crate::support::*;

/// Every JWT-shaped run in `text`: three non-empty base64url segments joined by dots, the first
/// a JSON object (`eyJ`).
fn jwts(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("eyJ") {
        let run: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let parts: Vec<&str> = run.split('.').collect();
        if parts.len() == 3 && parts.iter().all(|p| p.len() >= 8) {
            found.push(run.clone());
        }
        rest = &rest[i + run.len().max(3)..];
    }
    found
}

/// The base64 lines of the private key in `pem` (each long enough to be unmistakable).
fn key_lines(pem: &str) -> Vec<String> {
    let mut inside = false;
    let mut lines = Vec::new();
    for l in pem.lines() {
        if l.contains("BEGIN") && l.contains("PRIVATE KEY") {
            inside = true;
        } else if l.contains("END") && l.contains("PRIVATE KEY") {
            inside = false;
        } else if inside && l.len() >= 40 {
            lines.push(l.to_owned());
        }
    }
    lines
}

fn assert_clean(what: &str, logs: &str) {
    assert!(
        !logs.contains(SECRET),
        "{what}: the client secret is in the logs"
    );
    for l in key_lines(&cert().pem) {
        assert!(
            !logs.contains(&l),
            "{what}: a line of the private key is in the logs"
        );
    }
    assert!(
        !logs.contains("PRIVATE KEY-----"),
        "{what}: a PEM private key block is in the logs"
    );
    let tokens = jwts(logs);
    assert!(
        tokens.is_empty(),
        "{what}: {} JWT(s) in the logs, e.g. one starting {}…",
        tokens.len(),
        tokens[0].chars().take(12).collect::<String>()
    );
}

#[test]
fn the_detectors_find_what_they_look_for() {
    // A real access token from the emulator is found; a Graph skip token (base64 JSON, no
    // dots) is not.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = rt.block_on(async {
        let emu = o365_emulator::Emulator::start(scenario("")).await.unwrap();
        let high = emu.cloud_url(o365_emulator::Cloud::GccHigh);
        let r: Value = reqwest::Client::new()
            .post(format!("{high}/{TENANT_SECRET}/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", APP_SECRET),
                ("client_secret", SECRET),
                ("scope", "https://manage.office365.us/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["access_token"].as_str().unwrap().to_owned()
    });
    assert_eq!(
        jwts(&format!("Authorization: Bearer {token}\n")),
        vec![token]
    );
    assert!(jwts("https://graph/v1.0/users?$skiptoken=eyJrIjoibGlzdCIsInYiOjB9").is_empty());
    assert!(!key_lines(&cert().pem).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_key_or_token_in_any_log_line_of_an_end_to_end_run_at_trace_level() {
    let stack = Stack::create(20).await;
    let emu = o365_emulator::Emulator::start(scenario(
        r#"
[[fault]]
kind = "unauthorized"
endpoints = ["content"]
every = 7
"#,
    ))
    .await
    .expect("emulator");
    let dir = deploy_tenants(&stack, &emu).await;
    let env = stack.function_env(&[("RUST_LOG", "trace")]);
    let event: Value =
        serde_json::from_str(include_str!("../../events/lister/scheduled.json")).unwrap();

    let mut lister = LambdaProcess::spawn("lister", &env).await;
    let mut fetcher = LambdaProcess::spawn("fetcher", &env).await;
    lister
        .invoke(event.clone(), Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("lister failed: {e:?}"));
    let (batches, _) = drain(&stack, &mut fetcher).await;
    assert!(batches > 0, "nothing was fetched");
    let mut all = vec![("lister", lister.logs()), ("fetcher", fetcher.logs())];
    let mut users = LambdaProcess::spawn("users-sync", &env).await;
    let _ = users.invoke(event.clone(), Duration::from_secs(120)).await;
    all.push(("users-sync", users.logs()));
    for (name, logs) in &all {
        // The run really logged at trace level (the search covered something).
        assert!(
            logs.lines().count() > 50,
            "{name} logged only {} lines",
            logs.lines().count()
        );
        assert_clean(name, logs);
    }

    // The CLI's local run, at trace level too.
    let config = dir.join("collector.toml");
    std::fs::write(dir.join("b.secret"), SECRET).unwrap();
    let base = emu.base_url();
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
output = "out"
state = "state.redb"

[[tenant]]
id = "{TENANT_CERT}"
cloud = "custom"
login_url = "{base}"
manage_url = "{base}"
graph_url = "{base}"
client_id = "{APP_CERT}"
certificate_file = "tenant-a.pem"
"#
        ),
    )
    .unwrap();
    let bin = function_binary("o365-collector");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["run", "--once", "--config"])
            .arg(&config)
            .env("O365_LOG", "trace")
            .output()
            .expect("run the CLI")
    })
    .await
    .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logs.lines().count() > 50, "the CLI logged too little");
    assert_clean("o365-collector run", &logs);
}
