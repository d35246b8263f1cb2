//! The agent's cache: per token, the version it serves and the store reads that keep it
//! current.
//!
//! - A request is answered from memory while the served token is valid (a **hit**: no store
//!   call). Only when nothing valid is held does a request wait for a store read (a **miss**).
//! - The cache's lifetime follows the token: a background task per token re-reads the store
//!   when the served token reaches `renew_before` (the rotator writes the next version then),
//!   then every six `refresh_interval`s until a new version appears; and every `max_age` if
//!   set. With `mint = true` the task first runs a normal rotation pass (one mint per window
//!   across agents and rotators, as the engine guarantees).
//! - Store reads of one token are serialised and rate-limited: at most one per
//!   `refresh_interval`. Callers that arrive while a read runs, or within the interval after
//!   it, get its result (100 concurrent refreshes → one store read).
//! - A current version that cannot be used (expired, malformed) is not served: the previous
//!   version is, while valid, marked stale (WARN log, metric, header). A store that cannot be
//!   read leaves the cached token served until its expiry. With nothing valid, requests get
//!   503 and the reason.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::AgentMetrics;
use crate::app::App;
use crate::config::agent::AgentConfig;
use crate::core::document::{TokenDocument, format_time};
use crate::core::result::OutcomeKind;
use crate::core::store::{TokenStore, Version};
use crate::engine::rotator::{Job, RunOptions};
use crate::engine::usable::{self, Current};

/// What is served for a token, with its answers rendered once (a request copies them).
pub struct Served {
    /// Its version in the store.
    pub version: Version,
    /// The document.
    pub doc: Arc<TokenDocument>,
    /// Why the store's current version is not served (this is the previous one), if so.
    pub stale: Option<String>,
    /// The JSON answer.
    pub json: SecretString,
    /// The plain-text answer (the token and a newline).
    pub text: SecretString,
    /// The headers of every token answer but its content type: `Cache-Control: no-store`,
    /// `X-Deepvue-Rotator-Version`, `-Expiry`, and `-Stale: true` when stale.
    pub headers: http::HeaderMap,
}

impl Served {
    fn new(
        name: &str,
        version: Version,
        doc: Arc<TokenDocument>,
        stale: Option<String>,
        detail: bool,
    ) -> Served {
        let mut body = serde_json::json!({
            "name": name,
            // Rendered once, handed only to authenticated local callers (`http.rs`).
            "access_token": doc.access_token.expose_secret(),
            "token_type": doc.token_type,
            "expiry": format_time(doc.expiry),
            "issued_at": format_time(doc.issued_at),
            "version": version.to_string(),
            "stale": stale.is_some(),
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(why) = &stale {
                let why = if detail {
                    why.as_str()
                } else {
                    "the current version is unusable"
                };
                map.insert("stale_reason".into(), serde_json::json!(why));
            }
            if let Some(key) = &doc.x_api_key {
                map.insert("x_api_key".into(), serde_json::json!(key.expose_secret()));
            }
        }
        let text = format!("{}\n", doc.access_token.expose_secret());
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&version.to_string()) {
            headers.insert("x-deepvue-rotator-version", v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&format_time(doc.expiry)) {
            headers.insert("x-deepvue-rotator-expiry", v);
        }
        if stale.is_some() {
            headers.insert(
                "x-deepvue-rotator-stale",
                http::HeaderValue::from_static("true"),
            );
        }
        Served {
            headers,
            json: SecretString::from(body.to_string()),
            text: SecretString::from(text),
            version,
            doc,
            stale,
        }
    }
}

/// A token's request counters, resolved once (a request only increments).
struct Counters {
    hits: Counter,
    misses: Counter,
    stale_served: Counter,
    unavailable: Counter,
}

/// One served token.
struct Slot {
    /// Its index in `App::jobs`.
    job: usize,
    served: RwLock<Option<Arc<Served>>>,
    /// Why nothing is served (the last read's finding).
    problem: RwLock<Option<String>>,
    /// When the last store read ended; held during a read (coalescing).
    last_read: Mutex<Option<Instant>>,
    counters: Counters,
    /// The store's change events, made before the first read (a write between that read and
    /// the watch would go unseen) and taken by the token's keeper.
    changes: std::sync::Mutex<Option<Changes>>,
}

/// A request's answer.
pub enum Answer {
    /// The token to give.
    Token(Arc<Served>),
    /// Why no valid token can be given.
    Unavailable(String),
}

/// The cache over every served token.
pub struct Cache {
    app: Arc<App>,
    slots: BTreeMap<String, Slot>,
    refresh_interval: Duration,
    max_age: Option<Duration>,
    mint: bool,
    /// The agent's metrics.
    pub metrics: AgentMetrics,
    /// Change watches held.
    watches: Arc<std::sync::atomic::AtomicUsize>,
    /// Whether answers may say why a version is stale (store names, versions): not when the
    /// agent listens beyond this host.
    detail: bool,
}

/// A store's change events.
type Changes = futures::stream::BoxStream<'static, ()>;

/// Most change watches one agent holds (see [`Cache::watch`]); tokens beyond are polled.
const MAX_WATCHES: usize = 32;
/// Longest wait before a failed rotation is tried again (`mint = true`).
const MAX_MINT_BACKOFF: Duration = Duration::from_secs(30 * 60);

fn read_lock<T: Clone>(l: &RwLock<T>) -> T {
    l.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write_lock<T>(l: &RwLock<T>, v: T) {
    *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = v;
}

impl Cache {
    /// A cache over `app`'s tokens (or those `config.tokens` names), empty until read.
    pub fn new(app: Arc<App>, config: &AgentConfig) -> Cache {
        let metrics = AgentMetrics::default();
        let slots = app
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| config.tokens.as_ref().is_none_or(|t| t.contains(&j.name)))
            .map(|(i, j)| {
                let counters = Counters {
                    hits: metrics.hits(&j.name),
                    misses: metrics.misses(&j.name),
                    stale_served: metrics.stale_served(&j.name),
                    unavailable: metrics.unavailable(&j.name),
                };
                (
                    j.name.clone(),
                    Slot {
                        job: i,
                        served: RwLock::new(None),
                        problem: RwLock::new(Some("not read yet".into())),
                        last_read: Mutex::new(None),
                        counters,
                        changes: std::sync::Mutex::new(None),
                    },
                )
            })
            .collect();
        Cache {
            app,
            slots,
            refresh_interval: config.refresh_interval,
            max_age: config.max_age,
            mint: config.mint,
            metrics,
            watches: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            detail: !config.allow_remote,
        }
    }

    /// The served token names.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.slots.keys()
    }

