//! The `file` backend: the embedded, versioned local file store (the default), and credentials
//! from a JSON file.

mod credentials;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

pub use credentials::FileCredentials;
pub use store::{CURRENT, DEFAULT_KEEP_VERSIONS, FileStore};

use super::{Backend, BuildContext, CredentialsEntry, NoSection, StoreEntry};
use crate::core::credentials::CredentialSource;
use crate::core::parts::StoreParts;
use crate::support::problem::Problem;

/// The `file` backend: the embedded store, and credentials from a file.
pub struct File;

impl Backend for File {
    type Section = NoSection;
    type Clients = ();
    type Credentials = FileCredentialsConfig;
    type Store = FileStoreConfig;

    fn clients(_: &NoSection) -> Arc<()> {
        Arc::new(())
    }
}

/// `store = { backend = "file", path, keep_versions?, mode?, group? }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStoreConfig {
    /// Directory holding the versions (created 0700 if missing; 0750 with `mode = "0640"`).
    pub path: PathBuf,
    /// How many versions to keep (default 5, at least 2).
    pub keep_versions: Option<usize>,
    /// Version files' mode: `"0600"` (default) or `"0640"` (one group may read; never world
    /// bits).
    pub mode: Option<String>,
    /// The group that may read (a name from /etc/group, or a numeric gid); with `mode = "0640"`.
    pub group: Option<String>,
}

impl FileStoreConfig {
    /// `Some(gid)` when shared with a group (`None` inside: the files' own group).
    fn share(&self) -> Result<Option<Option<u32>>, String> {
        match (self.mode.as_deref(), &self.group) {
            (None | Some("0600"), None) => Ok(None),
            (None | Some("0600"), Some(_)) => Err(
                "group needs mode = \"0640\" (the group may read the token; 0600 gives it nothing)"
                    .into(),
            ),
            (Some("0640"), g) => Ok(Some(
                g.as_deref()
                    .map(crate::support::process::resolve_group)
                    .transpose()?,
            )),
            (Some(m), _) => Err(format!(
                "mode `{m}` is not \"0600\" (owner only, the default) or \"0640\" (one group may \
                 read); the store never grants write to others or any access to the world"
            )),
        }
    }
}

impl StoreEntry for FileStoreConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
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
        self.share()
            .map(drop)
            .map_err(|e| Problem::invalid(format!("{at}: {e}")))
    }

    /// The directory this path really names, so duplicates are caught however they are
    /// spelled: `/x/`, `/x/.`, `./x` and a symlink to `/x` are one store.
    fn identity(&self) -> String {
        canonical(&self.path).display().to_string()
    }

    /// Versions, the flock lease and `state.json`, all in one directory.
    fn build(&self, ctx: &BuildContext<'_>) -> StoreParts {
        let store = Arc::new(
            FileStore::new(
                self.path.clone(),
                self.keep_versions.unwrap_or(DEFAULT_KEEP_VERSIONS),
                ctx.lock_timeout,
            )
            // Checked by validate.
            .shared_with(self.share().ok().flatten()),
        );
        StoreParts::of(store.clone()).with_leases(store)
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

impl CredentialsEntry for FileCredentialsConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
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

    fn build(&self, _: &BuildContext<'_>) -> Box<dyn CredentialSource> {
        Box::new(match (&self.path, &self.credential) {
            (_, Some(c)) => FileCredentials::systemd(c.clone()),
            (Some(p), None) => FileCredentials::new(p.clone()),
            // Refused by validate.
            (None, None) => FileCredentials::new(PathBuf::new()),
        })
    }
}

/// The longest existing prefix of `path` canonicalised (symlinks resolved by the OS), the
/// rest appended with `.` and `..` resolved lexically; relative paths against the working
/// directory. `st`, `./st/`, `$PWD/st` and a link to `st` are recognised as one store.
fn canonical(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let parts: Vec<Component<'_>> = abs.components().collect();
    // Longest prefix that resolves.
    let mut base = None;
    for n in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..n].iter().collect();
        if let Ok(real) = std::fs::canonicalize(&prefix) {
            base = Some((real, n));
            break;
        }
    }
    let (mut out, used) = base.unwrap_or_default();
    for c in &parts[used..] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_store_however_it_is_spelled() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        let a = root.path().join("a");
        std::fs::create_dir(&a)?;
        std::os::unix::fs::symlink(&a, root.path().join("alias"))?;
        let id = |p: PathBuf| canonical(&p);
        let real = id(a.clone());
        assert_eq!(id(root.path().join("alias")), real);
        assert_eq!(id(root.path().join("alias/./")), real);
        assert_eq!(id(root.path().join("x/../a")), real);
        // Missing parts are resolved lexically under the real prefix.
        assert_eq!(id(root.path().join("alias/new/../b")), real.join("b"));
        Ok(())
    }
}
