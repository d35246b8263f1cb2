//! The audit trail: one JSON line per rotation attempt — time, trigger, runner (host, pid,
//! mode), the egress IP seen, outcome and error class, version written, stores — never a
//! secret. Written by the engine where every run ends (the rotator's `finish`),
//! so every mode records the same way. A pass that only found the token fresh is no attempt
//! and is not recorded.
//!
//! The file is appended to under an exclusive `flock` (cron runs, daemon replicas and the
//! agent may share it), opened without following links, owned by this user and never
//! group-writable or world-readable; past `max_size` it is renamed to `FILE.1` (older ones
//! shift up to `FILE.keep`) and a new one is made with `create_new`.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::core::alert::{AttemptFacts, EventRunner, TokenEvent};
use crate::core::result::{Outcome, RunResult};
use crate::support::time::format_time;

/// `[audit]`, validated. Off unless `file` or `stdout` is set.
#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    /// The JSON-lines file (absolute), rotated by size.
    pub file: Option<PathBuf>,
    /// Also one line per record on stdout (stderr for `rotate --json`, whose stdout is a
    /// document).
    pub stdout: bool,
    /// Rotate the file past this size (default 10 MiB).
    pub max_bytes: u64,
    /// Rotated files kept: `FILE.1` … `FILE.keep` (default 5).
    pub keep: u32,
    /// The file's mode: 0600 (default) or 0640.
    pub mode: u32,
}

impl AuditConfig {
    /// Whether anything is recorded.
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.stdout
    }
}

/// Why a pass ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A schedule: cron, a systemd timer, a CronJob, the daemon's timer, a Lambda schedule.
    #[default]
    Schedule,
    /// Asked for by hand (`rotate --force`).
    Manual,
    /// A Pub/Sub `SECRET_ROTATE` push.
    Push,
    /// Secrets Manager's own rotation (a rotation Lambda step).
    Rotation,
    /// The agent's refresh of a due token (`[agent] mint = true`).
    AgentRefresh,
}

/// The event kind sinks take (`events = ["rotation.attempted"]`) to receive every audit record.
pub const ATTEMPTED: &str = "rotation.attempted";

static MODE: OnceLock<&'static str> = OnceLock::new();

/// The run mode this process records as its runner (`cli`, `daemon`, `lambda`, `agent`, …);
/// the first call wins.
pub fn set_mode(mode: &'static str) {
    let _ = MODE.set(mode);
}

/// Who ran a pass.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Runner {
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The run mode.
    pub mode: String,
}

/// A store a pass wrote or looked at.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoreRef {
    /// Its backend.
    pub backend: String,
    /// Its secret id.
    pub secret_id: String,
    /// What the pass did there (replicas: `in_sync`, `copied`, `failed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// One audit record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// When the attempt ended (RFC 3339, UTC).
    pub time: String,
    /// The token's name.
    pub token: String,
    /// Why it ran.
    pub trigger: Trigger,
    /// Who ran it.
    pub runner: Runner,
    /// The egress IPs the probe saw, when one ran (a 403, or drift checks).
    #[serde(default)]
    pub egress_ips: Vec<String>,
    /// What came of it (`rotated`, `rotated_by_another_runner`, `throttled`, `failed`).
    pub outcome: String,
    /// The error class, when it failed.
    #[serde(default)]
    pub error_class: Option<String>,
    /// The error (it names token, backend and secret id; never a secret).
    #[serde(default)]
    pub error: Option<String>,
    /// The version now current (written by this attempt when `outcome` is `rotated`).
    #[serde(default)]
    pub version: Option<String>,
    /// The version it replaced.
    #[serde(default)]
    pub previous_version: Option<String>,
    /// The primary store, then the replicas.
    pub stores: Vec<StoreRef>,
}

impl Record {
    /// The record of `r`, or `None` when it was no attempt (fresh, dry run).
    pub fn of(r: &RunResult, trigger: Trigger, now: chrono::DateTime<chrono::Utc>) -> Option<Self> {
        let previous_version = match &r.outcome {
            Outcome::Fresh | Outcome::WouldRotate => return None,
            Outcome::Rotated { previous } => previous.as_ref().map(|v| v.0.clone()),
            _ => None,
        };
        let failure = r.failure();
        let mut stores = vec![StoreRef {
            backend: r.token.backend.to_string(),
            secret_id: r.token.secret_id.clone(),
            state: None,
        }];
        stores.extend(r.replicas.iter().map(|x| StoreRef {
            backend: x.backend.to_string(),
            secret_id: x.secret_id.clone(),
            state: Some(x.state.as_str().to_string()),
        }));
        Some(Record {
            time: format_time(now),
            token: r.token.name.clone(),
            trigger,
            runner: runner(),
            egress_ips: r
                .egress
                .as_ref()
                .map(|e| e.observed.iter().map(|o| o.ip.to_string()).collect())
                .unwrap_or_default(),
            outcome: r.outcome.as_str().to_string(),
            error_class: failure.map(|f| f.kind.to_string()),
            error: failure.map(|f| crate::support::text::truncate(&f.message, 1000)),
            version: r.version().map(|v| v.0.clone()),
            previous_version,
            stores,
        })
    }
}

