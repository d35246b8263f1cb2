//! `exec --agent URL`: the token from a running `deepvue-rotator agent` instead of the store.
//! The agent follows the token's expiry and store; `exec` polls it as it would poll the store
//! (each poll a loopback request the agent answers from memory), and a new `version` is a new
//! token. Plain http only to a loopback address (anything else must be https).

use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config::agent::{AUTH_HEADER, DEFAULT_AUTH_ENV};
use crate::core::document::TokenDocument;
use crate::core::store::Version;
use crate::support::secret_ref::read_secret_file;
use crate::support::text::escape_control;

/// Where the caller token is read from unless `--agent-token-file` says otherwise.
pub const AUTH_ENV: &str = DEFAULT_AUTH_ENV;

/// Longest agent answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// A running agent, asked for one token.
pub struct AgentSource {
    client: reqwest::Client,
    /// `…/v1/tokens/{name}`.
    url: url::Url,
    name: String,
    caller: SecretString,
}

impl AgentSource {
    /// The agent at `base` (its root URL), serving `name`.
    pub fn new(base: &str, name: &str, token_file: Option<&Path>) -> Result<AgentSource, String> {
        let base = crate::support::url::https_or_loopback_url("--agent", base)
            .and_then(|u| crate::support::url::plain_endpoint("--agent", u.as_str()))
            .map_err(|p| p.to_string())?;
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| "--agent must be an http(s) URL".to_string())?
            .pop_if_empty()
            .extend(["v1", "tokens", name]);
        let caller = match token_file {
            Some(f) => {
                let bytes = read_secret_file(f).map_err(|e| format!("--agent-token-file: {e}"))?;
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| "--agent-token-file is not UTF-8 text".to_string())?;
                SecretString::from(text.trim_end_matches(['\r', '\n']).to_string())
            }
            None => match std::env::var(AUTH_ENV) {
                Ok(v) if !v.is_empty() => SecretString::from(v),
                _ => {
                    return Err(format!(
                        "the agent's caller token: set ${AUTH_ENV} or --agent-token-file"
                    ));
                }
            },
        };
        let settings = crate::support::tls::HttpsSettings {
            extra_ca: None,
            connect_timeout: Duration::from_secs(5),
            family: crate::support::net::IpFamily::Any,
            user_agent: crate::support::http::USER_AGENT,
        };
        let client = crate::support::tls::client_builder(&settings, base.scheme() == "https")
            .map_err(|e| e.to_string())?
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(AgentSource {
            client,
            url,
            name: name.to_string(),
            caller,
        })
    }

    /// The token's version and document as the agent serves it now.
    pub async fn current(&self) -> Result<(Version, TokenDocument), String> {
        let at = format!("token `{}`: agent {}", self.name, self.url);
        let resp = self
            .client
            .get(self.url.clone())
            // The caller token leaves here, to the agent it authenticates to.
            .header(AUTH_HEADER, self.caller.expose_secret())
            .send()
            .await
            .map_err(|e| format!("{at}: {}", crate::support::http::error_chain(&e)))?;
        let status = resp.status();
        let body = crate::support::http::read_capped(resp, MAX_ANSWER)
            .await
            .map_err(|e| format!("{at}: reading the answer: {e}"))?;
        if !status.is_success() {
            // Refusals and 503s carry only a reason, never a token.
            let why = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(escape_control))
                .unwrap_or_default();
            return Err(format!("{at} answered HTTP {}: {why}", status.as_u16()));
        }
        #[derive(serde::Deserialize)]
        struct Meta {
            version: String,
        }
        let meta: Meta = serde_json::from_slice(&body)
            .map_err(|_| format!("{at}: the answer is not a token answer"))?;
        let doc = TokenDocument::from_json(&body).map_err(|e| format!("{at}: {e}"))?;
        Ok((Version(meta.version), doc))
    }
}
