//! The `vault` backend: HashiCorp Vault / OpenBao KV v2 credentials and token store, on our own
//! small HTTP client (`client.rs`) with token, AppRole, Kubernetes and JWT auth (`auth.rs`).
//!
//! - `[vault]` ([`VaultSection`]): address, namespace, CA and auth for every Vault call of the
//!   process. The `VAULT_ADDR`, `VAULT_NAMESPACE`, `VAULT_CACERT` and `VAULT_TOKEN` defaults
//!   are read when the client is first built, not at config load.
//! - `credentials = { backend = "vault", path, mount?, version?, client_id_key?,
//!   client_secret_key? }` ([`VaultCredentialsConfig`]): one KV v2 read.
//! - `store = { backend = "vault", path, mount?, keep_versions? }` ([`VaultStoreConfig`]): the
//!   token document as KV v2 data, written with `options.cas` (see `store.rs`).
//!
//! Secrets under `auth` (`secret_id`, `token`, `jwt`) are accepted by reference only.

mod auth;
mod client;
mod credentials;
mod errors;
mod state_meta;
mod store;

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

pub use auth::DEFAULT_K8S_TOKEN;
pub use client::{VaultClient, VaultClients};
pub use credentials::VaultCredentials;
pub use errors::VaultError;
pub use state_meta::STATE_KEY_PREFIX;
pub use store::{VaultStore, WRITE_ID_KEY};

use super::{Backend, BuildContext, CredentialsEntry, SectionEntry, StoreEntry};
use crate::core::credentials::{CredentialKeys, CredentialSource};
use crate::core::parts::StoreParts;
use crate::support::problem::Problem;
use crate::support::secret_ref::SecretRef;
use crate::support::text::shown_url;
use crate::support::url::https_or_loopback_url;

/// The KV v2 mount used when an entry names none (Vault's and OpenBao's dev default).
pub const DEFAULT_MOUNT: &str = "secret";

/// `[vault]`: where Vault is and how to log in, shared by every Vault credential source and
/// store of the config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// `https://vault.example.com:8200` (default: `$VAULT_ADDR`); plain http only to loopback.
    pub address: Option<String>,
    /// Enterprise / HCP namespace (default: `$VAULT_NAMESPACE`).
    pub namespace: Option<String>,
    /// Extra trust anchor (PEM) on top of the OS roots (default: `$VAULT_CACERT`).
    pub ca_file: Option<PathBuf>,
    /// How to get a Vault token (default: `method = "token"`).
    #[serde(default)]
    pub auth: VaultAuth,
}

/// `[vault] auth = { method = "…", … }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum VaultAuth {
    /// A token given by reference, else `$VAULT_TOKEN`, else `~/.vault-token`.
    Token(TokenAuth),
    /// AppRole: `role_id` (inline or by reference) and `secret_id` by reference.
    Approle(AppRoleAuth),
    /// Kubernetes: the pod's service-account token (a file, by default the automounted one).
    Kubernetes(KubernetesAuth),
    /// JWT: a signed JWT (by reference) the auth method validates against its keys.
    Jwt(JwtAuth),
}

impl Default for VaultAuth {
    fn default() -> Self {
        VaultAuth::Token(TokenAuth::default())
    }
}

/// A value under `auth`: by reference (`{ env = … }` / `{ file = … }`) or written inline.
/// Inline is accepted only where the value is not a secret (`role_id`). `Debug` never prints
/// the value.
#[derive(Clone)]
pub enum AuthValue {
    /// Written in the file.
    Inline(SecretString),
    /// By reference.
    Ref(SecretRef),
}

impl std::fmt::Debug for AuthValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthValue::Inline(_) => f.write_str("Inline([REDACTED])"),
            AuthValue::Ref(r) => write!(f, "Ref({})", r.describe()),
        }
    }
}

impl<'de> Deserialize<'de> for AuthValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a string, or a reference { env = \"NAME\" } or { file = \"/path\" }"
        )]
        enum Raw {
            Inline(SecretString),
            Ref(SecretRef),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Inline(s) => AuthValue::Inline(s),
            Raw::Ref(r) => AuthValue::Ref(r),
        })
    }
}

impl AuthValue {
    /// A secret: only the reference form is valid.
    fn validate_secret(&self, at: &str, example: &str) -> Result<(), Problem> {
        match self {
            AuthValue::Inline(_) => Err(Problem::inline_secret(format!(
                "{at} holds a secret inline; secrets never belong in the config file. Give it by \
                 reference: {example}"
            ))),
            AuthValue::Ref(r) => r.validate(at),
        }
    }

