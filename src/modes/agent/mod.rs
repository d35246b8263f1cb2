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

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::App;
use crate::config::{
    self,
    agent::{AgentConfig, AgentListen, parse_listen},
};
use crate::core::error::EXIT_CONFIG;
use crate::support::http_server::{self, Listener};
use crate::support::output::diag;

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

/// The Unix socket this process made, removed when dropped — only while the path still is
/// that socket (same device and inode): never another agent's that replaced it.
struct OwnSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for OwnSocket {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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
            bind_unix(path, agent.socket_mode, gid).map(|(l, own)| (Listener::Unix(l), Some(own)))
        }
    }
}

/// Create the socket at `path` with `mode` (and `gid`): never through a link, never over a
/// file that is not this user's socket or over a socket an agent still listens on, and only in
/// a directory that this user or root owns and nobody else may write (a sticky `/tmp` is not
/// enough: after the agent exits, anyone could put their own socket at the path and receive
/// the applications' caller token).
fn bind_unix(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> Result<(tokio::net::UnixListener, OwnSocket), String> {
    let me = rustix::process::geteuid().as_raw();
    let dir = path.parent().ok_or("not a file path")?;
    let dmeta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !dmeta.is_dir() {
        return Err(format!(
            "{} is not a directory (links are not followed)",
            dir.display()
        ));
    }
    if dmeta.uid() != me && dmeta.uid() != 0 {
        return Err(format!(
            "{} belongs to uid {}, not to this user or root: use a directory of the agent's own \
             (e.g. systemd's RuntimeDirectory=, /run/deepvue-rotator)",
            dir.display(),
            dmeta.uid()
        ));
    }
    if dmeta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by its group or others: they could replace the socket; use a \
             directory only the agent's user can write (e.g. /run/deepvue-rotator, mode 0755)",
            dir.display()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && m.uid() == me => {
            // This user's socket: another agent's if something answers on it, else left
            // behind by one that was killed.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{} is in use: another agent listens on it",
                    path.display()
                ));
            }
            warn!(path = %path.display(), "removing a stale agent socket");
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale socket: {e}"))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not this user's socket: refusing to replace it",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.to_string()),
    }
    // The socket is created with exactly `mode`: no moment where it is wider.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(!mode & 0o777));
    let bound = tokio::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| format!("cannot bind: {e}"))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("after bind: {e}"))?;
    let own = OwnSocket {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    if let Some(gid) = gid {
        // On failure `own` goes, and the socket with it.
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            None,
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("cannot give the socket to group {gid}: {e}"))?;
    }
    Ok((listener, own))
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
