//! Client credentials: where they come from, and the redacting type that holds them.

use std::path::PathBuf;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::CredentialsConfig;
use crate::error::ErrorKind;

/// Default environment variable for the client id.
pub const DEFAULT_ID_VAR: &str = "DEEPVUE_CLIENT_ID";
/// Default environment variable for the client secret.
pub const DEFAULT_SECRET_VAR: &str = "DEEPVUE_CLIENT_SECRET";

/// A Deepvue client id and secret. `Debug` prints neither.
pub struct Credentials {
    /// The client id (treated as a secret too: it identifies the paying account).
    pub client_id: SecretString,
    /// The client secret; Deepvue also uses it as the `x-api-key` header value.
    pub client_secret: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([REDACTED])")
    }
}

/// Reading credentials failed. Names the backend and source, never a value.
#[derive(Debug, thiserror::Error)]
#[error("{backend} credentials `{source_id}`: {message}")]
pub struct CredentialsError {
    /// Backend name (`env`, `file`, …).
    pub backend: &'static str,
    /// Which variable(s), file or secret.
    pub source_id: String,
    /// What is wrong.
    pub message: String,
    /// Its class.
    pub kind: ErrorKind,
}

/// A source of client credentials.
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// Backend name and source id, for messages (`env:DEEPVUE_CLIENT_ID`, …).
    fn describe(&self) -> String;
    /// Read the credentials now.
    async fn load(&self) -> Result<Credentials, CredentialsError>;
}

/// Build the source a config entry describes.
pub fn from_config(
    cfg: &CredentialsConfig,
    aws: &std::sync::Arc<crate::aws::AwsClients>,
) -> Box<dyn CredentialSource> {
    match cfg {
        CredentialsConfig::Aws {
            secret_id,
            version_stage,
            client_id_key,
            client_secret_key,
        } => Box::new(AwsCredentials {
            clients: aws.clone(),
            secret_id: secret_id.clone(),
            version_stage: version_stage.clone(),
            id_key: client_id_key.clone().unwrap_or_else(|| "client_id".into()),
            secret_key: client_secret_key
                .clone()
                .unwrap_or_else(|| "client_secret".into()),
        }),
        CredentialsConfig::Env {
            client_id_var,
            client_secret_var,
        } => Box::new(EnvCredentials {
            id_var: client_id_var
                .clone()
                .unwrap_or_else(|| DEFAULT_ID_VAR.into()),
            secret_var: client_secret_var
                .clone()
                .unwrap_or_else(|| DEFAULT_SECRET_VAR.into()),
        }),
        CredentialsConfig::File { path } => Box::new(FileCredentials { path: path.clone() }),
    }
}

/// Credentials from two environment variables.
pub struct EnvCredentials {
    id_var: String,
    secret_var: String,
}

#[async_trait]
impl CredentialSource for EnvCredentials {
    fn describe(&self) -> String {
        format!("env:{}+{}", self.id_var, self.secret_var)
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let get = |var: &str| -> Result<SecretString, CredentialsError> {
            match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v)),
                Ok(_) => Err(self.error(format!("environment variable {var} is empty"))),
                Err(std::env::VarError::NotPresent) => {
                    Err(self.error(format!("environment variable {var} is not set")))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(self.error(format!("environment variable {var} is not valid UTF-8")))
                }
            }
        };
        Ok(Credentials {
            client_id: get(&self.id_var)?,
            client_secret: get(&self.secret_var)?,
        })
    }
}

impl EnvCredentials {
    /// Read these two variables.
    pub fn new(id_var: String, secret_var: String) -> Self {
        EnvCredentials { id_var, secret_var }
    }

    fn error(&self, message: String) -> CredentialsError {
        CredentialsError {
            backend: "env",
            source_id: format!("{}/{}", self.id_var, self.secret_var),
            message,
            kind: ErrorKind::Config,
        }
    }
}

/// Credentials from a JSON file that only its owner can read.
pub struct FileCredentials {
    path: PathBuf,
}

#[derive(Deserialize)]
struct RawCredentials {
    client_id: Option<SecretString>,
    client_secret: Option<SecretString>,
}