    fn validate_plain(&self, at: &str) -> Result<(), Problem> {
        match self {
            AuthValue::Inline(s) => {
                use secrecy::ExposeSecret;
                if s.expose_secret().trim().is_empty() {
                    Err(Problem::invalid(format!("{at} is empty")))
                } else {
                    Ok(())
                }
            }
            AuthValue::Ref(r) => r.validate(at),
        }
    }
}

/// `auth = { method = "token", token? }`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAuth {
    /// The token, by reference (default: `$VAULT_TOKEN`, else `~/.vault-token`).
    pub token: Option<AuthValue>,
    /// Not applicable (the token method has no login); refused with a message.
    pub mount: Option<String>,
}

/// `auth = { method = "approle", role_id, secret_id = { … }, mount? }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleAuth {
    /// The role id (not a secret on its own; inline or by reference).
    pub role_id: AuthValue,
    /// The secret id, by reference only.
    pub secret_id: AuthValue,
    /// The auth mount (default `approle`).
    pub mount: Option<String>,
}

/// `auth = { method = "kubernetes", role, jwt?, mount? }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesAuth {
    /// The Vault role.
    pub role: String,
    /// The service-account token, by reference (default: the file [`DEFAULT_K8S_TOKEN`]).
    pub jwt: Option<AuthValue>,
    /// The auth mount (default `kubernetes`).
    pub mount: Option<String>,
}

/// `auth = { method = "jwt", role, jwt = { … }, mount? }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    /// The Vault role.
    pub role: String,
    /// The JWT, by reference only.
    pub jwt: AuthValue,
    /// The auth mount (default `jwt`).
    pub mount: Option<String>,
}

impl VaultAuth {
    /// The method name, as written in the config.
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token(_) => "token",
            VaultAuth::Approle(_) => "approle",
            VaultAuth::Kubernetes(_) => "kubernetes",
            VaultAuth::Jwt(_) => "jwt",
        }
    }

    /// The auth mount a login goes to (`None` for the token method).
    pub fn login_mount(&self) -> Option<&str> {
        match self {
            VaultAuth::Token(_) => None,
            VaultAuth::Approle(a) => Some(a.mount.as_deref().unwrap_or("approle")),
            VaultAuth::Kubernetes(k) => Some(k.mount.as_deref().unwrap_or("kubernetes")),
            VaultAuth::Jwt(j) => Some(j.mount.as_deref().unwrap_or("jwt")),
        }
    }

    fn validate(&self) -> Result<(), Problem> {
        let at = "vault.auth";
        let mount = match self {
            VaultAuth::Token(t) => {
                if t.mount.is_some() {
                    return Err(Problem::invalid(
                        "vault.auth.mount does not apply to method = \"token\" (there is no login)",
                    ));
                }
                if let Some(v) = &t.token {
                    v.validate_secret(
                        &format!("{at}.token"),
                        "token = { env = \"VAULT_TOKEN\" } or { file = \"/path\" }, or leave it \
                         out for $VAULT_TOKEN / ~/.vault-token",
                    )?;
                }
                None
            }
            VaultAuth::Approle(a) => {
                a.role_id.validate_plain(&format!("{at}.role_id"))?;
                a.secret_id.validate_secret(
                    &format!("{at}.secret_id"),
                    "secret_id = { file = \"/run/secrets/vault-secret-id\" } or { env = \"NAME\" }",
                )?;
                a.mount.as_deref()
            }
            VaultAuth::Kubernetes(k) => {
                check_role(&k.role)?;
                if let Some(v) = &k.jwt {
                    v.validate_secret(
                        &format!("{at}.jwt"),
                        &format!(
                            "jwt = {{ file = \"/path\" }}, or leave it out for {DEFAULT_K8S_TOKEN}"
                        ),
                    )?;
                }
                k.mount.as_deref()
            }
            VaultAuth::Jwt(j) => {
                check_role(&j.role)?;
                j.jwt.validate_secret(
                    &format!("{at}.jwt"),
                    "jwt = { file = \"/var/run/secrets/tokens/vault\" } or { env = \"NAME\" }",
                )?;
                j.mount.as_deref()
            }
        };
        if let Some(m) = mount {
            check_path(&format!("{at}.mount"), m)?;
        }
        Ok(())
    }
}

fn check_role(role: &str) -> Result<(), Problem> {
    if role.trim().is_empty() || role.contains('/') {
        return Err(Problem::invalid(format!(
            "vault.auth.role `{role}` must be a role name"
        )));
    }
    Ok(())
}

/// The `vault` backend: KV v2 credentials and token store, on our own client (one login per
/// process, renewed by [`Backend::maintain`]).
pub struct Vault;

