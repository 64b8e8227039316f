//! `keygen` through the CLI binary: its certificate authenticates against the emulator, and the
//! key PEM lands in Secrets Manager (on moto) when asked.

use std::sync::Arc;

use integration_tests::runtime::function_binary;
use shared::auth::{Audience, Credential, TokenProvider};
use shared::model::AssertionAlg;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_certificate_authenticates_and_is_stored_in_secrets_manager() {
    let dir = std::env::temp_dir().join(format!("o365-keygen-{}", uuid::Uuid::new_v4()));
    let secret_name = format!("o365-collector/{}", uuid::Uuid::new_v4());
    let bin = function_binary("o365-collector");
    let (d, name, endpoint) = (
        dir.clone(),
        secret_name.clone(),
        integration_tests::moto::endpoint(),
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args([
                "keygen",
                "--name",
                "contoso-collector",
                "--days",
                "30",
                "--secret-name",
                &name,
                "--out",
            ])
            .arg(&d)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .output()
            .expect("run keygen")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert_pem = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let key_path = dir.join("contoso-collector.pem");
    let bundle = std::fs::read_to_string(&key_path).unwrap();
    assert!(
        cert_pem.contains("BEGIN CERTIFICATE") && !cert_pem.contains("PRIVATE KEY"),
        "cert.pem is the certificate only"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let credential = Credential::certificate_from_pem(&bundle, AssertionAlg::PS256).unwrap();
    let info = credential.certificate().unwrap();
    assert!(
        stdout.contains(info.x5t()) && stdout.contains(info.x5t_s256()),
        "thumbprints printed:\n{stdout}"
    );
    let days_left = (info.not_after().expect("notAfter") - chrono::Utc::now()).num_days();
    assert!((29..=30).contains(&days_left), "validity {days_left} days");

    // The administrator uploads cert.pem; the collector signs with the key PEM.
    let cert_line = cert_pem.replace('\n', "\\n");
    let scenario = o365_emulator::Scenario::from_toml(&format!(
        r#"
[[tenant]]
id = "{TENANT_CERT}"
[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT_CERT}"
certificates = ["{cert_line}"]
manage_roles = ["ActivityFeed.Read"]
"#
    ))
    .unwrap();
    let emu = o365_emulator::Emulator::start(scenario).await.unwrap();
    let base = emu.base_url();
    let spec: shared::config::TenantSpec = toml::from_str(&format!(
        "id = \"{TENANT_CERT}\"\ncloud = \"custom\"\nlogin_url = \"{base}\"\nmanage_url = \"{base}\"\ngraph_url = \"{base}\"\nclient_id = \"{APP_CERT}\"\ncertificate_file = \"unused\"\n"
    ))
    .unwrap();
    let tenant = spec.into_tenant(None).unwrap();
    let tokens = Arc::new(TokenProvider::new(
        shared::api::http_client(),
        &tenant,
        credential,
    ));
    let token = tokens
        .token(Audience::Manage)
        .await
        .expect("keygen's certificate authenticates");
    assert!(!token.bearer().is_empty());

    // And the same PEM is in Secrets Manager, readable by ARN.
    let arn = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("secret:"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the ARN is printed")
        .to_owned();
    let conf = integration_tests::moto::config().await;
    let stored = aws_sdk_secretsmanager::Client::new(&conf)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    assert_eq!(stored, bundle);
    let _ = std::fs::remove_dir_all(dir);
}
