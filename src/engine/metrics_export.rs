//! Metrics out of a one-shot run (cron, Kubernetes CronJob, Cloud Run job, Lambda): the same
//! [`Metrics`] the daemon serves, written for node_exporter's textfile collector and/or pushed
//! to a Prometheus Pushgateway, in the text format 0.0.4.
//!
//! - **Textfile**: `NAME.prom` replaced atomically (temp file beside it, renamed), mode 0644
//!   (node_exporter usually runs as another user), never through a link.
//! - **Pushgateway**: one `PUT` per token to `/metrics/job/{job}/token/{name}` with that
//!   token's series, and one to `/metrics/job/{job}` with the run's own (authorize and store
//!   calls, alerts, build info). `PUT` replaces the group, so counters are this run's counts
//!   and gauges its last values; the gateway adds `push_time_seconds` per group.

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::metrics::Metrics;
use crate::support::exposition;
use crate::support::problem::Problem;
use crate::support::text::shown_url;
use crate::support::tls::{HttpsSettings, TlsError, client_builder};

/// The Pushgateway `job` when none is given.
pub const DEFAULT_JOB: &str = "deepvue_rotator";

/// Where a one-shot run's metrics go.
#[derive(Clone, Debug, Default)]
pub struct Export {
    /// A `.prom` file for the textfile collector.
    pub file: Option<PathBuf>,
    /// A Pushgateway base URL (`https://`, or plain `http://` to a loopback address).
    pub push_gateway: Option<Url>,
    /// The Pushgateway `job` label.
    pub job: String,
}

impl Export {
    /// Check the destinations given on the command line or in the environment.
    pub fn new(
        file: Option<PathBuf>,
        push_gateway: Option<&str>,
        job: Option<String>,
    ) -> Result<Export, Problem> {
        if let Some(f) = &file
            && f.extension().is_none_or(|e| e != "prom")
        {
            return Err(Problem::invalid(format!(
                "--metrics-file {}: the name must end in .prom (node_exporter's textfile \
                 collector reads only *.prom files)",
                f.display()
            )));
        }
        let push_gateway = push_gateway
            .map(|u| crate::support::url::https_or_loopback_url("--push-gateway", u))
            .transpose()?
            .map(|u| crate::support::url::plain_endpoint("--push-gateway", u.as_str()))
            .transpose()?;
        let job = job.unwrap_or_else(|| DEFAULT_JOB.to_string());
        if job.is_empty()
            || !job
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Problem::invalid(format!(
                "--push-job `{job}`: use letters, digits, `_`, `-` and `.` only"
            )));
        }
        Ok(Export {
            file,
            push_gateway,
            job,
        })
    }

    /// Whether there is anywhere to send metrics.
    pub fn wanted(&self) -> bool {
        self.file.is_some() || self.push_gateway.is_some()
    }

    /// Write and push `metrics`; what failed, one line each (a run's outcome never depends on
    /// its metrics: the caller reports these and carries on).
    pub async fn send(&self, metrics: &Metrics) -> Vec<String> {
        let text = metrics.render_text();
        let mut failures = Vec::new();
        if let Some(path) = &self.file
            && let Err(e) = write_textfile(path, &text)
        {
            failures.push(e);
        }
        if let Some(base) = &self.push_gateway {
            failures.extend(self.push(base, &text).await);
        }
        failures
    }

    async fn push(&self, base: &Url, text: &str) -> Vec<String> {
        let client = match client_builder(
            &HttpsSettings {
                extra_ca: None,
                connect_timeout: Duration::from_secs(5),
                family: crate::support::net::IpFamily::Any,
                user_agent: crate::support::http::USER_AGENT,
            },
            base.scheme() == "https",
        )
        .and_then(|b| {
            b.timeout(Duration::from_secs(10))
                .build()
                .map_err(TlsError::Client)
        }) {
            Ok(c) => c,
            Err(e) => return vec![format!("Pushgateway client: {e}")],
        };
        let mut failures = Vec::new();
        for (token, body) in exposition::split_by_label(text, "token") {
            let mut path = format!("metrics/job/{}", self.job);
            if let Some(t) = &token {
                path.push_str("/token/");
                path.push_str(t);
            }
            let Ok(url) = base.join(&format!(
                "{}/{path}",
                base.path().trim_end_matches('/').trim_start_matches('/')
            )) else {
                failures.push(format!(
                    "Pushgateway {}: bad path {path}",
                    shown_url(base.as_str())
                ));
                continue;
            };
            let answer = client
                .put(url.clone())
                .header(reqwest::header::CONTENT_TYPE, exposition::TEXT)
                .body(body)
                .send()
                .await;
            let shown = shown_url(url.as_str());
            match answer {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    let status = r.status();
                    let body = crate::support::http::read_capped(r, 512)
                        .await
                        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                        .unwrap_or_default();
                    failures.push(format!(
                        "Pushgateway PUT {shown}: HTTP {status}{}",
                        if body.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", crate::support::text::escape_control(&body))
                        }
                    ));
                }
                Err(e) => failures.push(format!(
                    "Pushgateway PUT {shown}: {}",
                    crate::support::http::error_chain(&e)
                )),
            }
        }
        failures
    }
}

/// Replace `path` with `text` (0644: node_exporter reads it as another user).
fn write_textfile(path: &Path, text: &str) -> Result<(), String> {
    crate::support::atomic_file::write(path, &[text.as_bytes()], 0o644)
        .map_err(|e| format!("metrics file {}: {e}", path.display()))
}