impl Backend for Vault {
    type Section = VaultSection;
    type Clients = VaultClients;
    type Credentials = VaultCredentialsConfig;
    type Store = VaultStoreConfig;

    fn clients(section: &VaultSection) -> Arc<VaultClients> {
        VaultClients::new(section)
    }

    fn maintain(clients: &Arc<VaultClients>) -> futures::future::BoxFuture<'static, ()> {
        let clients = clients.clone();
        Box::pin(async move { clients.maintain().await })
    }
}

impl SectionEntry for VaultSection {
    fn validate(&self) -> Result<(), Problem> {
        if let Some(a) = &self.address {
            check_address("vault.address", a)?;
        }
        if let Some(ns) = &self.namespace
            && ns.trim_matches('/').trim().is_empty()
        {
            return Err(Problem::invalid(
                "vault.namespace is empty (leave it out for the root namespace)",
            ));
        }
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            return Err(Problem::invalid(format!(
                "vault.ca_file `{}` does not exist or is not a file",
                ca.display()
            )));
        }
        self.auth.validate()
    }

    /// `check`'s HTTPS note for a configured address (one from `$VAULT_ADDR` is checked when
    /// the client is built, i.e. by the store and credentials checks).
    fn endpoint_note(&self) -> Option<String> {
        let addr = self.address.as_deref()?;
        let loopback = if addr.starts_with("http://") {
            " (loopback dev server)"
        } else {
            ""
        };
        Some(format!("vault {}{loopback}", shown_url(addr)))
    }
}

/// A Vault address: `https://`, or plain `http://` to a loopback dev server; no user info,
/// query or fragment.
pub(crate) fn check_address(at: &str, value: &str) -> Result<url::Url, Problem> {
    let url = https_or_loopback_url(at, value)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Problem::invalid(format!(
            "{at} `{}` has no host",
            shown_url(value)
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Problem::invalid(format!(
            "{at} must not carry user info; the Vault token comes from [vault] auth"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Problem::invalid(format!(
            "{at} `{}` must not have a query or fragment",
            shown_url(value)
        )));
    }
    Ok(url)
}

/// A mount or secret path: segments separated by `/`, no empty, `.` or `..` segment, no
/// leading or trailing `/`, no whitespace or control characters.
fn check_path(at: &str, value: &str) -> Result<(), Problem> {
    let bad = value.is_empty()
        || value.len() > 512
        || value
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "?#%*+".contains(c));
    if bad {
        return Err(Problem::invalid(format!(
            "{at} `{value}` is not a Vault path (segments separated by `/`, no leading or \
             trailing `/`, no empty, `.` or `..` segments, no spaces or `? # % * +`)"
        )));
    }
    Ok(())
}

fn check_mount_and_path(at: &str, mount: Option<&str>, path: &str) -> Result<(), Problem> {
    check_path(&format!("{at}.mount"), mount.unwrap_or(DEFAULT_MOUNT))?;
    check_path(&format!("{at}.path"), path)?;
    if path.starts_with("data/") || path.starts_with("metadata/") {
        return Err(Problem::invalid(format!(
            "{at}.path `{path}` starts with `data/` or `metadata/`: give the secret's path \
             without the KV v2 API prefix (e.g. `deepvue/prod/token`); the mount is {at}.mount"
        )));
    }
    Ok(())
}

/// `credentials = { backend = "vault", path, mount?, version?, client_id_key?,
/// client_secret_key? }`: KV v2 data with the two fields.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultCredentialsConfig {
    /// The secret's path inside the mount (`deepvue/prod/credentials`).
    pub path: String,
    /// The KV v2 mount (default `secret`).
    pub mount: Option<String>,
    /// A fixed version to read (default: the latest).
    pub version: Option<u64>,
    /// Key of the client id (default `client_id`).
    pub client_id_key: Option<String>,
    /// Key of the client secret (default `client_secret`).
    pub client_secret_key: Option<String>,
}

impl VaultCredentialsConfig {
    fn mount(&self) -> &str {
        self.mount.as_deref().unwrap_or(DEFAULT_MOUNT)
    }
}

impl CredentialsEntry for VaultCredentialsConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        check_mount_and_path(at, self.mount.as_deref(), &self.path)?;
        if self.version == Some(0) {
            return Err(Problem::invalid(format!(
                "{at}.version must be at least 1 (leave it out for the latest version)"
            )));
        }
        Problem::no_blank(
            at,
            &[
                ("client_id_key", self.client_id_key.as_deref()),
                ("client_secret_key", self.client_secret_key.as_deref()),
            ],
        )
    }

    /// `mount/path`, as a store's identity (a token's store must not be its credentials).
    fn identity(&self) -> Option<String> {
        Some(format!("{}/{}", self.mount(), self.path))
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn CredentialSource> {
        Box::new(VaultCredentials::new(
            ctx.clients.vault.clone(),
            self.mount().to_string(),
            self.path.clone(),
            self.version,
            CredentialKeys::named(
                self.client_id_key.as_deref(),
                self.client_secret_key.as_deref(),
            ),
        ))
    }
}

