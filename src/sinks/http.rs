//! HTTPS delivery shared by the webhook, Slack and PagerDuty sinks: one lazily built client,
//! retries on 408/429/5xx and connection errors (honouring `Retry-After`), and a reachability
//! check that posts nothing. URLs never appear in errors (a Slack webhook URL is a secret).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::core::alert::SinkError;
use crate::support::http::{USER_AGENT, parse_retry_after};
use crate::support::net::IpFamily;
use crate::support::tls::{HttpsSettings, https_client};

const ATTEMPTS: u32 = 3;

struct Inner {
    ca: Option<PathBuf>,
    connect_timeout: Duration,
    family: IpFamily,
    client: OnceCell<reqwest::Client>,
}

/// One HTTP client for all HTTP sinks, built on first use.
#[derive(Clone)]
pub struct SharedClient {
    inner: Arc<Inner>,
}

impl SharedClient {
    /// A client with this extra CA, connect timeout and address family.
    pub fn new(ca: Option<PathBuf>, connect_timeout: Duration, family: IpFamily) -> Self {
        SharedClient {
            inner: Arc::new(Inner {
                ca,
                connect_timeout,
                family,
                client: OnceCell::new(),
            }),
        }
    }

    async fn client(&self) -> Result<&reqwest::Client, SinkError> {
        let i = &self.inner;
        i.client
            .get_or_try_init(|| async {
                https_client(&HttpsSettings {
                    extra_ca: i.ca.as_deref(),
                    connect_timeout: i.connect_timeout,
                    family: i.family,
                    user_agent: USER_AGENT,
                })
            })
            .await
            .map_err(|e| SinkError {
                message: e.to_string(),
                source: Some(Box::new(e)),
            })
    }
}

/// A sink URL, parsed and required to be `https://`. The URL itself may be a secret.
pub fn https_url(url: &SecretString) -> Result<Url, SinkError> {
    if url
        .expose_secret()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(SinkError::new(
            "url contains a space or a control character; percent-encode it",
        ));
    }
    let url =
        Url::parse(url.expose_secret()).map_err(|_| SinkError::new("url is not a valid URL"))?;
    if url.scheme() != "https" {
        return Err(SinkError::new("url must use https://"));
    }
    Ok(url)
}

/// Extra headers for one attempt (a signature over the body, say).
pub type Headers = Vec<(&'static str, String)>;

/// POST a JSON body, retrying transient failures; `headers` is called per attempt.
pub async fn post_json(
    http: &SharedClient,
    url: &Url,
    body: &[u8],
    headers: &(dyn Fn() -> Result<Headers, SinkError> + Send + Sync),
) -> Result<(), SinkError> {
    let client = http.client().await?;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(10));
        for (k, v) in headers()? {
            req = req.header(k, v);
        }
        let (retry, why, retry_after) = match req.body(body.to_vec()).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let text = resp.text().await.unwrap_or_default();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let snippet: String = text.chars().take(120).filter(|c| !c.is_control()).collect();
                (
                    status == 408 || status == 429 || status >= 500,
                    format!("HTTP {status} {snippet}"),
                    retry_after,
                )
            }
            Err(e) => (true, e.without_url().to_string(), None),
        };
        last = why;
        if !retry || attempt == ATTEMPTS {
            break;
        }
        let backoff =
            Duration::from_millis(250 * 2u64.pow(attempt - 1) + rand::random_range(0..100));
        tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(10))).await;
    }
    Err(SinkError::new(last.trim().to_string()))
}

/// Reach the URL itself (its path and query, where deliveries are POSTed) over TLS without
/// posting anything: a `GET` there answers 405 or 200 on most POST endpoints, while 404 or 410
/// says the path does not exist and every delivery would fail. The path is not shown (it may
/// hold a token).
pub async fn probe_path(http: &SharedClient, url: &Url) -> Result<String, SinkError> {
    let client = http.client().await?;
    let host = url.host_str().unwrap_or("?").to_string();
    match client
        .get(url.clone())
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(resp) if matches!(resp.status().as_u16(), 404 | 410) => Err(SinkError::new(format!(
            "{host} answers HTTP {} for the configured URL's path: deliveries are POSTed \
             there and would fail; check the URL",
            resp.status().as_u16()
        ))),
        Ok(resp) => Ok(format!(
            "TLS to {host} verified; the configured path answers HTTP {} to GET (a POST \
             endpoint may refuse GET; it exists); no alert sent",
            resp.status().as_u16()
        )),
        Err(e) => Err(SinkError::new(format!(
            "cannot reach {host}: {}",
            e.without_url()
        ))),
    }
}

/// Reach the URL's host over TLS without posting anything: any HTTP answer to `GET /` will do.
pub async fn reach(http: &SharedClient, url: &Url) -> Result<String, SinkError> {
    let mut origin = url.clone();
    origin.set_path("/");
    origin.set_query(None);
    let client = http.client().await?;
    let host = url.host_str().unwrap_or("?").to_string();
    match client
        .get(origin)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(resp) => Ok(format!(
            "TLS to {host} verified (HTTP {} to GET /; no alert sent)",
            resp.status().as_u16()
        )),
        Err(e) => Err(SinkError::new(format!(
            "cannot reach {host}: {}",
            e.without_url()
        ))),
    }
}
