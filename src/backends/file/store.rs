//! The embedded local file store.
//!
//! Layout of a token's directory (0700; files 0600):
//!
//! ```text
//! current.json -> versions/0000000007.json   symlink: what applications read
//! versions/0000000006.json                    the previous version (kept)
//! versions/0000000007.json
//! state.json                                  last outcome (no secrets)
//! .rotate.lock  .write.lock                   flock(2) files
//! ```
//!
//! A write goes: temp file → fsync → rename to the next version number → fsync dir → temp
//! symlink → rename over `current.json` → fsync dir. A SIGKILL at any instant therefore leaves
//! `current.json` pointing at a complete old or new version. Versions beyond `keep_versions`
//! are pruned after a write; temp files left by a killed writer are removed by the next one.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tracing::warn;

use crate::core::document::{DocumentError, TokenDocument};
use crate::core::error::ErrorKind;
use crate::core::state::RunState;
use crate::core::store::{
    RotationLock, StatePolicy, StateRead, StoreError, Stored, TokenStore, Version, WriteMode,
};

/// Versions kept by default (the current one included).
pub const DEFAULT_KEEP_VERSIONS: usize = 5;
/// The symlink applications read.
pub const CURRENT: &str = "current.json";
const VERSIONS: &str = "versions";
const STATE: &str = "state.json";
const ROTATE_LOCK: &str = ".rotate.lock";
const WRITE_LOCK: &str = ".write.lock";
const TMP_PREFIX: &str = ".tmp-";

/// A versioned token directory on local disk.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
    keep: usize,
    lock_timeout: Duration,
}

impl FileStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: PathBuf, keep: usize, lock_timeout: Duration) -> Self {
        FileStore {
            dir,
            keep: keep.max(2),
            lock_timeout,
        }
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> StoreError {
        StoreError::new("file", self.dir.display().to_string(), kind, message)
    }

    fn io(&self, what: &str, path: &Path, e: std::io::Error) -> StoreError {
        let kind = match e.kind() {
            IoKind::PermissionDenied | IoKind::ReadOnlyFilesystem => ErrorKind::Permanent,
            _ => ErrorKind::Transient,
        };
        self.err(kind, format!("{what} {}: {e}", path.display()))
            .with_source(e)
    }

    fn versions_dir(&self) -> PathBuf {
        self.dir.join(VERSIONS)
    }

    fn version_file(&self, n: u64) -> PathBuf {
        self.versions_dir().join(version_name(n))
    }

