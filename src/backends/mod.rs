//! The backends, and **the one place that lists them**.
//!
//! A backend is one folder (`file/`, `aws/`, `vault/`) or file (`env.rs`) that owns its config types and
//! their validation, its clients, its credential source, its token store and its share of
//! `check`. This module is the registry: the `credentials = { backend = … }` and
//! `store = { backend = … }` enums, the backends' own top-level tables (`[aws]`, `[vault]`), the
//! long-lived clients, and the dispatch from a config entry to the backend that builds it.
//! Adding a backend touches its folder and the lines marked `registry` below, nothing else.
//!
//! **Dependency rule:** backends depend on `core` and `support` only — never on `engine`,
//! `config`, `modes` or on each other.

#[cfg(feature = "aws")]
pub mod aws;
pub mod env;
pub mod file;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "vault")]
pub mod vault;

use std::time::Duration;

use serde::Deserialize;

use crate::core::credentials::CredentialSource;
use crate::core::store::TokenStore;
use crate::support::problem::Problem;

/// Where a token's client credentials come from: `credentials = { backend = "…", … }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum CredentialsConfig {
    /// Environment variables (`DEEPVUE_CLIENT_ID` / `DEEPVUE_CLIENT_SECRET` by default).
    Env(env::EnvCredentialsConfig),
    /// A JSON file `{"client_id","client_secret"}`, readable by its owner only.
    File(file::FileCredentialsConfig),
    /// An AWS Secrets Manager secret whose SecretString is that JSON. (registry)
    #[cfg(feature = "aws")]
    Aws(aws::AwsCredentialsConfig),
    /// HashiCorp Vault / OpenBao KV v2 data with the two fields. (registry)
    #[cfg(feature = "vault")]
    Vault(vault::VaultCredentialsConfig),
    /// A GCP Secret Manager secret whose payload is that JSON. (registry)
    #[cfg(feature = "gcp")]
    Gcp(gcp::GcpCredentialsConfig),
}

/// Where a token document is written: `store = { backend = "…", … }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum StoreConfig {
    /// The embedded, versioned local file store.
    File(file::FileStoreConfig),
    /// An AWS Secrets Manager secret; each rotation is a new version. (registry)
    #[cfg(feature = "aws")]
    Aws(aws::AwsStoreConfig),
    /// A HashiCorp Vault / OpenBao KV v2 path; each rotation is a new version. (registry)
    #[cfg(feature = "vault")]
    Vault(vault::VaultStoreConfig),
    /// A GCP Secret Manager secret; each rotation is a new version. (registry)
    #[cfg(feature = "gcp")]
    Gcp(gcp::GcpStoreConfig),
}

/// The backends' own top-level tables.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sections {
    /// `[aws]`: region, endpoint, profile, CA for every AWS client. (registry)
    #[cfg(feature = "aws")]
    #[serde(default)]
    pub aws: aws::AwsSection,
    /// `[vault]`: address, namespace, CA and auth for every Vault call. (registry)
    #[cfg(feature = "vault")]
    #[serde(default)]
    pub vault: vault::VaultSection,
    /// `[gcp]`: project, endpoint, anonymous for every Secret Manager client. (registry)
    #[cfg(feature = "gcp")]
    #[serde(default)]
    pub gcp: gcp::GcpSection,
}

/// Top-level table names that belong to a backend, compiled in or not: the config loader
/// hands exactly these to [`Sections`]. (registry)
pub const SECTION_NAMES: &[&str] = &["aws", "gcp", "vault"];

/// The Cargo feature that provides a backend or section this binary was built without.
pub fn missing_feature(name: &str) -> Option<&'static str> {
    match name {
        #[cfg(not(feature = "aws"))]
        "aws" => Some("aws"),
        #[cfg(not(feature = "vault"))]
        "vault" => Some("vault"),
        #[cfg(not(feature = "gcp"))]
        "gcp" => Some("gcp"),
        _ => None,
    }
}

impl Sections {
    /// Check every section.
    pub fn validate(&self) -> Result<(), Problem> {
        #[cfg(feature = "aws")]
        self.aws.validate()?;
        #[cfg(feature = "vault")]
        self.vault.validate()?;
        #[cfg(feature = "gcp")]
        self.gcp.validate()?;
        Ok(())
    }

    /// Configured endpoint overrides, for `check`'s HTTPS item (e.g. `aws http://127.0.0.1:5000
    /// (loopback emulator)`); each was validated at load.
    pub fn endpoint_notes(&self) -> Vec<String> {
        #[allow(unused_mut)]
        let mut notes = Vec::new();
        #[cfg(feature = "aws")]
        notes.extend(self.aws.endpoint_note());
        #[cfg(feature = "vault")]
        notes.extend(self.vault.endpoint_note());
        #[cfg(feature = "gcp")]
        notes.extend(self.gcp.endpoint_note());
        notes
    }
}

/// Long-lived clients shared by every token of one config, each built on first use (a run that
/// touches no AWS backend never loads the AWS credential chain).
#[derive(Clone)]
pub struct Clients {
    /// AWS SDK clients. (registry)
    #[cfg(feature = "aws")]
    pub aws: std::sync::Arc<aws::AwsClients>,
    /// The Vault client (one login per process). (registry)
    #[cfg(feature = "vault")]
    pub vault: std::sync::Arc<vault::VaultClients>,
    /// The GCP Secret Manager client. (registry)
    #[cfg(feature = "gcp")]
    pub gcp: std::sync::Arc<gcp::GcpClients>,
}

