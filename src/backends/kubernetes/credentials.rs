//! Client credentials from two keys of a Secret: one `GET`.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;

use super::{KubeClients, KubeError};
use crate::core::credentials::{
    CredentialKeys, CredentialSource, Credentials, CredentialsError, Custody,
};
use crate::core::error::ErrorKind;

/// Credentials in the Secret `name` of `namespace` (the client's default when `None`).
pub struct KubeCredentials {
    clients: Arc<KubeClients>,
    namespace: Option<String>,
    name: String,
    keys: CredentialKeys,
}

impl KubeCredentials {
    /// Credentials at keys `keys` of the Secret.
    pub fn new(
        clients: Arc<KubeClients>,
        namespace: Option<String>,
        name: String,
        keys: CredentialKeys,
    ) -> Self {
        KubeCredentials {
            clients,
            namespace,
            name,
            keys,
        }
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> CredentialsError {
        CredentialsError::new("kubernetes", self.id(), kind, message)
    }

    /// `namespace/name`, or the name when the namespace is the client's default.
    fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    fn wrap(&self, e: KubeError) -> CredentialsError {
        self.error(e.kind, e.message.clone()).with_source(e)
    }
}

#[async_trait]
impl CredentialSource for KubeCredentials {
    fn describe(&self) -> String {
        format!("kubernetes:{}", self.id())
    }

    fn custody(&self) -> Custody {
        Custody::SecretManager
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let client = self.clients.client().await.map_err(|e| self.wrap(e))?;
        let ns = client.namespace(self.namespace.as_deref());
        let secret = client
            .get_secret(ns, &self.name)
            .await
            .map_err(|e| self.wrap(e))?
            .ok_or_else(|| {
                self.error(
                    ErrorKind::Config,
                    format!(
                        "secret `{}` in namespace `{ns}` does not exist: create it with \
                         `kubectl create secret generic {} -n {ns} --from-literal={}=… \
                         --from-literal={}=…`",
                        self.name, self.name, self.keys.client_id, self.keys.client_secret
                    ),
                )
            })?;
        let field = |key: &str| -> Result<SecretString, CredentialsError> {
            let encoded = secret["data"][key].as_str().ok_or_else(|| {
                self.error(
                    ErrorKind::Config,
                    format!(
                        "field `{key}` is missing (secret `{}` in namespace `{ns}` has no such \
                         key)",
                        self.name
                    ),
                )
            })?;
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| {
                        self.error(ErrorKind::Config, format!("field `{key}` is not base64"))
                    })?,
            );
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| {
                    self.error(
                        ErrorKind::Config,
                        format!("field `{key}` is not a string (its bytes are not UTF-8 text)"),
                    )
                })?
                .trim();
            if text.is_empty() {
                return Err(self.error(ErrorKind::Config, format!("field `{key}` is empty")));
            }
            Ok(SecretString::from(text.to_string()))
        };
        Ok(Credentials {
            client_id: field(&self.keys.client_id)?,
            client_secret: field(&self.keys.client_secret)?,
        })
    }
}
