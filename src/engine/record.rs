//! What a run keeps beside its token, and when: the alerting rules for run state. Backends keep
//! bytes ([`StateStore`]); deciding what those bytes say, when they are worth a call, and how
//! an outcome changes them is here.

use chrono::{DateTime, Utc};
use tracing::warn;

use super::alerter::Alerter;
use crate::core::alert::AlertPolicy;
use crate::core::alert::plan::{next_state, plan};
use crate::core::result::{Outcome, OutcomeKind, RunResult};
use crate::core::state::{RunState, StatePolicy, StateRead, StateStore};
use crate::core::store::StateHint;
use crate::support::time::format_time;

/// Whether `state` is worth keeping where keeping it costs API calls: a failure, an open
/// alert or a suspension. A success with nothing open is "no state".
pub fn worth_keeping(state: &RunState) -> bool {
    !state.alerts.is_empty()
        || state.last_outcome == Some(OutcomeKind::Failed)
        || state.suspended.is_some()
}

/// Whether an [`StatePolicy::AlertsOnly`] store's state needs touching after this run: the run
/// failed or renewed the token (a rotation is where open alerts resolve, even if another
/// writer moved the version that carried the flag), egress drifted, or the token read did not
/// rule kept state out. A healthy no-op stays one read.
fn needs_state(r: &RunResult, hint: StateHint) -> bool {
    let drift = r
        .egress
        .as_ref()
        .is_some_and(|e| !e.outside_expected().is_empty());
    matches!(r.outcome, Outcome::Failed(_) | Outcome::Suspended { .. })
        || r.outcome.renewed()
        || drift
        || hint != StateHint::None
}

/// The state after a run with `outcome`: a no-op keeps the last real outcome unless it shows
/// recovery from a failure.
fn after(previous: &RunState, r: &RunResult, now: DateTime<Utc>) -> RunState {
    let recovered = previous.last_outcome == Some(OutcomeKind::Failed);
    let mut next = match &r.outcome {
        Outcome::Fresh | Outcome::Throttled { .. } | Outcome::WouldRotate if !recovered => {
            previous.clone()
        }
        Outcome::Failed(f) => RunState {
            last_run_at: Some(format_time(now)),
            last_outcome: Some(OutcomeKind::Failed),
            last_error: Some(format!("{}: {}", f.kind, f.message)),
            consecutive_failures: previous.consecutive_failures.saturating_add(1),
            ..RunState::default()
        },
        o => RunState {
            last_run_at: Some(format_time(now)),
            last_outcome: Some(o.kind()),
            ..RunState::default()
        },
    };
    // Only `resume` lifts a suspension.
    next.suspended.clone_from(&previous.suspended);
    next
}

/// Send due alerts and keep the last outcome plus alert state beside the token, for `status`
/// and for dedup across runs. Best effort: a failure here is logged and recorded, and never
/// changes the run's outcome.
pub async fn alert_and_record(
    state_store: &dyn StateStore,
    alerter: &Alerter,
    policy: &AlertPolicy,
    r: &mut RunResult,
    hint: StateHint,
    now: DateTime<Utc>,
) {
    let kept = state_store.policy();
    if kept == StatePolicy::AlertsOnly && (alerter.is_empty() || !needs_state(r, hint)) {
        return;
    }
    let read = match state_store.read_state().await {
        Ok(read) => read,
        Err(e) => {
            warn!(error = %e, "cannot read the last run state");
            StateRead::default()
        }
    };
    let previous = read
        .bytes
        .as_deref()
        .and_then(RunState::from_bytes)
        .unwrap_or_default();
    let planned = plan(r, &previous.alerts, now, policy);
    let mut delivered = Vec::new();
    let mut delivery_errors = Vec::new();
    for a in planned {
        let outcome = alerter.deliver(&a).await;
        delivery_errors.extend(outcome.failed.iter().cloned());
        r.alerts.push(outcome.clone());
        delivered.push((a, outcome));
    }
    let mut state = after(&previous, r, now);
    state.alerts = next_state(r, &previous.alerts, &delivered, now, policy);
    state.last_alert_error = if !delivery_errors.is_empty() {
        Some(format!(
            "{}: {}",
            format_time(now),
            delivery_errors.join("; ")
        ))
    } else if r.alerts.is_empty() {
        previous.last_alert_error.clone()
    } else {
        None
    };
    // Kept state that should not be there (a success kept in metadata) is rewritten too.
    let stale =
        kept == StatePolicy::AlertsOnly && read.bytes.is_some() && !worth_keeping(&previous);
    if state == previous && !read.needs_write && !stale {
        return; // nothing new: a no-op run writes nothing
    }
    let keep = kept == StatePolicy::EveryRun || worth_keeping(&state);
    let bytes = if keep {
        match state.to_bytes(state_store.capacity()) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(error = %e, "cannot record the run state");
                return;
            }
        }
    } else {
        None
    };
    if let Err(e) = state_store
        .write_state(bytes.as_deref(), read.etag.as_ref())
        .await
    {
        warn!(error = %e, "cannot record the run state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_and_open_alerts_are_kept() {
        assert!(!worth_keeping(&RunState {
            last_outcome: Some(OutcomeKind::Rotated),
            last_run_at: Some("2026-11-28T12:00:00Z".into()),
            ..RunState::default()
        }));
        assert!(worth_keeping(&RunState {
            last_outcome: Some(OutcomeKind::Failed),
            ..RunState::default()
        }));
    }
}
