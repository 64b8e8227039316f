//! `doctor` through the CLI binary against emulator scenarios: one test per setup mistake, each
//! asserting the failing check and that its fix names the right remedy; a healthy tenant; and a
//! deployment on moto (table, queues, DLQ depth, bucket, age of the newest records).

use std::path::{Path, PathBuf};

use integration_tests::runtime::function_binary;
use serde_json::Value;
use shared::auth::Credential;
use shared::model::AssertionAlg;

use crate::support::*;

const RIGHT_SECRET: &str = "doctor~right.secret";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

async fn doctor(args: Vec<String>, env: Vec<(String, String)>) -> Run {
    let bin = function_binary("o365-collector");
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(bin)
            .arg("doctor")
            .args(&args)
            .envs(env)
            .env_remove("STATE_TABLE")
            .env_remove("QUEUE_URL")
            .env_remove("DLQ_URL")
            .env_remove("BUCKET")
            .output()
            .expect("run doctor");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// An emulator with one tenant (`tenant` lines added to its table) and one app (`app` lines).
async fn emulator(tenant: &str, app: &str) -> o365_emulator::Emulator {
    let text = format!(
        r#"
seed = 5
[[tenant]]
id = "{TENANT_CERT}"
users = 3
{tenant}
[tenant.data]
hours_back = 3
records_per_blob = 3
records_per_hour = {{ "Audit.AzureActiveDirectory" = 6, "Audit.Exchange" = 6, "Audit.SharePoint" = 6, "Audit.General" = 3, "DLP.All" = 3 }}

[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT_CERT}"
{app}
"#
    );
    let scenario = o365_emulator::Scenario::from_toml(&text).expect("scenario");
    o365_emulator::Emulator::start(scenario)
        .await
        .expect("emulator")
}

const CONSENTED: &str = r#"manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
graph_roles = ["User.Read.All"]"#;

fn secret_app(extra: &str) -> String {
    format!("secrets = [{{ value = \"{RIGHT_SECRET}\" }}]\n{extra}")
}

fn cert_app(cert_pem: &str, extra: &str) -> String {
    format!(
        "certificates = [\"{}\"]\n{extra}",
        cert_pem.replace('\n', "\\n")
    )
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("o365-doctor-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How the collector is configured for the tenant.
enum Cred<'a> {
    Secret(&'a str),
    Pem(&'a str),
}

/// A run configuration for the tenant on the emulator's root (its default, commercial cloud).
fn config(dir: &Path, emu: &o365_emulator::Emulator, cred: Cred<'_>) -> PathBuf {
    let base = emu.base_url();
    let cred_line = match cred {
        Cred::Secret(s) => {
            std::fs::write(dir.join("app.secret"), s).unwrap();
            "client_secret_file = \"app.secret\"".to_owned()
        }
        Cred::Pem(p) => {
            std::fs::write(dir.join("app.pem"), p).unwrap();
            "certificate_file = \"app.pem\"".to_owned()
        }
    };
    let path = dir.join("collector.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[storage]
output = "out"
state = "state/collector.redb"

[[tenant]]
id = "{TENANT_CERT}"
name = "Contoso"
cloud = "custom"
login_url = "{base}"
manage_url = "{base}"
graph_url = "{base}"
client_id = "{APP_CERT}"
{cred_line}
"#
        ),
    )
    .unwrap();
    path
}

async fn doctor_config(config: &Path, json: bool) -> Run {
    let mut args = vec!["--config".to_owned(), config.display().to_string()];
    if json {
        args.push("--json".into());
    }
    doctor(args, Vec::new()).await
}

fn checks(report: &Value) -> Vec<Value> {
    report["tenants"][0]["checks"]
        .as_array()
        .expect("checks")
        .clone()
}

fn check(report: &Value, name: &str) -> Value {
    checks(report)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn status(report: &Value, name: &str) -> String {
    check(report, name)["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn fix(report: &Value, name: &str) -> String {
    check(report, name)["fix"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no fix: {report:#}"))
        .to_owned()
}

fn failing(report: &Value) -> Vec<String> {
    checks(report)
        .iter()
        .chain(report["aws"].as_array().into_iter().flatten())
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_healthy_tenant_is_all_ok_and_exits_zero() {
    let emu = emulator(
        r#"subscriptions = { "Audit.Exchange" = "enabled" }"#,
        &cert_app(&cert().cert_pem, CONSENTED),
    )
    .await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Pem(&cert().pem));
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 0, "{:#}\n{}", r, run.stderr);
    for c in checks(&r) {
        assert_eq!(c["status"], "ok", "{c:#}");
    }
    assert_eq!(r["summary"]["fail"], 0);
    assert_eq!(
        r["aws"],
        serde_json::json!([]),
        "no AWS checks for --config"
    );
    assert!(
        check(&r, "certificate")["detail"]
            .as_str()
            .unwrap()
            .contains("expires"),
        "{r:#}"
    );
    // Missing subscriptions were started; the one already on was left alone.
    assert!(
        check(&r, "subscription.Audit.General")["detail"]
            .as_str()
            .unwrap()
            .contains("started now")
    );
    assert_eq!(
        check(&r, "subscription.Audit.Exchange")["detail"],
        "enabled"
    );
    let listed: u64 = checks(&r)
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("listing."))
        .map(|c| {
            c["detail"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert!(listed > 0, "the last hour lists content: {r:#}");

    let table = doctor_config(&cfg, false).await;
    assert_eq!(table.code, 0);
    assert!(
        table.stdout.contains("graph.users") && table.stdout.contains(" 0 fail"),
        "{}",
        table.stdout
    );
    println!("{}", table.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_no_admin_consent_names_activity_feed_read_and_admin_consent() {
    let emu = emulator("", &secret_app("manage_roles = []\ngraph_roles = []")).await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Secret(RIGHT_SECRET));
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 1, "{r:#}");
    assert_eq!(
        status(&r, "token.manage"),
        "ok",
        "the token is issued, without roles"
    );
    assert_eq!(status(&r, "roles.manage"), "fail");
    let f = fix(&r, "roles.manage");
    assert!(
        f.contains("ActivityFeed.Read")
            && f.contains("admin consent")
            && f.contains("API permissions")
            && f.contains("Office 365 Management APIs"),
        "{f}"
    );
    assert!(
        check(&r, "roles.manage")["detail"]
            .as_str()
            .unwrap()
            .contains("no roles")
    );
    assert_eq!(status(&r, "subscription.Audit.Exchange"), "skipped");
    assert_eq!(status(&r, "listing.Audit.Exchange"), "skipped");
    assert!(fix(&r, "graph.users").contains("User.Read.All"));

    let table = doctor_config(&cfg, false).await;
    assert_eq!(table.code, 1);
    assert!(
        table.stdout.contains("FAIL")
            && table
                .stdout
                .contains("fix: grant admin consent for ActivityFeed.Read"),
        "{}",
        table.stdout
    );
    println!("{}", table.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_wrong_client_secret_says_to_store_the_secret_value() {
    let emu = emulator("", &secret_app(CONSENTED)).await;
    let dir = temp_dir();
    // The Secret ID pasted instead of the value.
    let cfg = config(
        &dir,
        &emu,
        Cred::Secret("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
    );
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 1, "{r:#}");
    assert_eq!(
        failing(&r),
        ["token.manage"],
        "one refusal, one failure: {r:#}"
    );
    let t = check(&r, "token.manage");
    assert_eq!(t["code"], "AADSTS7000215");
    assert!(t["detail"].as_str().unwrap().contains("AADSTS7000215"));
    let f = fix(&r, "token.manage");
    assert!(
        f.contains("secret's VALUE") && f.contains("not its Secret ID"),
        "{f}"
    );
    for name in [
        "roles.manage",
        "subscription.DLP.All",
        "listing.DLP.All",
        "token.graph",
        "graph.users",
    ] {
        assert_eq!(status(&r, name), "skipped", "{name}");
    }
    assert!(
        !run.stdout.contains("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
        "the secret is never printed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_certificate_not_uploaded_is_700027_with_the_thumbprint_sent() {
    // The app registration holds another certificate than the one the collector signs with.
    let other = {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        rcgen::CertificateParams::new(vec!["other.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
    };
    let emu = emulator("", &cert_app(&other, CONSENTED)).await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Pem(&cert().pem));
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 1, "{r:#}");
    assert_eq!(failing(&r), ["token.manage"], "{r:#}");
    let t = check(&r, "token.manage");
    assert_eq!(t["code"], "AADSTS700027");
    let credential = Credential::certificate_from_pem(&cert().pem, AssertionAlg::RS256).unwrap();
    let thumb = credential
        .certificate()
        .unwrap()
        .thumbprint_hex()
        .to_owned();
    let f = fix(&r, "token.manage");
    assert!(
        f.contains("upload the certificate") && f.contains(&thumb),
        "the fix names the thumbprint {thumb}: {f}"
    );
    assert!(t["detail"].as_str().unwrap().contains(&thumb));
    assert_eq!(
        status(&r, "certificate"),
        "ok",
        "the certificate itself is valid"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_wrong_cloud_is_90002_and_names_the_cloud_setting() {
    // A GCC High tenant, configured against the commercial login host.
    let emu = emulator("cloud = \"gcc-high\"", &secret_app(CONSENTED)).await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Secret(RIGHT_SECRET));
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 1, "{r:#}");
    assert_eq!(failing(&r), ["token.manage"], "{r:#}");
    assert_eq!(check(&r, "token.manage")["code"], "AADSTS90002");
    let f = fix(&r, "token.manage");
    assert!(
        f.contains("wrong cloud") && f.contains("set cloud = gcc-high"),
        "{f}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_disabled_subscription_is_reported_started_again_and_listed() {
    let emu = emulator(
        r#"subscriptions = { "Audit.Exchange" = "disabled" }"#,
        &secret_app(CONSENTED),
    )
    .await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Secret(RIGHT_SECRET));
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 0, "repaired, so a warning only: {r:#}");
    let s = check(&r, "subscription.Audit.Exchange");
    assert_eq!(s["status"], "warn", "{s:#}");
    let detail = s["detail"].as_str().unwrap();
    assert!(
        detail.contains("was disabled") && detail.contains("started it again"),
        "{detail}"
    );
    assert!(
        fix(&r, "subscription.Audit.Exchange").contains("who disabled it"),
        "{s:#}"
    );
    assert_eq!(status(&r, "listing.Audit.Exchange"), "ok", "{r:#}");
    // And it stays on: a second run finds it enabled.
    let again = doctor_config(&cfg, true).await.json();
    assert_eq!(
        check(&again, "subscription.Audit.Exchange")["detail"],
        "enabled"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_without_graph_permission_names_user_read_all() {
    let emu = emulator(
        "",
        &secret_app(r#"manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]"#),
    )
    .await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Secret(RIGHT_SECRET));
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 1, "{r:#}");
    assert_eq!(failing(&r), ["roles.graph", "graph.users"], "{r:#}");
    let users = check(&r, "graph.users");
    assert_eq!(users["code"], "Authorization_RequestDenied");
    let f = fix(&r, "graph.users");
    assert!(
        f.contains("Microsoft Graph application permission User.Read.All")
            && f.contains("admin consent"),
        "{f}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_audit_log_off_says_to_turn_on_audit_log_search() {
    let emu = emulator("audit_enabled = false", &secret_app(CONSENTED)).await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Secret(RIGHT_SECRET));
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 1, "{r:#}");
    for ct in shared::model::ContentType::ALL {
        let name = format!("subscription.{ct}");
        assert_eq!(status(&r, &name), "fail", "{name}");
        assert_eq!(check(&r, &name)["code"], "DataServiceException");
        let f = fix(&r, &name);
        assert!(
            f.contains("turn on unified audit logging in Purview"),
            "{f}"
        );
        assert_eq!(status(&r, &format!("listing.{ct}")), "skipped");
    }
    assert_eq!(status(&r, "graph.users"), "ok");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_warns_before_the_certificate_expires() {
    let soon = chrono::Utc::now() + chrono::Duration::days(10);
    let (pem, cert_pem) = {
        use chrono::Datelike;
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["soon.example".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(
            soon.year(),
            u8::try_from(soon.month()).unwrap(),
            u8::try_from(soon.day()).unwrap(),
        );
        let cert = params.self_signed(&key).unwrap();
        (format!("{}{}", key.serialize_pem(), cert.pem()), cert.pem())
    };
    let emu = emulator("", &cert_app(&cert_pem, CONSENTED)).await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Pem(&pem));
    let run = doctor_config(&cfg, true).await;
    let r = run.json();
    assert_eq!(run.code, 0, "a warning does not fail: {r:#}");
    let c = check(&r, "certificate");
    assert_eq!(c["status"], "warn", "{c:#}");
    assert!(c["detail"].as_str().unwrap().contains("under 30 days"));
    assert!(fix(&r, "certificate").contains("keygen"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_usage_errors_exit_two() {
    let run = doctor(Vec::new(), Vec::new()).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
    let emu = emulator("", &secret_app(CONSENTED)).await;
    let dir = temp_dir();
    let cfg = config(&dir, &emu, Cred::Secret(RIGHT_SECRET));
    let run = doctor(
        vec![
            "--config".into(),
            cfg.display().to_string(),
            "--tenant".into(),
            TENANT_SECRET.into(),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is not configured"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_deployment_on_moto() {
    use shared::model::{ContentType, CredentialRef, SecretRef};
    use shared::store::StateStore;

    let stack = integration_tests::stack::Stack::create(3).await;
    let emu = emulator("", &secret_app(CONSENTED)).await;
    let dir = temp_dir();
    let secret_file = dir.join("app.secret");
    std::fs::write(&secret_file, RIGHT_SECRET).unwrap();
    let base = emu.base_url();
    let spec: shared::config::TenantSpec = toml::from_str(&format!(
        "id = \"{TENANT_CERT}\"\ncloud = \"custom\"\nlogin_url = \"{base}\"\nmanage_url = \"{base}\"\ngraph_url = \"{base}\"\nclient_id = \"{APP_CERT}\"\nclient_secret_file = \"unused\"\n"
    ))
    .unwrap();
    let mut tenant = spec.into_tenant(None).unwrap();
    tenant.credential = CredentialRef::Secret {
        secret: SecretRef::File(secret_file.display().to_string()),
    };
    stack.store().put_tenant(&tenant).await.unwrap();

    // Exchange records written a moment ago; nothing for the other content types.
    let key = format!(
        "ocsf/tenant_id={TENANT_CERT}/content_type=Audit.Exchange/event_date={}/blob1.ndjson.gz",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    shared::aws::s3_client(&stack.conf, true)
        .put_object()
        .bucket(&stack.bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();

    let args = vec![
        "--json".to_owned(),
        "--table".into(),
        stack.table.clone(),
        "--queue-url".into(),
        stack.queue_url.clone(),
        "--dlq-url".into(),
        stack.dlq_url.clone(),
        "--bucket".into(),
        stack.bucket.clone(),
        "--aws-endpoint-url".into(),
        stack.endpoint.clone(),
    ];
    let env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();

    let run = doctor(args.clone(), env.clone()).await;
    let r = run.json();
    assert_eq!(run.code, 0, "{r:#}\n{}", run.stderr);
    let aws: Vec<Value> = r["aws"].as_array().unwrap().clone();
    let aws_check = |report: &Value, name: &str| -> Value {
        report["aws"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {report:#}"))
    };
    assert_eq!(aws.len(), 4, "{r:#}");
    for name in ["aws.table", "aws.queue", "aws.dlq", "aws.bucket"] {
        assert_eq!(aws_check(&r, name)["status"], "ok", "{name}: {r:#}");
    }
    assert!(
        aws_check(&r, "aws.table")["detail"]
            .as_str()
            .unwrap()
            .contains(&stack.table)
    );
    let last = check(&r, "last_record.Audit.Exchange");
    assert_eq!(last["status"], "ok", "{last:#}");
    let detail = last["detail"].as_str().unwrap();
    assert!(
        detail.contains("last record written") && detail.contains(" ago") && detail.contains(&key),
        "{detail}"
    );
    for ct in ContentType::ALL
        .into_iter()
        .filter(|c| *c != ContentType::Exchange)
    {
        let c = check(&r, &format!("last_record.{ct}"));
        assert_eq!(c["status"], "warn", "{c:#}");
        assert!(
            c["detail"]
                .as_str()
                .unwrap()
                .contains("no records in the last day")
        );
    }

    // A dead-lettered job makes the DLQ check fail.
    aws_sdk_sqs::Client::new(&stack.conf)
        .send_message()
        .queue_url(&stack.dlq_url)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let run = doctor(args, env).await;
    let r = run.json();
    assert_eq!(run.code, 1, "{r:#}");
    assert_eq!(failing(&r), ["aws.dlq"], "{r:#}");
    let dlq = aws_check(&r, "aws.dlq");
    assert!(
        dlq["detail"].as_str().unwrap().contains("1 dead-lettered"),
        "{dlq:#}"
    );
    assert!(
        dlq["fix"]
            .as_str()
            .unwrap()
            .contains("inspect the DLQ: each message has a `reason` attribute"),
        "{dlq:#}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
