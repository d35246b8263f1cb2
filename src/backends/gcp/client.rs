//! One Secret Manager client per process, built on first use, and the default project.
//!
//! - **Credentials**: Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, the
//!   gcloud ADC file, then the metadata server), or none with `[gcp] anonymous = true`.
//! - **Trust store**: the client crates verify TLS with rustls-platform-verifier (the OS store,
//!   or `SSL_CERT_FILE` / `SSL_CERT_DIR`); they cannot take ours. The process provider is ring.
//! - **Retries**: bounded. The crates' default retries connect and TLS errors for up to 60 s;
//!   here every call has [`ATTEMPT_TIMEOUT`] per attempt and [`RETRY_BUDGET`] in all, so a bad
//!   trust store or an unreachable endpoint fails within seconds. Writes (PATCH, POST) are
//!   retried only when they provably never reached the server (connect errors).
//! - **Project** of short secret ids: `[gcp] project`, else `GOOGLE_CLOUD_PROJECT`, else the
//!   ADC file's `project_id` (service account) or `quota_project_id` (user), else the metadata
//!   server's `project/project-id` (`Metadata-Flavor: Google`, honouring `GCE_METADATA_HOST`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_secretmanager_v1::client::SecretManagerService;
use tokio::sync::OnceCell;

use super::GcpSection;

/// One attempt of one call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// All attempts of one call.
pub const RETRY_BUDGET: Duration = Duration::from_secs(25);
const ATTEMPTS: u32 = 3;
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// The client or the project could not be set up. Never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum GcpSetupError {
    /// ADC could not be loaded.
    #[error(
        "cannot load Google Application Default Credentials ({0}); set \
         GOOGLE_APPLICATION_CREDENTIALS to a key or credentials file, run `gcloud auth \
         application-default login`, or run on GCP with a service account"
    )]
    Credentials(String),
    /// The client could not be built.
    #[error("cannot build the Secret Manager client: {0}")]
    Client(String),
    /// No project for a short secret id.
    #[error(
        "no GCP project for the short secret id: set [gcp] project, GOOGLE_CLOUD_PROJECT, or \
         use projects/PROJECT/secrets/ID ({0})"
    )]
    NoProject(String),
}

/// Lazily built Secret Manager client and default project, shared by every token of a config.
pub struct GcpClients {
    section: GcpSection,
    client: OnceCell<SecretManagerService>,
    credentials: OnceCell<google_cloud_auth::credentials::Credentials>,
    project: OnceCell<String>,
}

impl GcpClients {
    /// Clients for this `[gcp]` section (nothing is built yet).
    pub fn new(section: &GcpSection) -> Arc<Self> {
        Arc::new(GcpClients {
            section: section.clone(),
            client: OnceCell::new(),
            credentials: OnceCell::new(),
            project: OnceCell::new(),
        })
    }

    /// The section these clients were made for.
    pub fn section(&self) -> &GcpSection {
        &self.section
    }

    /// The Secret Manager client, built on first use (a failure is not cached).
    pub async fn secret_manager(&self) -> Result<&SecretManagerService, GcpSetupError> {
        self.client
            .get_or_try_init(|| async {
                let credentials = self.credentials().await?.clone();
                let mut builder = SecretManagerService::builder()
                    .with_credentials(credentials)
                    .with_retry_policy(
                        Aip194Strict
                            .with_attempt_limit(ATTEMPTS)
                            .with_time_limit(RETRY_BUDGET),
                    )
                    .with_attempt_timeout(ATTEMPT_TIMEOUT);
                // Never follow a redirect: it would carry the credentials (and the payload)
                // to wherever the answer points. (gax's own switch, hidden from its docs.)
                builder = google_cloud_gax::client_builder::internal::with_follow_redirects(
                    builder, false,
                );
                if let Some(e) = &self.section.endpoint_url {
                    builder = builder.with_endpoint(e.trim_end_matches('/'));
                }
                builder
                    .build()
                    .await
                    .map_err(|e| GcpSetupError::Client(e.to_string()))
            })
            .await
    }

