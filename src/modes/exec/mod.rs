//! `deepvue-rotator exec --token NAME -- CMD ARGS…`: run an application with the token, and keep
//! it current.
//!
//! - The token is read from the token's (primary) store, never minted: minting stays with the
//!   rotator and its whitelisted egress.
//! - Delivery: an environment variable (`--env`, default `DEEPVUE_ACCESS_TOKEN`; plus
//!   `DEEPVUE_API_KEY` when the document publishes one) and/or a file (`--file`: the token
//!   document as JSON, 0600 — or 0640 for one group with `--file-mode` / `--file-group` —,
//!   created `O_EXCL | O_NOFOLLOW` beside the target and renamed over it, so readers never see
//!   half a file). A current version that has expired or cannot be read is not given; the
//!   previous one is, while it is valid. The child's environment loses the rotator's own
//!   credentials (`DEEPVUE_CLIENT_ID`, `DEEPVUE_CLIENT_SECRET`).
//! - Every `--poll` the store is read again; a new version rewrites the file and then, per
//!   `--on-change`: `restart` (the stop signal, `--stop-timeout`, then SIGKILL, and a new child
//!   with the new environment), `signal` (`--signal` to the child), or `none`.
//! - SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the child; `exec`
//!   exits with the child's status (128 + the signal for a child killed by one).
//! - A child that exits on its own ends `exec` with its status, unless
//!   `--restart-on-failure N`: a failed child is then started again after 1 s, 2 s, 4 s, … (at
//!   most 60 s), at most N times in a row (a child that ran 60 s resets the count).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use secrecy::ExposeSecret;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::app::App;
use crate::config;
use crate::core::clock::Clock;
use crate::core::document::TokenDocument;
use crate::core::error::EXIT_CONFIG;
use crate::core::store::Version;
use crate::engine::rotator::Job;
use crate::engine::usable::{self, Current};
use crate::support::output::diag;
use crate::support::time::format_time;

mod agent_source;

/// What to do with the child when the token changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnChange {
    /// Stop it (the stop signal, then SIGKILL after the timeout) and start it again.
    Restart,
    /// Send it `--signal`.
    Signal,
    /// Only rewrite `--file`.
    None,
}

/// `exec` arguments.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The token (a `[[tokens]] name`).
    #[arg(long)]
    pub token: String,
    /// Environment variable for the access token.
    #[arg(long, default_value = "DEEPVUE_ACCESS_TOKEN")]
    pub env: String,
    /// Do not put the token in the environment (use --file).
    #[arg(long)]
    pub no_env: bool,
    /// Also write the token document (JSON) to this file, 0600, replaced atomically.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The file's mode: 0600 (owner only) or 0640 (one group may read; never world bits).
    #[arg(long, value_name = "MODE", default_value = "0600", requires = "file")]
    pub file_mode: String,
    /// The group that may read the file (a name or a gid; needs --file-mode 0640). This user
    /// must be a member of it.
    #[arg(long, value_name = "GROUP", requires = "file")]
    pub file_group: Option<String>,
    /// What to do when a new version appears.
    #[arg(long, value_enum, default_value = "restart")]
    pub on_change: OnChange,
    /// The signal for `--on-change signal`.
    #[arg(long, default_value = "HUP")]
    pub signal: String,
    /// The signal that asks the child to stop (restarts).
    #[arg(long, default_value = "TERM")]
    pub stop_signal: String,
    /// How long a stopping child may take before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub stop_timeout: Duration,
    /// How often the store is read for a new version.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// Start a child that failed again, with backoff, at most this many times in a row.
    #[arg(long, default_value_t = 0)]
    pub restart_on_failure: u32,
    /// Take the token from a running `deepvue-rotator agent` at this URL (e.g.
    /// `http://127.0.0.1:2780`; plain http only to a loopback address) instead of the store;
    /// no config is read then. The caller token comes from $DEEPVUE_ROTATOR_AGENT_TOKEN or
    /// --agent-token-file.
    #[arg(long, value_name = "URL")]
    pub agent: Option<String>,
    /// The agent's caller token in this file (owner-only), instead of the environment.
    #[arg(long, value_name = "PATH", requires = "agent")]
    pub agent_token_file: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(required = true, last = true)]
    pub command: Vec<OsString>,
}

