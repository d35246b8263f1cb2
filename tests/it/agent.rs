//! `agent`: the local token endpoint, run as the real binary.
//!
//! One scenario runs on every backend (the file store here; AWS on moto, Vault on OpenBao, GCP
//! and Kubernetes on their fakes through the fault proxy, which counts every store request):
//! the caller token is required and a proxied request refused, a cache hit makes no store
//! request, 100 concurrent refreshes make one store read, a store outage serves the cached
//! token, a current version that is unusable leaves the previous one served as stale (by a
//! running agent from memory, by a starting one from the store), and no log shows a secret.
//! The rest is the file store's: its change event reaching a running agent, Unix sockets and
//! their modes, 503 with nothing valid,
//! `mint = true`, an application's 401 → refresh against a simulator that revokes earlier
//! tokens and one that does not, startup refusals, and trace-level logs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deepvue_rotator::core::store::{Version, WriteMode};
use deepvue_rotator::simulator::Behavior;
use serde_json::Value;

use crate::faults::{FaultProxy, Faulty};
use crate::scenarios::{Fixture, Store, doc_left, parts, valid_credentials};
use crate::support::{CLIENT_SECRET, Env, assert_secret_free, free_port, run};

/// The caller token the tests give the agent.
pub const AGENT_TOKEN: &str = "agent-caller-SENTINEL-0f3b9c1d2e";
const HEADER: &str = "x-deepvue-rotator-token";
/// The agent's `refresh_interval` in these tests, and a wait just past it.
const INTERVAL: &str = "1s";
const PAST_INTERVAL: Duration = Duration::from_millis(1150);

