//! Shared pieces of the end-to-end tests: the two-tenant scenario, tenants, and the
//! exactly-once check against the emulator's ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use o365_emulator::{Emulator, Scenario};
use serde_json::Value;
use shared::config::TenantSpec;
use shared::model::Tenant;

pub const TENANT_CERT: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";
pub const TENANT_SECRET: &str = "9b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f";
pub const APP_CERT: &str = "b7100838-7c8c-493d-a610-2e0f41bdd674";
pub const APP_SECRET: &str = "d9322a5a-9eae-4b5f-8832-402163dff896";
pub const SECRET: &str = "e2e~secret.value";

/// A key and self-signed certificate; `pem` is what the collector is given (key + certificate).
pub struct Cert {
    pub pem: String,
    pub cert_pem: String,
}

pub fn cert() -> &'static Cert {
    static C: OnceLock<Cert> = OnceLock::new();
    C.get_or_init(|| {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("key");
        let cert = rcgen::CertificateParams::new(vec!["collector.example".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        Cert {
            pem: format!("{}{}", key.serialize_pem(), cert.pem()),
            cert_pem: cert.pem(),
        }
    })
}

/// Two tenants: one commercial with a certificate app, one GCC High with a client secret; all
/// five content types each; paging, throttling, 5xx, late, duplicated and expired content.
pub fn scenario(extra: &str) -> Scenario {
    let cert = cert().cert_pem.replace('\n', "\\n");
    let text = format!(
        r#"
seed = 11
page_size = 5
clock_offset_secs = -1800

[[tenant]]
id = "{TENANT_CERT}"
domain = "contoso.onmicrosoft.com"
users = 8
[tenant.data]
hours_back = 5
records_per_blob = 4
late_fraction = 0.3
late_by_secs = 600
duplicate_fraction = 0.1
expired_fraction = 0.04
expire_after_secs = 0
records_per_hour = {{ "Audit.AzureActiveDirectory" = 10, "Audit.Exchange" = 10, "Audit.SharePoint" = 8, "Audit.General" = 6, "DLP.All" = 3 }}

[[tenant]]
id = "{TENANT_SECRET}"
domain = "agency.onmicrosoft.us"
cloud = "gcc-high"
users = 5
[tenant.data]
hours_back = 5
records_per_blob = 4
late_fraction = 0.3
late_by_secs = 600
duplicate_fraction = 0.1
records_per_hour = {{ "Audit.AzureActiveDirectory" = 6, "Audit.Exchange" = 6, "Audit.SharePoint" = 6, "Audit.General" = 4, "DLP.All" = 2 }}

[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT_CERT}"
certificates = ["{cert}"]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]

[[app]]
client_id = "{APP_SECRET}"
home_tenant = "{TENANT_SECRET}"
secrets = [{{ value = "{SECRET}" }}]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]

[[fault]]
kind = "af429"
endpoints = ["content", "blob"]
rate = 0.08

[[fault]]
kind = "internal-error"
endpoints = ["blob"]
rate = 0.05

[[fault]]
kind = "unavailable"
endpoints = ["content"]
rate = 0.03
{extra}
"#
    );
    Scenario::from_toml(&text).expect("scenario")
}

/// The two tenants as the collector knows them: custom endpoints on the emulator; the GCC High
/// one under the emulator's `/gcc-high` prefix with the GCC High resources.
pub fn tenants(
    emu: &Emulator,
    cert_pem_file: &str,
    secret: shared::model::SecretRef,
) -> Vec<Tenant> {
    let base = emu.base_url();
    let high = emu.cloud_url(o365_emulator::Cloud::GccHigh);
    let mut a: TenantSpec = toml::from_str(&format!(
        r#"
id = "{TENANT_CERT}"
cloud = "custom"
login_url = "{base}"
manage_url = "{base}"
graph_url = "{base}"
client_id = "{APP_CERT}"
certificate_file = "{cert_pem_file}"
"#
    ))
    .expect("spec");
    a.assertion_alg = shared::model::AssertionAlg::PS256;
    let b: TenantSpec = toml::from_str(&format!(
        r#"
id = "{TENANT_SECRET}"
cloud = "custom"
login_url = "{high}"
manage_url = "{high}"
graph_url = "{high}"
manage_resource = "https://manage.office365.us"
graph_resource = "https://graph.microsoft.us"
client_id = "{APP_SECRET}"
client_secret_file = "unused"
"#
    ))
    .expect("spec");
    let mut b = b.into_tenant(None).expect("tenant b");
    b.credential = shared::model::CredentialRef::Secret { secret };
    vec![a.into_tenant(None).expect("tenant a"), b]
}

/// What a collection wrote, per (tenant, content type): record id → times written.
pub type Written = BTreeMap<(String, String), BTreeMap<String, u32>>;

