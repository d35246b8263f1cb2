//! The `file` backend: the embedded, versioned local file store (the default), and credentials
//! from a JSON file.

mod credentials;
mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use credentials::FileCredentials;
pub use store::{CURRENT, DEFAULT_KEEP_VERSIONS, FileStore};

use crate::support::problem::Problem;

/// `store = { backend = "file", path, keep_versions? }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStoreConfig {
    /// Directory holding the versions (created 0700 if missing).
    pub path: PathBuf,
    /// How many versions to keep (default 5, at least 2).
    pub keep_versions: Option<usize>,
}

impl FileStoreConfig {
    pub(super) fn validate(&self, at: &str) -> Result<(), Problem> {
        if self.path.as_os_str().is_empty() {
            return Err(Problem::invalid(format!("{at}.path is empty")));
        }
        if let Some(k) = self.keep_versions
            && !(2..=1000).contains(&k)
        {
            return Err(Problem::invalid(format!(
                "{at}.keep_versions must be between 2 and 1000 (got {k}); the previous version \
                 is always kept"
            )));
        }
        Ok(())
    }

    /// Normalised (`/x/`, `/x/.` and `/x` are one store) so duplicates are caught.
    pub(super) fn identity(&self) -> String {
        normalise(&self.path).display().to_string()
    }

    pub(super) fn build(&self, lock_timeout: Duration) -> FileStore {
        FileStore::new(
            self.path.clone(),
            self.keep_versions.unwrap_or(DEFAULT_KEEP_VERSIONS),
            lock_timeout,
        )
    }
}

/// `credentials = { backend = "file", path }` or `{ backend = "file", credential }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCredentialsConfig {
    /// Path to the JSON file.
    pub path: Option<PathBuf>,
    /// A systemd credential (`LoadCredential=NAME:…`) holding the JSON: the file
    /// `$CREDENTIALS_DIRECTORY/NAME`, without writing the runtime path in the config.
    pub credential: Option<String>,
}

impl FileCredentialsConfig {
    pub(super) fn validate(&self, at: &str) -> Result<(), Problem> {
        match (&self.path, &self.credential) {
            (Some(p), None) if !p.as_os_str().is_empty() => Ok(()),
            (None, Some(c)) if !c.is_empty() && !c.contains('/') => Ok(()),
            (Some(_), None) => Err(Problem::invalid(format!("{at}.path is empty"))),
            (None, Some(_)) => Err(Problem::invalid(format!(
                "{at}.credential must be a systemd credential name (no `/`)"
            ))),
            _ => Err(Problem::invalid(format!(
                "{at} needs exactly one of path = \"/file.json\" or credential = \"NAME\" (a \
                 systemd credential)"
            ))),
        }
    }

    pub(super) fn build(&self) -> FileCredentials {
        match (&self.path, &self.credential) {
            (_, Some(c)) => FileCredentials::systemd(c.clone()),
            (Some(p), None) => FileCredentials::new(p.clone()),
            // Refused by validate.
            (None, None) => FileCredentials::new(PathBuf::new()),
        }
    }
}

/// Absolute (against the working directory) with `.` and `..` resolved lexically, so `st`,
/// `./st/` and `$PWD/st` are recognised as one store.
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
