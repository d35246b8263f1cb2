//! The typed result of one token's run: what the engine hands to alerts, the daemon, the
//! Lambda mode and, as its serialized view (`report::TokenReport`), to `--json` and
//! `/status`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alert::AlertOutcome;
use super::decide::DueReason;
use super::document::TokenDocument;
use super::egress::EgressReport;
use super::error::ErrorKind;
use super::store::Version;

/// Which token, in which store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRef {
    /// The token's name.
    pub name: String,
    /// Its store's backend.
    pub backend: &'static str,
    /// Its store's secret id.
    pub secret_id: String,
}

/// What the store holds after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The current version.
    pub version: Version,
    /// Its token's expiry (`None`: the document is unusable).
    pub expiry: Option<DateTime<Utc>>,
    /// When its token was minted (`None`: the document is unusable).
    pub issued_at: Option<DateTime<Utc>>,
}

impl Held {
    /// A version and the document read at it.
    pub fn new(version: Version, doc: Option<&TokenDocument>) -> Self {
        Held {
            version,
            expiry: doc.map(|d| d.expiry),
            issued_at: doc.map(|d| d.issued_at),
        }
    }
}

/// A rotation hook (`on_rotate`) that ran after this run's write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookRun {
    /// `command` or `signal`.
    pub kind: &'static str,
    /// The program, or the pid file.
    pub target: String,
    /// Why it failed; `None`: it succeeded.
    pub failure: Option<Failure>,
}

/// What became of one replica store in a run's fan-out (`stores = [primary, replica, …]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// Its backend.
    pub backend: &'static str,
    /// Its secret id.
    pub secret_id: String,
    /// What the run did there.
    pub state: ReplicaState,
    /// What it holds after the run (when it could be read).
    pub held: Option<Held>,
}

/// What a run did to a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// It already held the primary's token.
    InSync,
    /// The primary's token was copied to it (a new version there).
    Copied,
    /// It holds a token issued after the primary's: left alone (a replica never regresses).
    Newer,
    /// The primary holds no usable token: nothing to copy.
    NoSource,
    /// Another runner holds its lease and is copying to it right now.
    Busy,
    /// Reading or writing it failed; it keeps what it had.
    Failed(Failure),
}

impl ReplicaState {
    /// Stable lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplicaState::InSync => "in_sync",
            ReplicaState::Copied => "copied",
            ReplicaState::Newer => "newer",
            ReplicaState::NoSource => "no_source",
            ReplicaState::Busy => "busy",
            ReplicaState::Failed(_) => "failed",
        }
    }
}

/// A classified failure: never a secret, always naming the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The class (decides the exit code and the alert).
    pub kind: ErrorKind,
    /// What went wrong, naming token, backend and secret id.
    pub message: String,
    /// Deepvue's own `detail`, when Deepvue answered.
    pub deepvue_detail: Option<String>,
}

/// The kind of an [`Outcome`], without its data: what reports show and run state records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Not due; nothing done.
    Fresh,
    /// Due, but minted less than `min_interval` ago.
    Throttled,
    /// A dry run that would have rotated.
    WouldRotate,
    /// A new version was written.
    Rotated,
    /// Another runner wrote first.
    RotatedByAnotherRunner,
    /// Due, but suspended (`deepvue-rotator suspend`): nothing minted.
    Suspended,
    /// Nothing written.
    Failed,
}

impl OutcomeKind {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Fresh => "fresh",
            OutcomeKind::Throttled => "throttled",
            OutcomeKind::WouldRotate => "would_rotate",
            OutcomeKind::Rotated => "rotated",
            OutcomeKind::RotatedByAnotherRunner => "rotated_by_another_runner",
            OutcomeKind::Suspended => "suspended",
            OutcomeKind::Failed => "failed",
        }
    }
}

