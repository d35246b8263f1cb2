//! The Pub/Sub sink: alerts and (opted-in) events published to a topic with the REST API's
//! `projects.topics.publish` (`POST {endpoint}/v1/projects/P/topics/T:publish`, the message
//! JSON base64-encoded in `data`, `event_type` and `token` as attributes), on the `[gcp]`
//! credentials (Application Default Credentials, or none with `anonymous = true`). Transient
//! answers (429, 5xx, a transport error) are retried twice with backoff; `check` reads the
//! topic (`topics.get`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::GcpClients;
use crate::core::alert::{Alert, Sink, SinkError, TokenEvent};
use crate::support::problem::Problem;
use crate::support::text::escape_control;

/// Pub/Sub's REST endpoint.
pub const PUBSUB_ENDPOINT: &str = "https://pubsub.googleapis.com";
/// Attempts of one publish.
const ATTEMPTS: u32 = 3;
/// One attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest error body kept (the reason Google gives).
const MAX_ERROR_BODY: usize = 8 * 1024;

/// `[[alerts]] kind = "pubsub"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubSinkConfig {
    /// Display name (default `pubsub-N`).
    pub name: Option<String>,
    /// `projects/P/topics/T`, or `T` in the `[gcp]` project.
    pub topic: String,
    /// Events to publish besides alerts (`["token.rotated"]`; none by default).
    #[serde(default)]
    pub events: Vec<String>,
    /// Whether alerts are published too (default true).
    #[serde(default = "yes")]
    pub alerts: bool,
    /// The API's address (fakes and emulators; plain http only on loopback). Default
    /// `https://pubsub.googleapis.com`.
    pub endpoint_url: Option<String>,
}

fn yes() -> bool {
    true
}