impl Clients {
    /// Clients for these sections (nothing is built yet).
    pub fn new(sections: &Sections) -> Self {
        #[cfg(not(any(feature = "aws", feature = "gcp", feature = "vault")))]
        let _ = sections;
        Clients {
            #[cfg(feature = "aws")]
            aws: aws::AwsClients::new(&sections.aws),
            #[cfg(feature = "vault")]
            vault: vault::VaultClients::new(&sections.vault),
            #[cfg(feature = "gcp")]
            gcp: gcp::GcpClients::new(&sections.gcp),
        }
    }

    /// Keep every backend's long-lived credentials fresh for as long as the process runs;
    /// never returns. Long-running modes run it beside their passes. Only Vault has anything
    /// to do (renew its token, log in again at the max TTL), and only once a token used it;
    /// AWS refreshes its own credentials, the file and env backends hold none. (registry)
    pub async fn maintain(&self) {
        #[cfg(feature = "vault")]
        self.vault.maintain().await;
        std::future::pending::<()>().await
    }
}

/// What building a store needs besides its own config.
pub struct BuildContext<'a> {
    /// The shared clients.
    pub clients: &'a Clients,
    /// `[rotation] lock_timeout`: how long a store lock may be waited for.
    pub lock_timeout: Duration,
}

impl CredentialsConfig {
    /// Check the entry at `at` (e.g. `tokens[0].credentials`).
    pub fn validate(&self, at: &str) -> Result<(), Problem> {
        match self {
            CredentialsConfig::Env(c) => c.validate(at),
            CredentialsConfig::File(c) => c.validate(at),
            #[cfg(feature = "aws")]
            CredentialsConfig::Aws(c) => c.validate(at),
            #[cfg(feature = "vault")]
            CredentialsConfig::Vault(c) => c.validate(at),
            #[cfg(feature = "gcp")]
            CredentialsConfig::Gcp(c) => c.validate(at),
        }
    }

    /// The secret this entry reads, as (backend, id), when it lives in a store that could also
    /// be a token store (to refuse a token whose store would overwrite its credentials).
    pub fn identity(&self) -> Option<(&'static str, String)> {
        match self {
            CredentialsConfig::Env(_) | CredentialsConfig::File(_) => None,
            #[cfg(feature = "aws")]
            CredentialsConfig::Aws(c) => Some(("aws", c.identity())),
            #[cfg(feature = "vault")]
            CredentialsConfig::Vault(c) => Some(("vault", c.identity())),
            #[cfg(feature = "gcp")]
            CredentialsConfig::Gcp(c) => Some(("gcp", c.identity())),
        }
    }

    /// The credential source.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn CredentialSource> {
        let _ = ctx;
        match self {
            CredentialsConfig::Env(c) => Box::new(c.build()),
            CredentialsConfig::File(c) => Box::new(c.build()),
            #[cfg(feature = "aws")]
            CredentialsConfig::Aws(c) => Box::new(c.build(ctx.clients.aws.clone())),
            #[cfg(feature = "vault")]
            CredentialsConfig::Vault(c) => Box::new(c.build(ctx.clients.vault.clone())),
            #[cfg(feature = "gcp")]
            CredentialsConfig::Gcp(c) => Box::new(c.build(ctx.clients.gcp.clone())),
        }
    }
}

impl StoreConfig {
    /// Check the entry at `at` (e.g. `tokens[0].store`).
    pub fn validate(&self, at: &str) -> Result<(), Problem> {
        match self {
            StoreConfig::File(c) => c.validate(at),
            #[cfg(feature = "aws")]
            StoreConfig::Aws(c) => c.validate(at),
            #[cfg(feature = "vault")]
            StoreConfig::Vault(c) => c.validate(at),
            #[cfg(feature = "gcp")]
            StoreConfig::Gcp(c) => c.validate(at),
        }
    }

    /// Backend name and the store's identity: two entries with the same identity are one
    /// store, however they are spelled (`st` and `./st/`; a name and its ARN).
    pub fn identity(&self) -> (&'static str, String) {
        match self {
            StoreConfig::File(c) => ("file", c.identity()),
            #[cfg(feature = "aws")]
            StoreConfig::Aws(c) => ("aws", c.identity()),
            #[cfg(feature = "vault")]
            StoreConfig::Vault(c) => ("vault", c.identity()),
            #[cfg(feature = "gcp")]
            StoreConfig::Gcp(c) => ("gcp", c.identity()),
        }
    }

    /// The token store.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn TokenStore> {
        match self {
            StoreConfig::File(c) => Box::new(c.build(ctx.lock_timeout)),
            #[cfg(feature = "aws")]
            StoreConfig::Aws(c) => Box::new(c.build(ctx.clients.aws.clone())),
            #[cfg(feature = "vault")]
            StoreConfig::Vault(c) => Box::new(c.build(ctx.clients.vault.clone())),
            #[cfg(feature = "gcp")]
            StoreConfig::Gcp(c) => Box::new(c.build(ctx.clients.gcp.clone(), ctx.lock_timeout)),
        }
    }

    /// Whether a Secret Manager notification's `secretId` (`projects/<NUMBER>/secrets/<id>`)
    /// names this store's secret (Pub/Sub push). Other backends never match.
    pub fn is_gcp_secret(&self, notified: &str) -> bool {
        match self {
            #[cfg(feature = "gcp")]
            StoreConfig::Gcp(c) => c.is_secret(notified),
            _ => {
                let _ = notified;
                false
            }
        }
    }
}
