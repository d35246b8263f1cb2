//! Daemon mode: a long-running rotator for systemd hosts (and, with `schedule = false`, a
//! request-driven Cloud Run service).
//!
//! - **Schedule from expiry, per token** (`schedule.rs`): wake at `expiry − renew_before −
//!   jitter` (jitter random up to `[daemon] jitter`, at most a tenth of `renew_before`), and
//!   re-read every store every `poll_every` (one read per token) to notice other writers,
//!   rollbacks and deletions. The loop sleeps against the wall clock in bounded steps, so a
//!   suspended VM or a clock jump is caught on wake. Failures back off exponentially, never past
//!   the token's life.
//! - **Long-lived clients**: one `App` (Deepvue client with its connection pool and trust
//!   store, SDK clients) until a reload; each batch of due tokens is one `Pass`, so the egress
//!   probe is fresh per pass.
//! - **HTTP** (`http.rs`): `/healthz`, `/readyz`, `/status`, `/metrics` (`engine::metrics`), and
//!   with `[daemon.pubsub]` the Pub/Sub push endpoint `POST /pubsub` (`pubsub.rs`: Secret
//!   Manager `SECRET_ROTATE`, OIDC verified in the app). A pushed rotation runs through the
//!   same `Rotator`, never while the scheduler runs that token (and vice versa), and its report
//!   goes to the scheduler like any other.
//! - **systemd** (`systemd.rs`): `READY=1` once the config is valid and the listener bound (not
//!   waiting for Deepvue), `STATUS=`, `RELOADING=1`, `STOPPING=1`, and watchdog pings at half
//!   the interval from the scheduler loop itself, so a stuck loop is killed.
//! - **Signals**: SIGTERM/SIGINT stop scheduling, let in-flight rotations finish for
//!   `shutdown_timeout`, then start no new authorize attempt (one already sent finishes and its
//!   token is written) and exit 0. SIGHUP reloads and validates the config; on error the old
//!   one keeps running.

mod admin;
mod http;
mod pubsub;
mod schedule;
mod systemd;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::App;
use crate::config::{self, Config};
use crate::core::decide::DuePolicy;
use crate::core::document::format_time;
use crate::core::error::EXIT_CONFIG;
use crate::core::result::{Outcome, RunResult};
use crate::engine::metrics::Metrics;
use crate::engine::rotator::RunOptions;
use crate::support::http_server;
use systemd::Notifier;

/// `daemon` arguments.
#[derive(clap::Args, Debug)]
pub struct DaemonArgs {}

/// The longest the loop sleeps before looking at the wall clock again.
const MAX_STEP: Duration = Duration::from_secs(15);
/// While reports stream in (a poll over many tokens), the views, `/readyz` and the systemd
/// status are rebuilt at most this often: each rebuild is O(tokens), so once per report would
/// make a pass O(tokens²).
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// What the HTTP side reads of one token.
#[derive(Clone, Debug)]
pub(crate) struct TokenView {
    name: String,
    expiry: Option<DateTime<Utc>>,
    failing: Option<String>,
    /// The next scheduled attempt.
    next: Option<DateTime<Utc>>,
}

/// State shared by the scheduler loop and the HTTP handlers.
pub(crate) struct Shared {
    app: RwLock<Arc<App>>,
    views: RwLock<Vec<TokenView>>,
    heartbeat_ms: AtomicI64,
    stale_after: Duration,
    metrics: Arc<Metrics>,
    /// The last `/status` answer and when it was read: however often it is asked, the stores
    /// are read at most once per [`STATUS_TTL`].
    status: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<serde_json::Value>)>>,
    /// The `[daemon.pubsub]` verifier of the running config (its key cache survives reloads
    /// that keep the same settings).
    verifier: RwLock<Option<Arc<pubsub::Verifier>>>,
    /// Tokens being rotated right now (by the scheduler or a push): never two at once.
    busy: Mutex<HashSet<String>>,
    /// Where finished runs go: the scheduler loop records them.
    reports: Reports,
    /// The push endpoint's memory of message ids and per-token actions.
    pushes: pubsub::PushLog,
}

