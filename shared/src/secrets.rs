//! Loading the secrets tenants refer to ([`SecretRef`]): a local file, an environment variable
//! or an AWS Secrets Manager secret.
//!
//! Values are wrapped in [`SecretString`], whose `Debug` prints `<redacted>`; errors name the
//! reference (path, variable or ARN) and the fix, never the value.

use std::fmt;
use std::future::Future;
use std::io::ErrorKind;

use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use crate::aws::classify;
use crate::model::SecretRef;

/// A secret value. `Debug` never shows it; read it with [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The value, for the one place that needs it (a token request, a key parser).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> SecretString {
        SecretString(value)
    }
}

/// A secret could not be loaded: names the reference and the fix, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{secret}: {message}")]
pub struct SecretError {
    /// The reference, e.g. `secret file /etc/o365/contoso.pem`.
    pub secret: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Retrying later may succeed (throttling, network).
    pub retryable: bool,
}

impl SecretError {
    fn new(r: &SecretRef, message: impl Into<String>, retryable: bool) -> SecretError {
        SecretError {
            secret: describe(r),
            message: message.into(),
            retryable,
        }
    }
}

/// How a reference is named in messages.
fn describe(r: &SecretRef) -> String {
    match r {
        SecretRef::File(path) => format!("secret file {path}"),
        SecretRef::Env(var) => format!("secret environment variable {var}"),
        SecretRef::SecretsManager(arn) => format!("Secrets Manager secret {arn}"),
    }
}

/// Loads secret values. Loaders live as long as the token providers that read credentials
/// again through them (after a rotation), hence `'static`.
pub trait SecretLoader: Send + Sync + 'static {
    /// The value `r` refers to (surrounding whitespace trimmed).
    ///
    /// # Errors
    /// [`SecretError`] naming the reference and the fix.
    fn load(&self, r: &SecretRef)
    -> impl Future<Output = Result<SecretString, SecretError>> + Send;
}

/// Trims and refuses empty values.
fn non_empty(r: &SecretRef, value: &str, fix: &str) -> Result<SecretString, SecretError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(SecretError::new(r, format!("is empty: {fix}"), false));
    }
    Ok(SecretString::new(v))
}

async fn load_file(r: &SecretRef, path: &str) -> Result<SecretString, SecretError> {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(SecretError::new(
                r,
                "the file does not exist: create it, or fix the path in the tenant's configuration",
                false,
            ));
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(SecretError::new(
                r,
                "the file cannot be read (permission denied): make it readable by the user running the collector",
                false,
            ));
        }
        Err(e) => {
            return Err(SecretError::new(
                r,
                format!("the file cannot be read: {e}"),
                false,
            ));
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        SecretError::new(
            r,
            "the file is not UTF-8 text: store the client secret as text or the certificate as PEM",
            false,
        )
    })?;
    non_empty(r, &text, "put the client secret or the PEM in the file")
}