#[async_trait]
impl CredentialSource for FileCredentials {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| self.error(format!("cannot read the file: {e}")))?;
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            return Err(self.error(format!(
                "the file is readable by group or others (mode {:o}); run `chmod 600 {}`",
                mode & 0o777,
                self.path.display()
            )));
        }
        let bytes = secrecy::zeroize::Zeroizing::new(
            std::fs::read(&self.path)
                .map_err(|e| self.error(format!("cannot read the file: {e}")))?,
        );
        let raw: RawCredentials = serde_json::from_slice(&bytes).map_err(|e| {
            self.error(format!(
                "not a JSON object {{\"client_id\",\"client_secret\"}} ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let field =
            |v: Option<SecretString>, name: &str| -> Result<SecretString, CredentialsError> {
                match v {
                    Some(s) if !s.expose_secret().trim().is_empty() => Ok(s),
                    Some(_) => Err(self.error(format!("field `{name}` is empty"))),
                    None => Err(self.error(format!("field `{name}` is missing"))),
                }
            };
        Ok(Credentials {
            client_id: field(raw.client_id, "client_id")?,
            client_secret: field(raw.client_secret, "client_secret")?,
        })
    }
}

impl FileCredentials {
    fn error(&self, message: String) -> CredentialsError {
        CredentialsError {
            backend: "file",
            source_id: self.path.display().to_string(),
            message,
            kind: ErrorKind::Config,
        }
    }
}

/// Credentials from an AWS Secrets Manager secret whose SecretString is a JSON object.
pub struct AwsCredentials {
    clients: std::sync::Arc<crate::aws::AwsClients>,
    secret_id: String,
    version_stage: Option<String>,
    id_key: String,
    secret_key: String,
}

#[async_trait]
impl CredentialSource for AwsCredentials {
    fn describe(&self) -> String {
        format!("aws:{}", self.secret_id)
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let client = self
            .clients
            .secrets_manager()
            .await
            .map_err(|e| self.error(ErrorKind::Config, e))?;
        let mut req = client.get_secret_value().secret_id(&self.secret_id);
        if let Some(stage) = &self.version_stage {
            req = req.version_stage(stage);
        }
        let out = req.send().await.map_err(|e| {
            let (kind, message) = crate::aws::classify_sm_error(&e, "GetSecretValue", false);
            let message = if crate::aws::sm_code(&e) == Some("ResourceNotFoundException") {
                match &self.version_stage {
                    Some(stage) => format!(
                        "the secret or its version stage {stage} does not exist ({message})"
                    ),
                    None => format!("the secret does not exist or has no value ({message})"),
                }
            } else {
                message
            };
            self.error(kind, message)
        })?;
        let Some(text) = out.secret_string() else {
            return Err(self.error(
                ErrorKind::Config,
                "the secret holds binary data; store a JSON SecretString with the client id and \
                 secret"
                    .into(),
            ));
        };
        let text = secrecy::zeroize::Zeroizing::new(text.to_string());
        let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| {
                self.error(
                    ErrorKind::Config,
                    format!(
                        "the SecretString is not a JSON object with `{}` and `{}` ({:?} error at \
                         line {} column {})",
                        self.id_key,
                        self.secret_key,
                        e.classify(),
                        e.line(),
                        e.column()
                    ),
                )
            })?;
        // Values move straight into SecretStrings (zeroized on drop); no copy is made.
        let mut field = |name: &str| -> Result<SecretString, CredentialsError> {
            match map.remove(name) {
                Some(serde_json::Value::String(v)) if !v.trim().is_empty() => {
                    Ok(SecretString::from(v))
                }
                Some(serde_json::Value::String(_)) => {
                    Err(self.error(ErrorKind::Config, format!("field `{name}` is empty")))
                }
                Some(_) => {
                    Err(self.error(ErrorKind::Config, format!("field `{name}` is not a string")))
                }
                None => Err(self.error(ErrorKind::Config, format!("field `{name}` is missing"))),
            }
        };
        let creds = Credentials {
            client_id: field(&self.id_key)?,
            client_secret: field(&self.secret_key)?,
        };
        Ok(creds)
    }
}

impl AwsCredentials {
    fn error(&self, kind: ErrorKind, message: String) -> CredentialsError {
        CredentialsError {
            backend: "aws",
            source_id: self.secret_id.clone(),
            message,
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn file_credentials_checks_mode_and_fields() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("creds.json");
        let src = FileCredentials { path: path.clone() };

        std::fs::write(
            &path,
            r#"{"client_id":"id-1","client_secret":"SENTINEL-secret"}"#,
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let e = src
            .load()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("readable by group or others") && e.contains("chmod 600"),
            "{e}"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let c = src
            .load()
            .await
            .map(|c| c.client_secret.expose_secret().to_string());
        assert_eq!(c.ok().as_deref(), Some("SENTINEL-secret"));

        std::fs::write(&path, r#"{"client_id":"id-1","client_secret":""}"#)?;
        let e = src
            .load()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("`client_secret` is empty") && e.contains("creds.json"),
            "{e}"
        );

        std::fs::write(&path, r#"{"client_secret":"SENTINEL-secret"}"#)?;
        let e = src
            .load()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("`client_id` is missing"), "{e}");
        assert!(!e.contains("SENTINEL"));

        std::fs::write(
            &path,
            r#"{"client_id": 5, "client_secret": "SENTINEL-secret"#,
        )?;
        let e = src
            .load()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!e.contains("SENTINEL"), "{e}");
        assert!(
            format!(
                "{:?}",
                Credentials {
                    client_id: "a".into(),
                    client_secret: "SENTINEL".into()
                }
            ) == "Credentials([REDACTED])"
        );
        Ok(())
    }
}
