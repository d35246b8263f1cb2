//! One AWS SDK config per process: the HTTPS client on the process's TLS stack (the shared
//! trust store plus `[aws] ca_file`, see `http.rs`), the standard credential chain and the
//! `[aws]` overrides. Every AWS client (Secrets Manager, SNS) is built from it.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::OnceCell;

use super::AwsSection;
use super::http::ReqwestHttpClient;
use crate::support::tls::{TlsError, client_config};

/// The AWS HTTP client could not be set up (trust store, CA file). Names files, never content.
#[derive(Debug, thiserror::Error)]
#[error("AWS TLS setup: {0}")]
pub struct SdkSetupError(#[from] TlsError);

/// Load the SDK config: `[aws]` region / endpoint_url / profile over the standard chain
/// (environment, profile, web identity, ECS, IMDS; `AWS_ENDPOINT_URL` is honoured). The
/// credential and region providers use the same HTTP client.
pub async fn sdk_config(cfg: &AwsSection) -> Result<SdkConfig, SdkSetupError> {
    let tls = client_config(cfg.ca_file.as_deref())?;
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(ReqwestHttpClient::new(tls));
    if let Some(r) = &cfg.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &cfg.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    if let Some(p) = &cfg.profile {
        loader = loader.profile_name(p);
    }
    Ok(loader.load().await)
}

/// Lazily built AWS clients shared by every token and sink of one config: a run that touches
/// no AWS backend never loads the credential chain, and one that does loads it once.
pub struct AwsClients {
    section: AwsSection,
    sdk: OnceCell<SdkConfig>,
    sm: OnceCell<aws_sdk_secretsmanager::Client>,
    sns: OnceCell<aws_sdk_sns::Client>,
    /// Secrets Manager clients for secrets named by an ARN of another region than the
    /// configured one (a fan-out across regions), built on first use.
    regional: tokio::sync::Mutex<std::collections::HashMap<String, aws_sdk_secretsmanager::Client>>,
}

impl AwsClients {
    /// Clients for this `[aws]` section (nothing is built yet).
    pub fn new(section: &AwsSection) -> Arc<Self> {
        Arc::new(AwsClients {
            section: section.clone(),
            sdk: OnceCell::new(),
            sm: OnceCell::new(),
            sns: OnceCell::new(),
            regional: Default::default(),
        })
    }

    /// Clients around an already built Secrets Manager client (tests, embedders).
    pub fn with_secrets_manager(
        section: &AwsSection,
        client: aws_sdk_secretsmanager::Client,
    ) -> Arc<Self> {
        Arc::new(AwsClients {
            section: section.clone(),
            sdk: OnceCell::new(),
            sm: OnceCell::new_with(Some(client)),
            sns: OnceCell::new(),
            regional: Default::default(),
        })
    }

    async fn sdk(&self) -> Result<&SdkConfig, SdkSetupError> {
        self.sdk.get_or_try_init(|| sdk_config(&self.section)).await
    }

    /// The Secrets Manager client, built on first use.
    pub async fn secrets_manager(&self) -> Result<&aws_sdk_secretsmanager::Client, SdkSetupError> {
        self.sm
            .get_or_try_init(|| async {
                Ok(aws_sdk_secretsmanager::Client::new(self.sdk().await?))
            })
            .await
    }

    /// The Secrets Manager client for a secret in `region` (from its ARN; `None`: the
    /// configured region). A region other than the configured one gets a client of its own,
    /// with the same credentials, endpoint override and HTTP client.
    pub async fn secrets_manager_in(
        &self,
        region: Option<&str>,
    ) -> Result<aws_sdk_secretsmanager::Client, SdkSetupError> {
        let default = self.secrets_manager().await?;
        let Some(region) = region else {
            return Ok(default.clone());
        };
        if default.config().region().map(Region::as_ref) == Some(region) {
            return Ok(default.clone());
        }
        let mut regional = self.regional.lock().await;
        if let Some(c) = regional.get(region) {
            return Ok(c.clone());
        }
        let conf = aws_sdk_secretsmanager::config::Builder::from(self.sdk().await?)
            .region(Region::new(region.to_string()))
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(conf);
        regional.insert(region.to_string(), client.clone());
        Ok(client)
    }

    /// The SNS client, built on first use.
    pub async fn sns(&self) -> Result<&aws_sdk_sns::Client, SdkSetupError> {
        self.sns
            .get_or_try_init(|| async { Ok(aws_sdk_sns::Client::new(self.sdk().await?)) })
            .await
    }
}
