//! Credentials from a JSON file `{"client_id","client_secret"}` that only its owner can read.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::core::credentials::{
    CredentialKeys, CredentialSource, Credentials, CredentialsError, Custody,
    parse_credentials_json,
};
use crate::core::error::ErrorKind;
use crate::support::secret_ref::{credential_path, read_secret_file};

/// Credentials from a JSON file, read through the one secret-file reader (regular file, owner
/// only, size-capped).
pub struct FileCredentials {
    source: Source,
}

enum Source {
    Path(PathBuf),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/NAME`, resolved when loading.
    Credential(String),
}

impl FileCredentials {
    /// Credentials in this file.
    pub fn new(path: PathBuf) -> Self {
        FileCredentials {
            source: Source::Path(path),
        }
    }

    /// Credentials in systemd credential `name` (`LoadCredential=`).
    pub fn systemd(name: String) -> Self {
        FileCredentials {
            source: Source::Credential(name),
        }
    }

    fn id(&self) -> String {
        match &self.source {
            Source::Path(p) => p.display().to_string(),
            Source::Credential(c) => format!("systemd credential {c}"),
        }
    }

    fn error(&self, message: String) -> CredentialsError {
        CredentialsError::new("file", self.id(), ErrorKind::Config, message)
    }
}

#[async_trait]
impl CredentialSource for FileCredentials {
    fn describe(&self) -> String {
        format!("file:{}", self.id())
    }

    fn custody(&self) -> Custody {
        match self.source {
            Source::Path(_) => Custody::LooseFile,
            // Held by the service manager, readable by this service only.
            Source::Credential(_) => Custody::SecretManager,
        }
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let path = match &self.source {
            Source::Path(p) => p.clone(),
            Source::Credential(c) => credential_path(c).map_err(|e| {
                let message = e.to_string();
                self.error(message).with_source(e)
            })?,
        };
        let bytes = read_secret_file(&path).map_err(|e| {
            let message = match &e {
                crate::support::secret_ref::SecretError::Unsafe { why, .. } => why.clone(),
                other => other.to_string(),
            };
            self.error(message).with_source(e)
        })?;
        parse_credentials_json(&bytes, &CredentialKeys::default()).map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn file_credentials_checks_mode_and_fields() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("creds.json");
        let src = FileCredentials::new(path.clone());

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
        Ok(())
    }
}