    /// The credentials every client of this section uses, loaded once (a failure is not
    /// cached).
    async fn credentials(
        &self,
    ) -> Result<&google_cloud_auth::credentials::Credentials, GcpSetupError> {
        self.credentials
            .get_or_try_init(|| async {
                if self.section.anonymous {
                    Ok(google_cloud_auth::credentials::anonymous::Builder::new().build())
                } else {
                    google_cloud_auth::credentials::Builder::default()
                        .build()
                        .map_err(|e| GcpSetupError::Credentials(e.to_string()))
                }
            })
            .await
    }

    /// The request headers that authenticate a REST call (`Authorization: Bearer …`; none
    /// when anonymous), for the APIs without a client crate here (Pub/Sub).
    pub async fn auth_headers(&self) -> Result<http::HeaderMap, GcpSetupError> {
        use google_cloud_auth::credentials::CacheableResource;
        match self
            .credentials()
            .await?
            .headers(http::Extensions::new())
            .await
            .map_err(|e| GcpSetupError::Credentials(e.to_string()))?
        {
            CacheableResource::New { data, .. } => Ok(data),
            // Only answered to a caller that sent an entity tag; this one sends none.
            CacheableResource::NotModified => Ok(http::HeaderMap::new()),
        }
    }

    /// The project short secret ids live in, resolved once.
    pub async fn project(&self) -> Result<&str, GcpSetupError> {
        self.project
            .get_or_try_init(|| async { resolve_project(&self.section).await })
            .await
            .map(String::as_str)
    }
}

async fn resolve_project(section: &GcpSection) -> Result<String, GcpSetupError> {
    if let Some(p) = &section.project {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var("GOOGLE_CLOUD_PROJECT")
        .ok()
        .filter(|p| !p.trim().is_empty())
    {
        return Ok(p.trim().to_string());
    }
    let mut tried = vec!["GOOGLE_CLOUD_PROJECT is unset".to_string()];
    match adc_file().map(|f| (f.clone(), std::fs::read(&f))) {
        Some((file, Ok(bytes))) => match project_of_adc(&bytes) {
            Some(p) => return Ok(p),
            None => tried.push(format!(
                "{} has no project_id or quota_project_id",
                file.display()
            )),
        },
        Some((file, Err(e))) => tried.push(format!("{}: {e}", file.display())),
        None => tried.push("no ADC file".into()),
    }
    if section.anonymous {
        tried.push("anonymous: the metadata server is not asked".into());
    } else {
        match metadata_project().await {
            Ok(p) => return Ok(p),
            Err(e) => tried.push(format!("metadata server: {e}")),
        }
    }
    Err(GcpSetupError::NoProject(tried.join("; ")))
}

/// The ADC file: `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's well-known file.
fn adc_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".config/gcloud/application_default_credentials.json");
    p.is_file().then_some(p)
}

/// `project_id` (service account, external account) or `quota_project_id` (user) of an ADC
/// file; nothing else of it is kept.
pub(super) fn project_of_adc(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Adc {
        project_id: Option<String>,
        quota_project_id: Option<String>,
    }
    let adc: Adc = serde_json::from_slice(bytes).ok()?;
    adc.project_id
        .or(adc.quota_project_id)
        .filter(|p| !p.trim().is_empty())
}

async fn metadata_project() -> Result<String, String> {
    let host = std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "metadata.google.internal".into());
    let url = format!(
        "http://{}/computeMetadata/v1/project/project-id",
        host.trim()
    );
    // Plain HTTP to the link-local metadata server, as every Google client does.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(METADATA_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{host} answered HTTP {}", resp.status().as_u16()));
    }
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let p = text.trim();
    if p.is_empty() || p.len() > 100 {
        return Err(format!("{host} gave no project id"));
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adc_project_fields() {
        assert_eq!(
            project_of_adc(br#"{"type":"service_account","project_id":"p1","private_key":"x"}"#),
            Some("p1".into())
        );
        assert_eq!(
            project_of_adc(br#"{"type":"authorized_user","quota_project_id":"q1"}"#),
            Some("q1".into())
        );
        assert_eq!(project_of_adc(br#"{"type":"authorized_user"}"#), None);
        assert_eq!(project_of_adc(b"not json"), None);
    }
}
