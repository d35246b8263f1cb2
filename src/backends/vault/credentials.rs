//! Credentials from KV v2 data `{client_id, client_secret}` (key names configurable): one
//! `GET mount/data/path`, the data map through the shared credentials parser straight from the
//! zeroising answer buffer.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::VaultClients;
use super::errors::{Op, VaultError};
use crate::core::credentials::{
    CredentialKeys, CredentialSource, Credentials, CredentialsError, Custody,
    parse_credentials_json,
};
use crate::core::error::ErrorKind;

/// One KV v2 read per load.
pub struct VaultCredentials {
    clients: Arc<VaultClients>,
    mount: String,
    path: String,
    version: Option<u64>,
    keys: CredentialKeys,
}

impl VaultCredentials {
    /// Credentials at `path` in the KV v2 `mount` (latest version unless `version`).
    pub fn new(
        clients: Arc<VaultClients>,
        mount: String,
        path: String,
        version: Option<u64>,
        keys: CredentialKeys,
    ) -> Self {
        VaultCredentials {
            clients,
            mount,
            path,
            version,
            keys,
        }
    }

    fn error(&self, kind: ErrorKind, message: String) -> CredentialsError {
        CredentialsError::new(
            "vault",
            format!("{}/{}", self.mount, self.path),
            kind,
            message,
        )
    }

    fn wrap(&self, e: VaultError) -> CredentialsError {
        self.error(e.kind, e.message.clone()).with_source(e)
    }

    fn at(&self) -> String {
        let version = self
            .version
            .map(|v| format!(", version {v}"))
            .unwrap_or_default();
        format!(
            "KV v2 mount `{}`, path `{}`{version}",
            self.mount, self.path
        )
    }
}

#[async_trait]
impl CredentialSource for VaultCredentials {
    fn describe(&self) -> String {
        format!("vault:{}/{}", self.mount, self.path)
    }

    fn custody(&self) -> Custody {
        Custody::SecretManager
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        #[derive(Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            data: Option<Body<'a>>,
        }
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            data: Option<&'a RawValue>,
        }
        let client = self.clients.client().await.map_err(|e| self.wrap(e))?;
        let path = format!("{}/data/{}", self.mount, self.path);
        let query: Vec<(&str, String)> = self
            .version
            .map(|v| vec![("version", v.to_string())])
            .unwrap_or_default();
        let reply = client
            .call(Method::GET, &path, &query, None)
            .await
            .map_err(|e| self.wrap(e))?;
        if reply.status == 404 && reply.errors().is_empty() {
            let deleted = serde_json::from_slice::<Answer<'_>>(&reply.body)
                .ok()
                .and_then(|a| a.data)
                .is_some();
            return Err(self.error(
                ErrorKind::Config,
                if deleted {
                    format!("{}: the version is deleted or destroyed", self.at())
                } else {
                    format!(
                        "{}: no such secret (write it with `bao kv put -mount={} {} \
                         {}=… {}=…`)",
                        self.at(),
                        self.mount,
                        self.path,
                        self.keys.client_id,
                        self.keys.client_secret
                    )
                },
            ));
        }
        if !reply.ok() {
            return Err(self.wrap(client.fail(Op::ReadData, &path, &reply)));
        }
        let raw = serde_json::from_slice::<Answer<'_>>(&reply.body)
            .ok()
            .and_then(|a| a.data)
            .and_then(|b| b.data)
            .ok_or_else(|| {
                self.error(
                    ErrorKind::Config,
                    format!(
                        "{}: the answer has no KV v2 data; is the mount a KV v2 engine?",
                        self.at()
                    ),
                )
            })?;
        parse_credentials_json(raw.get().as_bytes(), &self.keys)
            .map_err(|e| self.error(ErrorKind::Config, format!("{}: {e}", self.at())))
    }
}