    fn now(&self) -> DateTime<Utc> {
        self.app.rotator.clock().now()
    }

    fn job(&self, slot: &Slot) -> &Job {
        &self.app.jobs[slot.job]
    }

    /// What is held for `slot` and still valid.
    fn usable(&self, slot: &Slot) -> Option<Arc<Served>> {
        let now = self.now();
        read_lock(&slot.served).filter(|s| s.doc.expiry > now)
    }

    fn answer(&self, name: &str, slot: &Slot) -> Answer {
        match self.usable(slot) {
            Some(s) => {
                if s.stale.is_some() {
                    slot.counters.stale_served.inc();
                }
                Answer::Token(s)
            }
            None => {
                slot.counters.unavailable.inc();
                let why = read_lock(&slot.problem).unwrap_or_else(|| {
                    format!(
                        "token `{name}`: the cached token has expired and no newer one was read"
                    )
                });
                Answer::Unavailable(why)
            }
        }
    }

    /// A request for `name`'s token (`None`: not served here).
    pub async fn get(self: &Arc<Self>, name: &str) -> Option<Answer> {
        let slot = self.slots.get(name)?;
        if let Some(s) = self.usable(slot) {
            slot.counters.hits.inc();
            if s.stale.is_some() {
                slot.counters.stale_served.inc();
            }
            return Some(Answer::Token(s));
        }
        slot.counters.misses.inc();
        self.reload(name, false).await;
        Some(self.answer(name, slot))
    }

    /// A refresh of `name` (an application got a 401): a store read unless one ran within
    /// `refresh_interval`; the answer and whether this request read the store.
    pub async fn refresh(self: &Arc<Self>, name: &str) -> Option<(Answer, bool)> {
        let slot = self.slots.get(name)?;
        let read = self.reload(name, false).await;
        self.metrics.refresh(name, read);
        Some((self.answer(name, slot), read))
    }

    /// Whether every served token has a valid version now; the tokens that do not, and why.
    pub fn unready(&self) -> Vec<(String, String)> {
        self.slots
            .iter()
            .filter(|(_, s)| self.usable(s).is_none())
            .map(|(n, s)| {
                let why = read_lock(&s.problem)
                    .unwrap_or_else(|| "the cached token has expired".to_string());
                (n.clone(), why)
            })
            .collect()
    }

    /// Put each token's age, expiry and staleness in the metrics (at scrape time).
    pub fn update_gauges(&self) {
        let now = self.now();
        for (name, slot) in &self.slots {
            let served = self.usable(slot).map(|s| {
                let age = (now - s.doc.issued_at).num_milliseconds() as f64 / 1000.0;
                (age, s.doc.expiry.timestamp() as f64, s.stale.is_some())
            });
            self.metrics.served(name, served);
        }
    }

