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

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use tracing::warn;

use crate::core::document::{DocumentError, TokenDocument};
use crate::core::error::ErrorKind;
use crate::core::lease::Leases;
use crate::core::state::{StateEtag, StatePolicy, StateRead, StateStore};
use crate::core::store::{Lease, StoreError, Stored, TokenStore, Version, WriteMode};

/// Versions kept by default (the current one included).
pub const DEFAULT_KEEP_VERSIONS: usize = 5;
/// The symlink applications read.
pub const CURRENT: &str = "current.json";
const VERSIONS: &str = "versions";
const STATE: &str = "state.json";
const ROTATE_LOCK: &str = ".rotate.lock";
const WRITE_LOCK: &str = ".write.lock";
const TMP_PREFIX: &str = ".tmp-";
/// Largest version or state file read; anything larger is not the store's own.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Version numbers are exactly ten digits.
const VERSION_DIGITS: usize = 10;
/// The last version number the format can hold.
pub const MAX_VERSION: u64 = 9_999_999_999;

/// A versioned token directory on local disk.
///
/// Every file is reached through a handle on the store directory (`openat`-style), never by a
/// path string: the store and `versions` directories are opened `O_NOFOLLOW` and must be real
/// directories owned by the effective user and not writable by group or others; every file is
/// created `O_CREAT | O_EXCL | O_NOFOLLOW` (0600; version files 0640 and given the configured
/// group when the store is shared, its directories then 0750) and read `O_NOFOLLOW | O_NONBLOCK`, must be
/// a regular file of at most [`MAX_FILE_BYTES`]; renames, links and unlinks are relative to
/// the directory handles, and sweep and prune touch only names in the store's own formats.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
    keep: usize,
    lock_timeout: Duration,
    /// `Some`: one group may read the versions (`mode = "0640"`), with this gid when given.
    share: Option<Option<u32>>,
}

/// What reading one store file found.
enum FileRead {
    Bytes(Zeroizing<Vec<u8>>),
    Missing,
    /// Not the store's own file (a link, a FIFO, too large): why.
    Foreign(String),
}

/// The store directory, locked by one of the flock files.
struct Locked {
    root: OwnedFd,
    lock: File,
}

