//! The `gcp` backend: GCP Secret Manager credentials and token store, on one lazily built
//! Secret Manager client (`google-cloud-secretmanager-v1` over HTTP+JSON, ring only) with
//! Application Default Credentials.
//!
//! - `client.rs`: `GcpClients` (the client, built once per process; the project, resolved once).
//! - `errors.rs`: `classify()`, the one place Secret Manager errors become classes.
//! - `store.rs`: `GcpStore` (versions, the lease, version GC); `lease.rs`: the lease record;
//!   `state_annotations.rs`: run state in annotations.
//! - `credentials.rs`: `GcpCredentials`.

mod client;
mod crc32c;
mod credentials;
mod errors;
mod lease;
pub mod pubsub;
mod state_annotations;
mod store;

use std::sync::Arc;

use serde::Deserialize;

pub use client::{GcpClients, GcpSetupError};
pub use crc32c::crc32c;
pub use credentials::GcpCredentials;
pub use errors::classify;
pub use lease::{LEASE_ANNOTATION, LeaseRecord};
pub use state_annotations::STATE_ANNOTATION_PREFIX;
pub use store::GcpStore;

use super::{Backend, BuildContext, CredentialsEntry, SectionEntry, StoreEntry};
use crate::core::credentials::{CredentialKeys, CredentialSource};
use crate::core::parts::StoreParts;
use crate::support::net::is_loopback;
use crate::support::problem::Problem;
use crate::support::text::shown_url;

/// Default `keep_versions`.
pub const DEFAULT_KEEP_VERSIONS: u32 = 5;

/// The `gcp` backend: Secret Manager credentials and token store (with an etag-guarded lease),
/// on one client per process.
pub struct Gcp;

impl Backend for Gcp {
    type Section = GcpSection;
    type Clients = GcpClients;
    type Credentials = GcpCredentialsConfig;
    type Store = GcpStoreConfig;

    fn clients(section: &GcpSection) -> Arc<GcpClients> {
        GcpClients::new(section)
    }
}

/// `[gcp]`: settings for every Secret Manager client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSection {
    /// Project of short secret ids (else `GOOGLE_CLOUD_PROJECT`, the ADC file's `project_id` /
    /// `quota_project_id`, or the metadata server's project).
    pub project: Option<String>,
    /// Endpoint override (fakes, emulators); plain http only on loopback.
    pub endpoint_url: Option<String>,
    /// Send no credentials (only with `endpoint_url`).
    #[serde(default)]
    pub anonymous: bool,
    /// Send Google credentials to an `endpoint_url` that is not a `googleapis.com` host (a
    /// private endpoint or a proxy you run). Default false: such an endpoint would receive
    /// the service account's access tokens.
    #[serde(default)]
    pub allow_custom_endpoint_with_credentials: bool,
}

impl SectionEntry for GcpSection {
    fn endpoint_note(&self) -> Option<String> {
        self.endpoint_url.as_ref().map(|e| {
            format!(
                "gcp {}{}",
                shown_url(e),
                if e.starts_with("http://") {
                    " (loopback emulator)"
                } else {
                    ""
                }
            )
        })
    }

    fn validate(&self) -> Result<(), Problem> {
        if let Some(p) = &self.project
            && !valid_project(p)
        {
            return Err(Problem::invalid(format!(
                "gcp.project `{p}` is not a project id (6-30 characters: lowercase letters, \
                 digits, hyphens) or number"
            )));
        }
        if let Some(e) = &self.endpoint_url {
            // No user info, query or fragment: the client would send or print them.
            let url = crate::support::url::plain_endpoint("gcp.endpoint_url", e)?;
            if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
                return Err(Problem::insecure(format!(
                    "gcp.endpoint_url must use https:// (plain http only for a loopback \
                     emulator; got `{}`)",
                    shown_url(e)
                )));
            }
            let google = url.host_str().is_some_and(|h| {
                let h = h.trim_end_matches('.').to_ascii_lowercase();
                h == "googleapis.com" || h.ends_with(".googleapis.com")
            });
            if !self.anonymous && !google && !self.allow_custom_endpoint_with_credentials {
                return Err(Problem::insecure(format!(
                    "gcp.endpoint_url `{}` is not a googleapis.com host, and Google credentials \
                     would be sent to it: set anonymous = true for a fake or emulator, or \
                     allow_custom_endpoint_with_credentials = true for an endpoint you run",
                    shown_url(e)
                )));
            }
        }
        if self.anonymous && self.endpoint_url.is_none() {
            return Err(Problem::invalid(
                "gcp.anonymous = true sends no credentials and works only against a fake or \
                 emulator: set gcp.endpoint_url too (or remove anonymous to use Application \
                 Default Credentials)",
            ));
        }
        Ok(())
    }
}