/// A token marked busy until dropped.
pub(crate) struct Claim {
    shared: Arc<Shared>,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.shared
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.name);
    }
}

/// How long a `/status` answer is reused.
pub(crate) const STATUS_TTL: Duration = Duration::from_secs(5);

impl Shared {
    /// Mark `name` busy, unless it already is.
    fn claim(self: &Arc<Self>, name: &str) -> Option<Claim> {
        let fresh = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string());
        fresh.then(|| Claim {
            shared: self.clone(),
            name: name.to_string(),
        })
    }

    fn verifier(&self) -> Option<Arc<pubsub::Verifier>> {
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keep the verifier when the settings are unchanged, else build one for the new ones.
    fn set_pubsub(&self, cfg: Option<&config::daemon::PubsubConfig>) {
        let mut v = self
            .verifier
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if v.as_ref().map(|x| x.config()) != cfg {
            *v = cfg.map(|c| Arc::new(pubsub::Verifier::new(c.clone())));
        }
    }

    /// Hand a finished run (from a push) to the scheduler loop.
    fn finished(&self, name: &str, report: RunResult) {
        let _ = self.reports.send((name.to_string(), report));
    }

    fn app(&self) -> Arc<App> {
        self.app
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn views(&self) -> Vec<TokenView> {
        self.views
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// One token's place in the schedule.
struct Slot {
    renew_before: Duration,
    min_interval: Duration,
    jitter_max: Duration,
    /// This cycle's jitter: how much earlier than `renew_before` it is treated as due.
    jitter: Duration,
    expiry: Option<DateTime<Utc>>,
    /// The next attempt; `None` while a rotation is in flight, or with the timers off.
    next: Option<DateTime<Utc>>,
    in_flight: bool,
    /// When the rotation in flight started (the next-rotation gauge shows it meanwhile).
    started: Option<DateTime<Utc>>,
    failures: u32,
    failing: Option<String>,
}

impl Slot {
    fn new(policy: DuePolicy, jitter: Duration, now: DateTime<Utc>) -> Slot {
        Slot {
            renew_before: policy.renew_before,
            min_interval: policy.min_interval,
            jitter_max: schedule::jitter_cap(jitter, policy.renew_before),
            jitter: Duration::ZERO,
            expiry: None,
            next: Some(now),
            in_flight: false,
            started: None,
            failures: 0,
            failing: None,
        }
    }

    /// What the next-rotation gauge shows: the next attempt, or while one is in flight, when
    /// it started (the gauge never disappears while a token is being rotated).
    fn gauge_next(&self) -> Option<DateTime<Utc>> {
        self.next.or(self.started.filter(|_| self.in_flight))
    }

    fn pick_jitter(&mut self) {
        let max = self.jitter_max.as_millis() as u64;
        self.jitter = Duration::from_millis(if max == 0 {
            0
        } else {
            rand::random_range(0..=max)
        });
    }

    /// Take a finished run into account.
    fn record(&mut self, result: &RunResult, now: DateTime<Utc>, d: &config::daemon::DaemonConfig) {
        self.in_flight = false;
        self.started = None;
        let expiry = result.expiry();
        // A run that could not even read the store says nothing about the token: keep what
        // was known.
        let read = result.current.is_some();
        let changed = expiry != self.expiry;
        if read || result.failure().is_none() {
            self.expiry = expiry;
        }
        let at = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
        match &result.outcome {
            Outcome::Failed(f) => {
                self.failures = self.failures.saturating_add(1);
                self.failing = Some(f.message.clone());
                let delay = schedule::retry_delay(
                    self.failures,
                    f.kind,
                    result.expires_in(now),
                    d.retry_initial,
                    d.retry_max,
                    rand::random::<f64>(),
                );
                self.next = Some(at(delay));
            }
            _ => {
                self.failures = 0;
                self.failing = None;
                // A new jitter per token lifetime, not per poll: re-drawing it at every poll
                // would push rotations towards the early end of the window.
                if changed {
                    self.pick_jitter();
                }
                let planned = self
                    .expiry
                    .map(|e| schedule::next_rotation(e, self.renew_before, self.jitter));
                // A token that is already due again (Deepvue issued a short one, or minting is
                // throttled) waits min_interval; one with no readable expiry waits a poll.
                self.next = Some(match planned {
                    Some(p) if p > now => p,
                    Some(_) => at(self.min_interval.max(Duration::from_secs(1))),
                    None => at(d.poll_every),
                });
            }
        }
    }
}

/// Run the daemon until SIGTERM / SIGINT. Exit codes: 0 after a clean shutdown, 2 when the
/// config does not load or the listener cannot be bound.
pub async fn run(config_path: Option<&Path>, _args: DaemonArgs) -> u8 {
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            crate::support::output::diag(&format!("error: {e}"));
            return EXIT_CONFIG;
        }
    };
    // SIGHUP re-reads the same place the config came from.
    let reload_from = config_path.map(Path::to_path_buf);
    let listen = config.daemon.listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            crate::support::output::diag(&format!(
                "error: daemon.listen {listen}: cannot bind: {e}"
            ));
            return EXIT_CONFIG;
        }
    };
    let metrics = Arc::new(Metrics::new());
    let pubsub = config.daemon.pubsub.clone();
    let app = Arc::new(App::observed(config, metrics.clone()));
    let watchdog = systemd::watchdog_interval();
    let step = watchdog.map_or(MAX_STEP, |w| {
        (w / 2).clamp(Duration::from_millis(10), MAX_STEP)
    });
    let (tx, rx) = mpsc::unbounded_channel::<(String, RunResult)>();
    let shared = Arc::new(Shared {
        app: RwLock::new(app.clone()),
        views: RwLock::new(Vec::new()),
        heartbeat_ms: AtomicI64::new(Utc::now().timestamp_millis()),
        stale_after: step * 4 + Duration::from_secs(10),
        metrics: metrics.clone(),
        status: tokio::sync::Mutex::new(None),
        verifier: RwLock::new(None),
        busy: Mutex::new(HashSet::new()),
        reports: tx.clone(),
        pushes: pubsub::PushLog::default(),
    });
    shared.set_pubsub(pubsub.as_ref());
    let stop_http = CancellationToken::new();
    let server = {
        let router = http::router(shared.clone());
        let stop = stop_http.clone();
        // A request may run a pushed rotation: the longest a rotation may hold its lease.
        let limits = http_server::Limits::for_descriptors(
            http_server::descriptor_limit(),
            app.config.lock_timeout + Duration::from_secs(30),
        );
        tokio::spawn(http_server::serve(
            listener.into(),
            router,
            limits,
            stop,
            Duration::from_secs(5),
        ))
    };
    // The admin socket: bound before READY, so `rotate --via-daemon` works once systemd says
    // the daemon is up.
    let admin = match &app.config.daemon.admin_socket {
        None => None,
        Some(path) => match crate::support::unix_socket::bind_unix(path, 0o600, None, "daemon") {
            Ok((listener, own)) => {
                let limits = http_server::Limits::for_descriptors(
                    64,
                    app.config.lock_timeout * 2 + Duration::from_secs(60),
                );
                let task = tokio::spawn(http_server::serve(
                    http_server::Listener::Unix(listener),
                    admin::router(shared.clone()),
                    limits,
                    stop_http.clone(),
                    Duration::from_secs(5),
                ));
                Some((task, own))
            }
            Err(e) => {
                crate::support::output::diag(&format!(
                    "error: daemon.admin_socket {}: {e}",
                    path.display()
                ));
                stop_http.cancel();
                let _ = server.await;
                return EXIT_CONFIG;
            }
        },
    };
    let notifier = Notifier::from_env();
    info!(
        listen = %listen,
        tokens = app.jobs.len(),
        schedule = app.config.daemon.schedule,
        pubsub = app.config.daemon.pubsub.is_some(),
        "deepvue-rotator daemon ready"
    );
    notifier.send(&["READY=1"]);
    let mut daemon = Daemon {
        shared,
        notifier,
        reload_from,
        slots: BTreeMap::new(),
        watchdog,
        step,
        upkeep: None,
        passes: std::collections::HashMap::new(),
        dirty: false,
        published: tokio::time::Instant::now(),
    };
    daemon.start_upkeep();
    let code = daemon.run(tx, rx).await;
    if let Some(task) = daemon.upkeep.take() {
        task.abort();
    }
    stop_http.cancel();
    if let Err(e) = server.await {
        warn!(error = %e, "HTTP server task failed");
    }
    if let Some((task, own)) = admin {
        let _ = task.await;
        drop(own);
    }
    info!("deepvue-rotator daemon stopped");
    code
}

