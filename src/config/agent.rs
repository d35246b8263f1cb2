//! `[agent]`: the local token agent's listener, caller token, refresh limits and minting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::support::duration::{Dur, show};
use crate::support::secret_ref::SecretRef;

/// The agent's address when `listen` does not say otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2780";
/// Where the caller token is read from by default.
pub const DEFAULT_AUTH_ENV: &str = "DEEPVUE_ROTATOR_AGENT_TOKEN";
/// The header every token request carries.
pub const AUTH_HEADER: &str = "x-deepvue-rotator-token";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    listen: Option<String>,
    socket_mode: Option<String>,
    socket_group: Option<String>,
    allow_remote: Option<bool>,
    auth_token: Option<SecretRef>,
    refresh_interval: Option<Dur>,
    max_age: Option<Dur>,
    mint: Option<bool>,
    tokens: Option<Vec<String>>,
}

/// Where the agent listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentListen {
    /// A TCP address (loopback unless `allow_remote`).
    Tcp(SocketAddr),
    /// A Unix socket at this path (`unix:/run/deepvue-rotator/agent.sock`).
    Unix(PathBuf),
}

impl std::fmt::Display for AgentListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentListen::Tcp(a) => write!(f, "{a}"),
            AgentListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `[agent]`, validated.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where applications reach it (default `127.0.0.1:2780`).
    pub listen: AgentListen,
    /// A Unix socket's mode: `0600` or `0660` (default `0660`: the socket's group may call).
    pub socket_mode: u32,
    /// A Unix socket's group (a name or a gid; default the agent's own group).
    pub socket_group: Option<String>,
    /// Whether a non-loopback TCP address is accepted (then put TLS or a network policy in
    /// front: the agent speaks plain HTTP).
    pub allow_remote: bool,
    /// The token callers send in `X-Deepvue-Rotator-Token` (default
    /// `{ env = "DEEPVUE_ROTATOR_AGENT_TOKEN" }`).
    pub auth_token: SecretRef,
    /// At most one store read per token this often on refreshes and misses (default 10s).
    pub refresh_interval: Duration,
    /// Re-read the store at least this often, whatever the token's expiry (default: never;
    /// the cache follows the token: it is re-read when the token reaches `renew_before`).
    pub max_age: Option<Duration>,
    /// Also rotate through the normal engine when a token is due (default false: minting
    /// stays with the rotator and its whitelisted egress).
    pub mint: bool,
    /// Which tokens are served (default all).
    pub tokens: Option<Vec<String>>,
}

impl RawAgent {
    pub(super) fn validate(self, origin: &str) -> Result<AgentConfig, ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        let allow_remote = self.allow_remote.unwrap_or(false);
        let listen_text = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = parse_listen(&listen_text).map_err(|m| err(format!("agent.listen {m}")))?;
        if let AgentListen::Tcp(a) = &listen
            && !a.ip().is_loopback()
            && !allow_remote
        {
            return Err(err(format!(
                "agent.listen `{a}` is not a loopback address: tokens would be served to other \
                 hosts over plain HTTP. Use 127.0.0.1 or a unix: socket, or set \
                 agent.allow_remote = true and put TLS or a network policy in front"
            )));
        }
        let socket_mode = match self.socket_mode.as_deref().unwrap_or("0660") {
            "0600" => 0o600,
            "0660" => 0o660,
            m => {
                return Err(err(format!(
                    "agent.socket_mode `{m}` is not \"0600\" (the agent's user only) or \
                     \"0660\" (its group too); the socket is never open to the world"
                )));
            }
        };
        if let Some(g) = &self.socket_group {
            crate::support::process::resolve_group(g)
                .map_err(|m| err(format!("agent.socket_group: {m}")))?;
        }
        if matches!(listen, AgentListen::Tcp(_))
            && (self.socket_group.is_some() || self.socket_mode.is_some())
        {
            return Err(err(
                "agent.socket_mode and agent.socket_group apply to a unix: listener only".into(),
            ));
        }
        let auth_token = self.auth_token.unwrap_or(SecretRef {
            env: Some(DEFAULT_AUTH_ENV.into()),
            ..SecretRef::default()
        });
        auth_token
            .validate("agent.auth_token")
            .map_err(|p| ConfigError::from_problem(origin, p))?;
        let refresh_interval = self
            .refresh_interval
            .map_or(Duration::from_secs(10), |d| d.0);
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&refresh_interval) {
            return Err(err(format!(
                "agent.refresh_interval must be between 100ms and 1h (got {})",
                show(refresh_interval)
            )));
        }
        let max_age = self.max_age.map(|d| d.0);
        if let Some(m) = max_age
            && m < refresh_interval
        {
            return Err(err(format!(
                "agent.max_age ({}) must not be below agent.refresh_interval ({})",
                show(m),
                show(refresh_interval)
            )));
        }
        if let Some(t) = &self.tokens
            && t.is_empty()
        {
            return Err(err(
                "agent.tokens is empty: leave it out to serve every token".into(),
            ));
        }
        Ok(AgentConfig {
            listen,
            socket_mode,
            socket_group: self.socket_group,
            allow_remote,
            auth_token,
            refresh_interval,
            max_age,
            mint: self.mint.unwrap_or(false),
            tokens: self.tokens,
        })
    }
}

/// `127.0.0.1:2780` or `unix:/absolute/path`.
pub fn parse_listen(text: &str) -> Result<AgentListen, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(format!(
                "`{text}`: a unix socket path must be absolute (unix:/run/deepvue-rotator/agent.sock)"
            ));
        }
        return Ok(AgentListen::Unix(path));
    }
    text.parse::<SocketAddr>()
        .map(AgentListen::Tcp)
        .map_err(|_| {
            format!(
                "`{text}` is not an address:port (e.g. \"127.0.0.1:2780\") or unix:/path/to/socket"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> Result<AgentConfig, ConfigError> {
        toml::from_str::<RawAgent>(toml_text)
            .map_err(|e| ConfigError::new("t", e.to_string()))?
            .validate("t")
    }

    #[test]
    fn defaults_are_loopback_with_the_env_token() {
        let a = raw("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            a.listen,
            AgentListen::Tcp(DEFAULT_LISTEN.parse().unwrap_or_else(|_| panic!()))
        );
        assert_eq!(a.auth_token.env.as_deref(), Some(DEFAULT_AUTH_ENV));
        assert_eq!(a.refresh_interval, Duration::from_secs(10));
        assert!(!a.mint && !a.allow_remote && a.max_age.is_none());
    }

    #[test]
    fn a_remote_address_needs_allow_remote() {
        let e = raw("listen = \"0.0.0.0:2780\"").err().map(|e| e.message);
        assert!(e.is_some_and(|m| m.contains("allow_remote")));
        assert!(raw("listen = \"0.0.0.0:2780\"\nallow_remote = true").is_ok());
    }

    #[test]
    fn unix_sockets_are_absolute_and_never_world_open() {
        let a = raw("listen = \"unix:/run/x.sock\"\nsocket_mode = \"0600\"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.listen, AgentListen::Unix("/run/x.sock".into()));
        assert_eq!(a.socket_mode, 0o600);
        assert!(raw("listen = \"unix:x.sock\"").is_err());
        assert!(raw("listen = \"unix:/x.sock\"\nsocket_mode = \"0666\"").is_err());
        assert!(
            raw("socket_mode = \"0600\"").is_err(),
            "a TCP listener has no mode"
        );
        assert!(raw("refresh_interval = \"10ms\"").is_err());
        assert!(raw("tokens = []").is_err());
        assert!(raw("max_age = \"1s\"").is_err(), "below refresh_interval");
    }
}
