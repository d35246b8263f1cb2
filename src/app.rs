//! The composition root: a validated [`Config`] becomes the long-lived clients, the alert
//! sinks, the rotator and one [`Job`] per token. Every run mode starts here.
//!
//! **Dependency rule:** `app` alone wires `config`, `engine`, the backend registry and the
//! sinks together; run modes depend on it and never build these parts themselves.

use std::sync::Arc;

use crate::backends::{BuildContext, Clients};
use crate::config::{Config, TokenConfig};
use crate::core::clock::{Clock, SystemClock};
use crate::core::observe::{Observer, Unobserved};
use crate::engine::alerter::Alerter;
use crate::engine::observed::observed;
use crate::engine::rotator::{Job, Rotator};
use crate::sinks::{self, SinkContext};

/// Everything a run needs, built once from the config. Cheap to build: nothing here touches
/// the network or loads a trust store until first use.
pub struct App {
    /// The config.
    pub config: Arc<Config>,
    /// Backend clients shared by every job and sink.
    pub clients: Clients,
    /// The rotator (Deepvue client, sinks).
    pub rotator: Rotator,
    /// One job per `[[tokens]]` entry, in config order.
    pub jobs: Vec<Job>,
}

/// `--token NAME` that no `[[tokens]]` entry has.
#[derive(Debug, thiserror::Error)]
#[error("no token named `{name}` in {origin} (known: {known})")]
pub struct UnknownToken {
    /// The name asked for.
    pub name: String,
    /// The config's origin.
    pub origin: String,
    /// The names it has.
    pub known: String,
}

impl App {
    /// Build clients, sinks, rotator and jobs.
    pub fn new(config: Config) -> App {
        Self::observed(config, Arc::new(Unobserved))
    }

    /// The same, reporting authorize attempts, store operations and alert deliveries to
    /// `observer` (the metrics of the daemon, or of a one-shot run that exports them).
    pub fn observed(config: Config, observer: Arc<dyn Observer>) -> App {
        Self::build(config, observer, Arc::new(SystemClock))
    }

    /// The same on `clock` (a clock a test moves).
    pub fn on_clock(config: Config, clock: Arc<dyn Clock>) -> App {
        Self::build(config, Arc::new(Unobserved), clock)
    }

    fn build(config: Config, observer: Arc<dyn Observer>, clock: Arc<dyn Clock>) -> App {
        let clients = Clients::new(&config.backends);
        let ctx = BuildContext {
            clients: &clients,
            lock_timeout: config.lock_timeout,
        };
        let jobs = config
            .tokens
            .iter()
            .map(|t| {
                let mut j = job(t, &ctx);
                j.store = observed(j.store, observer.clone());
                j.replicas = j
                    .replicas
                    .into_iter()
                    .map(|r| observed(r, observer.clone()))
                    .collect();
                j
            })
            .collect();
        let sinks = sinks::build_all(
            &config.alerting.sinks,
            &SinkContext {
                ca_file: config.alerting.ca_file.clone(),
                connect_timeout: config.deepvue.connect_timeout,
                family: config.deepvue.ip_family,
                clients: &clients,
            },
        );
        let rotator = Rotator::new(
            config.settings(),
            Alerter::new(sinks, observer.clone()),
            observer,
        )
        .with_clock(clock)
        .with_audit(crate::engine::audit::AuditLog::new(&config.audit));
        App {
            config: Arc::new(config),
            clients,
            rotator,
            jobs,
        }
    }

    /// The jobs named in `only` (all of them when empty), in config order.
    pub fn select(&self, only: &[String]) -> Result<Vec<&Job>, UnknownToken> {
        for name in only {
            if !self.jobs.iter().any(|j| &j.name == name) {
                return Err(UnknownToken {
                    name: name.clone(),
                    origin: self.config.origin.clone(),
                    known: self
                        .jobs
                        .iter()
                        .map(|j| j.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(self
            .jobs
            .iter()
            .filter(|j| only.is_empty() || only.contains(&j.name))
            .collect())
    }
}

fn job(t: &TokenConfig, ctx: &BuildContext<'_>) -> Job {
    Job {
        name: t.name.clone(),
        policy: t.policy,
        store: t.store.build(ctx),
        replicas: t.replicas.iter().map(|r| r.build(ctx)).collect(),
        credentials: t.credentials.build(ctx),
        publish_api_key: t.publish_api_key,
        on_rotate: t.on_rotate.clone(),
    }
}

/// The async runtime every mode runs on: one thread (a pass is I/O-bound; blocking file I/O
/// goes to `spawn_blocking`).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The runtime of a one-shot `rotate` that fans out: two worker threads (or one on a one-core
/// machine), so the replica reads, each a task with its own client to set up (TLS roots, SDK
/// configuration, a handshake: CPU, not I/O), run beside the primary's decision and mint.
/// (A single-store run stays on one thread: the second costs ~0.2 ms of start-up.)
pub fn rotate_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cores < 2 {
        return runtime();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