/// A project id (`my-project`, 6-30 characters) or number; legacy domain-scoped ids
/// (`example.com:proj`) too.
fn valid_project(p: &str) -> bool {
    let id = p.rsplit(':').next().unwrap_or(p);
    !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// A secret as configured: `S` (in the default project) or `projects/P/secrets/S`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretName {
    /// The project, when the id names one.
    pub project: Option<String>,
    /// The secret id.
    pub secret: String,
}

impl SecretName {
    /// Parse a configured `secret_id`.
    pub fn parse(id: &str) -> Option<SecretName> {
        let (project, secret) = match id.strip_prefix("projects/") {
            Some(rest) => {
                let (p, s) = rest.split_once("/secrets/")?;
                if !valid_project(p) {
                    return None;
                }
                (Some(p.to_string()), s)
            }
            None => (None, id),
        };
        let ok = !secret.is_empty()
            && secret.len() <= 255
            && secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        ok.then(|| SecretName {
            project,
            secret: secret.to_string(),
        })
    }

    /// The resource name in `project` (unless the id names its own).
    pub fn resource(&self, default_project: &str) -> String {
        format!(
            "projects/{}/secrets/{}",
            self.project.as_deref().unwrap_or(default_project),
            self.secret
        )
    }
}

fn check_secret_id(at: &str, id: &str) -> Result<SecretName, Problem> {
    if id.trim().is_empty() {
        return Err(Problem::invalid(format!("{at}.secret_id is empty")));
    }
    SecretName::parse(id).ok_or_else(|| {
        Problem::invalid(format!(
            "{at}.secret_id `{id}` is not a Secret Manager secret id (1-255 letters, digits, `-` \
             or `_`) or `projects/PROJECT/secrets/ID`"
        ))
    })
}

/// `credentials = { backend = "gcp", secret_id, version?, client_id_key?, client_secret_key? }`:
/// a secret whose payload is JSON with the two fields.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpCredentialsConfig {
    /// Secret id or `projects/P/secrets/S`.
    pub secret_id: String,
    /// Version to read: a number, an alias or `latest` (default).
    pub version: Option<String>,
    /// JSON key of the client id (default `client_id`).
    pub client_id_key: Option<String>,
    /// JSON key of the client secret (default `client_secret`).
    pub client_secret_key: Option<String>,
}

impl CredentialsEntry for GcpCredentialsConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        check_secret_id(at, &self.secret_id)?;
        Problem::no_blank(
            at,
            &[
                ("version", self.version.as_deref()),
                ("client_id_key", self.client_id_key.as_deref()),
                ("client_secret_key", self.client_secret_key.as_deref()),
            ],
        )?;
        if let Some(v) = &self.version
            && !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Problem::invalid(format!(
                "{at}.version `{v}` is not a version number, alias or `latest`"
            )));
        }
        Ok(())
    }

    fn identity(&self) -> Option<String> {
        Some(identity(&self.secret_id))
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn CredentialSource> {
        Box::new(GcpCredentials::new(
            ctx.clients.gcp.clone(),
            self.secret_id.clone(),
            self.version.clone().unwrap_or_else(|| "latest".into()),
            CredentialKeys::named(
                self.client_id_key.as_deref(),
                self.client_secret_key.as_deref(),
            ),
        ))
    }
}

