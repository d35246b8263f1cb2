//! The `kubernetes` backend: credentials from, and tokens in, core/v1 `Secret`s, on our own
//! small client (`client.rs`) on the shared reqwest/rustls stack.
//!
//! - `[kubernetes]` ([`KubernetesSection`]): how to reach the API server. In a pod (the
//!   default): the service-account token, CA and namespace under
//!   `/var/run/secrets/kubernetes.io/serviceaccount` and `KUBERNETES_SERVICE_HOST`/`_PORT`; the
//!   token is re-read every minute and after a 401, since the kubelet rotates projected tokens.
//!   Elsewhere: a kubeconfig (`kubeconfig`, else `$KUBECONFIG`) with a token, token-file or
//!   client-certificate user. TLS is always verified against the cluster's CA.
//! - `credentials = { backend = "kubernetes", secret_name, namespace?, client_id_key?,
//!   client_secret_key? }` ([`KubernetesCredentialsConfig`]): one `GET` of a Secret.
//! - `store = { backend = "kubernetes", secret_name, namespace?, keep_versions?,
//!   create_if_missing? }` ([`KubernetesStoreConfig`]): the token in one Opaque Secret (see
//!   `store.rs`): `access_token`, `token_type`, `expiry`, `issued_at` and `version` for pods,
//!   plus `token.v<N>.json` per kept version; run state in its annotations. Every write checks
//!   that the Secret still holds the version the decision was made from and `PUT`s it with the
//!   `resourceVersion` of that check's read (a change in between is a 409: nothing written).

mod client;
mod credentials;
mod store;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

pub use client::{KubeClient, KubeClients, KubeError};
pub use credentials::KubeCredentials;
pub use store::{KubeStore, STATE_ANNOTATION_PREFIX};

use super::{Backend, BuildContext, CredentialsEntry, SectionEntry, StoreEntry};
use crate::core::credentials::{CredentialKeys, CredentialSource};
use crate::core::parts::StoreParts;
use crate::support::problem::Problem;

/// Where a pod's service-account files are.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Versions kept in the token Secret unless `keep_versions` says otherwise.
pub const DEFAULT_KEEP_VERSIONS: u32 = 5;
/// The most versions one Secret keeps (a Secret holds at most 1 MiB).
pub const MAX_KEEP_VERSIONS: u32 = 50;

/// `[kubernetes]`: how to reach the API server, shared by every Kubernetes credential source
/// and store of the config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    /// A kubeconfig file (default: `$KUBECONFIG`, else the in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its `current-context`).
    pub context: Option<String>,
    /// The namespace of entries that name none (default: the context's, else the service
    /// account's, else `default`).
    pub namespace: Option<String>,
    /// Where the in-cluster service-account files are (default
    /// `/var/run/secrets/kubernetes.io/serviceaccount`).
    pub service_account_dir: Option<PathBuf>,
}

/// The `kubernetes` backend.
pub struct Kubernetes;

impl Backend for Kubernetes {
    type Section = KubernetesSection;
    type Clients = KubeClients;
    type Credentials = KubernetesCredentialsConfig;
    type Store = KubernetesStoreConfig;

    fn clients(section: &KubernetesSection) -> Arc<KubeClients> {
        KubeClients::new(section)
    }
}

impl SectionEntry for KubernetesSection {
    fn validate(&self) -> Result<(), Problem> {
        if let Some(ns) = &self.namespace {
            check_namespace("kubernetes.namespace", ns)?;
        }
        for (key, path) in [
            ("kubeconfig", &self.kubeconfig),
            ("service_account_dir", &self.service_account_dir),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(Problem::invalid(format!(
                    "kubernetes.{key} is empty; leave it out for the default"
                )));
            }
        }
        Problem::no_blank("kubernetes", &[("context", self.context.as_deref())])
    }
}

/// A namespace: a DNS-1123 label.
fn check_namespace(at: &str, ns: &str) -> Result<(), Problem> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid(format!(
            "{at} `{ns}` is not a namespace name (1-63 characters of a-z 0-9 -, starting and \
             ending with a letter or digit)"
        )))
    }
}

/// A Secret's name: a DNS-1123 subdomain.
fn check_secret_name(at: &str, name: &str) -> Result<(), Problem> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(Problem::invalid(format!(
            "{at}.secret_name `{name}` is not a Secret name (lowercase a-z 0-9 - and ., at most \
             253 characters, each dot-separated part starting and ending with a letter or digit)"
        )))
    }
}

/// A key of a Secret's `data`.
fn check_key(at: &str, key: &str, value: Option<&str>) -> Result<(), Problem> {
    let Some(v) = value else { return Ok(()) };
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid(format!(
            "{at}.{key} `{v}` is not a Secret key (A-Z a-z 0-9 - _ ., at most 253 characters)"
        )))
    }
}