impl Record {
    /// The `rotation.attempted` event of this record (for sinks that take it).
    pub fn event(&self) -> TokenEvent {
        let trigger = serde_json::to_value(self.trigger)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut stores = self.stores.iter().map(|s| {
            format!(
                "{} {}{}",
                s.backend,
                s.secret_id,
                s.state
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            )
        });
        TokenEvent {
            kind: ATTEMPTED,
            id: super::hooks::event_id(),
            token: self.token.clone(),
            version: self.version.clone(),
            expiry: None,
            store: stores.next().unwrap_or_default(),
            replicas: stores.collect(),
            runner: EventRunner {
                host: self.runner.host.clone(),
                pid: self.runner.pid,
            },
            occurred_at: self.time.clone(),
            attempt: Some(AttemptFacts {
                trigger,
                mode: self.runner.mode.clone(),
                outcome: self.outcome.clone(),
                error_class: self.error_class.clone(),
                error: self.error.clone(),
                egress_ips: self.egress_ips.clone(),
                previous_version: self.previous_version.clone(),
            }),
        }
    }
}

fn runner() -> Runner {
    Runner {
        host: crate::support::process::host_name(),
        pid: std::process::id(),
        mode: MODE.get().copied().unwrap_or("cli").to_string(),
    }
}

/// Where records go.
#[derive(Debug)]
pub struct AuditLog {
    config: AuditConfig,
    /// Records to stderr instead of stdout (`rotate --json`: stdout is one document).
    stderr: std::sync::atomic::AtomicBool,
}