/// An answer from the agent.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn token(&self) -> String {
        self.json()["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Poll `$cond` (an expression that may `.await`) every 20 ms until it holds; fail after 30 s
/// with the message (format arguments) and the agent's log.
macro_rules! eventually {
    ($agent:expr, $cond:expr, $($what:tt)+) => {{
        let started = Instant::now();
        loop {
            if $cond {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{}:\n{}",
                format!($($what)+),
                $agent.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

/// A running agent.
pub struct Agent {
    child: tokio::process::Child,
    pub url: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Agent {
    /// Start `cmd` (an `agent` command) listening on `port`, logging to `log`; wait until it
    /// answers `/healthz` (or fail with its log when it exits).
    pub async fn start(mut cmd: tokio::process::Command, port: u16, log: &Path) -> Agent {
        deepvue_rotator::support::tls::install_default_provider();
        let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{e}"));
        cmd.env("DEEPVUE_ROTATOR_AGENT_TOKEN", AGENT_TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn agent: {e}"));
        let mut agent = Agent {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("the agent exited ({status}):\n{}", agent.log());
            }
            if agent.get("/healthz", &[]).await.status == 200 {
                return agent;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the agent never answered /healthz:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn send(&self, req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Answer {
        let mut req = req;
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.send().await {
            Ok(r) => Answer {
                status: r.status().as_u16(),
                headers: r.headers().clone(),
                body: r.text().await.unwrap_or_default(),
            },
            Err(_) => Answer {
                status: 0,
                headers: Default::default(),
                body: String::new(),
            },
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.url)), headers)
            .await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.url)), headers)
            .await
    }

    /// `GET /v1/tokens/prod` with the caller token.
    pub async fn token(&self) -> Answer {
        self.get("/v1/tokens/prod", &[(HEADER, AGENT_TOKEN)]).await
    }

    /// `POST /v1/tokens/prod/refresh` with the caller token.
    pub async fn refresh(&self) -> Answer {
        self.post("/v1/tokens/prod/refresh", &[(HEADER, AGENT_TOKEN)])
            .await
    }

    /// The value of one series in `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics", &[]).await.body;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// SIGTERM, and the exit code.
    pub async fn stop(mut self) -> (i32, String) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the agent did not stop:\n{}", self.log()))
            .unwrap_or_else(|e| panic!("{e}"));
        (status.code().unwrap_or(-1), self.log())
    }
}

/// How a scenario makes the store unreachable for a while.
pub enum Outage<'a> {
    /// Every request through the fault proxy answers 503.
    Proxy(&'a FaultProxy),
    /// The file store's directory is swapped for a link (which it never follows).
    FileStore(PathBuf),
}

impl Outage<'_> {
    fn begin(&self) {
        match self {
            Outage::Proxy(p) => p.on(
                "outage",
                Arc::new(|_| true),
                crate::faults::Action::Fail {
                    status: 503,
                    body: "unavailable".into(),
                    headers: vec![],
                },
                usize::MAX,
            ),
            Outage::FileStore(dir) => {
                let away = dir.with_extension("away");
                std::fs::rename(dir, &away).unwrap_or_else(|e| panic!("{e}"));
                std::os::unix::fs::symlink(&away, dir).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    fn end(&self) {
        match self {
            Outage::Proxy(p) => p.clear("outage"),
            Outage::FileStore(dir) => {
                std::fs::remove_file(dir).unwrap_or_else(|e| panic!("{e}"));
                std::fs::rename(dir.with_extension("away"), dir).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

/// `[agent]` on `port` with a short refresh interval, plus `extra` lines.
fn agent_section(port: u16, extra: &str) -> String {
    format!("[agent]\nlisten = \"127.0.0.1:{port}\"\nrefresh_interval = \"{INTERVAL}\"\n{extra}\n")
}

/// The scenario every backend runs: `sections` reaches the backend (directly, or through
/// `proxy`, which then counts every store request).
pub async fn serves_from_cache(
    fx: &dyn Fixture,
    sections: &str,
    proxy: Option<&FaultProxy>,
    outage: Outage<'_>,
    store: Store,
) {
    let b = fx.backend();
    let env = Env::new().await;
    let creds = fx.credentials(Some(&valid_credentials())).await;
    let port = free_port();
    let cfg = env.write_config(&format!(
        "{}{sections}{}[[tokens]]\nname = \"prod\"\ncredentials = {}\nstore = {}\n",
        env.deepvue_section(""),
        agent_section(port, ""),
        creds.toml,
        store.toml
    ));
    let requests = || proxy.map_or(0, |p| p.count("all"));
    if let Some(p) = proxy {
        p.count_as("all", Arc::new(|_| true));
    }
    let out = run(fx.command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    let p = parts(fx, &store);
    let v1 = current_version(&p, b).await;
    let t1 = crate::scenarios::current_token(fx, &store).await;

    // Stores that report changes: the file store (inotify) and Kubernetes (a watch).
    let reports_changes = matches!(b, "file" | "kubernetes");
    if let Some(p) = proxy {
        p.count_as("watch", Arc::new(|r| r.path.contains("watch=1")));
    }
    let before = requests();
    let agent = Agent::start(
        fx.command(&env, &cfg, &["agent"]),
        port,
        &env.path("agent-a.log"),
    )
    .await;
    if let Some(p) = proxy.filter(|_| b == "kubernetes") {
        // The watch is open (a request that lasts minutes) before calls are counted.
        p.until("watch", 1).await;
    }
    let startup_read = requests() - before;
    assert_eq!(agent.get("/readyz", &[]).await.status, 200, "{b}");

    // Callers: the token is required, compared in full; a proxied request is refused; no
    // refusal says anything about the token.
    let path = "/v1/tokens/prod";
    let missing = agent.get(path, &[]).await;
    assert_eq!(missing.status, 401, "{b}: {missing:?}");
    let wrong = agent
        .get(path, &[(HEADER, "agent-caller-SENTINEL-0f3b9c1d2")])
        .await;
    assert_eq!(wrong.status, 403, "{b}: {wrong:?}");
    for h in ["x-forwarded-for", "forwarded"] {
        let proxied = agent
            .get(path, &[(HEADER, AGENT_TOKEN), (h, "for=10.1.2.3")])
            .await;
        assert_eq!(proxied.status, 403, "{b}: {h}: {proxied:?}");
        assert!(!proxied.body.contains(&t1), "{b}");
    }
    let unknown = agent.get("/v1/tokens/nope", &[]).await;
    assert_eq!(
        unknown.status, 401,
        "{b}: a token's existence is not told before the check"
    );
    let unknown = agent
        .get(
            "/v1/tokens/nope",
            &[(HEADER, "agent-caller-SENTINEL-0f3b9c1d2")],
        )
        .await;
    assert_eq!(unknown.status, 403, "{b}: nor to a wrong caller token");
    let unknown = agent.get("/v1/tokens/nope", &[(HEADER, AGENT_TOKEN)]).await;
    assert_eq!(unknown.status, 404, "{b}: only then is an unknown name 404");
    for refused in [&missing, &wrong] {
        assert!(
            !refused.body.contains(&t1) && !refused.body.contains("prod"),
            "{b}"
        );
    }
    assert_eq!(
        agent
            .metric("deepvue_rotator_agent_refused_total{reason=\"forwarded\"}")
            .await,
        2.0,
        "{b}"
    );

    // Cache hits: no store request at all.
    let hits_before = requests();
    for _ in 0..20 {
        let a = agent.token().await;
        assert_eq!(a.status, 200, "{b}: {a:?}");
        assert_eq!(a.token(), t1, "{b}");
        let j = a.json();
        assert_eq!(j["version"], v1.0, "{b}");
        assert_eq!(j["stale"], false, "{b}");
        assert!(
            j.get("x_api_key").is_none(),
            "{b}: only with publish_api_key"
        );
        assert_eq!(a.header("x-deepvue-rotator-version"), v1.0, "{b}");
        assert_eq!(a.header("cache-control"), "no-store", "{b}");
    }
    let plain = agent
        .get("/v1/tokens/prod/access_token", &[(HEADER, AGENT_TOKEN)])
        .await;
    assert_eq!(
        (plain.status, plain.body.clone()),
        (200, format!("{t1}\n")),
        "{b}"
    );
    assert_eq!(
        requests() - hits_before,
        0,
        "{b}: a cache hit makes no store request"
    );
    let reads_ok = "deepvue_rotator_agent_store_reads_total{token=\"prod\",result=\"ok\"}";
    assert_eq!(
        agent.metric(reads_ok).await,
        1.0,
        "{b}: only the startup read"
    );
    assert_eq!(
        agent
            .metric("deepvue_rotator_agent_cache_hits_total{token=\"prod\"}")
            .await,
        21.0,
        "{b}"
    );
    // The exposition a scraper gets (no Accept) is the text format promtool accepts.
    crate::metrics::promtool_check(&agent.get("/metrics", &[]).await.body);

    // The rotator writes a new version. A store that reports changes (the file store) has
    // the agent read it at once; any other is read at renew_before or on a refresh, and
    // until then the cached version is served.
    let out = run(fx.command(&env, &cfg, &["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    let v2 = current_version(&p, b).await;
    let t2 = crate::scenarios::current_token(fx, &store).await;
    if reports_changes {
        eventually!(
            agent,
            agent.token().await.token() == t2,
            "{b}: no change event"
        );
    } else {
        assert_eq!(agent.token().await.token(), t1, "{b}: served from memory");
    }

    // 100 concurrent refreshes: one store read, every caller gets its result.
    tokio::time::sleep(PAST_INTERVAL).await;
    let reads_before = agent.metric(reads_ok).await;
    let refresh_before = requests();
    let answers = futures::future::join_all((0..100).map(|_| agent.refresh())).await;
    let refresh_requests = requests() - refresh_before;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "{b}: {:?}",
        answers.iter().find(|a| a.status != 200)
    );
    assert!(
        answers.iter().all(|a| a.token() == t2),
        "{b}: every caller gets the new token"
    );
    let read = answers
        .iter()
        .filter(|a| a.json()["refreshed"] == true)
        .count();
    assert_eq!(
        read, 1,
        "{b}: one refresh read the store; the rest were coalesced"
    );
    assert_eq!(
        agent.metric(reads_ok).await,
        reads_before + 1.0,
        "{b}: one store read for 100 refreshes"
    );
    assert_eq!(
        agent
            .metric("deepvue_rotator_agent_refreshes_total{token=\"prod\",result=\"coalesced\"}")
            .await,
        99.0,
        "{b}"
    );
    if proxy.is_some() {
        assert!(
            refresh_requests >= 1 && refresh_requests <= startup_read,
            "{b}: 100 refreshes made {refresh_requests} store requests; one read at startup made {startup_read}"
        );
    }
    assert_eq!(
        agent.token().await.header("x-deepvue-rotator-version"),
        v2.0,
        "{b}"
    );

    // A store outage: the cached token is served until it expires.
    outage.begin();
    tokio::time::sleep(PAST_INTERVAL).await;
    let during = agent.refresh().await;
    outage.end();
    assert_eq!(during.status, 200, "{b}: {during:?}");
    assert_eq!(during.token(), t2, "{b}");
    assert_eq!(during.json()["refreshed"], true, "{b}: the read was tried");
    assert_eq!(
        agent
            .metric("deepvue_rotator_agent_store_reads_total{token=\"prod\",result=\"error\"}")
            .await,
        1.0,
        "{b}"
    );
    assert_eq!(
        agent.get("/readyz", &[]).await.status,
        200,
        "{b}: still serving"
    );

    // The current version turns unusable (expired): the previous one is served, marked stale.
    let v3 = p
        .tokens
        .write(
            &doc_left("tok-expired-SENTINEL", -1),
            WriteMode::Update {
                expected: &v2,
                lease: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{b}: write an expired version: {e}"));
    tokio::time::sleep(PAST_INTERVAL).await;
    let stale = agent.refresh().await;
    assert_eq!(stale.status, 200, "{b}: {stale:?}");
    assert_eq!(stale.token(), t2, "{b}: the previous version");
    assert_eq!(stale.json()["stale"], true, "{b}");
    assert!(
        stale.json()["stale_reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("version {v3} expired")),
        "{b}: {}",
        stale.body
    );
    assert_eq!(stale.header("x-deepvue-rotator-stale"), "true", "{b}");
    assert_eq!(
        agent
            .metric("deepvue_rotator_agent_stale{token=\"prod\"}")
            .await,
        1.0,
        "{b}"
    );
    assert!(
        agent.log().contains("serving the previous version"),
        "{b}: a WARN says so"
    );

    // A starting agent finds the previous version in the store.
    let port_b = free_port();
    let listen_b = format!("127.0.0.1:{port_b}");
    let fresh = Agent::start(
        fx.command(&env, &cfg, &["agent", "--listen", &listen_b]),
        port_b,
        &env.path("agent-b.log"),
    )
    .await;
    let from_store = fresh.token().await;
    assert_eq!(from_store.status, 200, "{b}: {from_store:?}");
    assert_eq!(from_store.token(), t2, "{b}: read_previous");
    assert_eq!(from_store.json()["version"], v2.0, "{b}");
    assert_eq!(from_store.json()["stale"], true, "{b}");
    let (code, log_b) = fresh.stop().await;
    assert_eq!(code, 0, "{b}: {log_b}");

    // The rotator replaces the expired version; the next read serves it, not stale.
    let out = run(fx.command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    let t4 = crate::scenarios::current_token(fx, &store).await;
    tokio::time::sleep(PAST_INTERVAL).await;
    let after = agent.refresh().await;
    assert_eq!(
        (after.token(), after.json()["stale"].clone()),
        (t4.clone(), Value::Bool(false)),
        "{b}"
    );

    let (code, log_a) = agent.stop().await;
    assert_eq!(code, 0, "{b}: {log_a}");
    for log in [&log_a, &log_b] {
        let secrets = [t1.as_str(), &t2, &t4, CLIENT_SECRET, AGENT_TOKEN];
        assert_secret_free(log, &secrets, &format!("{b}: the agent's log"));
    }
}

async fn current_version(p: &deepvue_rotator::core::parts::StoreParts, b: &str) -> Version {
    p.tokens
        .read_current()
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{b}: nothing stored"))
        .version
}

/// The scenario on a network backend, through the fault proxy.
pub async fn serves_from_cache_via_proxy(fx: &dyn Faulty) {
    let (upstream, ca) = fx.upstream();
    let proxy = FaultProxy::start(&upstream, ca.as_deref()).await;
    let store = fx.store().await;
    serves_from_cache(
        fx,
        &fx.sections_via(&proxy.url),
        Some(&proxy),
        Outage::Proxy(&proxy),
        store,
    )
    .await;
}

/// The cache follows the token: with no request, no write and no change event, the agent
/// reads the store again once the served token reaches `renew_before`; and while it waits for
/// the rotator's next version it keeps reading, so a version written then is served without
/// any application asking (on a store without change events, the only way it learns of it).
pub async fn rereads_when_the_token_reaches_renew_before(fx: &dyn Fixture) {
    let b = fx.backend();
    let env = Env::new().await;
    let store = fx.store().await;
    let creds = fx.credentials(Some(&valid_credentials())).await;
    let port = free_port();
    // A 24 h token renewed 3 s after it was issued.
    let cfg = env.write_config(&format!(
        "{}{}{}[[tokens]]\nname = \"prod\"\nrenew_before = \"23h59m57s\"\ncredentials = {}\nstore = {}\n",
        env.deepvue_section(""),
        fx.sections(),
        agent_section(port, ""),
        creds.toml,
        store.toml
    ));
    let out = run(fx.command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    let t1 = crate::scenarios::current_token(fx, &store).await;
    let agent = Agent::start(
        fx.command(&env, &cfg, &["agent"]),
        port,
        &env.path("agent-renew.log"),
    )
    .await;
    const READS: &str = "deepvue_rotator_agent_store_reads_total{token=\"prod\",result=\"ok\"}";
    let first = agent.token().await;
    assert_eq!(first.token(), t1, "{b}: {first:?}");
    let at_start = agent.metric(READS).await;
    assert!(at_start >= 1.0, "{b}: the agent read the store at start");
    // Nothing asks and nothing changes: the renewal time alone brings a read.
    eventually!(
        agent,
        agent.metric(READS).await > at_start,
        "{b}: no store read when the token reached renew_before"
    );
    let same = agent.token().await;
    assert_eq!(
        (same.token(), same.json()["stale"].clone()),
        (t1.clone(), Value::Bool(false)),
        "{b}: the same version, still valid, is served"
    );
    let age = agent
        .metric("deepvue_rotator_agent_token_age_seconds{token=\"prod\"}")
        .await;
    assert!(
        age >= 2.0,
        "{b}: the served token's age is its time since issue, past the renewal time: {age}"
    );
    // The rotator's next version, written now: served without a refresh or a request.
    let p = parts(fx, &store);
    let v1 = current_version(&p, b).await;
    p.tokens
        .write(
            &doc_left("tok-renewed-SENTINEL", 24),
            WriteMode::Update {
                expected: &v1,
                lease: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{b}: write the next version: {e}"));
    eventually!(
        agent,
        agent.token().await.token() == "tok-renewed-SENTINEL",
        "{b}: the next version was never read"
    );
    assert_eq!(
        agent
            .metric("deepvue_rotator_agent_refreshes_total{token=\"prod\",result=\"read\"}")
            .await,
        0.0,
        "{b}: no application refreshed"
    );
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{b}: {log}");
}

#[tokio::test]
async fn file_serves_from_cache_coalesces_refreshes_survives_an_outage_and_serves_the_previous_version()
 {
    let fx = crate::scenarios::FileFixture::start();
    let store = fx.store().await;
    let dir = PathBuf::from(&store.id);
    serves_from_cache(&fx, "", None, Outage::FileStore(dir), store).await;
}

/// A file-store config for the agent with `agent` as the `[agent]` table's lines.
fn file_config(env: &Env, agent: &str) -> PathBuf {
    env.write_config(&format!(
        "{}[agent]\nrefresh_interval = \"{INTERVAL}\"\n{agent}\n\n{}",
        env.deepvue_section(""),
        env.token_block("prod", "{ backend = \"env\" }")
    ))
}

/// One HTTP/1.1 request over a Unix socket: the status line and the body.
async fn unix_get(socket: &Path, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: agent\r\n{HEADER}: {AGENT_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = out.lines().next().unwrap_or_default().to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// Start an agent on a Unix socket (no TCP port to wait on: wait until it accepts).
async fn start_unix(env: &Env, cfg: &Path, socket: &Path) -> tokio::process::Child {
    let mut cmd = env.command(cfg, &["agent"]);
    cmd.env("DEEPVUE_ROTATOR_AGENT_TOKEN", AGENT_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    // Connectable, not only present: a dead agent's socket may be there before ours.
    while tokio::net::UnixStream::connect(socket).await.is_err() {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("the agent exited: {s}");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

async fn term(child: &mut tokio::process::Child) -> i32 {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap_or_else(|_| panic!("the agent did not stop"))
        .map(|s| s.code().unwrap_or(-1))
        .unwrap_or(-1)
}

#[tokio::test]
async fn a_unix_socket_has_the_configured_mode_and_group_and_goes_with_the_agent() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new().await;
    let plain = env.config();
    assert_eq!(env.run(&plain, &["rotate"]).await.code, 0);
    let token = env.sim.issued_tokens().last().cloned().unwrap_or_default();
    let sockets = env.path("run");
    std::fs::create_dir(&sockets).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let gid = rustix::process::getegid().as_raw();
    for (mode, extra) in [
        (0o660, format!("socket_group = \"{gid}\"\n")),
        (0o600, "socket_mode = \"0600\"\n".to_string()),
    ] {
        let socket = sockets.join(format!("agent-{mode:o}.sock"));
        let cfg = file_config(
            &env,
            &format!("listen = \"unix:{}\"\n{extra}", socket.display()),
        );
        let mut child = start_unix(&env, &cfg, &socket).await;
        let meta = std::fs::symlink_metadata(&socket).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.mode() & 0o777, mode, "the socket's mode");
        assert_eq!(meta.gid(), gid);
        let (status, body) = unix_get(&socket, "/v1/tokens/prod").await;
        assert!(status.contains(" 200 "), "{status} {body}");
        let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(doc["access_token"], token);
        assert_eq!(term(&mut child).await, 0);
        assert!(!socket.exists(), "the agent removes its socket");
    }

    // A socket an agent still listens on is never taken over; a dead agent's is.
    let live = sockets.join("live.sock");
    let cfg = file_config(&env, &format!("listen = \"unix:{}\"\n", live.display()));
    let mut first = start_unix(&env, &cfg, &live).await;
    let mut cmd = env.command(&cfg, &["agent"]);
    cmd.env("DEEPVUE_ROTATOR_AGENT_TOKEN", AGENT_TOKEN);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("another agent listens on it"), "{out}");
    let (status, _) = unix_get(&live, "/v1/tokens/prod").await;
    assert!(
        status.contains(" 200 "),
        "the first agent still serves: {status}"
    );
    if let Some(pid) = first
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let _ = first.wait().await;
    assert!(live.exists(), "a killed agent leaves its socket");
    let mut second = start_unix(&env, &cfg, &live).await;
    let (status, _) = unix_get(&live, "/v1/tokens/prod").await;
    assert!(
        status.contains(" 200 "),
        "a stale socket is replaced: {status}"
    );
    assert_eq!(term(&mut second).await, 0);

    // Only a directory of this user's (or root's) that nobody else may write.
    for (mode, owner) in [(0o1777, None), (0o775, None), (0o755, Some(65534))] {
        let dir = env.path(&format!("sockdir-{mode:o}-{owner:?}"));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"));
        // Another user's directory: only root can make one (the other cases run for anyone).
        if let Some(uid) = owner
            && rustix::fs::chown(&dir, Some(rustix::fs::Uid::from_raw(uid)), None).is_err()
        {
            continue;
        }
        let cfg = file_config(
            &env,
            &format!("listen = \"unix:{}\"\n", dir.join("a.sock").display()),
        );
        let mut cmd = env.command(&cfg, &["agent"]);
        cmd.env("DEEPVUE_ROTATOR_AGENT_TOKEN", AGENT_TOKEN);
        let out = run(cmd).await;
        assert_eq!(out.code, 2, "{mode:o} {owner:?}: {out}");
        assert!(
            out.stderr.contains("writable by its group or others")
                || out.stderr.contains("not to this user or root"),
            "{out}"
        );
    }

    // A path that is not this user's socket is never replaced.
    let taken = sockets.join("taken.sock");
    std::fs::write(&taken, "mine").unwrap_or_else(|e| panic!("{e}"));
    let cfg = file_config(&env, &format!("listen = \"unix:{}\"\n", taken.display()));
    let mut cmd = env.command(&cfg, &["agent"]);
    cmd.env("DEEPVUE_ROTATOR_AGENT_TOKEN", AGENT_TOKEN);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("refusing to replace it"), "{out}");
    assert_eq!(std::fs::read_to_string(&taken).unwrap_or_default(), "mine");
}

#[tokio::test]
async fn with_nothing_valid_requests_get_503_and_the_reason_until_a_token_is_written() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = file_config(&env, &format!("listen = \"127.0.0.1:{port}\""));
    let agent = Agent::start(env.command(&cfg, &["agent"]), port, &env.path("a.log")).await;
    let a = agent.token().await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("holds no token yet"),
        "{a:?}"
    );
    let ready = agent.get("/readyz", &[]).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["tokens"][0]["token"], "prod", "{ready:?}");
    assert_eq!(
        agent
            .metric("deepvue_rotator_agent_unavailable_total{token=\"prod\"}")
            .await,
        1.0
    );
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    tokio::time::sleep(PAST_INTERVAL).await;
    let a = agent.token().await;
    assert_eq!(
        a.status, 200,
        "a miss reads the store (once per interval): {a:?}"
    );
    assert_eq!(agent.get("/readyz", &[]).await.status, 200);
    assert_eq!(env.calls(), 1, "the agent never mints by default");
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test]
async fn with_mint_the_agent_rotates_a_due_token_through_the_engine() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = file_config(&env, &format!("listen = \"127.0.0.1:{port}\"\nmint = true"));
    let agent = Agent::start(env.command(&cfg, &["agent"]), port, &env.path("a.log")).await;
    eventually!(
        agent,
        agent.get("/readyz", &[]).await.status == 200,
        "never ready"
    );
    let a = agent.token().await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(Some(a.token()), env.sim.issued_tokens().last().cloned());
    assert_eq!(env.calls(), 1, "one mint");
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// An application that gets a 401 refreshes once through the agent and is accepted with the
/// new token — whether Deepvue revokes earlier tokens on a new mint or lets them live.
#[tokio::test]
async fn an_application_that_gets_a_401_refreshes_once_and_is_accepted_again() {
    for revoke in [true, false] {
        let env = Env::with(Behavior {
            revoke_on_mint: revoke,
            ..Default::default()
        })
        .await;
        let port = free_port();
        let cfg = file_config(&env, &format!("listen = \"127.0.0.1:{port}\""));
        assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
        let agent = Agent::start(env.command(&cfg, &["agent"]), port, &env.path("a.log")).await;
        let first = agent.token().await.token();
        assert_eq!(env.ping(&first).await, 200, "revoke={revoke}");
        assert_eq!(env.run(&cfg, &["rotate", "--force"]).await.code, 0);
        let status = env.ping(&first).await;
        assert_eq!(status, if revoke { 401 } else { 200 }, "revoke={revoke}");
        // The application's 401 path: one refresh, then the call again.
        tokio::time::sleep(PAST_INTERVAL).await;
        let refreshed = agent.refresh().await.token();
        assert_ne!(refreshed, first, "revoke={revoke}");
        assert_eq!(env.ping(&refreshed).await, 200, "revoke={revoke}");
        let (code, log) = agent.stop().await;
        assert_eq!(code, 0, "{log}");
    }
}

/// A current version that cannot be read (not only one that expired) is not served: the
/// previous one is, marked stale with the reason; exec gives the child that one too.
#[tokio::test]
async fn a_malformed_current_version_leaves_the_previous_one_served_as_stale() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = file_config(&env, &format!("listen = \"127.0.0.1:{port}\""));
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    assert_eq!(env.run(&cfg, &["rotate", "--force"]).await.code, 0);
    let t1 = env.sim.issued_tokens()[0].clone();
    std::fs::write(
        env.store_dir("prod").join("versions/0000000002.json"),
        "{\"access_token\": \"x\", \"expiry\": \"not a time\"}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let agent = Agent::start(env.command(&cfg, &["agent"]), port, &env.path("agent.log")).await;
    let got = agent.token().await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.token(), t1, "the previous version");
    assert_eq!(got.json()["stale"], true);
    assert!(
        got.json()["stale_reason"]
            .as_str()
            .is_some_and(|r| r.contains("version 2 is unusable")),
        "{}",
        got.body
    );
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");

    let seen = env.path("seen");
    let mut cmd = env.command(
        &cfg,
        &[
            "exec",
            "--token",
            "prod",
            "--",
            "/bin/sh",
            "-c",
            &format!("echo \"$DEEPVUE_ACCESS_TOKEN\" > {}", seen.display()),
        ],
    );
    cmd.env("RUST_LOG", "warn");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap_or_default().trim(),
        t1,
        "exec: {out}"
    );
    assert!(out.stderr.contains("version 2 is unusable"), "{out}");
}

/// A store outage serves the cached token until its expiry, and not a moment past it: then
/// requests get 503 with the reason, until the store is back with a new version.
#[tokio::test]
async fn a_store_outage_serves_the_cache_until_the_token_expires_then_503() {
    use deepvue_rotator::core::store::TokenStore as _;
    let env = Env::new().await;
    let port = free_port();
    let cfg = file_config(&env, &format!("listen = \"127.0.0.1:{port}\""));
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    // A version that expires in three seconds (Deepvue's never would; the store takes it).
    let mut short = doc_left("tok-short-SENTINEL", 1);
    // Whole seconds, as the document stores times.
    short.expiry =
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now() + chrono::Duration::seconds(3), 0);
    let v1 = Version(env.current_version("prod").await.unwrap_or_default());
    env.store("prod")
        .write(
            &short,
            WriteMode::Update {
                expected: &v1,
                lease: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("write a short-lived version: {e}"));
    let t1 = "tok-short-SENTINEL".to_string();
    let agent = Agent::start(env.command(&cfg, &["agent"]), port, &env.path("agent.log")).await;
    let outage = Outage::FileStore(env.store_dir("prod"));
    outage.begin();
    let during = agent.refresh().await;
    assert_eq!(
        (during.status, during.token()),
        (200, t1.clone()),
        "the cache, while the token is valid: {during:?}"
    );
    let started = Instant::now();
    let expired = loop {
        let a = agent.token().await;
        if a.status != 200 {
            break a;
        }
        assert_eq!(a.token(), t1);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still served long after its expiry:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(expired.status, 503, "{expired:?}");
    assert!(
        chrono::Utc::now() >= short.expiry,
        "503 only once the cached token has expired"
    );
    assert!(
        expired.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("token `prod`")),
        "{}",
        expired.body
    );
    assert!(!expired.body.contains(&t1), "{}", expired.body);
    assert!(
        expired.body.contains("is a symbolic link; deepvue-rotator never follows links it did not make. Point store.path"),
        "the store's reason, in one readable sentence: {}",
        expired.body
    );
    outage.end();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let t2 = env.sim.issued_tokens().last().cloned().unwrap_or_default();
    tokio::time::sleep(PAST_INTERVAL).await;
    let back = agent.refresh().await;
    assert_eq!((back.status, back.token()), (200, t2), "{back:?}");
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// The caller token may come from a file (a mounted secret) instead of the environment: the
/// file's token is the one that counts, and a file others may read is refused.
#[tokio::test]
async fn the_caller_token_may_come_from_an_owner_only_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new().await;
    let port = free_port();
    let secret = env.path("agent-token");
    let from_file = "file-caller-token-6c1f0e9a2b";
    std::fs::write(&secret, format!("{from_file}\n")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    let cfg = file_config(
        &env,
        &format!(
            "listen = \"127.0.0.1:{port}\"\nauth_token = {{ file = \"{}\" }}",
            secret.display()
        ),
    );
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    // The harness also sets DEEPVUE_ROTATOR_AGENT_TOKEN: the configured file wins.
    let agent = Agent::start(env.command(&cfg, &["agent"]), port, &env.path("agent.log")).await;
    let path = "/v1/tokens/prod";
    assert_eq!(agent.get(path, &[(HEADER, from_file)]).await.status, 200);
    assert_eq!(agent.get(path, &[(HEADER, AGENT_TOKEN)]).await.status, 403);
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(from_file), "{log}");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run(env.command(&cfg, &["agent"])).await;
    assert_eq!(
        out.code, 2,
        "a caller token others may read is refused: {out}"
    );
    assert!(out.stderr.contains(&secret.display().to_string()), "{out}");
    assert!(!out.all().contains(from_file), "{out}");
}

#[tokio::test]
async fn a_weak_caller_token_or_a_remote_address_without_allow_remote_stops_the_agent() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = file_config(&env, &format!("listen = \"127.0.0.1:{port}\""));
    let mut cmd = env.command(&cfg, &["agent"]);
    cmd.env("DEEPVUE_ROTATOR_AGENT_TOKEN", "short");
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("at least 16"), "{out}");
    assert!(
        !out.all().contains("short\n") && !out.stderr.contains("`short`"),
        "{out}"
    );

    let mut cmd = env.command(&cfg, &["agent"]);
    cmd.env_remove("DEEPVUE_ROTATOR_AGENT_TOKEN");
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("DEEPVUE_ROTATOR_AGENT_TOKEN"), "{out}");

    let remote = file_config(&env, "listen = \"0.0.0.0:2780\"");
    let mut cmd = env.command(&remote, &["agent"]);
    cmd.env("DEEPVUE_ROTATOR_AGENT_TOKEN", AGENT_TOKEN);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("allow_remote"), "{out}");
}

#[tokio::test]
async fn trace_logs_of_the_agent_never_show_a_secret() {
    let env = Env::new().await;
    let port = free_port();
    // With the client secret published beside the token: the agent hands it to callers as
    // `x_api_key`, and never logs it.
    let cfg = env.write_config(&format!(
        "{}[agent]\nlisten = \"127.0.0.1:{port}\"\nrefresh_interval = \"{INTERVAL}\"\n\n{}publish_api_key = true\n",
        env.deepvue_section(""),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let mut cmd = env.command(&cfg, &["agent"]);
    cmd.env("RUST_LOG", "trace");
    let agent = Agent::start(cmd, port, &env.path("a.log")).await;
    let a = agent.token().await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json()["x_api_key"],
        CLIENT_SECRET,
        "publish_api_key: the agent serves it"
    );
    let _ = agent
        .get("/v1/tokens/prod", &[(HEADER, "wrong-wrong-wrong-wrong")])
        .await;
    let _ = agent.refresh().await;
    assert_eq!(env.run(&cfg, &["rotate", "--force"]).await.code, 0);
    tokio::time::sleep(PAST_INTERVAL).await;
    assert_eq!(agent.refresh().await.status, 200);
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("\"level\":\"TRACE\"") || log.contains("\"level\":\"DEBUG\""),
        "trace logging is on:\n{log}"
    );
    let mut secrets = env.sim.issued_tokens();
    secrets.push(CLIENT_SECRET.to_string());
    secrets.push(AGENT_TOKEN.to_string());
    assert_secret_free(&log, &secrets, "the trace log");
}

/// `exec --agent`: the child gets the token the agent serves (no config, no store access in
/// exec), and a new version the agent picks up restarts it with the new token.
#[tokio::test]
async fn exec_takes_the_token_from_a_running_agent_and_restarts_on_a_new_version() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = file_config(
        &env,
        &format!("listen = \"127.0.0.1:{port}\"\nmax_age = \"1s\""),
    );
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let agent = Agent::start(env.command(&cfg, &["agent"]), port, &env.path("a.log")).await;
    let seen = env.path("seen");
    let script = format!(
        "echo \"$DEEPVUE_ACCESS_TOKEN ${{DEEPVUE_ROTATOR_AGENT_TOKEN:-hidden}}\" >> {}; while :; do sleep 0.05; done",
        seen.display()
    );
    let exec_with = |caller: &str| {
        let mut cmd = tokio::process::Command::new(crate::support::BIN);
        cmd.args([
            "exec", "--agent", &agent.url, "--token", "prod", "--poll", "200ms",
        ])
        .args(["--", "/bin/sh", "-c", &script])
        .env_remove("DEEPVUE_ROTATOR_CONFIG")
        .env("DEEPVUE_ROTATOR_AGENT_TOKEN", caller)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        cmd
    };
    // A wrong caller token: exec says so and starts nothing.
    let out = run(exec_with("agent-caller-SENTINEL-wrong-one")).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("answered HTTP 403"), "{out}");
    assert!(!seen.exists());

    let mut cmd = exec_with(AGENT_TOKEN);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut exec = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    let lines = || {
        std::fs::read_to_string(&seen)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let wait = |n: usize| {
        let lines = &lines;
        async move {
            let started = Instant::now();
            while lines().len() < n {
                assert!(started.elapsed() < Duration::from_secs(30), "{:?}", lines());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait(1).await;
    let tokens = env.sim.issued_tokens();
    assert_eq!(
        lines()[0],
        format!("{} hidden", tokens[0]),
        "the child never gets the caller token"
    );
    assert_eq!(env.run(&cfg, &["rotate", "--force"]).await.code, 0);
    wait(2).await;
    let tokens = env.sim.issued_tokens();
    assert_eq!(lines()[1], format!("{} hidden", tokens[1]));
    assert_eq!(term(&mut exec).await, 128 + 15);
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// The file store says when its current version changes (inotify): a running agent serves a
/// new version at once, with no refresh and long before `renew_before`.
#[tokio::test]
async fn a_file_store_write_reaches_the_agent_at_once_through_its_change_event() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = file_config(&env, &format!("listen = \"127.0.0.1:{port}\""));
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let agent = Agent::start(env.command(&cfg, &["agent"]), port, &env.path("a.log")).await;
    let first = agent.token().await.token();
    assert_eq!(env.run(&cfg, &["rotate", "--force"]).await.code, 0);
    let new = env.sim.issued_tokens().last().cloned().unwrap_or_default();
    assert_ne!(first, new);
    eventually!(
        agent,
        agent.token().await.token() == new,
        "the agent never saw the write"
    );
    assert_eq!(
        agent
            .metric("deepvue_rotator_agent_refreshes_total{token=\"prod\",result=\"read\"}")
            .await,
        0.0,
        "no refresh was asked for"
    );
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
}
