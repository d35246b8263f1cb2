//! Shared AWS SDK setup: one HTTPS client on the process's TLS stack (rustls + ring, OS roots
//! plus an optional extra CA), the standard credential chain, and the `[aws]` overrides.

use std::path::Path;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls;

use crate::config::AwsConfig;

/// Load the SDK config: `[aws]` region / endpoint_url / profile over the standard chain
/// (environment, profile, web identity, ECS, IMDS; `AWS_ENDPOINT_URL` is honoured).
pub async fn sdk_config(cfg: &AwsConfig, extra_ca: Option<&Path>) -> Result<SdkConfig, String> {
    let mut trust = tls::TrustStore::default().with_native_roots(true);
    if let Some(ca) = extra_ca {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?;
        trust = trust.with_pem_certificate(pem);
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("AWS TLS setup: {e}"))?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
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