/// What happened to one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not due; nothing done.
    Fresh,
    /// Due, but minted less than `min_interval` ago; nothing done.
    Throttled {
        /// The interval that was not yet over.
        min_interval: std::time::Duration,
    },
    /// `--dry-run`: would have rotated.
    WouldRotate,
    /// A new version was written.
    Rotated {
        /// The version it replaced.
        previous: Option<Version>,
    },
    /// Another runner wrote (or holds the lease) first; this run wrote nothing.
    RotatedByAnotherRunner,
    /// Due, but suspended by an operator; nothing minted (a critical alert says so).
    Suspended {
        /// Why, as given to `suspend --reason`.
        reason: Option<String>,
    },
    /// Nothing written.
    Failed(Failure),
}

impl Outcome {
    /// Its kind.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Fresh => OutcomeKind::Fresh,
            Outcome::Throttled { .. } => OutcomeKind::Throttled,
            Outcome::WouldRotate => OutcomeKind::WouldRotate,
            Outcome::Rotated { .. } => OutcomeKind::Rotated,
            Outcome::RotatedByAnotherRunner => OutcomeKind::RotatedByAnotherRunner,
            Outcome::Suspended { .. } => OutcomeKind::Suspended,
            Outcome::Failed(_) => OutcomeKind::Failed,
        }
    }

    /// Stable lowercase name.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Whether the stored token is now one this pass or another runner just wrote.
    pub fn renewed(&self) -> bool {
        matches!(
            self,
            Outcome::Rotated { .. } | Outcome::RotatedByAnotherRunner
        )
    }
}

/// The result of one token's run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Which token.
    pub token: TokenRef,
    /// What happened.
    pub outcome: Outcome,
    /// Why it was due, when it was.
    pub due: Option<DueReason>,
    /// What the store holds after the run (`None`: nothing, or it could not be read).
    pub current: Option<Held>,
    /// What was not right but did not fail the run, one line each: an expiry beyond the token
    /// lifetime that was clamped, a rotation lock that could not be taken.
    pub warnings: Vec<String>,
    /// The egress probe, when one ran (403 diagnosis or drift check).
    pub egress: Option<EgressReport>,
    /// Alerts this run triggered or resolved.
    pub alerts: Vec<AlertOutcome>,
    /// The replica stores, when the token has any, after this run's fan-out.
    pub replicas: Vec<Replica>,
    /// The `on_rotate` hooks that ran after this run's write.
    pub hooks: Vec<HookRun>,
}

impl RunResult {
    /// A result for `token` with `outcome` and nothing else known yet.
    pub fn new(token: TokenRef, outcome: Outcome) -> Self {
        RunResult {
            token,
            outcome,
            due: None,
            current: None,
            warnings: Vec::new(),
            egress: None,
            alerts: Vec::new(),
            replicas: Vec::new(),
            hooks: Vec::new(),
        }
    }

    /// The failure, when the run failed.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            Outcome::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// The stored token's expiry.
    pub fn expiry(&self) -> Option<DateTime<Utc>> {
        self.current.as_ref().and_then(|h| h.expiry)
    }

    /// How long the stored token has left at `now`.
    pub fn expires_in(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        self.expiry().map(|e| e - now)
    }

    /// The current version.
    pub fn version(&self) -> Option<&Version> {
        self.current.as_ref().map(|h| &h.version)
    }

    /// The replicas whose read or write failed.
    pub fn failed_replicas(&self) -> impl Iterator<Item = &Failure> {
        self.replicas.iter().filter_map(|r| match &r.state {
            ReplicaState::Failed(f) => Some(f),
            _ => None,
        })
    }

    /// The hooks that failed.
    pub fn failed_hooks(&self) -> impl Iterator<Item = &Failure> {
        self.hooks.iter().filter_map(|h| h.failure.as_ref())
    }

    /// This token's exit code: its own failure's, else a failed replica's or hook's.
    pub fn exit_code(&self) -> u8 {
        super::error::combine_exit_codes(
            self.failure()
                .into_iter()
                .chain(self.failed_replicas())
                .chain(self.failed_hooks())
                .map(|f| f.kind.exit_code()),
        )
    }
}
