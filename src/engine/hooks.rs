//! Rotation hooks: after a write this run made, run a command and/or signal the process in a
//! pid file (`on_rotate`), so an application that reads its token once picks up the new one.
//!
//! - **Command**: an argv list (no shell), with a cleared environment: `PATH` and
//!   `DEEPVUE_TOKEN_NAME`, `DEEPVUE_TOKEN_VERSION`, `DEEPVUE_TOKEN_EXPIRY`,
//!   `DEEPVUE_TOKEN_STORE` — never the token, and none of the rotator's own variables (its
//!   client secret may be one). Its own process group, killed as a whole at `timeout`. Its
//!   output is logged (truncated, control characters escaped).
//! - **Signal**: the pid file is read without following a link; a process that is gone (the
//!   application restarting, spiffe-helper #250) makes the file be read again, with backoff,
//!   until `timeout`, and the new pid is signalled.
//! - A hook that fails is reported (the run's `hooks`, its exit code, the `hook-failed` alert
//!   condition, a log line); it never undoes the write.
//! - The `token.rotated` event ([`rotated_event`]) goes to the alert sinks that list it in
//!   their `events`: name, version, expiry, stores, runner — never the token.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::core::alert::{EventRunner, TokenEvent};
use crate::core::document::format_time;
use crate::core::error::ErrorKind;
use crate::core::result::{Failure, HookRun, RunResult};
use crate::support::text::{escape_control, truncate};

/// The event kind sent after a write.
pub const ROTATED: &str = "token.rotated";

/// A new event id (`evt_` and 24 hex digits).
pub fn event_id() -> String {
    format!(
        "evt_{}",
        rand::random::<[u8; 12]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The `token.rotated` event of the write `r` reports.
pub fn rotated_event(r: &RunResult, now: chrono::DateTime<chrono::Utc>) -> TokenEvent {
    TokenEvent {
        kind: ROTATED,
        id: event_id(),
        token: r.token.name.clone(),
        version: r.version().map(|v| v.0.clone()),
        expiry: r.expiry().map(format_time),
        store: format!("{} {}", r.token.backend, r.token.secret_id),
        replicas: r
            .replicas
            .iter()
            .map(|x| format!("{} {} ({})", x.backend, x.secret_id, x.state.as_str()))
            .collect(),
        runner: EventRunner {
            host: crate::support::process::host_name(),
            pid: std::process::id(),
        },
        occurred_at: format_time(now),
        attempt: None,
    }
}

/// The most of a command's output that is logged.
const OUTPUT_LOGGED: usize = 1024;
/// The largest pid file read.
const PID_FILE_MAX: u64 = 64;

/// `on_rotate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotateHook {
    /// The command's argv (empty: none).
    pub command: Vec<String>,
    /// How long the command (and the signal's retries) may take.
    pub timeout: Duration,
    /// The pid file of the process to signal.
    pub pid_file: Option<PathBuf>,
    /// The signal (default `HUP`).
    pub signal: HookSignal,
}

/// The signals a hook may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookSignal {
    /// SIGHUP.
    Hup,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
}

impl HookSignal {
    /// Its name in config (`HUP`, with or without `SIG`).
    pub fn parse(name: &str) -> Option<HookSignal> {
        Some(
            match name.trim().to_ascii_uppercase().trim_start_matches("SIG") {
                "HUP" => HookSignal::Hup,
                "USR1" => HookSignal::Usr1,
                "USR2" => HookSignal::Usr2,
                "TERM" => HookSignal::Term,
                "INT" => HookSignal::Int,
                _ => return None,
            },
        )
    }

    fn name(self) -> &'static str {
        match self {
            HookSignal::Hup => "SIGHUP",
            HookSignal::Usr1 => "SIGUSR1",
            HookSignal::Usr2 => "SIGUSR2",
            HookSignal::Term => "SIGTERM",
            HookSignal::Int => "SIGINT",
        }
    }

    fn raw(self) -> rustix::process::Signal {
        use rustix::process::Signal;
        match self {
            HookSignal::Hup => Signal::HUP,
            HookSignal::Usr1 => Signal::USR1,
            HookSignal::Usr2 => Signal::USR2,
            HookSignal::Term => Signal::TERM,
            HookSignal::Int => Signal::INT,
        }
    }
}

/// Run `hook` for the write `r` reports: the command, then the signal.
pub async fn run(hook: &RotateHook, r: &RunResult) -> Vec<HookRun> {
    let mut runs = Vec::new();
    if let Some((program, args)) = hook.command.split_first() {
        let failure = command(program, args, hook.timeout, r).await.err();
        runs.push(HookRun {
            kind: "command",
            target: program.clone(),
            failure: failure.map(|m| hook_failure(r, m)),
        });
    }
    if let Some(pid_file) = &hook.pid_file {
        let failure = signal(pid_file, hook.signal, hook.timeout).await.err();
        runs.push(HookRun {
            kind: "signal",
            target: pid_file.display().to_string(),
            failure: failure.map(|m| hook_failure(r, m)),
        });
    }
    runs
}

fn hook_failure(r: &RunResult, message: String) -> Failure {
    Failure {
        kind: ErrorKind::Transient,
        message: format!(
            "token `{}`: on_rotate hook failed (the new token was written): {message}",
            r.token.name
        ),
        deepvue_detail: None,
    }
}