/// A child that ran this long is healthy: its failure restarts the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// The longest backoff between restarts of a failing child.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn parse_signal(name: &str) -> Option<rustix::process::Signal> {
    use rustix::process::Signal;
    Some(
        match name.trim().to_ascii_uppercase().trim_start_matches("SIG") {
            "HUP" => Signal::HUP,
            "INT" => Signal::INT,
            "QUIT" => Signal::QUIT,
            "TERM" => Signal::TERM,
            "USR1" => Signal::USR1,
            "USR2" => Signal::USR2,
            "KILL" => Signal::KILL,
            _ => return None,
        },
    )
}

/// Run `exec`; the exit code is the child's.
pub async fn run(config: Option<&Path>, args: ExecArgs) -> u8 {
    let (Some(sig), Some(stop)) = (parse_signal(&args.signal), parse_signal(&args.stop_signal))
    else {
        diag("error: --signal and --stop-signal take HUP, INT, QUIT, TERM, USR1, USR2 or KILL");
        return EXIT_CONFIG;
    };
    if args.no_env && args.file.is_none() {
        diag("error: --no-env needs --file: the child would get no token");
        return EXIT_CONFIG;
    }
    let file = match file_access(&args) {
        Ok(f) => f,
        Err(e) => {
            diag(&format!("error: {e}"));
            return EXIT_CONFIG;
        }
    };
    if args.poll < Duration::from_millis(100) {
        diag("error: --poll must be at least 100ms");
        return EXIT_CONFIG;
    }
    let app;
    let (source, hidden) = match &args.agent {
        Some(url) => {
            match agent_source::AgentSource::new(url, &args.token, args.agent_token_file.as_deref())
            {
                Ok(a) => (Source::Agent(a), hidden_vars(None)),
                Err(e) => {
                    diag(&format!("error: --agent: {e}"));
                    return EXIT_CONFIG;
                }
            }
        }
        None => {
            app = match config::load(config) {
                Ok(c) => App::new(c),
                Err(e) => {
                    diag(&format!("error: {e}"));
                    return EXIT_CONFIG;
                }
            };
            match app.select(std::slice::from_ref(&args.token)) {
                Ok(j) => match j.first() {
                    Some(j) => (
                        Source::Store(j, app.rotator.clock().as_ref()),
                        hidden_vars(Some(&app)),
                    ),
                    None => return EXIT_CONFIG,
                },
                Err(e) => {
                    diag(&format!("error: {e}"));
                    return EXIT_CONFIG;
                }
            }
        }
    };
    let (mut version, doc) = match source.current().await {
        Ok(v) => v,
        Err(e) => {
            diag(&format!("error: {e}"));
            return 1;
        }
    };
    if let Some(f) = &args.file
        && let Err(e) = write_file(f, &doc, file)
    {
        diag(&format!("error: {e}"));
        return 1;
    }
    Supervisor {
        args: &args,
        file,
        hidden,
        sig,
        stop,
    }
    .run(&source, &mut version, doc)
    .await
}

/// What the child must not inherit: every token's env-backend credential variables, the
/// config given inline, a Vault token, the agent's caller token. Secrets referenced elsewhere
/// as `{ env = "…" }` (sink signing secrets) are the operator's to keep out of exec's
/// environment (documented).
fn hidden_vars(app: Option<&App>) -> Vec<String> {
    let mut vars: Vec<String> = [
        "DEEPVUE_CLIENT_ID",
        "DEEPVUE_CLIENT_SECRET",
        "DEEPVUE_ROTATOR_CONFIG_TOML",
        "VAULT_TOKEN",
        agent_source::AUTH_ENV,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for t in app.iter().flat_map(|a| &a.config.tokens) {
        if let crate::backends::CredentialsConfig::Env(e) = &t.credentials {
            vars.extend(e.client_id_var.clone());
            vars.extend(e.client_secret_var.clone());
        }
    }
    vars
}

/// Where the token comes from.
enum Source<'a> {
    /// The token's (primary) store, and the clock its expiry is judged by.
    Store(&'a Job, &'a dyn Clock),
    /// A running agent.
    Agent(agent_source::AgentSource),
}

impl Source<'_> {
    /// The token's current version and document, or why there is none to give.
    async fn current(&self) -> Result<(Version, TokenDocument), String> {
        match self {
            Source::Store(job, clock) => current(job, clock.now()).await,
            Source::Agent(a) => a.current().await,
        }
    }
}

