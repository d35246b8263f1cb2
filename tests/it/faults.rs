//! Faults on purpose: one fault-injecting proxy in front of every backend's real server (moto,
//! OpenBao, the Secret Manager fake), scripted per request, counting calls itself; and one
//! scenario matrix run through it on every network store:
//!
//! - a **lost write answer** (the write lands, its answer does not — through every retry the
//!   client makes): exactly one version, one mint, and the run reports `rotated`;
//! - a **cut write answer** (a connection reset after the headers): one version, one mint;
//! - a **throttling storm** on the write: bounded attempts, never a second version;
//! - a **conflict storm**: six runners whose writes are all held until every one has decided,
//!   then released together: one version;
//! - **crash points**: the runner killed (SIGKILL) with its version write held before it is
//!   sent, with the write landed but its answer held, and with its state write held: the store
//!   always holds a valid current token, at most one new version, nothing half-written, and
//!   the next run rotates only if nothing landed.
//!
//! The file store, with no network to put a proxy in, has its own fault here: the lock holder
//! killed mid-rotation.
//!
//! Waits are on events (a request reaching the proxy, a process exiting), never on the clock.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use crate::scenarios::{Fixture, valid_credentials};
use crate::support::{Env, Output, run};

/// A request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Which requests a rule applies to.
pub type Matcher = Arc<dyn Fn(&Seen) -> bool + Send + Sync>;

/// What the proxy does with a matching request.
#[derive(Clone)]
pub enum Action {
    /// Forward it, then answer `status` instead of the upstream's answer (the answer is lost).
    LoseAnswer(u16),
    /// Forward it, then cut the connection in the middle of the answer (headers sent, the body
    /// broken off): the client sees a transport error, not a status.
    CutAnswer,
    /// Answer this without forwarding.
    Fail {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Hold it until released, then forward it.
    HoldThenForward(Arc<Gate>),
    /// Forward it, then hold the answer until released.
    ForwardThenHold(Arc<Gate>),
}

/// A gate requests wait at until it opens (or forever: a killed client never reads on).
#[derive(Default)]
pub struct Gate {
    open: Notify,
    opened: Mutex<bool>,
    /// Set when a request reaches the gate: for `ForwardThenHold`, only once the upstream has
    /// answered (the write has landed), not when the request arrived at the proxy.
    reached: Notify,
    held: Mutex<bool>,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    pub fn open(&self) {
        *self
            .opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.open.notify_waiters();
    }

    /// Wait until a request is held here (with a bound only a broken run reaches).
    pub async fn until_held(&self) {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let notified = self.reached.notified();
                if *self
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(waited.is_ok(), "no request reached the gate");
    }

    async fn wait(&self) {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.reached.notify_waiters();
        loop {
            let notified = self.open.notified();
            if *self
                .opened
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                return;
            }
            notified.await;
        }
    }
}

