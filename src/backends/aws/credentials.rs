//! Credentials from an AWS Secrets Manager secret whose SecretString is a JSON object.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::zeroize::Zeroizing;

use super::AwsClients;
use super::errors::{classify_sm_error, sm_code};
use crate::core::credentials::{
    CredentialKeys, CredentialSource, Credentials, CredentialsError, Custody,
    parse_credentials_json,
};
use crate::core::error::ErrorKind;

/// One `GetSecretValue` per load; the JSON goes through the shared credentials parser.
pub struct AwsCredentials {
    clients: Arc<AwsClients>,
    secret_id: String,
    version_stage: Option<String>,
    keys: CredentialKeys,
}

impl AwsCredentials {
    /// Credentials in this secret (name or ARN), at this stage (default AWSCURRENT).
    pub fn new(
        clients: Arc<AwsClients>,
        secret_id: String,
        version_stage: Option<String>,
        keys: CredentialKeys,
    ) -> Self {
        AwsCredentials {
            clients,
            secret_id,
            version_stage,
            keys,
        }
    }

    fn error(&self, kind: ErrorKind, message: String) -> CredentialsError {
        CredentialsError::new("aws", self.secret_id.clone(), kind, message)
    }
}

#[async_trait]
impl CredentialSource for AwsCredentials {
    fn describe(&self) -> String {
        format!("aws:{}", self.secret_id)
    }

    fn custody(&self) -> Custody {
        Custody::SecretManager
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let client = self
            .clients
            .secrets_manager_in(super::arn_region(&self.secret_id))
            .await
            .map_err(|e| self.error(ErrorKind::Config, e.to_string()).with_source(e))?;
        let mut req = client.get_secret_value().secret_id(&self.secret_id);
        if let Some(stage) = &self.version_stage {
            req = req.version_stage(stage);
        }
        let out = req.send().await.map_err(|e| {
            let (kind, message) = classify_sm_error(&e, "GetSecretValue", false);
            let message = if sm_code(&e) == Some("ResourceNotFoundException") {
                match &self.version_stage {
                    Some(stage) => format!(
                        "the secret or its version stage {stage} does not exist ({message})"
                    ),
                    None => format!("the secret does not exist or has no value ({message})"),
                }
            } else {
                message
            };
            self.error(kind, message).with_source(e)
        })?;
        let Some(text) = out.secret_string() else {
            return Err(self.error(
                ErrorKind::Config,
                "the secret holds binary data; store a JSON SecretString with the client id and \
                 secret"
                    .into(),
            ));
        };
        let text = Zeroizing::new(text.to_string());
        drop(out);
        parse_credentials_json(text.as_bytes(), &self.keys)
            .map_err(|e| self.error(ErrorKind::Config, e))
    }
}
