//! A rotated client secret or certificate is picked up by a warm process (issue finding #10):
//! the token provider reads the credential again from its source when Entra refuses it
//! (AADSTS7000215/7000222/700027) and retries once, and re-reads it once it is older than the
//! credential TTL. Against the in-process emulator, whose app credentials the tests rotate.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use o365_emulator::scenario::SecretSpec;
use o365_emulator::{Emulator, Scenario};
use shared::api::{ActivityApi, http_client};
use shared::app::ApiProvider;
use shared::app::clients::TenantClients;
use shared::auth::{Audience, AuthError, Credential, TokenProvider, aadsts_fix};
use shared::model::{
    AssertionAlg, CloudKind, ContentType, CredentialRef, Endpoints, SecretRef, Tenant, TenantId,
    TokenEndpoint,
};
use shared::retry::RetryPolicy;
use shared::secrets::LocalSecrets;

const TENANT: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";
const APP_SECRET: &str = "a6099727-6b7b-482c-b509-1df309acc563";
const APP_CERT: &str = "b7100838-7c8c-493d-a610-2e0f41bdd674";
const OLD_SECRET: &str = "old~s3cr3t.value-before-rotation";
const NEW_SECRET: &str = "new~s3cr3t.value-after-rotation";

/// An RSA key and its self-signed certificate.
struct Cert {
    /// Key then certificate, as the collector stores it.
    pem: String,
    cert_pem: String,
}

impl Cert {
    fn generate() -> Cert {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("rsa key");
        let cert = rcgen::CertificateParams::new(vec!["collector.example".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        Cert {
            pem: format!("{}{}", key.serialize_pem(), cert.pem()),
            cert_pem: cert.pem(),
        }
    }

    fn thumbprint(&self) -> String {
        Credential::certificate_from_pem(&self.pem, AssertionAlg::RS256)
            .expect("pem")
            .certificate()
            .expect("certificate")
            .thumbprint_hex()
            .to_owned()
    }
}

async fn emulator(cert: Option<&Cert>) -> Emulator {
    let certs = cert
        .map(|c| format!("\"{}\"", c.cert_pem.replace('\n', "\\n")))
        .unwrap_or_default();
    let toml = format!(
        r#"
seed = 7
token_lifetime_secs = 3599

[[tenant]]
id = "{TENANT}"
users = 2
subscriptions = {{ "Audit.Exchange" = "enabled" }}
[tenant.data]
records_per_hour = {{}}

[[app]]
client_id = "{APP_SECRET}"
home_tenant = "{TENANT}"
secrets = [{{ value = "{OLD_SECRET}" }}]
manage_roles = ["ActivityFeed.Read"]
graph_roles = ["User.Read.All"]

[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT}"
certificates = [{certs}]
manage_roles = ["ActivityFeed.Read"]
"#
    );
    Emulator::start(Scenario::from_toml(&toml).expect("scenario"))
        .await
        .expect("emulator")
}

fn tenant(emu: &Emulator, client_id: &str, credential: CredentialRef) -> Tenant {
    let base = emu.base_url();
    Tenant {
        id: TenantId::parse(TENANT).expect("guid"),
        name: None,
        cloud: CloudKind::Custom,
        endpoints: Endpoints {
            login: base.clone(),
            manage: base.clone(),
            graph: base,
            manage_resource: "https://manage.office.com".into(),
            graph_resource: "https://graph.microsoft.com".into(),
        },
        client_id: client_id.to_owned(),
        credential,
        token_endpoint: TokenEndpoint::V2,
        content_types: vec![ContentType::Exchange],
        publisher_id: TENANT.to_owned(),
        enabled: true,
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        deadline: None,
    }
}

fn count(emu: &Emulator, key: &str) -> u64 {
    emu.request_summary()
        .by_endpoint_status
        .get(key)
        .copied()
        .unwrap_or(0)
}

fn secret(value: &str) -> SecretSpec {
    SecretSpec {
        value: value.to_owned(),
        expires: None,
    }
}

/// A file in a fresh temporary folder, removed on drop.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("o365-rotation-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write");
        TempFile { dir, path }
    }

