//! A Unix socket a server made for itself: created with exactly its mode, only in a directory
//! nobody else may write, never over another user's file or a live server's socket, and
//! removed on exit only while the path is still that socket. The agent's listener and the
//! daemon's admin socket.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use tracing::warn;

/// The Unix socket this process made, removed when dropped — only while the path still is
/// that socket (same device and inode): never another server's that replaced it.
pub struct OwnSocket {
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

/// Create the socket at `path` with `mode` (and `gid`): never through a link, never over a
/// file that is not this user's socket or over a socket a server still listens on, and only in
/// a directory that this user or root owns and nobody else may write (a sticky `/tmp` is not
/// enough: after the server exits, anyone could put their own socket at the path and receive
/// what its clients send).
pub fn bind_unix(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
    what: &str,
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
            "{} belongs to uid {}, not to this user or root: use a directory of the {what}'s own \
             (e.g. systemd's RuntimeDirectory=, /run/deepvue-rotator)",
            dir.display(),
            dmeta.uid()
        ));
    }
    if dmeta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by its group or others: they could replace the socket; use a \
             directory only the {what}'s user can write (e.g. /run/deepvue-rotator, mode 0755)",
            dir.display()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && m.uid() == me => {
            // This user's socket: another server's if something answers on it, else left
            // behind by one that was killed.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{} is in use: another {what} listens on it",
                    path.display()
                ));
            }
            warn!(path = %path.display(), "removing a stale {what} socket");
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
