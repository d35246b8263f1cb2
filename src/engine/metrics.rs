//! Prometheus metrics (`prometheus-client`), fed by the engine through the [`Observer`] hook
//! and by whoever runs passes: the daemon's `/metrics`, and a one-shot run's textfile or
//! Pushgateway export (`engine::metrics_export`). One set of names for every mode.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::core::alert::{Action, Condition};
use crate::core::observe::{AuthorizeClass, Observer};
use crate::core::result::{Outcome, RunResult};
use crate::support::exposition;

/// Latency buckets (seconds) for authorize and store calls: 5 ms to 30 s.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Every outcome the rotations counter counts, present at zero for each token from the start.
const ATTEMPTS: [&str; 3] = ["rotated", "rotated_by_another_runner", "failed"];

/// Every authorize class, present at zero from the start.
const CLASSES: [AuthorizeClass; 5] = [
    AuthorizeClass::Ok,
    AuthorizeClass::Forbidden,
    AuthorizeClass::CredentialsRejected,
    AuthorizeClass::RateLimited,
    AuthorizeClass::Transient,
];

/// What a finished pass counts as in `deepvue_rotator_rotations`: an attempt that wrote, lost
/// the race to another runner, or failed; `None` for a pass that did not try (fresh,
/// throttled, dry run).
pub fn attempt(outcome: &Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Rotated { .. } => Some("rotated"),
        Outcome::RotatedByAnotherRunner => Some("rotated_by_another_runner"),
        Outcome::Failed(_) => Some("failed"),
        _ => None,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabel {
    token: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    token: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    backend: &'static str,
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    sink: String,
    condition: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    token: String,
    /// Its place in `stores` (1 = the first replica): never its secret id, which /metrics
    /// does not show.
    replica: String,
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    token: String,
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreCallLabels {
    backend: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
    features: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the daemon exposes.
pub struct Metrics {
    registry: Registry,
    expiry: Family<TokenLabel, Gauge<f64, AtomicU64>>,
    next_rotation: Family<TokenLabel, Gauge<f64, AtomicU64>>,
    rotations: Family<RotationLabels, Counter>,
    authorize: Family<ClassLabel, Counter>,
    store: Family<StoreLabels, Counter>,
    alerts: Family<AlertLabels, Counter>,
    pushes: Family<OutcomeLabel, Counter>,
    replicas: Family<ReplicaLabels, Gauge>,
    hooks: Family<HookLabels, Counter>,
    ready: Family<TokenLabel, Gauge>,
    last_rotation: Family<TokenLabel, Gauge<f64, AtomicU64>>,
    last_pass: Family<TokenLabel, Gauge<f64, AtomicU64>>,
    authorize_seconds: Histograms<ClassLabel>,
    store_seconds: Histograms<StoreCallLabels>,
}

impl Metrics {
    /// A registry with every family registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let expiry = Family::<TokenLabel, Gauge<f64, AtomicU64>>::default();
        let next_rotation = Family::<TokenLabel, Gauge<f64, AtomicU64>>::default();
        let rotations = Family::<RotationLabels, Counter>::default();
        let authorize = Family::<ClassLabel, Counter>::default();
        let store = Family::<StoreLabels, Counter>::default();
        let alerts = Family::<AlertLabels, Counter>::default();
        let pushes = Family::<OutcomeLabel, Counter>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        let replicas = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "deepvue_rotator_token_expiry_timestamp_seconds",
            "When the stored token expires (Unix seconds)",
            expiry.clone(),
        );
        registry.register(
            "deepvue_rotator_token_next_rotation_timestamp_seconds",
            "When the daemon next tries to rotate the token (Unix seconds)",
            next_rotation.clone(),
        );
        registry.register(
            "deepvue_rotator_rotations",
            "Rotations by outcome (rotated, rotated_by_another_runner, failed)",
            rotations.clone(),
        );
        registry.register(
            "deepvue_rotator_authorize_requests",
            "Deepvue authorize attempts by class (ok, forbidden, credentials_rejected, \
             rate_limited, transient: every other failed attempt)",
            authorize.clone(),
        );
        registry.register(
            "deepvue_rotator_store_requests",
            "Token store operations by backend, operation and result",
            store.clone(),
        );
        registry.register(
            "deepvue_rotator_alerts",
            "Alerts handed to sinks by sink, condition and action (trigger, resolve, failed)",
            alerts.clone(),
        );
        registry.register(
            "deepvue_rotator_pubsub_pushes",
            "Verified SECRET_ROTATE pushes for a configured token, by what came of them \
             (rotated, throttled, fresh, failed, …; duplicate, rate_limited, already_rotated: \
             acknowledged without acting; busy: asked for a redelivery)",
            pushes.clone(),
        );
        registry.register(
            "deepvue_rotator_replica_in_sync",
            "1 when a replica store (stores = [primary, …]; `replica` is its place after the \
             primary) holds the primary's token after the token's last pass, 0 when it is behind",
            replicas.clone(),
        );
        let hooks = Family::<HookLabels, Counter>::default();
        registry.register(
            "deepvue_rotator_hooks",
            "on_rotate hooks run after a write, by kind (command, signal) and result (ok, failed)",
            hooks.clone(),
        );
        let ready = Family::<TokenLabel, Gauge>::default();
        registry.register(
            "deepvue_rotator_token_ready",
            "1 when the token's last pass ended with a valid token stored and no failure, 0 \
             when it failed or the stored token is missing, unusable or expired",
            ready.clone(),
        );
        let last_rotation = Family::<TokenLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "deepvue_rotator_token_last_rotation_timestamp_seconds",
            "When the stored token was minted (its issued_at): the last successful rotation, \
             by any runner (Unix seconds)",
            last_rotation.clone(),
        );
        let last_pass = Family::<TokenLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "deepvue_rotator_token_last_pass_timestamp_seconds",
            "When the token's last pass ended, whatever its outcome (Unix seconds): old values \
             mean nothing is looking after the token",
            last_pass.clone(),
        );
        let authorize_seconds: Histograms<ClassLabel> = Family::new_with_constructor(histogram);
        registry.register(
            "deepvue_rotator_authorize_duration_seconds",
            "Time per Deepvue authorize attempt, by class",
            authorize_seconds.clone(),
        );
        let store_seconds: Histograms<StoreCallLabels> = Family::new_with_constructor(histogram);
        registry.register(
            "deepvue_rotator_store_request_duration_seconds",
            "Time per token store operation, by backend and operation",
            store_seconds.clone(),
        );
        registry.register(
            "deepvue_rotator_build_info",
            "Build information (version, git commit, enabled features); always 1",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: crate::support::build::VERSION,
                commit: crate::support::build::COMMIT,
                features: crate::support::build::features(),
            })
            .set(1);
        for class in CLASSES {
            let _ = authorize.get_or_create(&ClassLabel {
                class: class.as_str(),
            });
        }
        Metrics {
            registry,
            expiry,
            next_rotation,
            rotations,
            authorize,
            store,
            alerts,
            pushes,
            replicas,
            hooks,
            ready,
            last_rotation,
            last_pass,
            authorize_seconds,
            store_seconds,
        }
    }

    /// The OpenMetrics exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in the text format 0.0.4 (textfile collector, Pushgateway, a scraper
    /// that does not ask for OpenMetrics).
    pub fn render_text(&self) -> String {
        exposition::to_text(&self.render())
    }

    /// The exposition an `Accept` header asks for, and its `Content-Type`.
    pub fn negotiate(&self, accept: Option<&str>) -> (&'static str, String) {
        if exposition::wants_openmetrics(accept) {
            (exposition::OPENMETRICS, self.render())
        } else {
            (exposition::TEXT, self.render_text())
        }
    }

    /// A configured token: its counters exist at zero from now on.
    pub fn configured(&self, token: &str) {
        for outcome in ATTEMPTS {
            let _ = self.rotations.get_or_create(&RotationLabels {
                token: token.to_string(),
                outcome,
            });
        }
    }

    /// A finished pass over `token` at `now`: the attempt counter, readiness, the stored
    /// token's mint time, the replicas and the hooks.
    pub fn pass(&self, token: &str, r: &RunResult, now: DateTime<Utc>) {
        if let Some(outcome) = attempt(&r.outcome) {
            self.rotation(token, outcome);
        }
        let label = TokenLabel {
            token: token.to_string(),
        };
        let valid = r.expiry().is_some_and(|e| e > now);
        self.ready
            .get_or_create(&label)
            .set(i64::from(r.failure().is_none() && valid));
        if let Some(issued) = r.current.as_ref().and_then(|h| h.issued_at) {
            self.last_rotation
                .get_or_create(&label)
                .set(issued.timestamp() as f64);
        }
        self.last_pass
            .get_or_create(&label)
            .set(now.timestamp() as f64);
        self.replicas(token, &r.replicas);
        self.hooks(token, &r.hooks);
    }

    /// A token's stored expiry and next rotation (Unix seconds; `None` removes the series).
    pub fn token(&self, token: &str, expiry: Option<i64>, next: Option<i64>) {
        let label = TokenLabel {
            token: token.to_string(),
        };
        for (family, v) in [(&self.expiry, expiry), (&self.next_rotation, next)] {
            match v {
                Some(t) => {
                    family.get_or_create(&label).set(t as f64);
                }
                None => {
                    family.remove(&label);
                }
            }
        }
    }

    /// A one-shot run's pass over `token` ([`Metrics::pass`]), with the token's expiry and
    /// its renewal time (`expiry − renew_before`: the earliest a later run rotates it).
    pub fn one_shot(&self, token: &str, r: &RunResult, renew_before: Duration, now: DateTime<Utc>) {
        self.pass(token, r, now);
        let expiry = r.expiry();
        let renew = chrono::Duration::from_std(renew_before).unwrap_or_default();
        self.token(
            token,
            expiry.map(|e| e.timestamp()),
            expiry
                .and_then(|e| e.checked_sub_signed(renew))
                .map(|t| t.timestamp()),
        );
    }

    /// A verified push for a configured token, by what came of it.
    pub fn push(&self, outcome: &'static str) {
        self.pushes.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// After a pass over `token`: whether each replica holds the primary's token (a replica
    /// being copied by another runner, or with no primary token to copy, keeps its last value).
    pub fn replicas(&self, token: &str, replicas: &[crate::core::result::Replica]) {
        use crate::core::result::ReplicaState;
        for (i, x) in replicas.iter().enumerate() {
            let v = match x.state {
                ReplicaState::InSync | ReplicaState::Copied | ReplicaState::Newer => 1,
                ReplicaState::Failed(_) => 0,
                ReplicaState::Busy | ReplicaState::NoSource => continue,
            };
            self.replicas
                .get_or_create(&ReplicaLabels {
                    token: token.to_string(),
                    replica: (i + 1).to_string(),
                    backend: x.backend,
                })
                .set(v);
        }
    }

    /// The `on_rotate` hooks a pass over `token` ran.
    pub fn hooks(&self, token: &str, hooks: &[crate::core::result::HookRun]) {
        for h in hooks {
            self.hooks
                .get_or_create(&HookLabels {
                    token: token.to_string(),
                    kind: h.kind,
                    result: if h.failure.is_none() { "ok" } else { "failed" },
                })
                .inc();
        }
    }

    /// A finished rotation attempt (`rotated`, `rotated_by_another_runner`, `failed`).
    pub fn rotation(&self, token: &str, outcome: &'static str) {
        self.rotations
            .get_or_create(&RotationLabels {
                token: token.to_string(),
                outcome,
            })
            .inc();
    }

    /// A token no longer configured: drop its gauges.
    pub fn forget(&self, token: &str) {
        self.token(token, None, None);
        let label = TokenLabel {
            token: token.to_string(),
        };
        self.ready.remove(&label);
        self.last_rotation.remove(&label);
        self.last_pass.remove(&label);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for Metrics {
    fn authorize(&self, class: AuthorizeClass, elapsed: Duration) {
        let label = ClassLabel {
            class: class.as_str(),
        };
        self.authorize.get_or_create(&label).inc();
        self.authorize_seconds
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    fn store_call(
        &self,
        backend: &'static str,
        operation: &'static str,
        result: &'static str,
        elapsed: Duration,
    ) {
        self.store_seconds
            .get_or_create(&StoreCallLabels { backend, operation })
            .observe(elapsed.as_secs_f64());
        self.store
            .get_or_create(&StoreLabels {
                backend,
                operation,
                result,
            })
            .inc();
    }

    fn alert(&self, sink: &str, condition: Condition, action: Action, delivered: bool) {
        let action = match (action, delivered) {
            (_, false) => "failed",
            (Action::Trigger, true) => "trigger",
            (Action::Resolve, true) => "resolve",
        };
        self.alerts
            .get_or_create(&AlertLabels {
                sink: sink.to_string(),
                condition: condition.as_str(),
                action,
            })
            .inc();
    }
}
