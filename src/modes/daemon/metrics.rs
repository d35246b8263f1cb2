//! Prometheus metrics (OpenMetrics text, `prometheus-client`), fed by the engine through the
//! `Observer` hook and by the scheduler.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::core::alert::{Action, Condition};
use crate::core::observe::{AuthorizeClass, Observer};

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
struct VersionLabel {
    version: &'static str,
}

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
        let build = Family::<VersionLabel, Gauge>::default();
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
        registry.register(
            "deepvue_rotator_build_info",
            "Build information; always 1",
            build.clone(),
        );
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
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
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
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
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for Metrics {
    fn authorize(&self, class: AuthorizeClass) {
        self.authorize
            .get_or_create(&ClassLabel {
                class: class.as_str(),
            })
            .inc();
    }

    fn store_call(&self, backend: &'static str, operation: &'static str, result: &'static str) {
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