/// Tenant and content type of an events object, from its Hive-style key
/// (`ocsf/tenant_id=…/content_type=…/event_date=…/…`).
pub fn partition(key: &str) -> (String, String) {
    let part = |name: &str| {
        key.split('/')
            .find_map(|seg| seg.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{key} has no {name}= partition"))
            .to_owned()
    };
    (part("tenant_id"), part("content_type"))
}

/// Adds the OCSF events of one object (its key gives tenant and content type).
pub fn add_lines(written: &mut Written, key: &str, lines: &[Value]) {
    let part = partition(key);
    for l in lines {
        let id = l["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            l["unmapped"]["Id"].as_str(),
            Some(id.as_str()),
            "metadata.uid is the Id of the raw record kept in unmapped"
        );
        check_ocsf(&part.1, l);
        *written
            .entry(part.clone())
            .or_default()
            .entry(id)
            .or_default() += 1;
    }
}

/// Every record listable at `must_by` is written exactly once, and nothing is written that the
/// emulator did not make available by `may_by`.
pub fn assert_exactly_once(
    emu: &Emulator,
    written: &Written,
    must_by: DateTime<Utc>,
    may_by: DateTime<Utc>,
) -> usize {
    let must = emu.record_ids_available_by(must_by, false);
    let may = emu.record_ids_available_by(may_by, true);
    let mut total = 0;
    for (key, ids) in written {
        for (id, n) in ids {
            assert_eq!(*n, 1, "record {id} of {key:?} written {n} times");
            assert!(
                may.get(key).is_some_and(|s| s.contains(id)),
                "record {id} of {key:?} was never made available (invented)"
            );
        }
    }
    for (key, ids) in &must {
        let got: BTreeSet<&String> = written
            .get(key)
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let missing: Vec<&String> = ids.iter().filter(|id| !got.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{} records of {key:?} lost, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        total += ids.len();
    }
    assert_eq!(
        must.len(),
        10,
        "two tenants x five content types had content"
    );
    total
}

/// What an analyst relies on in each OCSF event: the class fits the content type, `time` is the
/// record's `CreationTime` read as UTC, the actor is the record's user, the source IP is the
/// record's client address, and a failed sign-in is a failure.
pub fn check_ocsf(content_type: &str, e: &Value) {
    let raw = &e["unmapped"];
    let class = e["class_uid"].as_u64().unwrap_or(0);
    let allowed: &[u64] = match content_type {
        "Audit.AzureActiveDirectory" => &[3001, 3002, 3003, 3004, 3005, 3006, 6003],
        "Audit.Exchange" => &[4009, 6003, 3004, 3005, 1001, 6001],
        "Audit.SharePoint" => &[6006, 6001, 6003],
        "DLP.All" => &[2006, 2004, 2001],
        _ => &[6003, 6001, 6006, 3002, 3005, 4009, 2006],
    };
    assert!(
        allowed.contains(&class),
        "{content_type}: class {class} for {}",
        raw["Operation"]
    );
    assert_eq!(
        e["type_uid"].as_u64(),
        Some(class * 100 + e["activity_id"].as_u64().unwrap_or(0))
    );
    assert_eq!(e["metadata"]["version"], shared::normalize::OCSF_VERSION);
    if let Some(ct) = raw["CreationTime"].as_str() {
        let t = chrono::NaiveDateTime::parse_from_str(ct, "%Y-%m-%dT%H:%M:%S")
            .expect("emulator CreationTime")
            .and_utc();
        assert_eq!(
            e["time"].as_i64(),
            Some(t.timestamp_millis()),
            "time is CreationTime as UTC"
        );
    }
    if let Some(user) = raw["UserId"].as_str() {
        assert_eq!(
            e["actor"]["user"]["name"].as_str(),
            Some(user),
            "actor is the record's user"
        );
    }
    let client = ["ClientIP", "ClientIPAddress", "ActorIpAddress"]
        .iter()
        .find_map(|f| raw[*f].as_str().and_then(shared::normalize::parse_ip));
    match client {
        Some((ip, _)) => assert_eq!(
            e["src_endpoint"]["ip"].as_str(),
            Some(ip.to_string().as_str())
        ),
        None => assert!(
            e["src_endpoint"]["ip"].is_null(),
            "no valid client address, no IP: {}",
            e["src_endpoint"]
        ),
    }
    if raw["Operation"] == "UserLoginFailed" {
        assert_eq!(
            e["status_id"].as_u64(),
            Some(2),
            "a failed sign-in is a failure"
        );
    }
}

/// Feeds the queue to the fetcher until it is empty, as the SQS event source mapping would
/// (batches of up to 10; failed items visible again at once). Returns the fetcher invocations
/// and the items left for a retry.
pub async fn drain(
    stack: &integration_tests::stack::Stack,
    fetcher: &mut integration_tests::runtime::LambdaProcess,
) -> (u32, usize) {
    let mut invocations = 0;
    let mut retried = 0;
    let mut empty_polls = 0;
    while empty_polls < 2 {
        let (event, handles) = stack
            .receive_event(&stack.queue_url, std::time::Duration::from_secs(1))
            .await;
        if handles.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        let response = fetcher
            .invoke(event, std::time::Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("fetcher failed: {e:?}\n{}", fetcher.logs()));
        retried += stack.settle(&stack.queue_url, &handles, &response).await;
        invocations += 1;
        assert!(invocations < 500, "the queue never drains");
    }
    (invocations, retried)
}

/// Puts the two tenants of [`tenants`] into the stack's table: tenant A's certificate PEM in a
/// file of a new temporary folder (returned), tenant B's client secret in Secrets Manager.
pub async fn deploy_tenants(
    stack: &integration_tests::stack::Stack,
    emu: &Emulator,
) -> std::path::PathBuf {
    use shared::store::StateStore;
    let dir = std::env::temp_dir().join(format!("o365-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pem_file = dir.join("tenant-a.pem");
    std::fs::write(&pem_file, &cert().pem).expect("pem file");
    let arn = aws_sdk_secretsmanager::Client::new(&stack.conf)
        .create_secret()
        .name(format!("o365-collector/{}", uuid::Uuid::new_v4()))
        .secret_string(SECRET)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let store = stack.store();
    for t in tenants(
        emu,
        &pem_file.display().to_string(),
        shared::model::SecretRef::SecretsManager(arn),
    ) {
        store.put_tenant(&t).await.expect("put tenant");
    }
    dir
}