fn load_env(r: &SecretRef, var: &str) -> Result<SecretString, SecretError> {
    match std::env::var(var) {
        Ok(v) => non_empty(r, &v, &format!("set {var} to the secret value")),
        Err(std::env::VarError::NotPresent) => Err(SecretError::new(
            r,
            format!("the variable is not set: export {var}, or refer to a file instead"),
            false,
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::new(
            r,
            format!("the variable is not valid UTF-8: set {var} to the secret text"),
            false,
        )),
    }
}

/// Loads files and environment variables; a Secrets Manager reference is an error that says
/// to run on AWS (or use a file).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalSecrets;

impl SecretLoader for LocalSecrets {
    async fn load(&self, r: &SecretRef) -> Result<SecretString, SecretError> {
        match r {
            SecretRef::File(path) => load_file(r, path).await,
            SecretRef::Env(var) => load_env(r, var),
            SecretRef::SecretsManager(arn) => Err(SecretError::new(
                r,
                format!(
                    "secret ARN {arn} needs AWS: run on Lambda (or with AWS credentials) or use a file or an environment variable locally"
                ),
                false,
            )),
        }
    }
}

/// Loads Secrets Manager secrets with `GetSecretValue` (and files and environment variables
/// like [`LocalSecrets`]).
#[derive(Debug, Clone)]
pub struct AwsSecrets {
    client: aws_sdk_secretsmanager::Client,
}

impl AwsSecrets {
    /// A loader using `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> AwsSecrets {
        AwsSecrets { client }
    }

    async fn load_secret(&self, r: &SecretRef, arn: &str) -> Result<SecretString, SecretError> {
        let out = match self.client.get_secret_value().secret_id(arn).send().await {
            Ok(out) => out,
            Err(e) => {
                let c = classify(&e);
                let message = match (e.as_service_error(), c.code.as_deref()) {
                    (_, Some("AccessDeniedException" | "AccessDenied")) => format!(
                        "access denied: grant secretsmanager:GetSecretValue on {arn} to the function role"
                    ),
                    (Some(GetSecretValueError::ResourceNotFoundException(_)), _) => format!(
                        "no such secret: create {arn}, or fix the ARN in the tenant's configuration"
                    ),
                    (Some(GetSecretValueError::DecryptionFailure(_)), _) => {
                        "cannot be decrypted: grant kms:Decrypt on the secret's KMS key to the function role".to_owned()
                    }
                    (Some(GetSecretValueError::InvalidRequestException(_)), _) => format!(
                        "cannot be read now ({}): is it scheduled for deletion or without a current version?",
                        c.message
                    ),
                    _ => c.message.clone(),
                };
                return Err(SecretError::new(r, message, c.retryable));
            }
        };
        if let Some(s) = out.secret_string() {
            return non_empty(
                r,
                s,
                "store the client secret or the PEM as the secret's value",
            );
        }
        if let Some(b) = out.secret_binary() {
            let text = std::str::from_utf8(b.as_ref()).map_err(|_| {
                SecretError::new(
                    r,
                    "the binary value is not UTF-8 text: store it as a secret string",
                    false,
                )
            })?;
            return non_empty(
                r,
                text,
                "store the client secret or the PEM as the secret's value",
            );
        }
        Err(SecretError::new(
            r,
            "has no value: store the client secret or the PEM as the secret's value",
            false,
        ))
    }
}

impl SecretLoader for AwsSecrets {
    async fn load(&self, r: &SecretRef) -> Result<SecretString, SecretError> {
        match r {
            SecretRef::File(path) => load_file(r, path).await,
            SecretRef::Env(var) => load_env(r, var),
            SecretRef::SecretsManager(arn) => self.load_secret(r, arn).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[tokio::test]
    async fn files_are_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("o365-secrets-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.txt");
        std::fs::write(&path, "s3cr3t~value\n").unwrap();
        let r = SecretRef::File(path.display().to_string());
        assert_eq!(
            LocalSecrets.load(&r).await.unwrap().expose(),
            "s3cr3t~value"
        );

        std::fs::write(&path, "  \n").unwrap();
        let err = LocalSecrets.load(&r).await.unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");

        let missing = SecretRef::File(dir.join("nope.pem").display().to_string());
        let err = LocalSecrets.load(&missing).await.unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn env_vars_and_their_absence() {
        // PATH is set in every test environment; setting variables needs `unsafe`.
        let r = SecretRef::Env("PATH".into());
        assert!(!LocalSecrets.load(&r).await.unwrap().expose().is_empty());
        let var = format!("O365_TEST_MISSING_{}", uuid::Uuid::new_v4().simple());
        let err = LocalSecrets
            .load(&SecretRef::Env(var.clone()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&format!("export {var}")), "{err}");
        assert!(!err.retryable);
    }

    #[tokio::test]
    async fn secrets_manager_needs_aws() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:o365-contoso-AbCdEf";
        let err = LocalSecrets
            .load(&SecretRef::SecretsManager(arn.into()))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(arn) && text.contains("needs AWS") && text.contains("file"),
            "{text}"
        );
    }
}