/// `credentials = { backend = "kubernetes", secret_name, namespace?, client_id_key?,
/// client_secret_key? }`: a Secret with the two keys (`kubectl create secret generic NAME
/// --from-literal=client_id=… --from-literal=client_secret=…`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesCredentialsConfig {
    /// The Secret's name.
    pub secret_name: String,
    /// Its namespace (default: `[kubernetes] namespace`, the context's or the service
    /// account's).
    pub namespace: Option<String>,
    /// Key of the client id (default `client_id`).
    pub client_id_key: Option<String>,
    /// Key of the client secret (default `client_secret`).
    pub client_secret_key: Option<String>,
}

impl CredentialsEntry for KubernetesCredentialsConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        check_secret_name(at, &self.secret_name)?;
        if let Some(ns) = &self.namespace {
            check_namespace(&format!("{at}.namespace"), ns)?;
        }
        check_key(at, "client_id_key", self.client_id_key.as_deref())?;
        check_key(at, "client_secret_key", self.client_secret_key.as_deref())
    }

    /// The name, compared with each store's loose identity (its name).
    fn identity(&self) -> Option<String> {
        Some(self.secret_name.clone())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn CredentialSource> {
        Box::new(KubeCredentials::new(
            ctx.clients.kubernetes.clone(),
            self.namespace.clone(),
            self.secret_name.clone(),
            CredentialKeys::named(
                self.client_id_key.as_deref(),
                self.client_secret_key.as_deref(),
            ),
        ))
    }
}

/// `namespace/name`, or the name when the namespace is the client's default (known only at
/// run time).
fn identity(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// `store = { backend = "kubernetes", secret_name, namespace?, keep_versions?,
/// create_if_missing? }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesStoreConfig {
    /// The token Secret's name.
    pub secret_name: String,
    /// Its namespace (default as for credentials).
    pub namespace: Option<String>,
    /// Versions kept in the Secret, the current one included (default 5, 2-50).
    pub keep_versions: Option<u32>,
    /// Create the Secret on the first write when it does not exist (default false: the
    /// manifests ship it empty, so the rotator needs no `create` on secrets, which RBAC cannot
    /// restrict by name).
    #[serde(default)]
    pub create_if_missing: bool,
}

impl StoreEntry for KubernetesStoreConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        check_secret_name(at, &self.secret_name)?;
        if let Some(ns) = &self.namespace {
            check_namespace(&format!("{at}.namespace"), ns)?;
        }
        if let Some(k) = self.keep_versions
            && !(2..=MAX_KEEP_VERSIONS).contains(&k)
        {
            return Err(Problem::invalid(format!(
                "{at}.keep_versions must be between 2 and {MAX_KEEP_VERSIONS} (got {k}); the \
                 previous version must stay readable and a Secret holds at most 1 MiB"
            )));
        }
        Ok(())
    }

    fn identity(&self) -> String {
        identity(self.namespace.as_deref(), &self.secret_name)
    }

    /// The name: an entry without a namespace may be in any.
    fn loose_identity(&self) -> String {
        self.secret_name.clone()
    }

    /// Versions and run state in one Secret; no lease (the `resourceVersion` precondition
    /// makes racing writers converge: one write wins, the others write nothing).
    fn build(&self, ctx: &BuildContext<'_>) -> StoreParts {
        StoreParts::of(Arc::new(KubeStore::new(
            ctx.clients.kubernetes.clone(),
            self.namespace.clone(),
            self.secret_name.clone(),
            self.keep_versions.unwrap_or(DEFAULT_KEEP_VERSIONS),
            self.create_if_missing,
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn message(text: &str) -> String {
        parse(text, "t.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    const OK: &str = r#"
[kubernetes]
namespace = "deepvue"

[[tokens]]
name = "prod"
credentials = { backend = "kubernetes", secret_name = "deepvue-credentials" }
store = { backend = "kubernetes", secret_name = "deepvue-token", keep_versions = 5 }
"#;

    #[test]
    fn entries_parse_and_names_are_checked() {
        assert_eq!(message(OK), "");
        for (bad, says) in [
            (
                OK.replace("\"deepvue-token\"", "\"Deepvue_Token\""),
                "is not a Secret name",
            ),
            (
                OK.replace("namespace = \"deepvue\"", "namespace = \"-x\""),
                "is not a namespace name",
            ),
            (
                OK.replace("keep_versions = 5", "keep_versions = 1"),
                "keep_versions must be between 2 and 50",
            ),
            (
                OK.replace(
                    "secret_name = \"deepvue-credentials\"",
                    "secret_name = \"deepvue-credentials\", client_id_key = \"a/b\"",
                ),
                "is not a Secret key",
            ),
            (
                OK.replace("deepvue-credentials", "deepvue-token"),
                "also the token store",
            ),
            (
                OK.replace(
                    "secret_name = \"deepvue-token\"",
                    "secret = \"deepvue-token\"",
                ),
                "secret",
            ),
        ] {
            let m = message(&bad);
            assert!(m.contains(says), "{says}: {m}");
        }
    }
}