/// The command, its environment the token's facts only; `Err` says why it failed.
async fn command(
    program: &str,
    args: &[String],
    timeout: Duration,
    r: &RunResult,
) -> Result<(), String> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", path)
        .env("DEEPVUE_TOKEN_NAME", &r.token.name)
        .env(
            "DEEPVUE_TOKEN_VERSION",
            r.version().map(|v| v.0.clone()).unwrap_or_default(),
        )
        .env(
            "DEEPVUE_TOKEN_EXPIRY",
            r.expiry().map(format_time).unwrap_or_default(),
        )
        .env(
            "DEEPVUE_TOKEN_STORE",
            format!("{} {}", r.token.backend, r.token.secret_id),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let pid = child.id();
    // The output is read beside the wait, bounded: a command that leaves a process holding
    // its pipes (`app &`) is done when it exits, not when the pipes close.
    let collect = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(OUTPUT_LOGGED as u64 * 4).read_to_end(&mut buf).await;
            }
            buf
        })
    };
    let out_task = collect(child.stdout.take().map(|p| Box::new(p) as _));
    let err_task = collect(child.stderr.take().map(|p| Box::new(p) as _));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("`{program}`: {e}")),
        Err(_) => {
            // The child and whatever it started: its whole process group.
            if let Some(pgid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            out_task.abort();
            err_task.abort();
            return Err(format!(
                "`{program}` did not finish within {} and was killed",
                humantime::format_duration(timeout)
            ));
        }
    };
    let drained = |mut t: tokio::task::JoinHandle<Vec<u8>>| async move {
        match tokio::time::timeout(Duration::from_millis(200), &mut t).await {
            Ok(Ok(b)) => b,
            _ => {
                t.abort();
                Vec::new()
            }
        }
    };
    let (out_bytes, err_bytes) = (drained(out_task).await, drained(err_task).await);
    struct Out {
        status: std::process::ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    }
    let out = Out {
        status,
        stdout: out_bytes,
        stderr: err_bytes,
    };
    let shown = |b: &[u8]| escape_control(&truncate(&String::from_utf8_lossy(b), OUTPUT_LOGGED));
    let (stdout, stderr) = (shown(&out.stdout), shown(&out.stderr));
    if out.status.success() {
        info!(
            command = program,
            took_ms = started.elapsed().as_millis() as u64,
            stdout = %stdout,
            stderr = %stderr,
            "on_rotate command done"
        );
        Ok(())
    } else {
        warn!(command = program, status = %out.status, stdout = %stdout, stderr = %stderr, "on_rotate command failed");
        let said = stderr
            .lines()
            .next()
            .map(|l| truncate(l, 200))
            .unwrap_or_default();
        Err(format!(
            "`{program}` {}{}",
            out.status,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ))
    }
}

/// Send `sig` to the process in `pid_file`; a process that is gone makes the file be read
/// again (it may be restarting), with backoff, until `timeout`.
async fn signal(pid_file: &Path, sig: HookSignal, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut wait = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match read_pid(pid_file) {
            Ok(pid) => match rustix::process::kill_process(pid, sig.raw()) {
                Ok(()) => {
                    info!(pid_file = %pid_file.display(), pid = pid.as_raw_nonzero().get(), signal = sig.name(), "on_rotate signal sent");
                    return Ok(());
                }
                Err(rustix::io::Errno::SRCH) => format!(
                    "process {} named by {} does not exist",
                    pid.as_raw_nonzero().get(),
                    pid_file.display()
                ),
                Err(e) => {
                    return Err(format!(
                        "cannot send {} to process {} ({}): {e}",
                        sig.name(),
                        pid.as_raw_nonzero().get(),
                        pid_file.display()
                    ));
                }
            },
            Err(e) => e,
        };
        info!(pid_file = %pid_file.display(), attempt = attempts, error = %last, "on_rotate signal: reading the pid file again");
        if Instant::now() + wait > deadline {
            return Err(format!("{last} (read {attempts} times)"));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// The pid in `path`: a regular file (no link followed), a positive number other than 1.
fn read_pid(path: &Path) -> Result<rustix::process::Pid, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot read pid file {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("pid file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("pid file {} is not a regular file", path.display()));
    }
    // Whoever can write the pid file chooses whom the rotator signals: only this user or root.
    {
        use std::os::unix::fs::MetadataExt as _;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "pid file {} is owned by uid {}, not by this user ({me}) or root",
                path.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "pid file {} is writable by group or others (mode {:o})",
                path.display(),
                meta.mode() & 0o777
            ));
        }
    }
    let mut text = String::new();
    file.take(PID_FILE_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("pid file {}: {e}", path.display()))?;
    let own = std::process::id() as i32;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 1 && *p != own)
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("pid file {} holds no process id", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name() {
        assert_eq!(HookSignal::parse("hup"), Some(HookSignal::Hup));
        assert_eq!(HookSignal::parse("SIGUSR1"), Some(HookSignal::Usr1));
        assert_eq!(HookSignal::parse("KILL"), None);
    }

    #[test]
    fn pid_files_are_checked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("app.pid");
        let own = std::process::id().to_string();
        for (text, ok) in [
            ("1234\n", true),
            ("1", false),
            ("0", false),
            ("-5", false),
            ("x", false),
            (own.as_str(), false),
        ] {
            std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read_pid(&p).is_ok(), ok, "{text:?}");
        }
        let link = dir.path().join("link.pid");
        std::os::unix::fs::symlink(&p, &link).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&p, "1234").unwrap_or_else(|e| panic!("{e}"));
        assert!(read_pid(&link).is_err(), "a link is not followed");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            read_pid(&p).is_err(),
            "a world-writable pid file is refused"
        );
    }
}
