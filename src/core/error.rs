//! The error classes every boundary sorts its failures into, and the exit codes they map to.
//!
//! Each boundary keeps its own `thiserror` type (`MintError`, `StoreError`, `CredentialsError`,
//! `ConfigError`); each of those answers [`ErrorKind`] so the orchestration (retry, alert, exit
//! code) never has to look inside a backend's error.

use serde::Serialize;

/// What kind of failure happened, independent of where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad configuration or input: nothing was attempted; fix the config.
    Config,
    /// Deepvue answered 403 (typically: the egress IP is not whitelisted). Not retried.
    Forbidden,
    /// Deepvue rejected the credentials (400/401/422). Permanent, not retried.
    CredentialsRejected,
    /// Will fail the same way if retried (TLS verification, access denied, unexpected status).
    Permanent,
    /// May succeed if retried later (5xx, timeouts, connection errors, malformed answers).
    Transient,
    /// The stored version changed under us: another runner won the race.
    Conflict,
}

impl ErrorKind {
    /// The process exit code this class maps to (docs/src/troubleshooting.md).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Config => 2,
            ErrorKind::Forbidden => 3,
            ErrorKind::CredentialsRejected => 4,
            ErrorKind::Permanent | ErrorKind::Transient | ErrorKind::Conflict => 1,
        }
    }

    /// Short stable name, as used in logs and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::CredentialsRejected => "credentials_rejected",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Transient => "transient",
            ErrorKind::Conflict => "conflict",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exit code for config and usage errors: nothing was attempted.
pub const EXIT_CONFIG: u8 = 2;

/// Combine per-token exit codes: the first of 2, 3, 4, 1, 0 that occurs wins.
pub fn combine_exit_codes(codes: impl IntoIterator<Item = u8>) -> u8 {
    const PRECEDENCE: [u8; 5] = [2, 3, 4, 1, 0];
    let seen: Vec<u8> = codes.into_iter().collect();
    PRECEDENCE
        .into_iter()
        .find(|c| seen.contains(c))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_precedence() {
        assert_eq!(combine_exit_codes([]), 0);
        assert_eq!(combine_exit_codes([0, 0]), 0);
        assert_eq!(combine_exit_codes([0, 1, 0]), 1);
        assert_eq!(combine_exit_codes([1, 4, 0]), 4);
        assert_eq!(combine_exit_codes([4, 3, 1]), 3);
        assert_eq!(combine_exit_codes([3, 2, 4]), 2);
    }
}
