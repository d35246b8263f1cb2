//! `[audit]`: the append-only record of every rotation attempt (JSON lines).

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
pub use crate::engine::audit::AuditConfig;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    file: Option<PathBuf>,
    stdout: Option<bool>,
    max_size_mib: Option<u64>,
    keep: Option<u32>,
    mode: Option<String>,
}

impl RawAudit {
    pub(super) fn validate(self, origin: &str) -> Result<AuditConfig, ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        if let Some(f) = &self.file
            && !f.is_absolute()
        {
            return Err(err(format!(
                "audit.file `{}` must be an absolute path",
                f.display()
            )));
        }
        let mib = self.max_size_mib.unwrap_or(10);
        if !(1..=1024).contains(&mib) {
            return Err(err(format!(
                "audit.max_size_mib must be between 1 and 1024 (got {mib})"
            )));
        }
        let keep = self.keep.unwrap_or(5);
        if !(1..=100).contains(&keep) {
            return Err(err(format!(
                "audit.keep must be between 1 and 100 (got {keep})"
            )));
        }
        let mode = match self.mode.as_deref().unwrap_or("0600") {
            "0600" => 0o600,
            "0640" => 0o640,
            m => {
                return Err(err(format!(
                    "audit.mode `{m}` is not \"0600\" or \"0640\" (the record is never \
                     world-readable)"
                )));
            }
        };
        Ok(AuditConfig {
            file: self.file,
            stdout: self.stdout.unwrap_or(false),
            max_bytes: mib * 1024 * 1024,
            keep,
            mode,
        })
    }
}
