//! `keygen`: an RSA key and a self-signed certificate for the app registration's certificate
//! credential. `cert.pem` is what the administrator uploads; the key PEM (key + certificate,
//! mode 0600) is what the collector reads, from a file or Secrets Manager.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{Datelike, Duration, Utc};
use shared::auth::Credential;
use shared::model::AssertionAlg;

/// Options of `keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Folder for `cert.pem` and the key PEM.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Base name of the key PEM (`<name>.pem`) and the certificate's common name.
    #[arg(long, default_value = "o365-collector")]
    pub name: String,
    /// RSA key size: 2048 or 3072.
    #[arg(long, default_value_t = 2048)]
    pub bits: u32,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Also store the key PEM in AWS Secrets Manager under this name (use the stack's
    /// `SecretNamePrefix`, default `o365-collector/`) and print its ARN for `tenants add`.
    #[arg(long)]
    pub secret_name: Option<String>,
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// `o365-collector keygen`.
pub async fn run(args: &KeygenArgs) -> Result<ExitCode, String> {
    let size = match args.bits {
        2048 => rcgen::RsaKeySize::_2048,
        3072 => rcgen::RsaKeySize::_3072,
        other => {
            return Err(format!(
                "--bits {other}: use 2048 or 3072 (Entra needs RSA >= 2048)"
            ));
        }
    };
    if !(1..=3650).contains(&args.days) {
        return Err("--days must be between 1 and 3650".into());
    }
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        .map_err(|e| format!("RSA key generation failed: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec![format!("{}.invalid", args.name)])
        .map_err(|e| format!("certificate parameters: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, args.name.clone());
    let ymd = |t: chrono::DateTime<Utc>| {
        rcgen::date_time_ymd(
            t.year(),
            u8::try_from(t.month()).unwrap_or(1),
            u8::try_from(t.day()).unwrap_or(1),
        )
    };
    let now = Utc::now();
    params.not_before = ymd(now - Duration::days(1));
    params.not_after = ymd(now + Duration::days(args.days));
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("self-signing failed: {e}"))?;
    let cert_pem = cert.pem();
    let bundle = format!("{}{}", key.serialize_pem(), cert_pem);
    // Read it back the way the collector will: proves the PEM is usable, gives the thumbprints.
    let credential = Credential::certificate_from_pem(&bundle, AssertionAlg::RS256)
        .map_err(|e| e.to_string())?;
    let info = credential
        .certificate()
        .ok_or("the generated PEM holds no certificate")?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let cert_path = args.out.join("cert.pem");
    std::fs::write(&cert_path, &cert_pem)
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    let key_path = args.out.join(format!("{}.pem", args.name));
    write_private(&key_path, &bundle)?;

    println!(
        "certificate:  {}   <- upload this to the app registration (Certificates & secrets)",
        cert_path.display()
    );
    println!(
        "private key:  {}   (key + certificate, mode 0600: the collector's certificate_file)",
        key_path.display()
    );
    println!(
        "thumbprint (SHA-1, as the portal shows it): {}",
        info.thumbprint_hex()
    );
    println!("x5t:       {}", info.x5t());
    println!("x5t#S256:  {}", info.x5t_s256());
    match info.not_after() {
        Some(t) => println!(
            "expires:   {} (renew before then: a new key, upload, update the secret)",
            t.to_rfc3339()
        ),
        None => println!("expires:   in {} days", args.days),
    }
    if let Some(name) = &args.secret_name {
        let conf = shared::aws::sdk_config(None).await;
        let sm = aws_sdk_secretsmanager::Client::new(&conf);
        let created = sm
            .create_secret()
            .name(name)
            .description("o365-collector certificate credential (private key + certificate PEM)")
            .secret_string(&bundle)
            .send()
            .await;
        let arn = match created {
            Ok(out) => out.arn,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                sm.put_secret_value()
                    .secret_id(name)
                    .secret_string(&bundle)
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot update secret {name}: {}",
                            aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                        )
                    })?
                    .arn
            }
            Err(e) => {
                return Err(format!(
                    "cannot create secret {name}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                ));
            }
        };
        println!(
            "secret:    {}   -> o365-collector tenants add ... --certificate-arn <this ARN>",
            arn.unwrap_or_else(|| name.clone())
        );
    }
    Ok(ExitCode::SUCCESS)
}
