//! Secret values given by reference (`{ env = "NAME" }` / `{ file = "/path" }`), and the one
//! reader of secret files.
//!
//! Every secret file the rotator reads — Deepvue credentials, alert sink keys and URLs, later
//! auth material — goes through [`read_secret_file`], so one rule set applies to all: a regular
//! file, at most 64 KiB, readable by its owner only. Contents land in zeroising buffers.

use std::io::Read;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use serde::Deserialize;

/// Largest secret file read.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Why a secret could not be read. Names the variable or file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// The environment variable is not UTF-8.
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    /// The value is empty.
    #[error("{0} is empty")]
    Empty(String),
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file breaks the rules for secret files.
    #[error("{}: {why}", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// Which rule, and how to fix it.
        why: String,
    },
    /// The reference names none or several.
    #[error("a secret reference needs exactly one of env, file or credential")]
    Malformed,
    /// A systemd credential outside systemd.
    #[error(
        "systemd credential {0}: $CREDENTIALS_DIRECTORY is not set (run under systemd with \
         LoadCredential={0}:… or LoadCredentialEncrypted=)"
    )]
    NoCredentialsDirectory(String),
}

/// The directory systemd puts `LoadCredential=` files in.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// A secret value given by reference: `{ env = "NAME" }`, `{ file = "/path" }`, or
/// `{ credential = "NAME" }` (a systemd credential: `$CREDENTIALS_DIRECTORY/NAME`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Environment variable holding the value.
    pub env: Option<String>,
    /// File holding the value (trailing newline trimmed).
    pub file: Option<PathBuf>,
    /// A systemd credential (`LoadCredential=NAME:…`) holding the value.
    pub credential: Option<String>,
}

/// The path of systemd credential `name`, when running with `LoadCredential=`.
pub fn credential_path(name: &str) -> Result<PathBuf, SecretError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(SecretError::Unsafe {
            path: PathBuf::from(name),
            why: "a credential name is a plain file name (no `/`)".into(),
        });
    }
    match std::env::var_os(CREDENTIALS_DIRECTORY) {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join(name)),
        _ => Err(SecretError::NoCredentialsDirectory(name.to_string())),
    }
}

impl SecretRef {
    /// Where the value lives, for messages.
    pub fn describe(&self) -> String {
        match (&self.env, &self.file, &self.credential) {
            (Some(e), _, _) => format!("env {e}"),
            (None, Some(f), _) => format!("file {}", f.display()),
            (None, None, Some(c)) => format!("systemd credential {c}"),
            (None, None, None) => "nothing".into(),
        }
    }

    /// Whether the value is held by a service manager (a systemd credential) rather than a
    /// plain file or the environment.
    pub fn is_managed(&self) -> bool {
        self.credential.is_some()
    }

    /// Read the value now.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        let file = match (&self.file, &self.credential) {
            (Some(f), None) => Some(f.clone()),
            (None, Some(c)) => Some(credential_path(c)?),
            (None, None) => None,
            (Some(_), Some(_)) => return Err(SecretError::Malformed),
        };
        let value = match (&self.env, file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) => Zeroizing::new(v),
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::EnvMissing(var.clone()));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EnvNotUnicode(var.clone()));
                }
            },
            (None, Some(path)) => {
                let bytes = read_secret_file(&path)?;
                let text = std::str::from_utf8(&bytes).map_err(|_| SecretError::Unsafe {
                    path: path.clone(),
                    why: "the file is not UTF-8 text".into(),
                })?;
                Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string())
            }
            _ => return Err(SecretError::Malformed),
        };
        if value.trim().is_empty() {
            return Err(SecretError::Empty(self.describe()));
        }
        Ok(SecretString::from(value.as_str()))
    }

    /// Check the shape (exactly one of `env` / `file` / `credential`, non-empty) at config
    /// load.
    pub fn validate(&self, at: &str) -> Result<(), super::problem::Problem> {
        match (&self.env, &self.file, &self.credential) {
            (Some(e), None, None) if !e.is_empty() => Ok(()),
            (None, Some(f), None) if !f.as_os_str().is_empty() => Ok(()),
            (None, None, Some(c)) if !c.is_empty() && !c.contains('/') => Ok(()),
            _ => Err(super::problem::Problem::invalid(format!(
                "{at} must be {{ env = \"NAME\" }}, {{ file = \"/path\" }} or {{ credential = \
                 \"NAME\" }} (a systemd credential), exactly one"
            ))),
        }
    }
}

/// Read a secret file: a regular file (links to one are followed: Kubernetes and systemd mount
/// secrets that way), owned by this user or root, readable and writable by its owner only, at
/// most [`MAX_SECRET_FILE`]. The bytes are zeroised when dropped.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    read_checked(path, false)
}

/// Read a platform-issued token file (a Kubernetes service-account or projected token) under
/// the same rules as [`read_secret_file`], except that a file **owned by root** may be
/// readable by group and others: the kubelet mounts these short-lived, audience-bound tokens
/// read-only with mode 0644 (0640 with an `fsGroup`), which no pod can change. Writable by
/// group or others is still refused.
pub fn read_token_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    read_checked(path, true)
}

fn read_checked(
    path: &Path,
    root_owned_may_be_readable: bool,
) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let io = |source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    };
    let unsafe_file = |why: String| SecretError::Unsafe {
        path: path.to_path_buf(),
        why,
    };
    // O_NONBLOCK: a FIFO planted at the path must not hang the run.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(unsafe_file("not a regular file".into()));
    }
    let owner = meta.uid();
    let me = rustix::process::geteuid().as_raw();
    if owner != me && owner != 0 {
        return Err(unsafe_file(format!(
            "the file is owned by uid {owner}, not by this user (uid {me}) or root"
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(unsafe_file(format!(
            "the file is writable by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display()
        )));
    }
    if mode & 0o044 != 0 && !(root_owned_may_be_readable && owner == 0) {
        return Err(unsafe_file(format!(
            "the file is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display()
        )));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(unsafe_file(format!(
            "the file is larger than {} KiB",
            MAX_SECRET_FILE / 1024
        )));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(unsafe_file(format!(
            "the file is larger than {} KiB",
            MAX_SECRET_FILE / 1024
        )));
    }
    Ok(bytes)
}

/// A URL that may be written inline or given by reference.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UrlValue {
    /// Written in the file.
    Inline(String),
    /// By reference.
    Ref(SecretRef),
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_files_must_be_owner_only_regular_and_small() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key");
        std::fs::write(&path, "SENTINEL-value\n")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;
        let r = SecretRef {
            file: Some(path.clone()),
            ..SecretRef::default()
        };
        let e = r.resolve().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("chmod 600") && !e.contains("SENTINEL"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let v = r.resolve().map(|s| s.expose_secret().to_string());
        assert_eq!(v.ok().as_deref(), Some("SENTINEL-value"));
        let e = read_secret_file(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::write(&path, vec![b'x'; 70 * 1024])?;
        let e = read_secret_file(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("larger than 64 KiB"), "{e}");
        Ok(())
    }
}
