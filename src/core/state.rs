//! Run state: what a store keeps beside a token between runs (no secrets).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::alert::{AlertState, Condition};

/// Non-secret per-token state kept beside the token: the last outcome (for `status`) and the
/// open alert conditions (for dedup and resolve across runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// RFC 3339 time of the last run that changed something or failed.
    pub last_run_at: Option<String>,
    /// `rotated`, `rotated_by_another_runner` or `failed`.
    pub last_outcome: Option<String>,
    /// The error class and message when the last outcome was a failure.
    pub last_error: Option<String>,
    /// Failures in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Open alert conditions, for dedup and resolve across runs.
    #[serde(default)]
    pub alerts: BTreeMap<Condition, AlertState>,
    /// The last alert delivery failure, if the last alert did not reach every sink.
    #[serde(default)]
    pub last_alert_error: Option<String>,
}

impl RunState {
    /// Whether this state is worth keeping where keeping it costs API calls: a failure or an
    /// open alert. A success with nothing open is "no state".
    pub fn worth_keeping(&self) -> bool {
        !self.alerts.is_empty() || self.last_outcome.as_deref() == Some("failed")
    }
}