/// The token's current version and document in its store, or why there is none to give. A
/// current version that has expired or cannot be read is not given: the previous one is,
/// while it is valid (as the agent serves it), so a child never starts with a dead token.
async fn current(job: &Job, now: DateTime<Utc>) -> Result<(Version, TokenDocument), String> {
    let store = job.store.tokens.as_ref();
    let current = usable::current(&job.name, store, now)
        .await
        .map_err(|e| format!("{}: {e}", usable::place(&job.name, store)))?;
    let (version, why) = match current {
        Current::Usable(version, doc) => return Ok((version, doc)),
        Current::Unusable {
            version: Some(v),
            why,
        } => (v, why),
        Current::Unusable { version: None, why } => return Err(why),
    };
    match usable::valid_previous(store, &version, now).await {
        Ok(Some((previous, doc))) => {
            warn!(
                token = %job.name,
                previous = %previous,
                expiry = %format_time(doc.expiry),
                reason = %why,
                "the current version is unusable; using the previous version while it is valid"
            );
            Ok((previous, doc))
        }
        Ok(None) => Err(format!("{why}, and no valid previous version is stored")),
        Err(e) => Err(format!(
            "{why}; the previous version could not be read: {e}"
        )),
    }
}

/// The token file's mode and group, from `--file-mode` and `--file-group`.
#[derive(Clone, Copy, Debug)]
struct FileAccess {
    mode: u32,
    gid: Option<u32>,
}

fn file_access(args: &ExecArgs) -> Result<FileAccess, String> {
    let mode = match args.file_mode.as_str() {
        "0600" | "600" => 0o600,
        "0640" | "640" => 0o640,
        m => {
            return Err(format!(
                "--file-mode {m}: the token file is 0600 (owner only, the default) or 0640 (one \
                 group may read); never writable by others, never world-readable"
            ));
        }
    };
    let gid = match &args.file_group {
        None => None,
        Some(_) if mode == 0o600 => {
            return Err(
                "--file-group needs --file-mode 0640 (0600 gives the group nothing)".into(),
            );
        }
        Some(g) => Some(
            crate::support::process::resolve_group(g).map_err(|e| format!("--file-group: {e}"))?,
        ),
    };
    Ok(FileAccess { mode, gid })
}

/// Write the document to `path`: a new file beside it (`O_EXCL | O_NOFOLLOW`, exactly the
/// mode asked for, the group when given), synced, renamed over it (a link at `path` is
/// replaced, never followed).
fn write_file(path: &Path, doc: &TokenDocument, access: FileAccess) -> Result<(), String> {
    let json = doc.to_json();
    crate::support::atomic_file::write(
        path,
        &[json.expose_secret().as_bytes(), b"\n"],
        access.mode,
        access.gid,
    )
    .map_err(|e| match (e.kind(), access.gid) {
        (std::io::ErrorKind::PermissionDenied, Some(gid)) => format!(
            "cannot write {} for group {gid} ({e}): the user running exec must be a member of \
             that group",
            path.display()
        ),
        _ => format!("cannot write {}: {e}", path.display()),
    })
}

struct Supervisor<'a> {
    args: &'a ExecArgs,
    file: FileAccess,
    /// Environment variables the child does not get: the rotator's credentials and config.
    hidden: Vec<String>,
    sig: rustix::process::Signal,
    stop: rustix::process::Signal,
}