impl AuditLog {
    /// The log `config` asks for, if any.
    pub fn new(config: &AuditConfig) -> Option<AuditLog> {
        config.enabled().then(|| AuditLog {
            config: config.clone(),
            stderr: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Send the `stdout` copy to stderr (stdout carries a document of its own).
    pub fn stdout_taken(&self) {
        self.stderr
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Append `record`; what went wrong, if anything (the run's outcome does not change).
    pub async fn append(&self, record: &Record) -> Result<(), String> {
        let mut line = serde_json::to_string(record).map_err(|e| e.to_string())?;
        line.push('\n');
        if self.config.stdout {
            let out = if self.stderr.load(std::sync::atomic::Ordering::Relaxed) {
                crate::support::output::diag(line.trim_end());
                Ok(())
            } else {
                crate::support::output::stdout(line.as_bytes())
            };
            out.map_err(|e| format!("audit record not written to stdout: {e}"))?;
        }
        if let Some(path) = self.config.file.clone() {
            let (max, keep, mode) = (self.config.max_bytes, self.config.keep, self.config.mode);
            tokio::task::spawn_blocking(move || append_locked(&path, &line, max, keep, mode))
                .await
                .map_err(|e| format!("audit file: {e}"))?
                .map_err(|e| format!("audit file: {e}"))?;
        }
        Ok(())
    }
}

/// Open the audit file for appending: never through a link, ours, not group-writable or
/// world-readable; created with `mode` when missing.
fn open(path: &Path, mode: u32) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let m = f.metadata()?;
    let uid = rustix::process::geteuid().as_raw();
    if !m.is_file() || (m.uid() != uid && m.uid() != 0) || m.mode() & 0o027 != 0 {
        return Err(std::io::Error::other(format!(
            "{} must be a regular file owned by this user (uid {uid}) or root, not \
             group-writable and not world-readable (it has mode {:o}, owner {})",
            path.display(),
            m.mode() & 0o7777,
            m.uid()
        )));
    }
    Ok(f)
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn append_locked(path: &Path, line: &str, max: u64, keep: u32, mode: u32) -> std::io::Result<()> {
    loop {
        let mut f = open(path, mode)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
        // Another writer may have rotated the file between our open and our lock: write to
        // the file the path names now.
        let here = std::fs::symlink_metadata(path)?;
        let mine = f.metadata()?;
        if here.ino() != mine.ino() || here.dev() != mine.dev() {
            continue;
        }
        if mine.len() > 0 && mine.len() + line.len() as u64 > max {
            for n in (1..keep).rev() {
                let from = rotated(path, n);
                if std::fs::symlink_metadata(&from).is_ok() {
                    std::fs::rename(&from, rotated(path, n + 1))?;
                }
            }
            std::fs::rename(path, rotated(path, 1))?;
            let fresh = std::fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path);
            // Unlocking the old file lets a waiting writer see the new inode.
            drop(f);
            f = match fresh {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
        }
        f.write_all(line.as_bytes())?;
        return Ok(());
    }
}

/// The last `n` records of each token in `tokens` (all when empty), oldest first, from the
/// audit file and its rotated predecessors. Lines that do not parse are skipped.
pub fn history(config: &AuditConfig, tokens: &[String], n: usize) -> Result<Vec<Record>, String> {
    let Some(path) = &config.file else {
        return Err(
            "status --history reads the audit file: set [audit] file = \"/path/audit.jsonl\""
                .into(),
        );
    };
    let mut found: Vec<Record> = Vec::new();
    let mut per_token: std::collections::HashMap<String, usize> = Default::default();
    // Newest file first; lines newest first within it.
    for i in 0..=config.keep {
        let p = if i == 0 {
            path.clone()
        } else {
            rotated(path, i)
        };
        let text = match read_private(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(format!("audit file {}: {e}", p.display())),
        };
        for line in text.lines().rev() {
            let Ok(r) = serde_json::from_str::<Record>(line) else {
                continue;
            };
            if !tokens.is_empty() && !tokens.contains(&r.token) {
                continue;
            }
            let seen = per_token.entry(r.token.clone()).or_default();
            if *seen < n {
                *seen += 1;
                found.push(r);
            }
        }
        if !tokens.is_empty() && tokens.iter().all(|t| per_token.get(t) >= Some(&n)) {
            break;
        }
    }
    found.reverse();
    Ok(found)
}

/// `status --history` as text: one line per attempt, oldest first.
pub fn render(records: &[Record]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<16} {:<14} {:<26} {:<8} RUNNER",
        "TIME", "NAME", "TRIGGER", "OUTCOME", "VERSION"
    );
    for r in records {
        let trigger = serde_json::to_value(r.trigger)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<22} {:<16} {:<14} {:<26} {:<8} {} {} pid {}",
            r.time,
            r.token,
            trigger,
            r.outcome,
            r.version.as_deref().unwrap_or("-"),
            r.runner.mode,
            r.runner.host,
            r.runner.pid
        );
        if let Some(e) = &r.error {
            let _ = writeln!(
                out,
                "  {}: {}",
                r.error_class.as_deref().unwrap_or("error"),
                crate::support::text::escape_control(e)
            );
        }
        if !r.egress_ips.is_empty() {
            let _ = writeln!(out, "  egress IP: {}", r.egress_ips.join(", "));
        }
    }
    if records.is_empty() {
        out.push_str("(no rotation attempts recorded)\n");
    }
    out
}

/// Read an audit file (never through a link).
fn read_private(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_is_rotated_and_history_reads_across_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig {
            file: Some(path.clone()),
            stdout: false,
            max_bytes: 600,
            keep: 2,
            mode: 0o600,
        };
        let record = |token: &str, v: u32| Record {
            time: format!("2026-01-01T00:00:{v:02}Z"),
            token: token.into(),
            trigger: Trigger::Schedule,
            runner: Runner {
                host: "h".into(),
                pid: 1,
                mode: "cli".into(),
            },
            egress_ips: vec![],
            outcome: "rotated".into(),
            error_class: None,
            error: None,
            version: Some(v.to_string()),
            previous_version: None,
            stores: vec![],
        };
        for v in 0..20 {
            let mut line = serde_json::to_string(&record(if v % 2 == 0 { "a" } else { "b" }, v))
                .unwrap_or_default();
            line.push('\n');
            append_locked(&path, &line, 600, 2, 0o600).unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "keep = 2");
        for p in [path.clone(), rotated(&path, 1)] {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(len <= 600, "{} is {len} bytes", p.display());
        }
        let h = history(&config, &["a".into()], 3).unwrap_or_else(|e| panic!("{e}"));
        let versions: Vec<_> = h.iter().filter_map(|r| r.version.clone()).collect();
        assert_eq!(versions, ["14", "16", "18"]);
        let all = history(&config, &[], 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 4);
        // A loose file is refused, not appended to.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = append_locked(&path, "x\n", 600, 2, 0o600)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not world-readable")));
    }
}