    /// Read the store for `name` unless a read ended within `refresh_interval` (`force`: even
    /// then); whether this call read. The read runs in a task of its own: a caller that goes
    /// away (a client that disconnects, a request that times out) never cancels the read other
    /// callers wait for.
    async fn reload(self: &Arc<Self>, name: &str, force: bool) -> bool {
        let (this, name) = (Arc::clone(self), name.to_string());
        tokio::spawn(async move {
            match this.slots.get(&name) {
                Some(slot) => this.reload_now(&name, slot, force).await,
                None => false,
            }
        })
        .await
        .unwrap_or(false)
    }

    /// [`Cache::reload`]'s work. Reads of one token never overlap: a caller that waited for
    /// another's read takes its result.
    async fn reload_now(&self, name: &str, slot: &Slot, force: bool) -> bool {
        let mut last = slot.last_read.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.refresh_interval) {
            debug!(
                token = name,
                "a store read ran within refresh_interval: answering from it"
            );
            return false;
        }
        debug!(token = name, forced = force, "reading the store");
        self.read(name, slot).await;
        *last = Some(Instant::now());
        true
    }

    /// Read the store once and decide what is served.
    async fn read(&self, name: &str, slot: &Slot) {
        let job = self.job(slot);
        let store: &dyn TokenStore = job.store.tokens.as_ref();
        let now = self.now();
        let current = usable::current(name, store, now).await;
        self.metrics.store_read(name, current.is_ok());
        let (current_version, why) = match current {
            Err(e) => {
                match self.usable(slot) {
                    Some(s) => warn!(
                        token = name,
                        error = %e,
                        version = %s.version,
                        expiry = %format_time(s.doc.expiry),
                        "store read failed; serving the cached token until it expires"
                    ),
                    None => warn!(token = name, error = %e, "store read failed; nothing to serve"),
                }
                write_lock(&slot.problem, Some(format!("token `{name}`: {e}")));
                return;
            }
            Ok(Current::Usable(version, doc)) => {
                self.install(name, slot, version, Arc::new(doc), None);
                return;
            }
            Ok(Current::Unusable { version, why }) => (version, why),
        };
        // The current version cannot be served: the previous one can, while it is valid —
        // the one held in memory, else the store's.
        let held = read_lock(&slot.served)
            .filter(|s| Some(&s.version) != current_version.as_ref() && s.doc.expiry > now)
            .map(|s| (s.version.clone(), s.doc.clone()));
        let previous = match (held, &current_version) {
            (Some(h), _) => Some(h),
            (None, Some(v)) => match usable::valid_previous(store, v, now).await {
                Ok(p) => p.map(|(version, doc)| (version, Arc::new(doc))),
                Err(e) => {
                    debug!(token = name, error = %e, "the previous version could not be read");
                    None
                }
            },
            (None, None) => None,
        };
        match previous {
            Some((version, doc)) => {
                warn!(
                    token = name,
                    previous = %version,
                    expiry = %format_time(doc.expiry),
                    reason = %why,
                    "the current version is unusable; serving the previous version (stale) while it is valid"
                );
                self.install(name, slot, version, doc, Some(why));
            }
            None => {
                warn!(token = name, reason = %why, "no usable version; token requests answer 503");
                write_lock(&slot.served, None);
                write_lock(&slot.problem, Some(why));
            }
        }
    }

    fn install(
        &self,
        name: &str,
        slot: &Slot,
        version: Version,
        doc: Arc<TokenDocument>,
        stale: Option<String>,
    ) {
        let before = read_lock(&slot.served);
        let changed = before
            .as_ref()
            .is_none_or(|b| b.version != version || b.stale.is_some() != stale.is_some());
        if changed && stale.is_none() {
            info!(
                token = name,
                version = %version,
                expiry = %format_time(doc.expiry),
                "serving a new version"
            );
        }
        write_lock(
            &slot.served,
            Some(Arc::new(Served::new(
                name,
                version,
                doc,
                stale,
                self.detail,
            ))),
        );
        write_lock(&slot.problem, None);
    }

    /// Watch every store that reports changes, then read every token once (at start),
    /// `[rotation] concurrency` at a time (a file store's read is a blocking-pool thread: a
    /// thousand at once would be a thousand threads).
    pub async fn load_all(self: &Arc<Self>) {
        use futures::StreamExt as _;
        for slot in self.slots.values() {
            let w = self.watch(slot);
            *slot
                .changes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = w;
        }
        let reads = self.slots.keys().map(|name| self.reload(name, true));
        futures::stream::iter(reads)
            .buffer_unordered(self.app.config.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
    }

    /// How long until `slot` should be read again, and whether it is due for a rotation.
    fn next_read(&self, slot: &Slot) -> (Duration, bool) {
        let poll = self.refresh_interval * 6;
        let Some(s) = self.usable(slot) else {
            return (poll.max(Duration::from_secs(1)), true);
        };
        let now = self.now();
        let renew_at = s.doc.expiry
            - chrono::Duration::from_std(self.job(slot).policy.renew_before)
                .unwrap_or(chrono::Duration::zero());
        let (wait, due) = if s.stale.is_some() || now >= renew_at {
            // Waiting for the rotator's next version; never past the expiry.
            let left = (s.doc.expiry - now).to_std().unwrap_or_default();
            (poll.min(left / 2).max(Duration::from_millis(100)), true)
        } else {
            // A second past the renewal time: the rotator has written by then.
            let until = (renew_at - now).to_std().unwrap_or_default();
            (until + Duration::from_secs(1), false)
        };
        (self.max_age.map_or(wait, |m| wait.min(m)), due)
    }

    /// `slot`'s change events, if its store has them and fewer than [`MAX_WATCHES`] are held
    /// (each is a kernel object counted against the user's limit, which the applications of
    /// that user need too). The count is given back when the stream is dropped.
    fn watch(&self, slot: &Slot) -> Option<Changes> {
        use futures::StreamExt as _;
        use std::sync::atomic::Ordering;
        struct Held(Arc<std::sync::atomic::AtomicUsize>);
        impl Drop for Held {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if self.watches.fetch_add(1, Ordering::Relaxed) >= MAX_WATCHES {
            self.watches.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let held = Held(self.watches.clone());
        let stream = self.job(slot).store.tokens.changes()?;
        Some(Box::pin(stream.map(move |c| {
            let _ = &held;
            c
        })))
    }

    /// Keep `name` current until `stop`: re-read (and with `mint`, rotate) when due, and at
    /// once when the store says its current version changed. With `mint`, a failed rotation
    /// is tried again only after a backoff (six `refresh_interval`s, doubling to 30 minutes),
    /// so agents never hammer Deepvue or the store through an outage.
    pub async fn keep_current(self: &Arc<Self>, name: &str, stop: CancellationToken) {
        use futures::StreamExt as _;
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        let mut changes = slot
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        // With `mint`, a token that is due at start is rotated at once.
        let mut first = self.mint;
        let mut failures = 0u32;
        let mut retry_at: Option<Instant> = None;
        let mut ended = false;
        loop {
            let (wait, due) = self.next_read(slot);
            let wait = retry_at.map_or(wait, |t| {
                wait.max(t.saturating_duration_since(Instant::now()))
            });
            let mut changed = false;
            if !(first && due) {
                let change = async {
                    match changes.as_mut() {
                        Some(c) => c.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                    c = change => match c {
                        Some(()) => changed = true,
                        // The watch ended (its directory went, watching was refused): poll
                        // from now on; it is not made again (no retry loop against a store).
                        None => {
                            changes = None;
                            ended = true;
                        }
                    },
                }
            }
            first = false;
            if changed {
                // A write is a few events: let them settle; and never read more often than
                // `refresh_interval` (a store's metadata may change often: every rotator run
                // patches the Kubernetes Secret's run state), but never miss the change either.
                let last = *slot.last_read.lock().await;
                let since = last.map_or(Duration::MAX, |t| t.elapsed());
                let settle = self
                    .refresh_interval
                    .saturating_sub(since)
                    .max(Duration::from_millis(50));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(settle) => {}
                }
                debug!(token = name, "the store reports a new current version");
                self.reload(name, true).await;
                continue;
            }
            let (_, due) = self.next_read(slot);
            let backing_off = retry_at.is_some_and(|t| Instant::now() < t);
            if self.mint && due && !backing_off {
                // The engine decides (fresh: a no-op) and keeps one mint per window.
                // Boxed: a thousand idle keepers must not each carry a rotation's state.
                let r = Box::pin(self.app.rotator.pass().rotate_token(
                    self.job(slot),
                    RunOptions {
                        trigger: crate::engine::audit::Trigger::AgentRefresh,
                        ..RunOptions::default()
                    },
                ))
                .await;
                debug!(token = name, outcome = ?r.outcome, "rotation pass");
                if r.outcome.kind() == OutcomeKind::Failed {
                    failures = failures.saturating_add(1);
                    let delay = (self.refresh_interval * 6)
                        .saturating_mul(1 << failures.min(10))
                        .min(MAX_MINT_BACKOFF);
                    warn!(
                        token = name,
                        failures,
                        retry_in = %crate::support::duration::show(delay),
                        "rotation failed; the agent tries again after a backoff"
                    );
                    retry_at = Some(Instant::now() + delay);
                    self.reload(name, false).await;
                } else {
                    failures = 0;
                    retry_at = None;
                    self.reload(name, true).await;
                }
            } else {
                self.reload(name, false).await;
            }
            if changes.is_none() && !ended {
                // A store made since (the first write creates the file store's directory).
                changes = self.watch(slot);
            }
        }
    }
}