fn io_error(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

impl FileStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: PathBuf, keep: usize, lock_timeout: Duration) -> Self {
        FileStore {
            dir,
            keep: keep.max(2),
            lock_timeout,
            share: None,
        }
    }

    /// Let one group read the versions: directories 0750 and version files 0640, given to
    /// `gid` when set (`Some(None)`: the files keep their own group). `None`: owner only.
    pub fn shared_with(mut self, share: Option<Option<u32>>) -> Self {
        self.share = share;
        self
    }

    /// The mode new store directories get.
    fn dir_mode(&self) -> u32 {
        if self.share.is_some() { 0o750 } else { 0o700 }
    }

    /// A shared store: give `fd` (a directory or a version file of ours) the group and mode
    /// readers need. A gid this user may not give is a config error.
    fn share_fd(&self, fd: impl AsFd, path: &Path, mode: u32) -> Result<(), StoreError> {
        let Some(gid) = self.share else {
            return Ok(());
        };
        if let Some(gid) = gid {
            let st = rfs::fstat(&fd).map_err(|e| self.errno("cannot stat", path, e))?;
            if st.st_gid != gid {
                rfs::fchown(&fd, None, Some(rustix::fs::Gid::from_raw(gid))).map_err(|e| {
                    self.err(
                        ErrorKind::Config,
                        format!(
                            "cannot give {} to group {gid} ({e}): the user running \
                             deepvue-rotator must be a member of that group",
                            path.display()
                        ),
                    )
                })?;
            }
        }
        // Exactly this mode, whatever the umask took away.
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| self.errno("cannot chmod", path, e))
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> StoreError {
        StoreError::new("file", self.dir.display().to_string(), kind, message)
    }

    /// What a lease taken here names as its store.
    fn lease_store(&self) -> String {
        format!("file:{}", self.dir.display())
    }

    fn io(&self, what: &str, path: &Path, e: std::io::Error) -> StoreError {
        let kind = match e.kind() {
            IoKind::PermissionDenied | IoKind::ReadOnlyFilesystem => ErrorKind::Permanent,
            _ => ErrorKind::Transient,
        };
        self.err(kind, format!("{what} {}: {e}", path.display()))
            .with_source(e)
    }

    fn errno(&self, what: &str, path: &Path, e: Errno) -> StoreError {
        self.io(what, path, io_error(e))
    }

    fn versions_dir(&self) -> PathBuf {
        self.dir.join(VERSIONS)
    }

    /// A directory this store refuses: a link, not ours, writable by others.
    fn refused(&self, path: &Path, why: String) -> StoreError {
        self.err(ErrorKind::Config, format!("{} {why}", path.display()))
    }

    /// Why opening a store directory `O_DIRECTORY | O_NOFOLLOW` failed, in words.
    fn open_dir_error(&self, path: &Path, e: Errno) -> StoreError {
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if e == Errno::LOOP || is_link {
            return self.refused(
                path,
                "is a symbolic link; deepvue-rotator never follows links it did not make. Point \
                 store.path at the real directory (or replace the link with a directory owned by \
                 this user, mode 0700)"
                    .into(),
            );
        }
        if e == Errno::NOTDIR {
            return self.refused(path, "is not a directory (or a parent of it is not)".into());
        }
        self.errno("cannot open", path, e)
    }

    /// The directory behind `fd` must be a directory owned by the effective user and not
    /// writable by group or others.
    fn check_dir(&self, fd: &OwnedFd, path: &Path) -> Result<(), StoreError> {
        let st = rfs::fstat(fd).map_err(|e| self.errno("cannot stat", path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(self.refused(path, "is not a directory".into()));
        }
        let me = rustix::process::geteuid().as_raw();
        if st.st_uid != me {
            return Err(self.refused(
                path,
                format!(
                    "is owned by uid {}, not by this user (uid {me}); the store directory must \
                     belong to the user that runs deepvue-rotator: `chown` it, or point \
                     store.path elsewhere",
                    st.st_uid
                ),
            ));
        }
        let mode = st.st_mode & 0o777;
        if mode & 0o022 != 0 {
            return Err(self.refused(
                path,
                format!(
                    "is writable by group or others (mode {mode:o}); run `chmod 700 {}`",
                    path.display()
                ),
            ));
        }
        if self.share.is_some()
            && (mode & 0o050 != 0o050 || self.share.flatten().is_some_and(|g| st.st_gid != g))
        {
            // A directory of ours, shared from now on (or given another group in the config).
            self.share_fd(fd, path, 0o750)?;
        }
        let others = if self.share.is_some() { 0o007 } else { 0o077 };
        if mode & others != 0 && path == self.dir {
            warn!(
                store = %self.dir.display(),
                mode = format!("{mode:o}"),
                "token directory is readable by {}; {} is recommended",
                if self.share.is_some() { "others" } else { "group or others" },
                if self.share.is_some() { "0750" } else { "0700" }
            );
        }
        Ok(())
    }

    /// Open the store directory (`None`: it does not exist and `create` is false). Missing
    /// parents are created 0700 by path (they are outside the store); the store directory
    /// itself with `mkdirat` on its parent's handle.
    fn open_root(&self, create: bool) -> Result<Option<OwnedFd>, StoreError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::open(&self.dir, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(Errno::NOENT) => {
                let (Some(parent), Some(name)) = (self.dir.parent(), self.dir.file_name()) else {
                    return Err(self.err(ErrorKind::Config, "the store path has no directory name"));
                };
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(self.dir_mode())
                    .create(parent)
                    .map_err(|e| self.io("cannot create", parent, e))?;
                let pfd = rfs::open(
                    parent,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.errno("cannot open", parent, e))?;
                match rfs::mkdirat(&pfd, name, Mode::from_raw_mode(self.dir_mode())) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(self.errno("cannot create", &self.dir, e)),
                }
                rfs::openat(&pfd, name, flags, Mode::empty())
                    .map_err(|e| self.open_dir_error(&self.dir, e))?
            }
            Err(e) => return Err(self.open_dir_error(&self.dir, e)),
        };
        self.check_dir(&fd, &self.dir)?;
        Ok(Some(fd))
    }

    /// Open `versions/` relative to the store directory (`None`: missing and not `create`).
    fn open_versions(&self, root: &OwnedFd, create: bool) -> Result<Option<OwnedFd>, StoreError> {
        let path = self.versions_dir();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::openat(root, VERSIONS, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(Errno::NOENT) => {
                match rfs::mkdirat(root, VERSIONS, Mode::from_raw_mode(self.dir_mode())) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(self.errno("cannot create", &path, e)),
                }
                rfs::openat(root, VERSIONS, flags, Mode::empty())
                    .map_err(|e| self.open_dir_error(&path, e))?
            }
            Err(e) => return Err(self.open_dir_error(&path, e)),
        };
        self.check_dir(&fd, &path)?;
        Ok(Some(fd))
    }

    /// Read one store file relative to `dir`: never through a link, never blocking on a FIFO
    /// or device, at most [`MAX_FILE_BYTES`].
    fn read_file(&self, dir: &OwnedFd, name: &str, shown: &Path) -> Result<FileRead, StoreError> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rfs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(FileRead::Missing),
            Err(Errno::LOOP) => {
                return Ok(FileRead::Foreign(format!(
                    "{} is a symbolic link; deepvue-rotator never follows links in its store",
                    shown.display()
                )));
            }
            Err(e) => return Err(self.errno("cannot open", shown, e)),
        };
        let st = rfs::fstat(&fd).map_err(|e| self.errno("cannot stat", shown, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Ok(FileRead::Foreign(format!(
                "{} is not a regular file",
                shown.display()
            )));
        }
        let too_big = || {
            FileRead::Foreign(format!(
                "{} is larger than {} KiB",
                shown.display(),
                MAX_FILE_BYTES / 1024
            ))
        };
        let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
        if size > MAX_FILE_BYTES {
            return Ok(too_big());
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(size as usize + 1));
        File::from(fd)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io("cannot read", shown, e))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Ok(too_big());
        }
        Ok(FileRead::Bytes(bytes))
    }

    /// Create `name` in `dir`: `O_CREAT | O_EXCL | O_NOFOLLOW`, 0600.
    fn create_new(&self, dir: &OwnedFd, name: &str, shown: &Path) -> Result<File, StoreError> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
            .map(File::from)
            .map_err(|e| self.errno("cannot create", shown, e))
    }

    /// Remove `name` from `dir` (a link is removed, never followed); a missing one is fine.
    fn unlink(dir: &OwnedFd, name: &str) {
        let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    }

    /// Acquire an exclusive flock on `name`, polling until the lock timeout. The lock file is
    /// opened relative to the store directory, `O_NOFOLLOW`, and must be a regular file.
    async fn flock(&self, name: &'static str) -> Result<Locked, StoreError> {
        let (root, file) = self
            .blocking(move |s| {
                let root = s
                    .open_root(true)?
                    .ok_or_else(|| s.err(ErrorKind::Transient, "the store directory vanished"))?;
                let path = s.dir.join(name);
                let flags = OFlags::RDWR
                    | OFlags::CREATE
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC;
                let fd = match rfs::openat(&root, name, flags, Mode::from_raw_mode(0o600)) {
                    Ok(fd) => fd,
                    Err(Errno::LOOP) => {
                        return Err(s.err(
                            ErrorKind::Permanent,
                            format!(
                                "lock file {} is a symbolic link; deepvue-rotator never follows \
                                 links in its store (remove it)",
                                path.display()
                            ),
                        ));
                    }
                    Err(e) => return Err(s.errno("cannot open lock file", &path, e)),
                };
                let st = rfs::fstat(&fd).map_err(|e| s.errno("cannot stat", &path, e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    return Err(s.err(
                        ErrorKind::Permanent,
                        format!(
                            "lock file {} is not a regular file (remove it)",
                            path.display()
                        ),
                    ));
                }
                Ok((root, File::from(fd)))
            })
            .await?;
        let path = self.dir.join(name);
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Locked { root, lock: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
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
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(self.io("cannot lock", &path, e));
                }
            }
        }
    }

    /// What `current.json` points at (read with `readlinkat`, the target in the store's own
    /// format or refused).
    fn current_version(&self, root: &OwnedFd) -> Result<Option<u64>, StoreError> {
        let link = self.dir.join(CURRENT);
        match rfs::readlinkat(root, CURRENT, Vec::new()) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                parse_version_target(&target).map(Some).ok_or_else(|| {
                    self.err(
                        ErrorKind::Permanent,
                        format!(
                            "{} points at an unexpected target {}",
                            link.display(),
                            crate::support::text::escape_control(&target)
                        ),
                    )
                })
            }
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::INVAL) => Err(self.err(
                ErrorKind::Permanent,
                format!(
                    "{} is not a symlink; it is managed by deepvue-rotator",
                    link.display()
                ),
            )),
            Err(e) => Err(self.errno("cannot read", &link, e)),
        }
    }

    /// The document at version `n` (`None` only when the file does not exist and `missing_ok`).
    fn read_doc(
        &self,
        versions: Option<&OwnedFd>,
        n: u64,
        missing_ok: bool,
    ) -> Result<Option<Stored>, StoreError> {
        let name = version_name(n);
        let shown = self.versions_dir().join(&name);
        let read = match versions {
            Some(vdir) => self.read_file(vdir, &name, &shown)?,
            None => FileRead::Missing,
        };
        let document = match read {
            FileRead::Bytes(bytes) => TokenDocument::from_json(&bytes),
            FileRead::Missing if missing_ok => return Ok(None),
            FileRead::Missing => Err(DocumentError(format!(
                "version file {} is missing",
                shown.display()
            ))),
            FileRead::Foreign(why) => Err(DocumentError(why)),
        };
        Ok(Some(Stored::new(Version(n.to_string()), document)))
    }

    fn read_current_blocking(&self) -> Result<Option<Stored>, StoreError> {
        let Some(root) = self.open_root(false)? else {
            return Ok(None);
        };
        let Some(n) = self.current_version(&root)? else {
            return Ok(None);
        };
        let versions = self.open_versions(&root, false)?;
        self.read_doc(versions.as_ref(), n, false)
    }

    fn list_versions(&self, vdir: &OwnedFd) -> Result<Vec<u64>, StoreError> {
        let path = self.versions_dir();
        let dir = rfs::Dir::read_from(vdir).map_err(|e| self.errno("cannot list", &path, e))?;
        let mut out: Vec<u64> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok().and_then(parse_version_name))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    fn write_blocking(
        &self,
        root: &OwnedFd,
        json: &SecretString,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        // `expected` is the write mode's version: `None` = create.
        let vdir = self
            .open_versions(root, true)?
            .ok_or_else(|| self.err(ErrorKind::Transient, "the versions directory vanished"))?;
        let current = self.current_version(root)?;
        let expected_n = match expected {
            Some(v) => Some(parse_version_id(&v.0).ok_or_else(|| {
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
        self.remove_temp_files(root, &vdir);
        let versions = self.list_versions(&vdir)?;
        let last = versions.last().copied().max(current).unwrap_or(0);
        let next = last
            .checked_add(1)
            .filter(|n| *n <= MAX_VERSION)
            .ok_or_else(|| {
                self.err(
                    ErrorKind::Permanent,
                    format!(
                        "version numbers are exhausted (the last is {last}, the format holds \
                         {VERSION_DIGITS} digits); move the store aside and start a new one"
                    ),
                )
            })?;
        let pid = std::process::id();

        // 1. the new version file, complete and durable before anything points at it.
        let vpath = self.versions_dir();
        let tmp = format!("{TMP_PREFIX}{pid}-{next}");
        {
            let mut f = self.create_new(&vdir, &tmp, &vpath.join(&tmp))?;
            self.share_fd(&f, &vpath.join(&tmp), 0o640)?;
            let mut body = Zeroizing::new(Vec::with_capacity(json.expose_secret().len() + 1));
            body.extend_from_slice(json.expose_secret().as_bytes());
            body.push(b'\n');
            f.write_all(&body)
                .and_then(|()| f.sync_all())
                .map_err(|e| self.io("cannot write", &vpath.join(&tmp), e))?;
        }
        let final_name = version_name(next);
        rename_noreplace(&vdir, &tmp, &final_name)
            .map_err(|e| self.errno("cannot rename into", &vpath.join(&final_name), e))?;
        rfs::fsync(&vdir).map_err(|e| self.errno("cannot fsync", &vpath, e))?;

        // 2. atomically repoint current.json.
        let link_tmp = format!("{TMP_PREFIX}current-{pid}");
        Self::unlink(root, &link_tmp);
        let target = format!("{VERSIONS}/{final_name}");
        rfs::symlinkat(target.as_str(), root, link_tmp.as_str())
            .map_err(|e| self.errno("cannot create symlink", &self.dir.join(&link_tmp), e))?;
        rfs::renameat(root, link_tmp.as_str(), root, CURRENT)
            .map_err(|e| self.errno("cannot replace", &self.dir.join(CURRENT), e))?;
        rfs::fsync(root).map_err(|e| self.errno("cannot fsync", &self.dir, e))?;

        // 3. prune; never the new or the previous version.
        let mut all = versions;
        all.push(next);
        if all.len() > self.keep {
            for n in &all[..all.len() - self.keep] {
                if Some(*n) != current {
                    Self::unlink(&vdir, &version_name(*n));
                }
            }
        }
        Ok(Version(next.to_string()))
    }

    /// Temp files are only made by version and state writers, under the write lock: any found
    /// by a writer were left by a killed one. Only names in the writers' own formats are
    /// removed (`.tmp-PID-N` in `versions/`, `.tmp-current-PID` and `.tmp-state-PID` beside
    /// it), through the directory handles. (The `check` probe uses another name.)
    fn remove_temp_files(&self, root: &OwnedFd, vdir: &OwnedFd) {
        for (dir, is_ours) in [
            (root, is_root_temp_name as fn(&str) -> bool),
            (vdir, is_version_temp_name),
        ] {
            let Ok(entries) = rfs::Dir::read_from(dir) else {
                continue;
            };
            for e in entries.flatten() {
                if let Ok(name) = e.file_name().to_str()
                    && is_ours(name)
                {
                    Self::unlink(dir, name);
                }
            }
        }
    }

    fn check_blocking(&self) -> Result<(), StoreError> {
        if std::fs::symlink_metadata(&self.dir).is_ok() {
            // The store exists: it must be ours, and writable.
            let root = self
                .open_root(false)?
                .ok_or_else(|| self.err(ErrorKind::Transient, "the store directory vanished"))?;
            let versions = self.open_versions(&root, false)?;
            let probe = format!(
                ".check-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            );
            drop(self.create_new(&root, &probe, &self.dir)?);
            Self::unlink(&root, &probe);
            if let Some(n) = self.current_version(&root)?
                && let Some(Stored {
                    document: Err(e), ..
                }) = self.read_doc(versions.as_ref(), n, false)?
            {
                warn!(store = %self.dir.display(), error = %e, "current token document is unusable; the next run rotates it");
            }
            return Ok(());
        }
        // Not created yet: the nearest existing ancestor must be a writable directory.
        let mut probe_dir = self.dir.clone();
        while std::fs::symlink_metadata(&probe_dir).is_err() {
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
            .create_new(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC).bits() as i32)
            .mode(0o600)
            .open(&probe)
            .map_err(|e| self.io("cannot write in", &probe_dir, e))?;
        let _ = std::fs::remove_file(&probe);
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

/// `renameat2(RENAME_NOREPLACE)` where the kernel and filesystem have it, else `renameat`.
fn rename_noreplace(dir: &OwnedFd, from: &str, to: &str) -> Result<(), Errno> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match rfs::renameat_with(dir, from, dir, to, rfs::RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
        other => return other,
    }
    rfs::renameat(dir, from, dir.as_fd(), to)
}

fn version_name(n: u64) -> String {
    format!("{n:010}.json")
}

/// Exactly ten ASCII digits and `.json`, as [`version_name`] writes them.
fn parse_version_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != VERSION_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A version id as this store hands it out: 1 to 10 ASCII digits.
fn parse_version_id(id: &str) -> Option<u64> {
    if id.is_empty() || id.len() > VERSION_DIGITS || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Exactly `versions/NNNNNNNNNN.json`.
fn parse_version_target(target: &str) -> Option<u64> {
    parse_version_name(target.strip_prefix(VERSIONS)?.strip_prefix('/')?)
}

/// `.tmp-PID-N`: a version writer's temp file.
fn is_version_temp_name(name: &str) -> bool {
    name.strip_prefix(TMP_PREFIX)
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(pid, n)| all_digits(pid) && all_digits(n))
}

/// `.tmp-current-PID` / `.tmp-state-PID`: a writer's temp link or state file.
fn is_root_temp_name(name: &str) -> bool {
    name.strip_prefix(TMP_PREFIX)
        .and_then(|r| {
            r.strip_prefix("current-")
                .or_else(|| r.strip_prefix("state-"))
        })
        .is_some_and(all_digits)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

#[async_trait]
impl TokenStore for FileStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    fn secret_id(&self) -> String {
        self.dir.display().to_string()
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        self.blocking(FileStore::read_current_blocking).await
    }

    /// inotify on the store directory (never through a link): yields when `current.json` is
    /// created or renamed over, i.e. when a version is written, and when events were lost (a
    /// queue overflow); ends when the directory is removed or moved away. `None` while the
    /// directory does not exist yet or inotify is unavailable (readers poll then).
    fn changes(&self) -> Option<futures::stream::BoxStream<'static, ()>> {
        use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()?;
        inotify::add_watch(
            &fd,
            &self.dir,
            WatchFlags::MOVED_TO
                | WatchFlags::CREATE
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF
                | WatchFlags::ONLYDIR
                | WatchFlags::DONT_FOLLOW,
        )
        .ok()?;
        // `register` (its replacement) is `unsafe` for an arbitrary `AsRawFd`; an `OwnedFd`
        // moved in meets its contract (open, owned, the same descriptor until dropped).
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::new(fd).ok()?;
        Some(Box::pin(futures::stream::unfold(fd, |fd| async move {
            loop {
                let changed = {
                    let mut guard = fd.readable().await.ok()?;
                    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
                    let mut reader = inotify::Reader::new(fd.get_ref(), &mut buf);
                    let mut changed = false;
                    loop {
                        match reader.next() {
                            Ok(e) => {
                                let flags = e.events();
                                // The directory went (removed, moved away): the watch is over.
                                if flags.intersects(
                                    ReadFlags::IGNORED
                                        | ReadFlags::DELETE_SELF
                                        | ReadFlags::MOVE_SELF,
                                ) {
                                    return None;
                                }
                                // Events were lost: one of them may have been the write.
                                changed |= flags.contains(ReadFlags::QUEUE_OVERFLOW)
                                    || e.file_name()
                                        .is_some_and(|n| n.to_bytes() == CURRENT.as_bytes());
                            }
                            Err(Errno::AGAIN) => {
                                guard.clear_ready();
                                break;
                            }
                            // The watch is gone (the directory removed): stop; readers poll.
                            Err(_) => return None,
                        }
                    }
                    changed
                };
                if changed {
                    return Some(((), fd));
                }
            }
        })))
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        let Some(n) = parse_version_id(&version.0) else {
            return Ok(None);
        };
        self.blocking(move |s| {
            let Some(root) = s.open_root(false)? else {
                return Ok(None);
            };
            let versions = s.open_versions(&root, false)?;
            s.read_doc(versions.as_ref(), n, true)
        })
        .await
    }

    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError> {
        // The rotation lease (a flock on another file) serialises whole rotations; the write
        // lock serialises the version writes themselves, lease or not.
        let Locked { root, lock } = self.flock(WRITE_LOCK).await?;
        let json = doc.to_json();
        let expected = mode.expected().cloned();
        self.blocking(move |s| {
            let result = s.write_blocking(&root, &json, expected.as_ref());
            drop(lock);
            result
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.blocking(|s| s.check_blocking()).await
    }
}

/// The rotation lease is a flock on `.rotate.lock`, held by the descriptor inside the
/// [`Lease`] value: it lasts until the value is dropped (or the process dies), so N runners on
/// one host mint once.
#[async_trait]
impl Leases for FileStore {
    async fn acquire(&self, base: Option<&Version>) -> Result<Lease, StoreError> {
        let Locked { root, lock } = self.flock(ROTATE_LOCK).await?;
        // Refuse a tampered versions directory before anything is minted for it.
        self.blocking(move |s| s.open_versions(&root, true).map(drop))
            .await?;
        let holder = format!("pid-{}", std::process::id());
        Ok(Lease::new(self.lease_store(), holder, base.cloned(), None).guarded_by(lock))
    }

    async fn release(&self, lease: Lease) {
        lease.handed_back(); // the flock goes with its descriptor
    }
}

/// Run state is `state.json` beside the versions, written under the write lock.
#[async_trait]
impl StateStore for FileStore {
    fn policy(&self) -> StatePolicy {
        StatePolicy::EveryRun
    }

    fn capacity(&self) -> usize {
        MAX_FILE_BYTES as usize
    }

    async fn read_state(&self) -> Result<StateRead, StoreError> {
        let bytes = self
            .blocking(|s| {
                let Some(root) = s.open_root(false)? else {
                    return Ok(None);
                };
                match s.read_file(&root, STATE, &s.dir.join(STATE))? {
                    FileRead::Bytes(bytes) => Ok(Some(bytes.to_vec())),
                    FileRead::Missing => Ok(None),
                    FileRead::Foreign(why) => Err(s.err(ErrorKind::Permanent, why)),
                }
            })
            .await?;
        Ok(StateRead {
            bytes,
            ..StateRead::default()
        })
    }

    async fn write_state(
        &self,
        bytes: Option<&[u8]>,
        _etag: Option<&StateEtag>,
    ) -> Result<(), StoreError> {
        let bytes = bytes.map(<[u8]>::to_vec);
        // Under the write lock, like version writes: its temp file uses the swept prefix.
        let Locked { root, lock } = self.flock(WRITE_LOCK).await?;
        self.blocking(move |s| {
            let result = match bytes {
                Some(bytes) => s.replace_state(&root, &bytes),
                None => match rfs::unlinkat(&root, STATE, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(s.errno("cannot remove", &s.dir.join(STATE), e)),
                },
            };
            drop(lock);
            result
        })
        .await
    }
}

impl FileStore {
    /// Replace `state.json`: temp file, fsync, rename, fsync the directory.
    fn replace_state(&self, root: &OwnedFd, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = format!("{TMP_PREFIX}state-{}", std::process::id());
        let shown = self.dir.join(&tmp);
        // A leftover of ours, or something planted under our name: only the name goes.
        Self::unlink(root, &tmp);
        let mut f = self.create_new(root, &tmp, &shown)?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| self.io("cannot write", &shown, e))?;
        rfs::renameat(root, tmp.as_str(), root, STATE)
            .map_err(|e| self.errno("cannot replace", &self.dir.join(STATE), e))?;
        rfs::fsync(root).map_err(|e| self.errno("cannot fsync", &self.dir, e))
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
        assert_eq!(parse_version_name("18446744073709551615.json"), None);
        assert_eq!(parse_version_name("000000007.json"), None);
        assert_eq!(parse_version_name("+000000007.json"), None);
        assert_eq!(parse_version_target("versions/0000000012.json"), Some(12));
        assert_eq!(parse_version_target("versions//0000000012.json"), None);
        assert_eq!(parse_version_target("./versions/0000000012.json"), None);
        assert_eq!(parse_version_target("/etc/passwd"), None);
        assert_eq!(parse_version_target("versions/../x.json"), None);
        assert_eq!(parse_version_id("7"), Some(7));
        assert_eq!(parse_version_id("+7"), None);
        assert_eq!(parse_version_id("99999999999"), None);
        assert!(is_version_temp_name(".tmp-123-7"));
        assert!(!is_version_temp_name(".tmp-precious"));
        assert!(is_root_temp_name(".tmp-state-123") && is_root_temp_name(".tmp-current-9"));
        assert!(!is_root_temp_name(".tmp-state-") && !is_root_temp_name(".tmp-other-1"));
    }
}