struct Rule {
    name: &'static str,
    matcher: Matcher,
    action: Action,
    /// How many more matching requests it applies to.
    left: usize,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// Requests seen per rule name (whether the rule still applied or not), and in all.
    counts: std::collections::BTreeMap<&'static str, usize>,
    matchers: Vec<(&'static str, Matcher)>,
}

/// The fault-injecting proxy: plain http on 127.0.0.1 (loopback http is what every backend
/// allows for a local server) in front of an http or https upstream.
pub struct FaultProxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://…` or `https://…`, trusting `ca` when given).
    pub async fn start(upstream: &str, ca: Option<&Path>) -> FaultProxy {
        deepvue_rotator::support::tls::install_default_provider();
        let mut client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("{e}"));
            client = client.add_root_certificate(
                reqwest::Certificate::from_pem(&pem).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        let client = client.build().unwrap_or_else(|e| panic!("{e}"));
        let state = Arc::new(Mutex::new(State::default()));
        let arrived = Arc::new(Notify::new());
        let upstream = upstream.trim_end_matches('/').to_string();
        let app = {
            let (state, arrived) = (state.clone(), arrived.clone());
            axum::Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let (state, arrived, client, upstream) = (
                        state.clone(),
                        arrived.clone(),
                        client.clone(),
                        upstream.clone(),
                    );
                    async move {
                        let seen = Seen {
                            method,
                            path: uri
                                .path_and_query()
                                .map(|p| p.as_str().to_string())
                                .unwrap_or_default(),
                            headers,
                            body,
                        };
                        let action = {
                            let mut s = state
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            let names: Vec<&'static str> = s
                                .matchers
                                .iter()
                                .filter(|(_, m)| m(&seen))
                                .map(|(n, _)| *n)
                                .collect();
                            for n in names {
                                *s.counts.entry(n).or_default() += 1;
                            }
                            let hit = s
                                .rules
                                .iter_mut()
                                .find(|r| r.left > 0 && (r.matcher)(&seen));
                            hit.map(|r| {
                                r.left -= 1;
                                r.action.clone()
                            })
                        };
                        arrived.notify_waiters();
                        match action {
                            None => forward(&client, &upstream, &seen).await,
                            Some(Action::Fail {
                                status,
                                body,
                                headers,
                            }) => {
                                let mut r = Response::new(Body::from(body));
                                *r.status_mut() =
                                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                                for (k, v) in headers {
                                    if let (Ok(k), Ok(v)) = (
                                        axum::http::HeaderName::from_bytes(k.as_bytes()),
                                        axum::http::HeaderValue::from_str(&v),
                                    ) {
                                        r.headers_mut().insert(k, v);
                                    }
                                }
                                r
                            }
                            Some(Action::LoseAnswer(status)) => {
                                let _ = forward(&client, &upstream, &seen).await;
                                (
                                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                                    "",
                                )
                                    .into_response()
                            }
                            Some(Action::CutAnswer) => {
                                let _ = forward(&client, &upstream, &seen).await;
                                let broken = futures::stream::once(async {
                                    Err::<Bytes, std::io::Error>(std::io::Error::new(
                                        std::io::ErrorKind::ConnectionReset,
                                        "cut by the fault proxy",
                                    ))
                                });
                                let mut r = Response::new(Body::from_stream(broken));
                                r.headers_mut().insert(
                                    axum::http::header::CONTENT_TYPE,
                                    axum::http::HeaderValue::from_static("application/json"),
                                );
                                r
                            }
                            Some(Action::HoldThenForward(gate)) => {
                                gate.wait().await;
                                forward(&client, &upstream, &seen).await
                            }
                            Some(Action::ForwardThenHold(gate)) => {
                                let r = forward(&client, &upstream, &seen).await;
                                gate.wait().await;
                                r
                            }
                        }
                    }
                },
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the fault proxy must bind 127.0.0.1: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            url: format!("http://{addr}"),
            state,
            arrived,
            task,
        }
    }

    /// Count requests that `matcher` names `name` (from now on).
    pub fn count_as(&self, name: &'static str, matcher: Matcher) {
        self.lock().matchers.push((name, matcher));
    }

    /// Apply `action` to the next `times` requests `matcher` picks (counted as `name`).
    pub fn on(&self, name: &'static str, matcher: Matcher, action: Action, times: usize) {
        let mut s = self.lock();
        s.matchers.push((name, matcher.clone()));
        s.rules.push(Rule {
            name,
            matcher,
            action,
            left: times,
        });
    }

    /// Requests counted as `name` so far.
    pub fn count(&self, name: &str) -> usize {
        self.lock().counts.get(name).copied().unwrap_or(0)
    }

    /// Wait until `n` requests counted as `name` have arrived (an event, with a generous bound
    /// that only a broken run reaches).
    pub async fn until(&self, name: &str, n: usize) {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let notified = self.arrived.notified();
                if self.count(name) >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{n} `{name}` requests never reached the proxy (saw {})",
            self.count(name)
        );
    }

    /// Stop applying rules named `name`.
    pub fn clear(&self, name: &str) {
        self.lock().rules.retain(|r| r.name != name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn forward(client: &reqwest::Client, upstream: &str, seen: &Seen) -> Response {
    let mut req = client.request(seen.method.clone(), format!("{upstream}{}", seen.path));
    for (k, v) in &seen.headers {
        if k != axum::http::header::HOST && k != axum::http::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    // A watch (Kubernetes) answers for minutes, event by event: passed on as it comes.
    let streaming = seen.path.contains("watch=1");
    match req.body(seen.body.clone()).send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let mut out = if streaming {
                Response::new(Body::from_stream(futures::stream::unfold(
                    r,
                    |mut r| async move {
                        match r.chunk().await {
                            Ok(Some(b)) => Some((Ok::<_, std::io::Error>(b), r)),
                            _ => None,
                        }
                    },
                )))
            } else {
                Response::new(Body::from(r.bytes().await.unwrap_or_default()))
            };
            *out.status_mut() = status;
            for (k, v) in &headers {
                if k != axum::http::header::CONTENT_LENGTH
                    && k != axum::http::header::TRANSFER_ENCODING
                {
                    out.headers_mut().insert(k.clone(), v.clone());
                }
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response(),
    }
}

/// A backend the matrix runs on: its scenario fixture, plus how to reach it through a proxy
/// and which of its requests are the token write and the state write.
#[async_trait::async_trait]
pub trait Faulty: Fixture {
    /// The server the proxy forwards to, and the CA it presents (https).
    fn upstream(&self) -> (String, Option<std::path::PathBuf>);
    /// The binary's top-level TOML with the backend reached through `proxy`.
    fn sections_via(&self, proxy: &str) -> String;
    /// A throttling answer of this backend's API.
    fn throttled(&self) -> Action;
    /// Whether its store takes a lease (runners behind a live lease never write).
    fn has_leases(&self) -> bool {
        false
    }
}

/// The runner, its backend through `proxy`.
struct Setup<'a> {
    fx: &'a dyn Faulty,
    env: Env,
    proxy: FaultProxy,
    store: crate::scenarios::Store,
    cfg: std::path::PathBuf,
}

impl<'a> Setup<'a> {
    async fn new(fx: &'a dyn Faulty, extra: &str) -> Setup<'a> {
        let env = Env::new().await;
        let (upstream, ca) = fx.upstream();
        let proxy = FaultProxy::start(&upstream, ca.as_deref()).await;
        let store = fx.store().await;
        let creds = fx.credentials(Some(&valid_credentials())).await;
        let cfg = env.write_config(&format!(
            "{}{}{extra}[[tokens]]\nname = \"prod\"\ncredentials = {}\nstore = {}\n",
            env.deepvue_section(""),
            fx.sections_via(&proxy.url),
            creds.toml,
            store.toml
        ));
        let probe = WriteProbe::of(fx);
        proxy.count_as("write", Arc::new(move |r| probe.is_write(r)));
        Setup {
            fx,
            env,
            proxy,
            store,
            cfg,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        self.fx.command(&self.env, &self.cfg, args)
    }

    async fn rotate(&self, args: &[&str]) -> Output {
        run(self.command(args)).await
    }
}

/// A backend's write and state-write recognisers, owned (a proxy rule outlives the fixture
/// borrow).
#[derive(Clone)]
struct WriteProbe {
    kind: &'static str,
}

impl WriteProbe {
    fn of(fx: &dyn Faulty) -> WriteProbe {
        WriteProbe { kind: fx.backend() }
    }

    fn is_write(&self, r: &Seen) -> bool {
        is_write(self.kind, r)
    }

    fn is_state_write(&self, r: &Seen) -> bool {
        is_state_write(self.kind, r)
    }
}

fn target(r: &Seen) -> &str {
    r.headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The token write of each network backend's API.
pub fn is_write(backend: &str, r: &Seen) -> bool {
    match backend {
        "aws" => {
            matches!(
                target(r),
                "secretsmanager.PutSecretValue" | "secretsmanager.CreateSecret"
            ) && r.body.windows(12).any(|w| w == b"SecretString")
        }
        "vault" => r.method == Method::POST && r.path.starts_with("/v1/secret/data/"),
        "gcp" => r.method == Method::POST && r.path.contains(":addVersion"),
        "kubernetes" => {
            (r.method == Method::PUT || r.method == Method::POST)
                && r.path.contains("/secrets")
                && !r.path.contains("dryRun")
        }
        _ => false,
    }
}

/// The run-state write of each network backend's API.
pub fn is_state_write(backend: &str, r: &Seen) -> bool {
    match backend {
        "aws" => matches!(
            target(r),
            "secretsmanager.TagResource" | "secretsmanager.UntagResource"
        ),
        "vault" => r.method == Method::POST && r.path.starts_with("/v1/secret/metadata/"),
        "gcp" | "kubernetes" => {
            r.method == Method::PATCH
                && r.body
                    .windows(b"deepvue-rotator.state".len())
                    .any(|w| w == b"deepvue-rotator.state")
        }
        _ => false,
    }
}

fn outcome(out: &Output) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    v[0]["outcome"].as_str().unwrap_or_default().to_string()
}

/// The token the store holds now, read with our store (a valid document or a panic).
async fn current_token(s: &Setup<'_>) -> String {
    crate::scenarios::current_token(s.fx, &s.store).await
}

// ---- the matrix -----------------------------------------------------------------------------

/// The write lands but its answer is lost, through every retry the client makes: the run
/// finds its own version (never mints again), reports it, and the store holds one version.
pub async fn lost_write_answer(fx: &dyn Faulty) {
    let b = fx.backend();
    let s = Setup::new(fx, "").await;
    let probe = WriteProbe::of(fx);
    s.proxy.on(
        "lost",
        Arc::new(move |r| probe.is_write(r)),
        Action::LoseAnswer(502),
        8,
    );
    let out = s.rotate(&["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert_eq!(
        outcome(&out),
        "rotated",
        "{b}: the run finds what it wrote: {out}"
    );
    assert_eq!(s.env.calls(), 1, "{b}: minted once");
    assert_eq!(fx.versions(&s.store).await, 1, "{b}: one version");
    assert!(s.proxy.count("lost") >= 1, "{b}: the answer was lost");
    let token = current_token(&s).await;
    assert!(token.starts_with("simtok_"), "{b}");
    // The next run: fresh, nothing minted.
    s.proxy.clear("lost");
    let out = s.rotate(&["rotate", "--json"]).await;
    assert_eq!(outcome(&out), "fresh", "{b}: {out}");
    assert_eq!(s.env.calls(), 1, "{b}");
}

/// The write lands but every answer to it is cut mid-way (a connection reset after the
/// headers): whatever the run makes of it, the store holds one version, Deepvue was called
/// once, and the next run finds the token fresh.
pub async fn cut_write_answer(fx: &dyn Faulty) {
    let b = fx.backend();
    let s = Setup::new(fx, "").await;
    let probe = WriteProbe::of(fx);
    s.proxy.on(
        "cut",
        Arc::new(move |r| probe.is_write(r)),
        Action::CutAnswer,
        8,
    );
    let out = s.rotate(&["rotate", "--json"]).await;
    assert!(
        matches!(outcome(&out).as_str(), "rotated" | "failed"),
        "{b}: {out}"
    );
    assert!(s.proxy.count("cut") >= 1, "{b}: the answer was cut");
    assert_eq!(s.env.calls(), 1, "{b}: minted once");
    assert_eq!(fx.versions(&s.store).await, 1, "{b}: one version: {out}");
    s.proxy.clear("cut");
    let out = s.rotate(&["rotate", "--json"]).await;
    assert_eq!(
        outcome(&out),
        "fresh",
        "{b}: the landed token stands: {out}"
    );
    assert_eq!(s.env.calls(), 1, "{b}: nothing minted again");
    assert_eq!(fx.versions(&s.store).await, 1, "{b}");
    assert!(current_token(&s).await.starts_with("simtok_"), "{b}");
}

/// Every write answered "throttled" for a while: the client's attempts are bounded, nothing is
/// written twice, and the token is rotated once the storm is over.
pub async fn throttling_storm(fx: &dyn Faulty) {
    let b = fx.backend();
    let s = Setup::new(fx, "").await;
    let probe = WriteProbe::of(fx);
    s.proxy.on(
        "throttled",
        Arc::new(move |r| probe.is_write(r)),
        fx.throttled(),
        1000,
    );
    let out = s.rotate(&["rotate", "--json"]).await;
    assert_eq!(
        out.code, 1,
        "{b}: a throttled store is a transient failure: {out}"
    );
    assert_eq!(outcome(&out), "failed", "{b}");
    let attempts = s.proxy.count("write");
    assert!(
        (1..=6).contains(&attempts),
        "{b}: bounded attempts at the write, got {attempts}"
    );
    assert_eq!(fx.versions(&s.store).await, 0, "{b}: nothing written");
    assert_eq!(
        s.env.calls(),
        1,
        "{b}: minted once, never again for the same run"
    );
    s.proxy.clear("throttled");
    let out = s.rotate(&["rotate", "--json"]).await;
    assert_eq!(outcome(&out), "rotated", "{b}: {out}");
    assert_eq!(fx.versions(&s.store).await, 1, "{b}: one version");
}

/// Six runners, each write held at the proxy until all six have decided and sent theirs, then
/// released at once: one version, and every runner exits 0.
pub async fn conflict_storm(fx: &dyn Faulty) {
    let b = fx.backend();
    let s = Setup::new(fx, "").await;
    let gate = Gate::new();
    let probe = WriteProbe::of(fx);
    s.proxy.on(
        "held",
        Arc::new(move |r| probe.is_write(r)),
        Action::HoldThenForward(gate.clone()),
        1000,
    );
    let runs: Vec<_> = (0..6)
        .map(|_| tokio::spawn(run(s.command(&["rotate", "--json"]))))
        .collect();
    // Runners behind a lease (GCP) stop before writing; the others all reach the write.
    let writers = if fx.has_leases() { 1 } else { 6 };
    s.proxy.until("write", writers).await;
    gate.open();
    let mut rotated = 0;
    for r in runs {
        let out = r.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.code, 0, "{b}: {out}");
        if outcome(&out) == "rotated" {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1, "{b}: one runner rotated");
    assert_eq!(fx.versions(&s.store).await, 1, "{b}: one version");
}

/// Where a runner is killed.
#[derive(Clone, Copy, Debug)]
pub enum CrashPoint {
    /// Minted; its version write held before it reaches the store.
    AfterAuthorizeBeforeWrite,
    /// The write landed; its answer held.
    AfterWriteBeforeState,
    /// Its run-state write held (the run failed and alerts).
    DuringState,
}

/// Kill the runner at `point` and look at the store afterwards.
pub async fn crash_at(fx: &dyn Faulty, point: CrashPoint) {
    let b = fx.backend();
    let env_alerts = if matches!(point, CrashPoint::DuringState) {
        // A sink makes a failing run record state (a webhook nobody listens to: its delivery
        // fails, which is recorded too).
        "[[alerts]]\nkind = \"webhook\"\nurl = \"https://127.0.0.1:9/hook\"\n\n"
    } else {
        ""
    };
    let s = Setup::new(fx, env_alerts).await;
    // A token to start from.
    let out = s.rotate(&["rotate"]).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    let before = current_token(&s).await;
    let versions = fx.versions(&s.store).await;
    let gate = Gate::new();
    let probe = WriteProbe::of(fx);
    let (name, action): (&'static str, _) = match point {
        CrashPoint::AfterAuthorizeBeforeWrite => (
            "write",
            (
                Arc::new(move |r: &Seen| probe.is_write(r)) as Matcher,
                Action::HoldThenForward(gate.clone()),
            ),
        ),
        CrashPoint::AfterWriteBeforeState => (
            "write",
            (
                Arc::new(move |r: &Seen| probe.is_write(r)) as Matcher,
                Action::ForwardThenHold(gate.clone()),
            ),
        ),
        CrashPoint::DuringState => {
            s.env
                .sim
                .set_behavior(crate::support::allow_only("203.0.113.0/24"));
            (
                "state",
                (
                    Arc::new(move |r: &Seen| probe.is_state_write(r)) as Matcher,
                    Action::HoldThenForward(gate.clone()),
                ),
            )
        }
    };
    s.proxy.on("crash", action.0, action.1, 1);
    if name == "state" {
        let probe = WriteProbe::of(fx);
        s.proxy
            .count_as("state", Arc::new(move |r| probe.is_state_write(r)));
    }
    let seen = s.proxy.count(name);
    let mut child = s
        .command(&["rotate", "--force"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    s.proxy.until(name, seen + 1).await;
    // Killed only once the request is held: after the upstream answered for ForwardThenHold
    // (the request's arrival alone would let the kill cut the forward short).
    gate.until_held().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    // The held request goes nowhere (its client is gone); forward it anyway, as a network
    // would, and look at the store.
    gate.open();
    s.env
        .sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());
    let after = current_token(&s).await;
    let now = fx.versions(&s.store).await;
    match point {
        CrashPoint::AfterAuthorizeBeforeWrite | CrashPoint::DuringState => {
            assert!(
                now <= versions + 1,
                "{b} {point:?}: at most one new version"
            );
        }
        CrashPoint::AfterWriteBeforeState => {
            assert_eq!(now, versions + 1, "{b} {point:?}: the write had landed");
            assert_ne!(after, before, "{b} {point:?}");
        }
    }
    // The next run: whatever landed is a valid token; it rotates only if nothing did.
    let out = s.rotate(&["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{b} {point:?}: {out}");
    let o = outcome(&out);
    match point {
        CrashPoint::AfterWriteBeforeState => {
            assert_eq!(o, "fresh", "{b} {point:?}: the landed token stands: {out}")
        }
        _ => assert!(
            matches!(o.as_str(), "fresh" | "rotated"),
            "{b} {point:?}: {out}"
        ),
    }
    let _ = current_token(&s).await;
    assert!(
        fx.versions(&s.store).await <= versions + 2,
        "{b} {point:?}: nothing written twice"
    );
}

/// One test per fault for a backend; `$fixture` gives a started `Faulty` fixture.
macro_rules! matrix {
    ($name:ident, $fixture:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn a_lost_write_answer_leaves_one_version_and_one_mint() {
                lost_write_answer(&$fixture).await;
            }
            #[tokio::test]
            async fn a_write_answer_cut_by_a_connection_reset_leaves_one_version() {
                cut_write_answer(&$fixture).await;
            }
            #[tokio::test]
            async fn a_throttling_storm_is_bounded_and_writes_nothing_twice() {
                throttling_storm(&$fixture).await;
            }
            #[tokio::test]
            async fn a_conflict_storm_of_six_runners_leaves_one_version() {
                conflict_storm(&$fixture).await;
            }
            #[tokio::test]
            async fn killed_after_authorize_before_write() {
                crash_at(&$fixture, CrashPoint::AfterAuthorizeBeforeWrite).await;
            }
            #[tokio::test]
            async fn killed_after_write_before_state() {
                crash_at(&$fixture, CrashPoint::AfterWriteBeforeState).await;
            }
            #[tokio::test]
            async fn killed_during_the_state_write() {
                crash_at(&$fixture, CrashPoint::DuringState).await;
            }
            #[tokio::test]
            async fn the_agent_serves_from_cache_coalesces_refreshes_and_survives_an_outage() {
                crate::agent::serves_from_cache_via_proxy(&$fixture).await;
            }
            #[tokio::test]
            async fn the_agent_reads_the_store_again_when_the_token_reaches_renew_before() {
                crate::agent::rereads_when_the_token_reaches_renew_before(&$fixture).await;
            }
        }
    };
}

matrix!(aws, crate::aws::AwsFixture::provisioned().await);
matrix!(vault, crate::vault::VaultFixture::start().await);
matrix!(gcp, crate::gcp::GcpFixture::fake().await);
matrix!(kubernetes, crate::kubernetes::KubeFixture::fake().await);

/// The file store has no network to put a proxy in: its fault is the lock holder killed
/// (SIGKILL) mid-rotation, while Deepvue holds its authorize answer. The kernel drops the dead
/// holder's flock; the next run rotates at once, leaving one valid version and nothing
/// half-written.
#[tokio::test]
async fn file_a_lock_holder_killed_mid_rotation_leaves_the_next_run_free_to_rotate() {
    use secrecy::ExposeSecret;
    let env = Env::with(deepvue_rotator::simulator::Behavior {
        latency_ms: 30_000,
        ..Default::default()
    })
    .await;
    let cfg = env.config();
    let mut holder = env
        .command(&cfg, &["rotate"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // The event: its authorize call reached Deepvue (it holds the lock by then).
    let started = std::time::Instant::now();
    while env.calls() < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the holder never called Deepvue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = holder.start_kill();
    let _ = holder.wait().await;
    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());
    assert!(env.current("prod").await.is_none(), "nothing was written");
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(outcome(&out), "rotated", "{out}");
    assert_eq!(env.current_version("prod").await.as_deref(), Some("1"));
    let stored = env.current("prod").await.and_then(|s| s.document.ok());
    assert!(
        stored.is_some_and(|d| d.access_token.expose_secret().starts_with("simtok_")),
        "a valid token"
    );
}