    fn ensure_dirs(&self) -> Result<(), StoreError> {
        for d in [self.dir.clone(), self.versions_dir()] {
            match fs::metadata(&d) {
                Ok(m) if m.is_dir() => {
                    if m.permissions().mode() & 0o077 != 0 && d == self.dir {
                        warn!(
                            store = %self.dir.display(),
                            mode = format!("{:o}", m.permissions().mode() & 0o777),
                            "token directory is accessible to group or others; 0700 is recommended"
                        );
                    }
                }
                Ok(_) => {
                    return Err(self.err(
                        ErrorKind::Config,
                        format!("{} is not a directory", d.display()),
                    ));
                }
                Err(e) if e.kind() == IoKind::NotFound => fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&d)
                    .map_err(|e| self.io("cannot create", &d, e))?,
                Err(e) => return Err(self.io("cannot access", &d, e)),
            }
        }
        Ok(())
    }

    /// Acquire an exclusive flock on `name`, polling until the lock timeout.
    async fn acquire(&self, name: &str) -> Result<File, StoreError> {
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.io("cannot open lock file", &path, e))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) => {
                    if started.elapsed() >= self.lock_timeout {
                        return Err(self.err(
                            ErrorKind::Transient,
                            format!(
                                "another process held {} for longer than the lock timeout ({})",
                                path.display(),
                                humantime::format_duration(self.lock_timeout)
                            ),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(fs::TryLockError::Error(e)) => return Err(self.io("cannot lock", &path, e)),
            }
        }
    }

    fn current_version(&self) -> Result<Option<u64>, StoreError> {
        let link = self.dir.join(CURRENT);
        match fs::read_link(&link) {
            Ok(target) => parse_version_target(&target).map(Some).ok_or_else(|| {
                self.err(
                    ErrorKind::Permanent,
                    format!(
                        "{} points at an unexpected target {}",
                        link.display(),
                        target.display()
                    ),
                )
            }),
            Err(e) if e.kind() == IoKind::NotFound => Ok(None),
            Err(e) if e.kind() == IoKind::InvalidInput => Err(self.err(
                ErrorKind::Permanent,
                format!(
                    "{} is not a symlink; it is managed by deepvue-rotator",
                    link.display()
                ),
            )),
            Err(e) => Err(self.io("cannot read", &link, e)),
        }
    }

    fn read_blocking(&self, n: u64) -> Result<Option<Stored>, StoreError> {
        let path = self.version_file(n);
        let document = match fs::read(&path) {
            Ok(bytes) => {
                let bytes = secrecy::zeroize::Zeroizing::new(bytes);
                TokenDocument::from_json(&bytes)
            }
            Err(e) if e.kind() == IoKind::NotFound => Err(DocumentError(format!(
                "version file {} is missing",
                path.display()
            ))),
            Err(e) => return Err(self.io("cannot read", &path, e)),
        };
        Ok(Some(Stored::new(Version(n.to_string()), document)))
    }

    fn list_versions(&self) -> Result<Vec<u64>, StoreError> {
        let dir = self.versions_dir();
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(out),
            Err(e) => return Err(self.io("cannot list", &dir, e)),
        };
        for entry in entries.flatten() {
            if let Some(n) = entry.file_name().to_str().and_then(parse_version_name) {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn write_blocking(
        &self,
        json: &SecretString,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        // `expected` is the write mode's version: `None` = create.
        let current = self.current_version()?;
        let expected_n = match expected {
            Some(v) => Some(v.0.parse::<u64>().map_err(|_| {
                self.err(
                    ErrorKind::Conflict,
                    format!("version `{v}` is not a file-store version"),
                )
            })?),
            None => None,
        };
        if current != expected_n {
            return Err(self.err(
                ErrorKind::Conflict,
                format!(
                    "current version is {} but the rotation decided on {}; another runner wrote first",
                    current.map_or("none".into(), |n| n.to_string()),
                    expected_n.map_or("none".into(), |n| n.to_string())
                ),
            ));
        }
        self.remove_temp_files();
        let versions = self.list_versions()?;
        let next = versions.last().copied().max(current).unwrap_or(0) + 1;

        // 1. the new version file, complete and durable before anything points at it.
        let vdir = self.versions_dir();
        let tmp = vdir.join(format!("{TMP_PREFIX}{}-{next}", std::process::id()));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| self.io("cannot create", &tmp, e))?;
            f.write_all(json.expose_secret().as_bytes())
                .and_then(|()| f.write_all(b"\n"))
                .and_then(|()| f.sync_all())
                .map_err(|e| self.io("cannot write", &tmp, e))?;
        }
        let final_path = self.version_file(next);
        fs::rename(&tmp, &final_path).map_err(|e| self.io("cannot rename into", &final_path, e))?;
        fsync_dir(&vdir).map_err(|e| self.io("cannot fsync", &vdir, e))?;

        // 2. atomically repoint current.json.
        let link_tmp = self
            .dir
            .join(format!("{TMP_PREFIX}current-{}", std::process::id()));
        let _ = fs::remove_file(&link_tmp);
        let target = Path::new(VERSIONS).join(version_name(next));
        std::os::unix::fs::symlink(&target, &link_tmp)
            .map_err(|e| self.io("cannot create symlink", &link_tmp, e))?;
        let link = self.dir.join(CURRENT);
        fs::rename(&link_tmp, &link).map_err(|e| self.io("cannot replace", &link, e))?;
        fsync_dir(&self.dir).map_err(|e| self.io("cannot fsync", &self.dir, e))?;

        // 3. prune; never the new or the previous version.
        let mut all = versions;
        all.push(next);
        if all.len() > self.keep {
            for n in &all[..all.len() - self.keep] {
                if Some(*n) != current {
                    let _ = fs::remove_file(self.version_file(*n));
                }
            }
        }
        Ok(Version(next.to_string()))
    }

    /// `.tmp-*` files are only made by version and state writers, under the write lock: any
    /// found by a writer were left by a killed one. (The `check` probe uses another name.)
    fn remove_temp_files(&self) {
        for d in [self.dir.clone(), self.versions_dir()] {
            if let Ok(entries) = fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
    }

    fn check_blocking(&self) -> Result<(), StoreError> {
        // The nearest existing ancestor must be a writable directory.
        let mut probe_dir = self.dir.clone();
        while !probe_dir.exists() {
            if !probe_dir.pop() {
                return Err(self.err(ErrorKind::Config, "no existing parent directory"));
            }
        }
        if !probe_dir.is_dir() {
            return Err(self.err(
                ErrorKind::Config,
                format!("{} is not a directory", probe_dir.display()),
            ));
        }
        let probe = probe_dir.join(format!(
            ".check-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&probe)
            .map_err(|e| self.io("cannot write in", &probe_dir, e))?;
        let _ = fs::remove_file(&probe);
        if let Some(n) = self.current_version()?
            && let Some(Stored {
                document: Err(e), ..
            }) = self.read_blocking(n)?
        {
            warn!(store = %self.dir.display(), error = %e, "current token document is unusable; the next run rotates it");
        }
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FileStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| self.err(ErrorKind::Transient, format!("I/O task failed: {e}")))?
    }
}

fn version_name(n: u64) -> String {
    format!("{n:010}.json")
}

fn parse_version_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_version_target(target: &Path) -> Option<u64> {
    let mut parts = target.components();
    let first = parts.next()?.as_os_str().to_str()?;
    let second = parts.next()?.as_os_str().to_str()?;
    if first != VERSIONS || parts.next().is_some() {
        return None;
    }
    parse_version_name(second)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[async_trait]
impl TokenStore for FileStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    fn secret_id(&self) -> String {
        self.dir.display().to_string()
    }

    fn state_policy(&self) -> StatePolicy {
        StatePolicy::EveryRun
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        self.blocking(|s| match s.current_version()? {
            Some(n) => s.read_blocking(n),
            None => Ok(None),
        })
        .await
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        let Ok(n) = version.0.parse::<u64>() else {
            return Ok(None);
        };
        self.blocking(move |s| {
            if s.version_file(n).exists() {
                s.read_blocking(n)
            } else {
                Ok(None)
            }
        })
        .await
    }

    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError> {
        self.blocking(FileStore::ensure_dirs).await?;
        let lock = self.acquire(WRITE_LOCK).await?;
        let json = doc.to_json();
        let expected = mode.expected().cloned();
        self.blocking(move |s| {
            let result = s.write_blocking(&json, expected.as_ref());
            drop(lock);
            result
        })
        .await
    }

    async fn lock(&self) -> Result<Option<RotationLock>, StoreError> {
        self.blocking(FileStore::ensure_dirs).await?;
        let file = self.acquire(ROTATE_LOCK).await?;
        Ok(Some(RotationLock::new(file)))
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.blocking(|s| s.check_blocking()).await
    }

    async fn read_state(&self) -> Result<StateRead, StoreError> {
        let state = self
            .blocking(|s| {
                let path = s.dir.join(STATE);
                match fs::read(&path) {
                    Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
                    Err(e) if e.kind() == IoKind::NotFound => Ok(None),
                    Err(e) => Err(s.io("cannot read", &path, e)),
                }
            })
            .await?;
        Ok(StateRead {
            state,
            ..StateRead::default()
        })
    }

    async fn write_state(&self, state: &RunState, _base: &StateRead) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| self.err(ErrorKind::Permanent, format!("cannot encode state: {e}")))?;
        self.blocking(FileStore::ensure_dirs).await?;
        // Under the write lock, like version writes: its temp file uses the swept prefix.
        let lock = self.acquire(WRITE_LOCK).await?;
        self.blocking(move |s| {
            let path = s.dir.join(STATE);
            let tmp = s
                .dir
                .join(format!("{TMP_PREFIX}state-{}", std::process::id()));
            let result = (|| {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| s.io("cannot create", &tmp, e))?;
                f.write_all(&bytes)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| s.io("cannot write", &tmp, e))?;
                fs::rename(&tmp, &path).map_err(|e| s.io("cannot replace", &path, e))?;
                fsync_dir(&s.dir).map_err(|e| s.io("cannot fsync", &s.dir, e))
            })();
            drop(lock);
            result
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_round_trip() {
        assert_eq!(version_name(7), "0000000007.json");
        assert_eq!(parse_version_name("0000000007.json"), Some(7));
        assert_eq!(parse_version_name(".tmp-1-7"), None);
        assert_eq!(parse_version_name("x.json"), None);
        assert_eq!(
            parse_version_target(Path::new("versions/0000000012.json")),
            Some(12)
        );
        assert_eq!(parse_version_target(Path::new("/etc/passwd")), None);
        assert_eq!(parse_version_target(Path::new("versions/../x.json")), None);
    }
}