/// `store = { backend = "gcp", secret_id, keep_versions? }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpStoreConfig {
    /// Secret id or `projects/P/secrets/S`; the secret must exist.
    pub secret_id: String,
    /// Versions kept after a rotation (default 5, at least 2); older ones are destroyed.
    pub keep_versions: Option<u32>,
}

impl StoreEntry for GcpStoreConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        check_secret_id(at, &self.secret_id)?;
        if let Some(k) = self.keep_versions
            && !(2..=1000).contains(&k)
        {
            return Err(Problem::invalid(format!(
                "{at}.keep_versions must be between 2 and 1000 (got {k}): the newest two \
                 versions (current and previous) are always kept"
            )));
        }
        Ok(())
    }

    /// `projects/P/secrets/S` as written, or the short id: a short id and a full one of the
    /// same secret are not recognised as one (the default project is known only at run time).
    fn identity(&self) -> String {
        identity(&self.secret_id)
    }

    /// Versions, the lease and run state (annotations) on the secret; a lease lives
    /// `lock_timeout`.
    fn build(&self, ctx: &BuildContext<'_>) -> StoreParts {
        let store = Arc::new(GcpStore::new(
            ctx.clients.gcp.clone(),
            self.secret_id.clone(),
            self.keep_versions.unwrap_or(DEFAULT_KEEP_VERSIONS),
            ctx.lock_timeout,
        ));
        StoreParts::of(store.clone()).with_leases(store)
    }
}

fn identity(id: &str) -> String {
    match SecretName::parse(id) {
        Some(SecretName {
            project: Some(p),
            secret,
        }) => format!("projects/{p}/secrets/{secret}"),
        Some(n) => n.secret,
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_ids_short_and_full() {
        assert_eq!(
            SecretName::parse("deepvue-prod-token").map(|n| n.resource("p1")),
            Some("projects/p1/secrets/deepvue-prod-token".to_string())
        );
        assert_eq!(
            SecretName::parse("projects/other-proj/secrets/tok").map(|n| n.resource("p1")),
            Some("projects/other-proj/secrets/tok".to_string())
        );
        for bad in [
            "",
            "a/b",
            "projects/p1/secrets/",
            "projects//secrets/x",
            "x y",
            "projects/P1/secrets/x",
        ] {
            assert!(SecretName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn section_rules() {
        let s = |e: Option<&str>, anon: bool| GcpSection {
            project: Some("my-project".into()),
            endpoint_url: e.map(str::to_string),
            anonymous: anon,
            allow_custom_endpoint_with_credentials: false,
        };
        assert!(s(None, false).validate().is_ok());
        assert!(
            s(None, true).validate().is_err(),
            "anonymous needs an endpoint"
        );
        assert!(s(Some("http://127.0.0.1:8085"), true).validate().is_ok());
        assert!(s(Some("http://example.com"), false).validate().is_err());
        // Credentials go to Google's hosts only, unless said explicitly.
        assert!(s(Some("https://example.com"), false).validate().is_err());
        assert!(s(Some("https://example.com"), true).validate().is_ok());
        assert!(
            s(Some("https://secretmanager.googleapis.com"), false)
                .validate()
                .is_ok()
        );
        assert!(
            s(
                Some("https://secretmanager.googleapis.com.evil.example"),
                false
            )
            .validate()
            .is_err()
        );
        let allowed = GcpSection {
            allow_custom_endpoint_with_credentials: true,
            ..s(Some("https://private.example/sm"), false)
        };
        assert!(allowed.validate().is_ok());
        for bad in [
            "https://user:pw@secretmanager.googleapis.com",
            "https://secretmanager.googleapis.com/?key=x",
            "https://secretmanager.googleapis.com/#f",
        ] {
            assert!(s(Some(bad), false).validate().is_err(), "{bad}");
        }
        assert!(
            GcpSection {
                project: Some("My Project".into()),
                ..GcpSection::default()
            }
            .validate()
            .is_err()
        );
    }
}
