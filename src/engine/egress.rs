//! Egress-IP probes: which public IP do our calls leave from?
//!
//! Probes go through the Deepvue client's own HTTP client (same trust, proxy settings and
//! address family), concurrently, each with a short timeout. What they said is judged by the
//! pure [`crate::core::egress::evaluate`].

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;

use crate::core::egress::{EgressReport, evaluate, parse_ip_answer};

/// Default "what is my IP" endpoints.
pub const DEFAULT_PROBE_URLS: [&str; 2] =
    ["https://checkip.amazonaws.com", "https://api.ipify.org"];

/// `[egress]`: the egress-IP probes and the whitelist they are compared with.
#[derive(Clone, Debug)]
pub struct EgressConfig {
    /// The IPs / CIDRs Deepvue whitelists for this account.
    pub expected: Vec<IpNet>,
    /// "What is my IP" endpoints; each must answer the bare IP.
    pub probe_urls: Vec<Url>,
    /// Probing enabled (default true).
    pub probe: bool,
    /// Per-probe timeout (default 3 s).
    pub probe_timeout: Duration,
}

/// Probe every URL concurrently and compare with `expected`.
pub async fn probe(
    http: &reqwest::Client,
    urls: &[Url],
    expected: &[IpNet],
    timeout: Duration,
) -> EgressReport {
    let answers = futures::future::join_all(urls.iter().map(|u| probe_one(http, u, timeout))).await;
    evaluate(
        urls.iter()
            .map(|u| u.host_str().unwrap_or("?").to_string())
            .zip(answers),
        expected,
    )
}

async fn probe_one(http: &reqwest::Client, url: &Url, timeout: Duration) -> Result<IpAddr, String> {
    let fut = async {
        let resp = http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        parse_ip_answer(&body)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))
        })
}
