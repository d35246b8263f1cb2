//! Replacing a file whole: a reader sees the old content or the new, never a torn write.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Write `parts` to `path` atomically: a new temp file beside it (`create_new`, never following
/// a link), given exactly `mode` (whatever the umask) and, when set, the group `gid` (this user
/// must be a member of it), synced, then renamed over `path` (a link at `path` is replaced, not
/// followed). The temp file is removed when anything fails.
pub fn write(path: &Path, parts: &[&[u8]], mode: u32, gid: Option<u32>) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ));
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:08x}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)?;
        if let Some(gid) = gid {
            rustix::fs::fchown(&f, None, Some(rustix::fs::Gid::from_raw(gid)))?;
        }
        rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(mode))?;
        for p in parts {
            f.write_all(p)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