impl Supervisor<'_> {
    fn spawn(&self, doc: &TokenDocument) -> std::io::Result<tokio::process::Child> {
        let (program, rest) = self
            .args
            .command
            .split_first()
            .ok_or_else(|| std::io::Error::other("no command"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(rest);
        for var in &self.hidden {
            cmd.env_remove(var);
        }
        if !self.args.no_env {
            cmd.env(&self.args.env, doc.access_token.expose_secret());
            match &doc.x_api_key {
                Some(k) => cmd.env("DEEPVUE_API_KEY", k.expose_secret()),
                None => cmd.env_remove("DEEPVUE_API_KEY"),
            };
        }
        cmd.spawn()
    }

    async fn run(&self, source: &Source<'_>, version: &mut Version, mut doc: TokenDocument) -> u8 {
        let kinds = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
            SignalKind::quit(),
            SignalKind::user_defined1(),
            SignalKind::user_defined2(),
        ];
        let mut streams = Vec::new();
        for k in kinds {
            match signal(k) {
                Ok(s) => streams.push((k, s)),
                Err(e) => {
                    diag(&format!("error: cannot take signal {k:?}: {e}"));
                    return 1;
                }
            }
        }
        let mut child = match self.spawn(&doc) {
            Ok(c) => c,
            Err(e) => {
                diag(&format!("error: cannot start the command: {e}"));
                return 127;
            }
        };
        let mut started = tokio::time::Instant::now();
        let mut failures = 0u32;
        // A TERM, INT or QUIT passed on to the child: its exit then ends exec, never a restart.
        let mut stopping = false;
        let mut poll = tokio::time::interval(self.args.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let forwarded = futures::future::select_all(
                streams
                    .iter_mut()
                    .map(|(k, s)| Box::pin(async move { s.recv().await.map(|_| *k) })),
            );
            let exited = tokio::select! {
                status = child.wait() => Some(status),
                (got, _, _) = forwarded => {
                    if got.is_some_and(is_stop) {
                        stopping = true;
                    }
                    if let (Some(k), Some(pid)) = (got, child.id()) {
                        let raw = rustix::process::Signal::from_named_raw(k.as_raw_value());
                        if let (Some(s), Some(p)) = (raw, rustix::process::Pid::from_raw(pid as i32)) {
                            let _ = rustix::process::kill_process(p, s);
                        }
                    }
                    None
                }
                _ = poll.tick() => {
                    if let Err(code) = self.on_poll(source, version, &mut doc, &mut child, &mut started, &mut failures).await {
                        return code;
                    }
                    None
                }
            };
            let Some(status) = exited else { continue };
            let code = exit_code(status);
            let failed = code != 0;
            if failed && started.elapsed() >= HEALTHY_RUN {
                failures = 0;
            }
            if !(failed && !stopping && failures < self.args.restart_on_failure) {
                return code;
            }
            let wait = backoff(failures);
            failures += 1;
            warn!(status = code, restart_in = %humantime::format_duration(wait), attempt = failures, "the command failed; restarting it");
            // A stop signal during the backoff ends exec with the child's status.
            let stop_during = futures::future::select_all(
                streams
                    .iter_mut()
                    .filter(|(k, _)| is_stop(*k))
                    .map(|(_, s)| Box::pin(async move { s.recv().await })),
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop_during => return code,
            }
            child = match self.spawn(&doc) {
                Ok(c) => c,
                Err(e) => {
                    diag(&format!("error: cannot start the command: {e}"));
                    return 127;
                }
            };
            started = tokio::time::Instant::now();
        }
    }

    /// A poll: a new version rewrites the file, then the child is told (restarted or
    /// signalled). `Err(code)`: exec ends with it.
    async fn on_poll(
        &self,
        source: &Source<'_>,
        version: &mut Version,
        doc: &mut TokenDocument,
        child: &mut tokio::process::Child,
        started: &mut tokio::time::Instant,
        failures: &mut u32,
    ) -> Result<(), u8> {
        let (v, d) = match source.current().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "cannot read the token; the child keeps the one it has");
                return Ok(());
            }
        };
        if &v == version {
            return Ok(());
        }
        info!(version = %v, "a new token version");
        if let Some(f) = &self.args.file
            && let Err(e) = write_file(f, &d, self.file)
        {
            // Not taken: the next poll tries again before the child is told.
            warn!(error = %e, "cannot rewrite the token file; trying again at the next poll");
            return Ok(());
        }
        *version = v;
        *doc = d;
        match self.args.on_change {
            OnChange::None => {}
            OnChange::Signal => {
                if let Some(p) = child
                    .id()
                    .and_then(|p| rustix::process::Pid::from_raw(p as i32))
                {
                    let _ = rustix::process::kill_process(p, self.sig);
                }
            }
            OnChange::Restart => {
                self.stop_child(child).await;
                *child = match self.spawn(doc) {
                    Ok(c) => c,
                    Err(e) => {
                        diag(&format!("error: cannot start the command: {e}"));
                        return Err(127);
                    }
                };
                *started = tokio::time::Instant::now();
                *failures = 0;
            }
        }
        Ok(())
    }

    /// The stop signal, then SIGKILL once `--stop-timeout` has passed.
    async fn stop_child(&self, child: &mut tokio::process::Child) {
        if let Some(p) = child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(p, self.stop);
        }
        if tokio::time::timeout(self.args.stop_timeout, child.wait())
            .await
            .is_err()
        {
            warn!("the command did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}

/// The signals that ask to stop.
fn is_stop(k: SignalKind) -> bool {
    [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::quit(),
    ]
    .contains(&k)
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(MAX_BACKOFF)
}

/// The child's status as an exit code: its own, or 128 + the signal that ended it.
fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> u8 {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => u8::try_from(c).unwrap_or(1),
            (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
            _ => 1,
        },
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let b: Vec<u64> = (0..8).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(b, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(parse_signal("sighup").is_some() && parse_signal("STOP").is_none());
    }
}
