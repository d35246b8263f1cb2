//! The `env` credentials backend: two environment variables.

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;

use std::sync::Arc;

use super::{Backend, BuildContext, CredentialsEntry, NoSection, NoStore};
use crate::core::credentials::{CredentialSource, Credentials, CredentialsError, Custody};
use crate::core::error::ErrorKind;
use crate::support::problem::Problem;

/// The `env` backend: credentials only.
pub struct Env;

impl Backend for Env {
    type Section = NoSection;
    type Clients = ();
    type Credentials = EnvCredentialsConfig;
    type Store = NoStore;

    fn clients(_: &NoSection) -> Arc<()> {
        Arc::new(())
    }
}

/// Default environment variable for the client id.
pub const DEFAULT_ID_VAR: &str = "DEEPVUE_CLIENT_ID";
/// Default environment variable for the client secret.
pub const DEFAULT_SECRET_VAR: &str = "DEEPVUE_CLIENT_SECRET";

/// `credentials = { backend = "env", client_id_var?, client_secret_var? }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvCredentialsConfig {
    /// Override the client id variable name.
    pub client_id_var: Option<String>,
    /// Override the client secret variable name.
    pub client_secret_var: Option<String>,
}

impl CredentialsEntry for EnvCredentialsConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        for (k, v) in [
            ("client_id_var", &self.client_id_var),
            ("client_secret_var", &self.client_secret_var),
        ] {
            if v.as_deref()
                .is_some_and(|v| v.is_empty() || v.contains('='))
            {
                return Err(Problem::invalid(format!(
                    "{at}.{k} must be a variable name"
                )));
            }
        }
        Ok(())
    }

    fn build(&self, _: &BuildContext<'_>) -> Box<dyn CredentialSource> {
        Box::new(EnvCredentials::new(
            self.client_id_var
                .clone()
                .unwrap_or_else(|| DEFAULT_ID_VAR.into()),
            self.client_secret_var
                .clone()
                .unwrap_or_else(|| DEFAULT_SECRET_VAR.into()),
        ))
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

    fn custody(&self) -> Custody {
        Custody::Environment
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

    /// The default variables.
    pub fn default_vars() -> Self {
        Self::new(DEFAULT_ID_VAR.into(), DEFAULT_SECRET_VAR.into())
    }

    fn error(&self, message: String) -> CredentialsError {
        CredentialsError::new(
            "env",
            format!("{}/{}", self.id_var, self.secret_var),
            ErrorKind::Config,
            message,
        )
    }
}