struct Daemon {
    shared: Arc<Shared>,
    notifier: Notifier,
    reload_from: Option<PathBuf>,
    slots: BTreeMap<String, Slot>,
    watchdog: Option<Duration>,
    step: Duration,
    /// Keeps the app's backend credentials fresh (a Vault token's renewal and re-login).
    upkeep: Option<tokio::task::JoinHandle<()>>,
    /// The tokens each pass task runs, to retry them if the task dies.
    passes: std::collections::HashMap<tokio::task::Id, Vec<String>>,
    /// Reports arrived since the views were last published, and when that was.
    dirty: bool,
    published: tokio::time::Instant,
}

type Reports = mpsc::UnboundedSender<(String, RunResult)>;

impl Daemon {
    fn app(&self) -> Arc<App> {
        self.shared.app()
    }

    /// The time the schedule reads: the app's clock (the heartbeat stays on the wall clock:
    /// it proves the loop turns).
    fn now(&self) -> DateTime<Utc> {
        self.shared.app().rotator.clock().now()
    }

    /// Match the slots to the app's tokens: new ones start now, removed ones go.
    fn sync_slots(&mut self, now: DateTime<Utc>, schedule_was: Option<bool>) {
        let app = self.app();
        let jitter = app.config.daemon.jitter;
        let schedule = app.config.daemon.schedule;
        if schedule_was.is_some_and(|was| was != schedule) {
            // Timers switched on or off by a reload: idle tokens start now, or wait.
            for slot in self.slots.values_mut().filter(|s| !s.in_flight) {
                slot.next = schedule.then_some(now);
            }
        }
        let names: Vec<&str> = app.config.tokens.iter().map(|t| t.name.as_str()).collect();
        let gone: Vec<String> = self
            .slots
            .keys()
            .filter(|k| !names.contains(&k.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.slots.remove(&name);
            self.shared.metrics.forget(&name);
        }
        for t in &app.config.tokens {
            match self.slots.get_mut(&t.name) {
                Some(slot) => {
                    slot.renew_before = t.policy.renew_before;
                    slot.min_interval = t.policy.min_interval;
                    slot.jitter_max = schedule::jitter_cap(jitter, t.policy.renew_before);
                }
                None => {
                    self.shared.metrics.configured(&t.name);
                    let mut slot = Slot::new(t.policy, jitter, now);
                    slot.pick_jitter();
                    if !app.config.daemon.schedule {
                        slot.next = None;
                    }
                    self.slots.insert(t.name.clone(), slot);
                }
            }
        }
    }

    fn publish(&mut self) {
        self.dirty = false;
        self.published = tokio::time::Instant::now();
        let views: Vec<TokenView> = self
            .slots
            .iter()
            .map(|(name, s)| TokenView {
                name: name.clone(),
                expiry: s.expiry,
                failing: s.failing.clone(),
                next: s.next,
            })
            .collect();
        for (name, s) in &self.slots {
            self.shared.metrics.token(
                name,
                s.expiry.map(|e| e.timestamp()),
                s.gauge_next().map(|n| n.timestamp()),
            );
        }
        let failing = views.iter().filter(|v| v.failing.is_some()).count();
        let next = self
            .slots
            .iter()
            .filter_map(|(n, s)| s.next.map(|t| (t, n)))
            .min();
        let status = format!(
            "{} token(s): {} ok, {failing} failing{}",
            views.len(),
            views.len() - failing,
            next.map(|(t, n)| format!("; next rotation {n} at {}", format_time(t)))
                .unwrap_or_default()
        );
        *self
            .shared
            .views
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = views;
        self.notifier.status(&status);
    }

    /// Run `names` as one pass in a task of its own; reports come back on `tx`.
    fn spawn_pass(
        &mut self,
        tasks: &mut JoinSet<()>,
        names: Vec<String>,
        tx: &Reports,
        stop_minting: &CancellationToken,
    ) {
        let app = self.app();
        let now = self.now();
        let mut batch = Vec::new();
        for name in names {
            let Some(i) = app.jobs.iter().position(|j| j.name == name) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            // In flight either way: a push that holds it reports back when done.
            slot.next = None;
            slot.in_flight = true;
            slot.started = Some(now);
            let Some(claim) = self.shared.claim(&name) else {
                continue;
            };
            batch.push((
                i,
                RunOptions {
                    early_by: slot.jitter,
                    ..RunOptions::default()
                },
                claim,
            ));
        }
        if batch.is_empty() {
            return;
        }
        let tx = tx.clone();
        let stop = stop_minting.clone();
        let names = batch
            .iter()
            .map(|(i, _, _)| app.jobs[*i].name.clone())
            .collect();
        let handle = tasks.spawn(async move {
            let pass = app.rotator.pass().until(stop);
            let concurrency = app.config.concurrency;
            let mut runs = futures::stream::iter(batch)
                .map(|(i, opts, claim)| {
                    let job = &app.jobs[i];
                    let pass = &pass;
                    async move { (job.name.clone(), pass.rotate_token(job, opts).await, claim) }
                })
                .buffer_unordered(concurrency);
            while let Some((name, report, claim)) = runs.next().await {
                let _ = tx.send((name, report));
                drop(claim);
            }
        });
        self.passes.insert(handle.id(), names);
    }

    /// A pass task ended; if it died (a panic), its tokens that never reported are retried.
    fn pass_ended(&mut self, ended: Result<tokio::task::Id, tokio::task::JoinError>) {
        let (id, died) = match ended {
            Ok(id) => (id, None),
            Err(e) => (e.id(), Some(e.to_string())),
        };
        let names = self.passes.remove(&id).unwrap_or_default();
        let Some(why) = died else { return };
        error!(error = %why, "a rotation task failed; its tokens are retried");
        let retry = self.app().config.daemon.retry_initial;
        let now = self.now();
        for name in names {
            if let Some(slot) = self.slots.get_mut(&name)
                && slot.in_flight
            {
                slot.in_flight = false;
                slot.failing = Some(format!("the rotation task failed: {why}"));
                slot.next = Some(now + chrono::Duration::from_std(retry).unwrap_or_default());
            }
        }
        self.publish();
    }

    /// Read every store once (no rotation) to fill in expiries: the start of a daemon whose
    /// timers are off.
    async fn read_all(&mut self) {
        let app = self.app();
        let rows = app.rotator.status(&app.jobs).await;
        for row in rows {
            if let Some(slot) = self.slots.get_mut(&row.name) {
                slot.expiry = row
                    .expiry
                    .as_deref()
                    .and_then(|e| crate::core::document::parse_time(e).ok());
            }
        }
    }

    fn reload(&mut self) {
        self.notifier.send(&["RELOADING=1"]);
        let loaded = match &self.reload_from {
            Some(p) => config::load(Some(p)),
            None => config::load(None),
        };
        match loaded {
            Ok(c) => {
                let tokens = c.tokens.len();
                self.install(c);
                info!(tokens, "configuration reloaded");
            }
            Err(e) => error!(error = %e, "configuration reload failed; keeping the running one"),
        }
        self.notifier.send(&["READY=1"]);
    }

    fn install(&mut self, config: Config) {
        let schedule_was = self.app().config.daemon.schedule;
        let app = Arc::new(App::observed(config, self.shared.metrics.clone()));
        self.shared.set_pubsub(app.config.daemon.pubsub.as_ref());
        *self
            .shared
            .app
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = app;
        if let Ok(mut cached) = self.shared.status.try_lock() {
            *cached = None;
        }
        self.start_upkeep();
        self.sync_slots(self.now(), Some(schedule_was));
    }

    /// Run the current app's credential upkeep beside the loop (replacing the previous app's).
    fn start_upkeep(&mut self) {
        if let Some(old) = self.upkeep.take() {
            old.abort();
        }
        let app = self.app();
        self.upkeep = Some(tokio::spawn(async move { app.clients.maintain().await }));
    }

    async fn run(
        &mut self,
        tx: Reports,
        mut rx: mpsc::UnboundedReceiver<(String, RunResult)>,
    ) -> u8 {
        let (mut term, mut int, mut hup, mut usr1) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) {
            (Ok(t), Ok(i), Ok(h), Ok(u)) => (t, i, h, u),
            _ => {
                error!("cannot install signal handlers");
                return 1;
            }
        };
        let mut tasks = JoinSet::new();
        let stop_minting = CancellationToken::new();
        let mut last_ping = None::<tokio::time::Instant>;
        self.sync_slots(self.now(), None);
        if !self.app().config.daemon.schedule {
            self.read_all().await;
        }
        let mut next_poll = self.now();
        self.publish();
        loop {
            let now = self.now();
            // The heartbeat proves the loop turns: wall clock, whatever the schedule reads.
            self.shared
                .heartbeat_ms
                .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
            if let Some(w) = self.watchdog
                && last_ping.is_none_or(|t: tokio::time::Instant| t.elapsed() >= w / 2)
            {
                self.notifier.send(&["WATCHDOG=1"]);
                last_ping = Some(tokio::time::Instant::now());
            }
            let d = self.app().config.daemon.clone();
            if d.schedule {
                let polling = now >= next_poll;
                if polling {
                    next_poll = now + chrono::Duration::from_std(d.poll_every).unwrap_or_default();
                }
                let due: Vec<String> = self
                    .slots
                    .iter()
                    // A poll re-reads every idle token, except those backing off a failure:
                    // their retry time stands, so Deepvue is not called more often.
                    .filter(|(_, s)| {
                        s.next
                            .is_some_and(|n| n <= now || (polling && s.failures == 0))
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                if !due.is_empty() {
                    self.spawn_pass(&mut tasks, due, &tx, &stop_minting);
                    self.publish();
                }
            }
            // Sleep until the next thing to do, in bounded steps against the wall clock.
            let wake = self
                .slots
                .values()
                .filter_map(|s| s.next)
                .chain(std::iter::once(next_poll))
                .filter(|_| d.schedule)
                .min();
            let mut until = wake.map_or(self.step, |w| {
                (w - self.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(self.step)
            });
            if self.dirty {
                until = until.min(PUBLISH_EVERY.saturating_sub(self.published.elapsed()));
            }
            tokio::select! {
                () = tokio::time::sleep(until) => {}
                Some((name, report)) = rx.recv() => {
                    self.finished(&name, &report);
                }
                Some(ended) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.pass_ended(ended.map(|(id, ())| id));
                }
                _ = hup.recv() => self.reload(),
                _ = usr1.recv() => self.pass_now(),
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
            if self.dirty && (tasks.is_empty() || self.published.elapsed() >= PUBLISH_EVERY) {
                self.publish();
            }
        }
        self.shutdown(tasks, rx, stop_minting).await
    }

    /// SIGUSR1: a pass over every token not being rotated right now, at once (due ones
    /// rotate; fresh ones cost a read).
    fn pass_now(&mut self) {
        let now = self.now();
        let mut n = 0;
        for slot in self.slots.values_mut().filter(|s| !s.in_flight) {
            slot.next = Some(now);
            n += 1;
        }
        info!(tokens = n, "SIGUSR1: a pass over every token now");
    }

    fn finished(&mut self, name: &str, report: &RunResult) {
        let app = self.app();
        let now = self.now();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.record(report, now, &app.config.daemon);
        self.shared.metrics.pass(name, report, now);
        if !app.config.daemon.schedule {
            // Only requests rotate: no timer for this token.
            slot.next = None;
        }
        // This token's gauges now; the views of all of them with the next publish.
        self.shared.metrics.token(
            name,
            slot.expiry.map(|e| e.timestamp()),
            slot.gauge_next().map(|n| n.timestamp()),
        );
        self.dirty = true;
    }

    async fn shutdown(
        &mut self,
        mut tasks: JoinSet<()>,
        mut rx: mpsc::UnboundedReceiver<(String, RunResult)>,
        stop_minting: CancellationToken,
    ) -> u8 {
        self.notifier.send(&["STOPPING=1"]);
        let timeout = self.app().config.daemon.shutdown_timeout;
        info!(
            in_flight = tasks.len(),
            "shutting down: no new rotations; waiting for the ones in flight"
        );
        let grace = tokio::time::sleep(timeout);
        tokio::pin!(grace);
        let mut minting = true;
        while !tasks.is_empty() {
            tokio::select! {
                Some((name, report)) = rx.recv() => self.finished(&name, &report),
                Some(ended) = tasks.join_next_with_id() => {
                    self.pass_ended(ended.map(|(id, ())| id));
                }
                () = &mut grace, if minting => {
                    // Stop authorize calls still waiting; a token already minted is still
                    // written before its task ends.
                    warn!(timeout = %humantime::format_duration(timeout), "shutdown timeout: stopping the rotations still minting");
                    stop_minting.cancel();
                    minting = false;
                }
            }
        }
        while let Ok((name, report)) = rx.try_recv() {
            self.finished(&name, &report);
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::result::{Failure, Held, TokenRef};
    use crate::core::store::Version;

    const H: i64 = 3600;

    fn daemon_config() -> config::daemon::DaemonConfig {
        config::daemon::DaemonConfig {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            schedule: true,
            jitter: Duration::ZERO,
            poll_every: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(30),
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(900),
            status_endpoints: true,
            metrics_endpoint: true,
            pubsub: None,
            admin_socket: None,
        }
    }

    fn slot(now: DateTime<Utc>) -> Slot {
        Slot::new(
            DuePolicy {
                renew_before: Duration::from_secs(12 * 3600),
                min_interval: Duration::from_secs(600),
            },
            Duration::ZERO,
            now,
        )
    }

    fn result(outcome: Outcome, expiry: Option<DateTime<Utc>>) -> RunResult {
        let mut r = RunResult::new(
            TokenRef {
                name: "t".into(),
                backend: "file",
                secret_id: "/s".into(),
            },
            outcome,
        );
        r.current = expiry.map(|e| Held {
            version: Version("1".into()),
            expiry: Some(e),
            issued_at: Some(e - chrono::Duration::hours(24)),
        });
        r
    }

    fn failed(kind: crate::core::error::ErrorKind, expiry: Option<DateTime<Utc>>) -> RunResult {
        result(
            Outcome::Failed(Failure {
                kind,
                message: "boom".into(),
                deepvue_detail: None,
            }),
            expiry,
        )
    }

    fn at(t0: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
        t0 + chrono::Duration::seconds(secs)
    }

    /// The whole life of one token on the schedule, on a clock the test moves: no sleeping.
    #[test]
    fn the_schedule_follows_expiry_backs_off_failures_and_never_outlives_the_token() {
        let d = daemon_config();
        let t0 = Utc::now();
        let mut s = slot(t0);
        assert_eq!(s.next, Some(t0), "a new token is looked at at once");

        // Rotated at t0: the next rotation is at expiry − renew_before.
        let rotated = result(Outcome::Rotated { previous: None }, Some(at(t0, 24 * H)));
        s.record(&rotated, t0, &d);
        assert_eq!(
            crate::engine::metrics::attempt(&rotated.outcome),
            Some("rotated")
        );
        assert_eq!(s.next, Some(at(t0, 12 * H)));
        assert_eq!((s.failures, s.failing.as_deref()), (0, None));

        // A poll that finds the same token: nothing moves.
        let fresh = result(Outcome::Fresh, Some(at(t0, 24 * H)));
        s.record(&fresh, at(t0, 300), &d);
        assert_eq!(crate::engine::metrics::attempt(&fresh.outcome), None);
        assert_eq!(s.next, Some(at(t0, 12 * H)));

        // Due at t0+12h and failing: backoff doubling from retry_initial (equal jitter).
        let t1 = at(t0, 12 * H);
        let mut previous = Duration::ZERO;
        for n in 1..=4u32 {
            let f = failed(ErrorKindT::Transient, Some(at(t0, 24 * H)));
            s.record(&f, t1, &d);
            assert_eq!(crate::engine::metrics::attempt(&f.outcome), Some("failed"));
            let wait = (s.next.unwrap_or(t1) - t1).to_std().unwrap_or_default();
            let ceiling = d.retry_initial * 2u32.pow(n - 1);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "failure {n}: {wait:?}"
            );
            assert!(wait >= previous / 2, "failure {n}");
            previous = wait;
            assert_eq!(s.failures, n);
            assert_eq!(s.failing.as_deref(), Some("boom"));
        }

        // Twenty minutes left: the wait never outlives the token (a quarter of what is left).
        let late = at(t0, 24 * H - 1200);
        let f = failed(ErrorKindT::Transient, Some(at(t0, 24 * H)));
        s.record(&f, late, &d);
        assert!(
            s.next
                .is_some_and(|n| n - late <= chrono::Duration::seconds(300))
        );

        // A failure that could not even read the store keeps the expiry it knew.
        let unread = failed(ErrorKindT::Transient, None);
        s.record(&unread, late, &d);
        assert_eq!(s.expiry, Some(at(t0, 24 * H)));

        // A success resets the failures; a token that is already due again (a short one)
        // waits min_interval, not zero.
        let short = result(Outcome::Rotated { previous: None }, Some(at(late, 600)));
        s.record(&short, late, &d);
        assert_eq!(s.failures, 0);
        assert_eq!(s.next, Some(at(late, 600)));
    }

    #[test]
    fn jitter_is_drawn_once_per_token_lifetime() {
        let d = daemon_config();
        let t0 = Utc::now();
        let mut s = Slot::new(
            DuePolicy {
                renew_before: Duration::from_secs(12 * 3600),
                min_interval: Duration::from_secs(600),
            },
            Duration::from_secs(3600),
            t0,
        );
        s.pick_jitter();
        let first = result(Outcome::Rotated { previous: None }, Some(at(t0, 24 * H)));
        s.record(&first, t0, &d);
        let jitter = s.jitter;
        let planned = s.next;
        for poll in 1..20 {
            let fresh = result(Outcome::Fresh, Some(at(t0, 24 * H)));
            s.record(&fresh, at(t0, poll * 300), &d);
            assert_eq!((s.jitter, s.next), (jitter, planned), "poll {poll}");
        }
        assert!(
            planned.is_some_and(|p| p <= at(t0, 12 * H) && p >= at(t0, 11 * H)),
            "{planned:?}"
        );
    }

    use crate::core::error::ErrorKind as ErrorKindT;
}
