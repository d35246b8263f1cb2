//! `deepvue-rotator agent`: a local token endpoint for applications on the same host or pod.
//!
//! It serves the configured tokens from any backend over HTTP on a loopback address or a Unix
//! socket (`http.rs`), from a cache whose lifetime follows each token (`cache.rs`): a request
//! is answered from memory; the store is read again when the token reaches `renew_before`, on
//! a rate-limited, coalesced refresh from an application that got a 401, and every `max_age`
//! if set. It never mints unless `[agent] mint = true`. Every token request carries the caller
//! token (`X-Deepvue-Rotator-Token`), compared in constant time; a request that came through a
//! proxy (`X-Forwarded-For`, `Forwarded`) is refused.

mod cache;
mod http;
mod metrics;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::app::App;
use crate::config::{
    self,
    agent::{AgentConfig, AgentListen, parse_listen},
};
use crate::core::error::EXIT_CONFIG;
use crate::support::http_server::{self, Listener};
use crate::support::output::diag;
use crate::support::unix_socket::{OwnSocket, bind_unix};

/// `agent` options.
#[derive(clap::Args, Debug, Default)]
pub struct AgentArgs {
    /// Listen here instead of `[agent] listen`: `127.0.0.1:2780` or `unix:/run/…/agent.sock`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// Shortest caller token accepted.
const MIN_AUTH_LEN: usize = 16;

/// The caller token, kept only as its SHA-256 digest.
pub(crate) struct CallerToken([u8; 32]);

impl CallerToken {
    fn new(token: &str) -> Result<CallerToken, String> {
        if token.len() < MIN_AUTH_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the agent's caller token must be at least {MIN_AUTH_LEN} visible ASCII \
                 characters (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(CallerToken(digest(token.as_bytes())))
    }

    /// Whether `given` is the token: both digests compared in full (constant time whatever
    /// the input).
    pub(crate) fn matches(&self, given: &[u8]) -> bool {
        let d = digest(given);
        self.0
            .iter()
            .zip(d.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Run the agent until SIGTERM / SIGINT. Exit codes: 0 after a clean shutdown, 2 when the
/// config, the caller token or the listener is wrong.
pub async fn run(config_path: Option<&Path>, args: AgentArgs) -> u8 {
    let mut config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            diag(&format!("error: {e}"));
            return EXIT_CONFIG;
        }
    };
    if let Some(listen) = &args.listen {
        match parse_listen(listen) {
            Ok(AgentListen::Tcp(a)) if !a.ip().is_loopback() && !config.agent.allow_remote => {
                diag(&format!(
                    "error: --listen {a} is not a loopback address: set `[agent] allow_remote = \
                     true` (and put TLS or a network policy in front)"
                ));
                return EXIT_CONFIG;
            }
            Ok(l) => config.agent.listen = l,
            Err(e) => {
                diag(&format!("error: --listen: {e}"));
                return EXIT_CONFIG;
            }
        }
    }
    let caller = match config
        .agent
        .auth_token
        .resolve()
        .map_err(|e| {
            format!(
                "[agent] auth_token ({}): {e}",
                config.agent.auth_token.describe()
            )
        })
        .and_then(|t| CallerToken::new(t.expose_secret()))
    {
        Ok(c) => c,
        Err(e) => {
            diag(&format!("error: {e}"));
            return EXIT_CONFIG;
        }
    };
    let agent = config.agent.clone();
    let mut term = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            error!("cannot install signal handlers");
            return 1;
        }
    };
    // Removes the socket this process made when the agent ends, however it ends.
    let (listener, _socket) = match bind(&agent).await {
        Ok(l) => l,
        Err(e) => {
            diag(&format!("error: [agent] listen {}: {e}", agent.listen));
            return EXIT_CONFIG;
        }
    };
    let app = Arc::new(App::new(config));
    let cache = Arc::new(cache::Cache::new(app, &agent));
    let state = Arc::new(http::AgentState {
        cache: cache.clone(),
        caller,
        detail: !agent.allow_remote,
    });
    cache.load_all().await;
    let stop = CancellationToken::new();
    let mut keepers = tokio::task::JoinSet::new();
    for name in cache.names().cloned().collect::<Vec<_>>() {
        let (cache, stop) = (cache.clone(), stop.clone());
        keepers.spawn(async move { cache.keep_current(&name, stop).await });
    }
    let limits = http_server::Limits::for_descriptors(
        http_server::descriptor_limit(),
        // A request may wait for one store read (or, with `mint`, nothing more).
        Duration::from_secs(60),
    );
    let server = tokio::spawn(http_server::serve(
        listener,
        http::router(state),
        limits,
        stop.clone(),
        Duration::from_secs(5),
    ));
    let unready = cache.unready();
    info!(
        listen = %agent.listen,
        tokens = cache.names().count(),
        unready = unready.len(),
        mint = agent.mint,
        "deepvue-rotator agent ready"
    );
    tokio::select! {
        _ = term.0.recv() => info!("SIGTERM: stopping"),
        _ = term.1.recv() => info!("SIGINT: stopping"),
    }
    stop.cancel();
    let _ = server.await;
    keepers.shutdown().await;
    0
}

/// Bind the listener; for a Unix socket also its guard, which removes it on exit.
async fn bind(agent: &AgentConfig) -> Result<(Listener, Option<OwnSocket>), String> {
    match &agent.listen {
        AgentListen::Tcp(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(|l| (Listener::Tcp(l), None))
            .map_err(|e| format!("cannot bind: {e}")),
        AgentListen::Unix(path) => {
            let gid = agent
                .socket_group
                .as_deref()
                .map(|g| {
                    crate::support::process::resolve_group(g)
                        .map_err(|e| format!("socket_group: {e}"))
                })
                .transpose()?;
            bind_unix(path, agent.socket_mode, gid, "agent")
                .map(|(l, own)| (Listener::Unix(l), Some(own)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CallerToken;

    #[test]
    fn caller_tokens_are_long_visible_ascii_and_compared_in_full() {
        assert!(CallerToken::new("short").is_err());
        assert!(CallerToken::new("has a space in it, sixteen+").is_err());
        let Ok(t) = CallerToken::new("0123456789abcdef0123") else {
            panic!("a 20-character token is accepted");
        };
        assert!(t.matches(b"0123456789abcdef0123"));
        assert!(!t.matches(b"0123456789abcdef012"));
        assert!(!t.matches(b"0123456789abcdef01234"));
        assert!(!t.matches(b""));
    }
}
