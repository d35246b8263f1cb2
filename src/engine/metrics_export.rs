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
            let url = group_url(base, &self.job, token.as_deref());
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

/// A group's URL: `/metrics/job/JOB[/token/NAME]` under the base URL's own path (a gateway
/// behind a path prefix). Job and token names are checked to be path-safe.
fn group_url(base: &Url, job: &str, token: Option<&str>) -> Url {
    let mut path = format!("{}/metrics/job/{job}", base.path().trim_end_matches('/'));
    if let Some(t) = token {
        path.push_str("/token/");
        path.push_str(t);
    }
    let mut url = base.clone();
    url.set_path(&path);
    url
}

/// Replace `path` with `text` (0644: node_exporter reads it as another user).
fn write_textfile(path: &Path, text: &str) -> Result<(), String> {
    crate::support::atomic_file::write(path, &[text.as_bytes()], 0o644, None)
        .map_err(|e| format!("metrics file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_sit_under_the_gateways_own_path() {
        let url = |base: &str, token| {
            group_url(
                &Url::parse(base).unwrap_or_else(|e| panic!("{e}")),
                "j",
                token,
            )
            .to_string()
        };
        assert_eq!(
            url("http://127.0.0.1:9091", None),
            "http://127.0.0.1:9091/metrics/job/j"
        );
        assert_eq!(
            url("https://gw.example.com/prefix/", Some("prod")),
            "https://gw.example.com/prefix/metrics/job/j/token/prod"
        );
        assert_eq!(
            url("https://gw.example.com/prefix", Some("a.b-c_d")),
            "https://gw.example.com/prefix/metrics/job/j/token/a.b-c_d"
        );
    }

    #[test]
    fn destinations_are_checked_before_anything_runs() {
        assert!(Export::new(Some("/x/metrics.txt".into()), None, None).is_err());
        assert!(Export::new(None, Some("http://192.0.2.1:9091"), None).is_err());
        assert!(Export::new(None, Some("https://user:pw@gw.example.com"), None).is_err());
        assert!(Export::new(None, Some("https://gw.example.com"), Some("a b".into())).is_err());
        let e = Export::new(
            Some("/x/m.prom".into()),
            Some("http://127.0.0.1:9091"),
            None,
        )
        .unwrap_or_else(|p| panic!("{p}"));
        assert!(e.wanted());
        assert_eq!(e.job, DEFAULT_JOB);
    }
}