/// A topic id: 3–255 characters, a letter first, then letters, digits and `-_.~+%`, never
/// starting with `goog` (the API's rule).
fn valid_topic_id(id: &str) -> bool {
    (3..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && !id.starts_with("goog")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
}

/// A project id as it may stand in a resource name: letters, digits, `-`, and the `.` / `:` of
/// domain-scoped projects; nothing that would change the request path.
fn valid_project(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
        && !p.contains("..")
}

impl PubsubSinkConfig {
    /// Check the entry at `at`.
    pub fn validate(&self, at: &str) -> Result<(), Problem> {
        let ok = match self.topic.split('/').collect::<Vec<_>>().as_slice() {
            ["projects", p, "topics", t] => valid_project(p) && valid_topic_id(t),
            [t] => valid_topic_id(t),
            _ => false,
        };
        if !ok {
            return Err(Problem::invalid(format!(
                "{at}.topic `{}` is not a Pub/Sub topic (projects/PROJECT/topics/TOPIC, or a \
                 topic id in the [gcp] project)",
                escape_control(&self.topic)
            )));
        }
        if let Some(e) = crate::core::alert::unknown_event(&self.events) {
            return Err(Problem::invalid(format!(
                "{at}.events: `{e}` is not an event kind (known: {})",
                crate::core::alert::EVENT_KINDS.join(", ")
            )));
        }
        if !self.alerts && self.events.is_empty() {
            return Err(Problem::invalid(format!(
                "{at}: alerts = false and no events: the sink would publish nothing"
            )));
        }
        if let Some(u) = &self.endpoint_url {
            let at = format!("{at}.endpoint_url");
            let url = crate::support::url::https_or_loopback_url(&at, u)
                .and_then(|_| crate::support::url::plain_endpoint(&at, u))?;
            // The Google credentials go with every call: only to Google, or to a local fake.
            let google = url
                .host_str()
                .is_some_and(|h| h.ends_with(".googleapis.com"));
            if !google && !crate::support::net::is_loopback(&url) {
                return Err(Problem::insecure(format!(
                    "{at} must be a googleapis.com host (the Google credentials are sent to \
                     it) or a loopback fake"
                )));
            }
        }
        Ok(())
    }

    /// The sink, named `name`.
    pub fn build(&self, name: String, clients: Arc<GcpClients>) -> PubsubSink {
        PubsubSink {
            name,
            topic: self.topic.clone(),
            events: self.events.clone(),
            alerts: self.alerts,
            endpoint: self
                .endpoint_url
                .clone()
                .unwrap_or_else(|| PUBSUB_ENDPOINT.to_string())
                .trim_end_matches('/')
                .to_string(),
            clients,
            http: tokio::sync::OnceCell::new(),
        }
    }
}

/// Publishes to one topic.
pub struct PubsubSink {
    name: String,
    topic: String,
    events: Vec<String>,
    alerts: bool,
    endpoint: String,
    clients: Arc<GcpClients>,
    http: tokio::sync::OnceCell<reqwest::Client>,
}

impl PubsubSink {
    /// The topic's full name.
    async fn topic(&self) -> Result<String, SinkError> {
        if self.topic.starts_with("projects/") {
            return Ok(self.topic.clone());
        }
        let project = self
            .clients
            .project()
            .await
            .map_err(|e| SinkError::new(e.to_string()))?;
        if !valid_project(project) {
            return Err(SinkError::new(format!(
                "the GCP project `{}` is not a project id",
                escape_control(project)
            )));
        }
        Ok(format!("projects/{project}/topics/{}", self.topic))
    }

    async fn http(&self) -> Result<&reqwest::Client, SinkError> {
        self.http
            .get_or_try_init(|| async {
                let settings = crate::support::tls::HttpsSettings {
                    extra_ca: None,
                    connect_timeout: Duration::from_secs(5),
                    family: crate::support::net::IpFamily::Any,
                    user_agent: crate::support::http::USER_AGENT,
                };
                let https = self.endpoint.starts_with("https://");
                crate::support::tls::client_builder(&settings, https)
                    .map_err(|e| SinkError::new(e.to_string()))?
                    .timeout(ATTEMPT_TIMEOUT)
                    .build()
                    .map_err(|e| SinkError::new(e.to_string()))
            })
            .await
    }

    /// One API call with the credentials' headers, retried when transient; the answer body.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Vec<u8>, SinkError> {
        let http = self.http().await?;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let headers = self
                .clients
                .auth_headers()
                .await
                .map_err(|e| SinkError::new(e.to_string()))?;
            let mut req = http.request(method.clone(), url).headers(headers);
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    return r
                        .bytes()
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|e| SinkError::new(format!("{what} on {}: {e}", self.topic)));
                }
                Ok(r) => {
                    let status = r.status();
                    // An error body is only read for its reason (a longer one gives none).
                    let text = crate::support::http::read_capped(r, MAX_ERROR_BODY)
                        .await
                        .unwrap_or_default();
                    let reason = serde_json::from_slice::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["error"]["message"].as_str().map(escape_control))
                        .unwrap_or_default();
                    last = format!(
                        "{what} on {}: HTTP {} {reason}",
                        self.topic,
                        status.as_u16()
                    );
                    if !(status.as_u16() == 429 || status.is_server_error()) {
                        break;
                    }
                }
                Err(e) => {
                    last = format!(
                        "{what} on {}: {}",
                        self.topic,
                        crate::support::http::error_chain(&e)
                    );
                }
            }
        }
        Err(SinkError::new(last.trim_end().to_string()))
    }

    async fn publish(&self, message: String, kind: &str, token: &str) -> Result<(), SinkError> {
        let topic = self.topic().await?;
        let body = json!({
            "messages": [{
                "data": base64::engine::general_purpose::STANDARD.encode(message),
                // Subscribers filter on these (a subscription filter on attributes.event_type).
                "attributes": { "event_type": kind, "token": token },
            }]
        });
        let url = format!("{}/v1/{topic}:publish", self.endpoint);
        let answer = self
            .call(reqwest::Method::POST, &url, Some(&body), "pubsub publish")
            .await?;
        let ids = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["messageIds"].as_array().map(Vec::len))
            .unwrap_or(0);
        if ids != 1 {
            return Err(SinkError::new(format!(
                "pubsub publish on {topic}: the answer names {ids} message ids, not 1"
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for PubsubSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert) -> Result<(), SinkError> {
        if !self.alerts {
            return Ok(());
        }
        let message = serde_json::to_string(alert).map_err(|e| SinkError::new(e.to_string()))?;
        self.publish(message, "alert", &alert.token).await
    }

    fn takes(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }

    async fn send_event(&self, event: &TokenEvent) -> Result<(), SinkError> {
        let message = serde_json::to_string(event).map_err(|e| SinkError::new(e.to_string()))?;
        self.publish(message, event.kind, &event.token).await
    }

    async fn check(&self) -> Result<String, SinkError> {
        let topic = self.topic().await?;
        let url = format!("{}/v1/{topic}", self.endpoint);
        self.call(reqwest::Method::GET, &url, None, "pubsub topics.get")
            .await
            .map(|_| format!("topic {topic} reachable (pubsub topics.get)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(topic: &str) -> PubsubSinkConfig {
        PubsubSinkConfig {
            name: None,
            topic: topic.into(),
            events: vec!["token.rotated".into()],
            alerts: true,
            endpoint_url: None,
        }
    }

    #[test]
    fn topics_are_full_names_or_ids_by_the_apis_rules() {
        assert!(
            cfg("projects/p1/topics/deepvue-events")
                .validate("a")
                .is_ok()
        );
        assert!(cfg("deepvue-events").validate("a").is_ok());
        for bad in [
            "",
            "x",
            "1abc",
            "goog-x",
            "projects/p/topics/",
            "projects//topics/abc",
            "a b c",
            "projects/p/subscriptions/abc",
        ] {
            assert!(cfg(bad).validate("a").is_err(), "{bad:?}");
        }
        let mut c = cfg("abc");
        c.endpoint_url = Some("http://pubsub.example.com".into());
        assert!(c.validate("a").is_err(), "plain http only on loopback");
        c.endpoint_url = Some("http://127.0.0.1:8085".into());
        assert!(c.validate("a").is_ok());
        c.endpoint_url = Some("https://pubsub.example.com".into());
        assert!(
            c.validate("a").is_err(),
            "credentials only to Google or a local fake"
        );
        c.endpoint_url = Some("https://europe-west1-pubsub.googleapis.com".into());
        assert!(c.validate("a").is_ok());
        assert!(cfg("projects/a?b/topics/abc").validate("a").is_err());
        assert!(cfg("projects/../topics/abc").validate("a").is_err());
        assert!(
            cfg("projects/example.com:p1/topics/abc")
                .validate("a")
                .is_ok()
        );
        c.events.clear();
        c.alerts = false;
        assert!(c.validate("a").is_err());
    }
}
