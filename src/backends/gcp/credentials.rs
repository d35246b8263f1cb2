//! Credentials from a Secret Manager secret whose payload is a JSON object.

use std::sync::Arc;

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use secrecy::zeroize::Zeroizing;

use super::errors::{classify, code};
use super::{GcpClients, SecretName, crc32c};
use crate::core::credentials::{
    CredentialKeys, CredentialSource, Credentials, CredentialsError, Custody,
    parse_credentials_json,
};
use crate::core::error::ErrorKind;

/// One `AccessSecretVersion` per load (crc checked); the JSON goes through the shared parser.
pub struct GcpCredentials {
    clients: Arc<GcpClients>,
    secret_id: String,
    version: String,
    keys: CredentialKeys,
}

impl GcpCredentials {
    /// Credentials in this secret (short or `projects/P/secrets/S`) at `version`.
    pub fn new(
        clients: Arc<GcpClients>,
        secret_id: String,
        version: String,
        keys: CredentialKeys,
    ) -> Self {
        GcpCredentials {
            clients,
            secret_id,
            version,
            keys,
        }
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> CredentialsError {
        CredentialsError::new("gcp", self.secret_id.clone(), kind, message)
    }
}

#[async_trait]
impl CredentialSource for GcpCredentials {
    fn describe(&self) -> String {
        format!("gcp:{}", self.secret_id)
    }

    fn custody(&self) -> Custody {
        Custody::SecretManager
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let parsed = SecretName::parse(&self.secret_id)
            .ok_or_else(|| self.error(ErrorKind::Config, "not a valid secret id"))?;
        let name = match &parsed.project {
            Some(_) => parsed.resource(""),
            None => parsed.resource(
                self.clients
                    .project()
                    .await
                    .map_err(|e| self.error(ErrorKind::Config, e.to_string()))?,
            ),
        };
        let client = self
            .clients
            .secret_manager()
            .await
            .map_err(|e| self.error(ErrorKind::Config, e.to_string()))?;
        let resp = client
            .access_secret_version()
            .set_name(format!("{name}/versions/{}", self.version))
            .send()
            .await
            .map_err(|e| {
                let (kind, message) =
                    classify(&e, "AccessSecretVersion", "secretmanager.versions.access");
                let message = match code(&e) {
                    Some(Code::NotFound) => format!(
                        "the secret {name} or its version `{}` does not exist ({message})",
                        self.version
                    ),
                    Some(Code::FailedPrecondition) => format!(
                        "version `{}` of {name} is disabled or destroyed ({message}); add a \
                         version with the credentials JSON",
                        self.version
                    ),
                    _ => message,
                };
                let kind = if code(&e) == Some(Code::FailedPrecondition) {
                    ErrorKind::Config
                } else {
                    kind
                };
                self.error(kind, message).with_source(e)
            })?;
        let payload = resp.payload.unwrap_or_default();
        let sent = payload.data_crc32c;
        let data = Zeroizing::new(payload.data.to_vec());
        drop(payload);
        if let Some(sent) = sent
            && sent != i64::from(crc32c(&data))
        {
            return Err(self.error(
                ErrorKind::Transient,
                format!(
                    "{}: the payload does not match its dataCrc32c ({sent} stored, {} computed); \
                     not used",
                    resp.name,
                    crc32c(&data)
                ),
            ));
        }
        parse_credentials_json(&data, &self.keys).map_err(|e| self.error(ErrorKind::Config, e))
    }
}