/// `store = { backend = "vault", path, mount?, keep_versions? }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultStoreConfig {
    /// The secret's path inside the mount (`deepvue/prod/token`).
    pub path: String,
    /// The KV v2 mount (default `secret`).
    pub mount: Option<String>,
    /// The path's `max_versions` (default: Vault's own setting is left alone).
    pub keep_versions: Option<u32>,
}

impl VaultStoreConfig {
    fn mount(&self) -> &str {
        self.mount.as_deref().unwrap_or(DEFAULT_MOUNT)
    }
}

impl StoreEntry for VaultStoreConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        check_mount_and_path(at, self.mount.as_deref(), &self.path)?;
        if let Some(k) = self.keep_versions
            && !(2..=1000).contains(&k)
        {
            return Err(Problem::invalid(format!(
                "{at}.keep_versions must be between 2 and 1000 (got {k}); the previous version \
                 must stay readable. Leave it out to keep Vault's own max_versions"
            )));
        }
        Ok(())
    }

    /// `mount/path`.
    fn identity(&self) -> String {
        format!("{}/{}", self.mount(), self.path)
    }

    /// Versions with `cas`, run state in `custom_metadata`; no lease (`cas` makes racing
    /// writers converge).
    fn build(&self, ctx: &BuildContext<'_>) -> StoreParts {
        StoreParts::of(Arc::new(VaultStore::new(
            ctx.clients.vault.clone(),
            self.mount().to_string(),
            self.path.clone(),
            self.keep_versions,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProblemCategory, parse};

    /// The issue's example, verbatim.
    const ISSUE_EXAMPLE: &str = r#"
[vault]
address = "https://vault.example.com:8200"   # default: $VAULT_ADDR
# namespace = "team-a"                       # default: $VAULT_NAMESPACE (Enterprise / HCP)
# ca_file = "/etc/ssl/vault-ca.pem"          # default: $VAULT_CACERT, else the OS roots
auth = { method = "approle", role_id = "0b7e…", secret_id = { file = "/run/secrets/vault-secret-id" } }
# auth = { method = "token" }               # $VAULT_TOKEN, else ~/.vault-token; or token = { env = "…" }
# auth = { method = "kubernetes", role = "deepvue-rotator" }   # service-account token file by default
# auth = { method = "jwt", role = "deepvue-rotator", jwt = { file = "/var/run/secrets/tokens/vault" } }
# every method takes mount = "…" for a non-default auth mount

[[tokens]]
name = "prod"
credentials = { backend = "vault", path = "deepvue/prod/credentials" }   # mount = "secret" by default
store = { backend = "vault", path = "deepvue/prod/token", keep_versions = 10 }
"#;

    #[test]
    fn the_issue_example_works_verbatim() {
        let c = parse(ISSUE_EXAMPLE, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let v = &c.backends.vault;
        assert_eq!(v.address.as_deref(), Some("https://vault.example.com:8200"));
        assert!(matches!(&v.auth, VaultAuth::Approle(a) if a.mount.is_none()));
        assert_eq!(v.auth.login_mount(), Some("approle"));
        let t = &c.tokens[0];
        assert_eq!(
            (t.credentials.identity(), t.store.identity()),
            (
                Some(("vault", "secret/deepvue/prod/credentials".to_string())),
                ("vault", "secret/deepvue/prod/token".to_string())
            )
        );
        assert!(
            matches!(&t.store, crate::backends::StoreConfig::Vault(s) if s.keep_versions == Some(10))
        );
        // The commented alternatives parse too.
        for auth in [
            r#"{ method = "token" }"#,
            r#"{ method = "token", token = { env = "VAULT_TOKEN_PROD" } }"#,
            r#"{ method = "kubernetes", role = "deepvue-rotator" }"#,
            r#"{ method = "jwt", role = "deepvue-rotator", jwt = { file = "/var/run/secrets/tokens/vault" } }"#,
            r#"{ method = "approle", mount = "ci-approle", role_id = { env = "ROLE_ID" }, secret_id = { env = "SECRET_ID" } }"#,
            r#"{ method = "kubernetes", role = "r", mount = "k8s-prod" }"#,
        ] {
            let text = ISSUE_EXAMPLE.replace(
                r#"auth = { method = "approle", role_id = "0b7e…", secret_id = { file = "/run/secrets/vault-secret-id" } }"#,
                &format!("auth = {auth}"),
            );
            if let Err(e) = parse(&text, "test.toml") {
                panic!("{auth}: {e}");
            }
        }
    }

    #[test]
    fn inline_auth_secrets_are_refused_as_inline_secrets() {
        let approle = r#"auth = { method = "approle", role_id = "0b7e…", secret_id = { file = "/run/secrets/vault-secret-id" } }"#;
        for (auth, key) in [
            (
                r#"auth = { method = "approle", role_id = "r", secret_id = "SENTINEL-sid" }"#,
                "secret_id",
            ),
            (
                r#"auth = { method = "token", token = "SENTINEL-tok" }"#,
                "token",
            ),
            (
                r#"auth = { method = "jwt", role = "r", jwt = "SENTINEL-jwt" }"#,
                "jwt",
            ),
            (
                r#"auth = { method = "kubernetes", role = "r", jwt = "SENTINEL-jwt" }"#,
                "jwt",
            ),
        ] {
            let text = ISSUE_EXAMPLE.replace(approle, auth);
            let e = parse(&text, "test.toml")
                .err()
                .unwrap_or_else(|| panic!("{auth} must be refused"));
            assert_eq!(e.category, ProblemCategory::InlineSecret, "{auth}: {e}");
            assert!(e.message.contains(key), "{e}");
            assert!(!e.to_string().contains("SENTINEL"), "{e}");
        }
        // An AWS secret_id is a name and stays inline; the role_id may be inline.
        assert!(parse(ISSUE_EXAMPLE, "test.toml").is_ok());
    }

    #[test]
    fn config_problems_name_the_key() {
        let cases = [
            (
                r#"address = "https://vault.example.com:8200""#,
                r#"address = "http://vault.example.com:8200""#,
                "vault.address must use https://",
            ),
            (
                r#"path = "deepvue/prod/token", keep_versions = 10"#,
                r#"path = "deepvue/prod/token", keep_versions = 1"#,
                "keep_versions must be between 2 and 1000",
            ),
            (
                r#"path = "deepvue/prod/token", keep_versions = 10"#,
                r#"path = "deepvue/prod/credentials""#,
                "is also the token store",
            ),
            (
                r#"path = "deepvue/prod/token", keep_versions = 10"#,
                r#"path = "/deepvue/prod/token""#,
                "is not a Vault path",
            ),
            (
                r#"auth = { method = "approle", role_id = "0b7e…", secret_id = { file = "/run/secrets/vault-secret-id" } }"#,
                r#"auth = { method = "token", mount = "x" }"#,
                "does not apply to method = \"token\"",
            ),
            (
                r#"auth = { method = "approle", role_id = "0b7e…", secret_id = { file = "/run/secrets/vault-secret-id" } }"#,
                r#"auth = { method = "ldap" }"#,
                "unknown variant `ldap`",
            ),
        ];
        for (from, to, want) in cases {
            let text = ISSUE_EXAMPLE.replace(from, to);
            assert_ne!(text, ISSUE_EXAMPLE, "{from}");
            let e = parse(&text, "test.toml")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(want), "{to}: {e}");
        }
        // Plain http to loopback (a dev server) is fine.
        let text = ISSUE_EXAMPLE.replace("https://vault.example.com:8200", "http://127.0.0.1:8200");
        assert!(parse(&text, "test.toml").is_ok());
    }

    #[test]
    fn paths_are_checked() {
        for ok in ["deepvue/prod/token", "a", "team-a/x_y.z@1"] {
            assert!(check_path("p", ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a/../b", "a b", "a?b", "a#b"] {
            assert!(check_path("p", bad).is_err(), "{bad:?}");
        }
        let e = check_mount_and_path("tokens[0].store", None, "data/deepvue/token")
            .err()
            .map(|p| p.message)
            .unwrap_or_default();
        assert!(e.contains("without the KV v2 API prefix"), "{e}");
    }

    #[test]
    fn addresses_are_https_or_loopback_http() {
        assert!(check_address("vault.address", "https://vault.example.com:8200").is_ok());
        assert!(check_address("vault.address", "http://127.0.0.1:8200").is_ok());
        let e = check_address("vault.address", "http://vault.example.com:8200")
            .err()
            .unwrap_or_else(|| Problem::invalid(""));
        assert_eq!(
            e.category,
            crate::support::problem::ProblemCategory::InsecureEndpoint
        );
        assert!(check_address("vault.address", "https://u:p@vault.example.com").is_err());
    }
}