    /// Rewrites the file as an operator (or a sync job) would: a new file renamed over it.
    fn rewrite(&self, contents: &str) {
        let tmp = self.dir.join("rewrite.tmp");
        std::fs::write(&tmp, contents).expect("write");
        std::fs::rename(&tmp, &self.path).expect("rename");
    }

    fn reference(&self) -> SecretRef {
        SecretRef::File(self.path.display().to_string())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything logged while the guard lives (this thread; `#[tokio::test]` runs on one).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A credential source whose value a test changes, counting its reads.
#[derive(Clone)]
struct Switchable {
    value: Arc<Mutex<Result<String, String>>>,
    reads: Arc<AtomicUsize>,
}

impl Switchable {
    fn new(value: &str) -> Switchable {
        Switchable {
            value: Arc::new(Mutex::new(Ok(value.to_owned()))),
            reads: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn set(&self, value: &str) {
        *self.value.lock().expect("value") = Ok(value.to_owned());
    }

    fn fail(&self, message: &str) {
        *self.value.lock().expect("value") = Err(message.to_owned());
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// A provider for `t` that starts with the current value and reads it again from `self`;
    /// each read takes `delay` (a slow Secrets Manager).
    fn provider(&self, t: &Tenant, ttl: Duration, delay: Duration) -> TokenProvider {
        let initial = self
            .value
            .lock()
            .expect("value")
            .clone()
            .expect("initial value");
        let me = self.clone();
        let source = move || {
            let me = me.clone();
            async move {
                me.reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let value = me.value.lock().expect("value").clone();
                value
                    .map(Credential::secret)
                    .map_err(|message| AuthError::Source {
                        message,
                        retryable: true,
                    })
            }
        };
        TokenProvider::new(http_client(), t, Credential::secret(initial))
            .with_retry(fast())
            .with_source(Arc::new(source))
            .with_credential_ttl(ttl)
    }
}

fn assert_no_secret_in(text: &str) {
    for s in [OLD_SECRET, NEW_SECRET, "wrong~secret"] {
        assert!(!text.contains(s), "a secret value leaked: {text}");
    }
    assert!(!text.contains("PRIVATE KEY"), "key material leaked: {text}");
}

// ---------------------------------------------------------------------------------------------
// Rotation picked up after Entra refuses the old credential

#[tokio::test]
async fn a_rotated_secret_file_is_read_again_when_entra_refuses_the_old_one() {
    let (logs, _guard) = Logs::capture();
    let emu = emulator(None).await;
    let file = TempFile::new("secret.txt", &format!("{OLD_SECRET}\n"));
    let t = tenant(
        &emu,
        APP_SECRET,
        CredentialRef::Secret {
            secret: file.reference(),
        },
    );
    // The production path: a warm process keeps this client (and its token provider).
    let clients = TenantClients::new(http_client(), LocalSecrets, fast());
    let api = clients.api(&t).await.expect("client");
    api.list_subscriptions().await.expect("first call");
    assert_eq!(count(&emu, "token 200"), 1);

    // The operator rotates: new secret in Entra (old one deleted) and in the stored file.
    assert!(emu.replace_app_secrets(APP_SECRET, &[secret(NEW_SECRET)]));
    file.rewrite(&format!("{NEW_SECRET}\n"));
    // The cached access token expires: the next call gets a 401 and a new token is minted.
    emu.advance_clock(chrono::Duration::hours(2));

    api.list_subscriptions()
        .await
        .expect("the call after the rotation succeeds");
    assert_eq!(count(&emu, "subscriptions 401"), 1, "the expired token");
    assert_eq!(count(&emu, "token 401"), 1, "the old secret, refused once");
    assert_eq!(count(&emu, "token 200"), 2, "then the reloaded secret");
    assert_eq!(api.tokens().credential_reloads(), 1);

    // Cached: no further token request, no further reload.
    api.list_subscriptions().await.expect("cached token");
    assert_eq!(count(&emu, "token 200") + count(&emu, "token 401"), 3);

    let reloaded = logs.lines_with("credential reloaded");
    assert_eq!(reloaded.len(), 1, "{}", logs.text());
    assert!(
        reloaded[0].contains("INFO")
            && reloaded[0].contains(TENANT)
            && reloaded[0].contains("reason=rejected"),
        "{}",
        reloaded[0]
    );
    assert_no_secret_in(&logs.text());
    assert_no_secret_in(&format!("{:?}", api.tokens()));
}

#[tokio::test]
async fn a_rotated_certificate_pem_is_read_again_when_entra_refuses_the_old_one() {
    let (logs, _guard) = Logs::capture();
    let old = Cert::generate();
    let new = Cert::generate();
    let emu = emulator(Some(&old)).await;
    let file = TempFile::new("collector.pem", &old.pem);
    let t = tenant(
        &emu,
        APP_CERT,
        CredentialRef::Certificate {
            pem: file.reference(),
            alg: AssertionAlg::RS256,
        },
    );
    let clients = TenantClients::new(http_client(), LocalSecrets, fast());
    let api = clients.api(&t).await.expect("client");
    let tokens = api.tokens().clone();
    tokens.token(Audience::Manage).await.expect("first token");
    assert_eq!(
        tokens
            .credential()
            .certificate()
            .expect("cert")
            .thumbprint_hex(),
        old.thumbprint()
    );

    // New certificate uploaded, old one deleted; the PEM file rewritten with the new key+cert.
    assert!(emu.replace_app_certificates(APP_CERT, std::slice::from_ref(&new.cert_pem)));
    file.rewrite(&new.pem);
    tokens.invalidate(Audience::Manage);

    tokens
        .token(Audience::Manage)
        .await
        .expect("a token with the new certificate");
    assert_eq!(
        count(&emu, "token 401"),
        1,
        "the old certificate, refused once"
    );
    assert_eq!(count(&emu, "token 200"), 2);
    assert_eq!(tokens.credential_reloads(), 1);
    assert_eq!(
        tokens
            .credential()
            .certificate()
            .expect("cert")
            .thumbprint_hex(),
        new.thumbprint()
    );
    api.list_subscriptions()
        .await
        .expect("the API with the new token");

    let reloaded = logs.lines_with("credential reloaded");
    assert_eq!(reloaded.len(), 1, "{}", logs.text());
    assert!(
        reloaded[0].contains("reason=rejected") && reloaded[0].contains(&new.thumbprint()),
        "{}",
        reloaded[0]
    );
    assert_no_secret_in(&logs.text());
    assert_no_secret_in(&format!("{tokens:?}"));
}

#[tokio::test]
async fn concurrent_refusals_read_the_source_once() {
    let emu = emulator(None).await;
    let t = tenant(
        &emu,
        APP_SECRET,
        CredentialRef::Secret {
            secret: SecretRef::Env("UNUSED".into()),
        },
    );
    let source = Switchable::new(OLD_SECRET);
    let tokens =
        Arc::new(source.provider(&t, Duration::from_secs(3600), Duration::from_millis(100)));
    tokens.token(Audience::Manage).await.expect("manage");
    tokens.token(Audience::Graph).await.expect("graph");

    assert!(emu.replace_app_secrets(APP_SECRET, &[secret(NEW_SECRET)]));
    source.set(NEW_SECRET);
    tokens.invalidate(Audience::Manage);
    tokens.invalidate(Audience::Graph);

    let mut tasks = Vec::new();
    for i in 0..8 {
        let tokens = tokens.clone();
        let audience = if i % 2 == 0 {
            Audience::Manage
        } else {
            Audience::Graph
        };
        tasks.push(tokio::spawn(async move { tokens.token(audience).await }));
    }
    for task in tasks {
        task.await.expect("join").expect("token after the rotation");
    }
    assert_eq!(source.reads(), 1, "one read of the source for all callers");
    assert_eq!(tokens.credential_reloads(), 1);
    assert_eq!(
        count(&emu, "token 200"),
        4,
        "2 before, 1 per audience after"
    );
}

// ---------------------------------------------------------------------------------------------
// Rotation picked up on age

#[tokio::test]
async fn a_credential_older_than_its_ttl_is_read_again_before_the_next_token() {
    let (logs, _guard) = Logs::capture();
    let emu = emulator(None).await;
    let t = tenant(
        &emu,
        APP_SECRET,
        CredentialRef::Secret {
            secret: SecretRef::Env("UNUSED".into()),
        },
    );
    let ttl = Duration::from_millis(300);
    let source = Switchable::new(OLD_SECRET);
    let tokens = source.provider(&t, ttl, Duration::ZERO);
    assert_eq!(tokens.credential_ttl(), ttl);
    tokens.token(Audience::Manage).await.expect("first token");

    // Younger than the TTL: a new token is minted with the credential in memory.
    tokens.invalidate(Audience::Manage);
    tokens.token(Audience::Manage).await.expect("second token");
    assert_eq!(source.reads(), 0);

    // The operator rotates; Entra accepts only the new secret.
    assert!(emu.replace_app_secrets(APP_SECRET, &[secret(NEW_SECRET)]));
    source.set(NEW_SECRET);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    tokens.invalidate(Audience::Manage);
    tokens
        .token(Audience::Manage)
        .await
        .expect("the re-read secret, without a refusal");
    assert_eq!(source.reads(), 1);
    assert_eq!(tokens.credential_reloads(), 1);
    assert_eq!(
        count(&emu, "token 401"),
        0,
        "no request with the old secret"
    );
    assert_eq!(count(&emu, "token 200"), 3);

    // Unchanged source after another TTL: read again, nothing replaced, nothing logged at info.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    tokens.invalidate(Audience::Manage);
    tokens.token(Audience::Manage).await.expect("fourth token");
    assert_eq!(source.reads(), 2);
    assert_eq!(tokens.credential_reloads(), 1);

    let reloaded = logs.lines_with("credential reloaded");
    assert_eq!(reloaded.len(), 1, "{}", logs.text());
    assert!(
        reloaded[0].contains("INFO")
            && reloaded[0].contains(TENANT)
            && reloaded[0].contains("reason=ttl"),
        "{}",
        reloaded[0]
    );
    assert_no_secret_in(&logs.text());
}

#[tokio::test]
async fn the_default_credential_ttl_is_one_hour() {
    let emu = emulator(None).await;
    let t = tenant(
        &emu,
        APP_SECRET,
        CredentialRef::Secret {
            secret: SecretRef::Env("UNUSED".into()),
        },
    );
    let tokens = TokenProvider::new(http_client(), &t, Credential::secret(OLD_SECRET.into()));
    assert_eq!(tokens.credential_ttl(), Duration::from_secs(3600));
    assert_eq!(
        shared::auth::DEFAULT_CREDENTIAL_TTL,
        Duration::from_secs(3600)
    );
}

#[tokio::test]
async fn a_failed_re_read_keeps_the_credential_in_use() {
    let (logs, _guard) = Logs::capture();
    let emu = emulator(None).await;
    let t = tenant(
        &emu,
        APP_SECRET,
        CredentialRef::Secret {
            secret: SecretRef::Env("UNUSED".into()),
        },
    );
    let ttl = Duration::from_millis(200);
    let source = Switchable::new(OLD_SECRET);
    let tokens = source.provider(&t, ttl, Duration::ZERO);
    tokens.token(Audience::Manage).await.expect("first token");

    source.fail("Secrets Manager secret arn:x: access denied: grant secretsmanager:GetSecretValue");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    tokens.invalidate(Audience::Manage);
    tokens
        .token(Audience::Manage)
        .await
        .expect("the old credential still works");
    assert_eq!(source.reads(), 1);
    assert_eq!(tokens.credential_reloads(), 0);
    let failed = logs.lines_with("Reading the credential again failed");
    assert_eq!(failed.len(), 1, "{}", logs.text());
    assert!(
        failed[0].contains("WARN")
            && failed[0].contains("access denied")
            && failed[0].contains("reason=ttl"),
        "{}",
        failed[0]
    );

    // Entra now refuses the old secret and the source still cannot be read: the refusal, with
    // its fix, is what the caller gets.
    assert!(emu.replace_app_secrets(APP_SECRET, &[secret(NEW_SECRET)]));
    tokens.invalidate(Audience::Manage);
    let e = tokens.token(Audience::Manage).await.unwrap_err();
    assert!(
        matches!(e, AuthError::Aadsts { code: 7000215, .. }),
        "{e:?}"
    );
    assert_eq!(e.fix(), aadsts_fix(7000215));
    assert_no_secret_in(&logs.text());
}

// ---------------------------------------------------------------------------------------------
// A source that still holds the refused credential

#[tokio::test]
async fn a_re_read_giving_the_same_bad_secret_reports_the_refusal_once() {
    let emu = emulator(None).await;
    let t = tenant(
        &emu,
        APP_SECRET,
        CredentialRef::Secret {
            secret: SecretRef::Env("UNUSED".into()),
        },
    );
    let source = Switchable::new("wrong~secret");
    let tokens = source.provider(&t, Duration::from_secs(3600), Duration::ZERO);

    let e = tokens.token(Audience::Manage).await.unwrap_err();
    match &e {
        AuthError::Aadsts { code, fix, .. } => {
            assert_eq!(*code, 7000215);
            assert_eq!(*fix, aadsts_fix(7000215));
        }
        other => panic!("expected AADSTS7000215, got {other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("AADSTS7000215") && text.contains("VALUE"),
        "{text}"
    );
    assert_no_secret_in(&text);
    assert_eq!(source.reads(), 1, "read again once");
    assert_eq!(
        tokens.requests_sent(),
        1,
        "no second request with the same secret"
    );
    assert_eq!(count(&emu, "token 401"), 1);
    assert_eq!(tokens.credential_reloads(), 0);

    // Each later attempt does the same, once: no loop.
    let again = tokens.token(Audience::Manage).await.unwrap_err();
    assert_eq!(again, e, "the same refusal, with the same fix");
    assert_eq!(source.reads(), 2);
    assert_eq!(tokens.requests_sent(), 2);
    assert_eq!(count(&emu, "token 401"), 2);
}

#[tokio::test]
async fn a_provider_without_a_source_never_reads_again() {
    let emu = emulator(None).await;
    let t = tenant(
        &emu,
        APP_SECRET,
        CredentialRef::Secret {
            secret: SecretRef::Env("UNUSED".into()),
        },
    );
    let tokens = TokenProvider::new(http_client(), &t, Credential::secret(OLD_SECRET.into()))
        .with_retry(fast());
    tokens.token(Audience::Manage).await.expect("token");
    assert!(emu.replace_app_secrets(APP_SECRET, &[secret(NEW_SECRET)]));
    tokens.invalidate(Audience::Manage);
    let e = tokens.token(Audience::Manage).await.unwrap_err();
    assert!(
        matches!(e, AuthError::Aadsts { code: 7000215, .. }),
        "{e:?}"
    );
    assert_eq!(tokens.requests_sent(), 2);
    assert_eq!(tokens.credential_reloads(), 0);
}
