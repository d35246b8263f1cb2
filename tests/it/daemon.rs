//! `deepvue-rotator daemon`, the real binary: the expiry-driven schedule against a simulator
//! issuing short-lived tokens, the HTTP endpoints, signals, systemd notifications, backoff, and
//! several replicas on one store.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deepvue_rotator::simulator::{Behavior, Reply};

use crate::support::{Env, free_port};

/// Tokens live 70 s and are renewed 66 s before expiry: one rotation every ~4 s.
const TTL: u64 = 70;
const RENEW: &str = "66s";

fn short_lived() -> Behavior {
    Behavior {
        token_ttl_secs: TTL,
        ..Behavior::default()
    }
}

/// A daemon process with its port, killed on drop.
pub struct Daemon {
    child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    async fn start(env: &Env, cfg: &Path, port: u16, extra_env: &[(&str, &str)]) -> Daemon {
        let cmd = env.command(cfg, &["--log-format", "json", "daemon"]);
        Daemon::spawn(env, cmd, port, extra_env).await
    }

    /// The daemon with at most `nofile` descriptors (soft and hard: `ulimit -n`).
    async fn start_limited(env: &Env, cfg: &Path, port: u16, nofile: u32) -> Daemon {
        let base = env.command(cfg, &["--log-format", "json", "daemon"]);
        let std = base.as_std();
        let mut cmd = tokio::process::Command::new("sh");
        for (k, v) in std.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(std.get_program())
            .args(std.get_args())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        Daemon::spawn(env, cmd, port, &[]).await
    }

    pub async fn spawn(
        env: &Env,
        mut cmd: tokio::process::Command,
        port: u16,
        extra_env: &[(&str, &str)],
    ) -> Daemon {
        // The test's own HTTP client (reqwest on rustls) needs the process crypto provider.
        deepvue_rotator::support::tls::install_default_provider();
        let log = env.path(&format!("daemon-{port}.log"));
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        cmd.env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("PORT")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdout(std::process::Stdio::null())
            .stderr(file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn daemon: {e}"));
        let d = Daemon { child, port, log };
        d.wait_http().await;
        d
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_http(&self) {
        let started = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(self.url("/healthz")).await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the daemon did not serve /healthz within 20 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(self.url(path))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap_or_default().to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    pub async fn stop(mut self) -> i32 {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the daemon did not exit after SIGTERM:\n{}", self.log()))
            .unwrap_or_else(|e| panic!("{e}"));
        status.code().unwrap_or(-1)
    }
}

/// Wait until `cond` holds, or fail with `what` and the daemon's log.
async fn until(d: &Daemon, secs: u64, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !cond().await {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "{what} within {secs} s\n--- daemon log\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(env: &Env, port: u16, daemon_extra: &str, tokens: &[&str]) -> PathBuf {
    let blocks: String = tokens
        .iter()
        .map(|t| env.token_block(t, "{ backend = \"env\" }"))
        .collect();
    env.write_config(&format!(
        "{}[rotation]\nrenew_before = \"{RENEW}\"\nmin_interval = \"1s\"\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\njitter = \"0s\"\npoll_every = \"1h\"\nretry_initial = \"1s\"\n{daemon_extra}\n\n{blocks}",
        env.deepvue_section("max_attempts = 1")
    ))
}

fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn rotates_on_schedule_and_serves_health_status_and_metrics() {
    let env = Env::with(short_lived()).await;
    let port = free_port();
    let cfg = config(&env, port, "", &["prod"]);
    let d = Daemon::start(&env, &cfg, port, &[]).await;

    // Nothing stored: minted at once, then again every ~4 s as expiry − renew_before passes.
    // (The event is the third version in the store: a mint is counted before its write lands.)
    until(&d, 30, "three versions on schedule", async || {
        env.current_version("prod")
            .await
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| v >= 3)
    })
    .await;
    assert!(env.calls() >= 3, "{}", env.calls());

    let (code, body) = d.get("/healthz").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = d.get("/readyz").await;
    assert_eq!(code, 200, "{body}");

    let (code, body) = d.get("/status").await;
    assert_eq!(code, 200);
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(rows[0]["name"], "prod", "{body}");
    let stored = env.current("prod").await.and_then(|s| s.document.ok());
    let stored_expiry = stored
        .as_ref()
        .map(|d| d.expiry.timestamp())
        .unwrap_or_default();
    // Read from the store when asked (nothing was cached yet): the version the store has, or
    // the one before when a rotation landed between the answer and this read.
    let in_store = env
        .current_version("prod")
        .await
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_default();
    let shown = rows[0]["version"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_default();
    assert!(
        shown >= 3 && (shown == in_store || shown + 1 == in_store),
        "/status version {shown}, store {in_store}: {body}"
    );
    assert!(rows[0]["expiry"].is_string(), "{body}");
    for token in env.sim.issued_tokens() {
        assert!(!body.contains(&token), "/status never shows a token");
    }

    let (code, text) = d.get("/metrics").await;
    assert_eq!(code, 200);
    let expiry = metric(
        &text,
        "deepvue_rotator_token_expiry_timestamp_seconds",
        "token=\"prod\"",
    )
    .unwrap_or_default() as i64;
    assert!(
        (expiry - stored_expiry).abs() <= 8,
        "the expiry gauge follows the store: {expiry} vs {stored_expiry}\n{text}"
    );
    let next = metric(
        &text,
        "deepvue_rotator_token_next_rotation_timestamp_seconds",
        "token=\"prod\"",
    )
    .unwrap_or_default() as i64;
    assert!(
        next > 0 && next < expiry,
        "next rotation before expiry: {next}\n{text}"
    );
    let rotated = metric(
        &text,
        "deepvue_rotator_rotations_total",
        "outcome=\"rotated\"",
    )
    .unwrap_or_default();
    assert!(rotated >= 2.0, "{text}");
    let ok = metric(
        &text,
        "deepvue_rotator_authorize_requests_total",
        "class=\"ok\"",
    )
    .unwrap_or_default();
    assert!(ok >= 3.0, "{text}");
    assert!(
        metric(
            &text,
            "deepvue_rotator_store_requests_total",
            "backend=\"file\",operation=\"write\",result=\"ok\""
        )
        .unwrap_or_default()
            >= 3.0,
        "{text}"
    );
    assert!(
        text.contains("deepvue_rotator_build_info{version="),
        "{text}"
    );
    for token in env.sim.issued_tokens() {
        assert!(!text.contains(&token), "/metrics never shows a token");
    }
    let (code, _) = d.get("/nope").await;
    assert_eq!(code, 404);
    let post = |path: &'static str| {
        let url = d.url(path);
        async move {
            reqwest::Client::new()
                .post(url)
                .body(vec![b'x'; 200 * 1024])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or_default()
        }
    };
    assert_eq!(
        post("/status").await,
        405,
        "a POST to a GET endpoint is refused"
    );
    assert_eq!(
        post("/pubsub").await,
        413,
        "a body over the 64 KiB cap is refused before anything reads it"
    );
    assert_eq!(d.stop().await, 0);
}

#[tokio::test]
async fn status_endpoints_off_hide_status_metrics_and_error_detail() {
    let env = Env::with(short_lived()).await;
    let port = free_port();
    let cfg = config(&env, port, "status_endpoints = false", &["prod"]);
    // A stored token (minted while Deepvue answers), due again in ~4 s; then Deepvue fails.
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    env.sim.set_behavior(Behavior {
        default: Reply::Status {
            status: 503,
            detail: None,
            retry_after: None,
        },
        ..short_lived()
    });
    let d = Daemon::start(&env, &cfg, port, &[]).await;
    until(&d, 15, "a failed attempt", async || env.calls() >= 2).await;
    until(&d, 5, "/readyz 503", async || {
        d.get("/readyz").await.0 == 503
    })
    .await;
    let (_, body) = d.get("/readyz").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["tokens"][0]["token"], "prod", "{body}");
    assert_eq!(
        v["tokens"][0]["problem"], "rotation is failing",
        "which token, not the error (secret ids, IPs): {body}"
    );
    assert_eq!(d.get("/healthz").await.0, 200);
    assert_eq!(d.get("/status").await.0, 404);
    assert_eq!(d.get("/metrics").await.0, 404);
    assert_eq!(d.stop().await, 0);
}

#[tokio::test]
async fn failures_back_off_readyz_says_which_token_and_it_recovers() {
    let fail = Reply::Status {
        status: 503,
        detail: None,
        retry_after: None,
    };
    let env = Env::with(Behavior {
        script: vec![fail.clone(), fail],
        ..short_lived()
    })
    .await;
    let port = free_port();
    let cfg = config(&env, port, "", &["prod"]);
    // Before the daemon starts: its first attempt (and so its failure) comes later.
    let t0 = chrono::Utc::now().timestamp();
    let d = Daemon::start(&env, &cfg, port, &[]).await;
    until(&d, 10, "the first attempt", async || env.calls() >= 1).await;
    let (code, body) = d.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["tokens"][0]["token"], "prod", "{body}");
    // Backed off: a transient failure waits at least 5 s (retry_initial is 1 s), so Deepvue is
    // not hammered. The next-rotation gauge says when: read it once the failure is counted.
    let mut text = String::new();
    until(&d, 10, "the failure counted", async || {
        text = d.get("/metrics").await.1;
        metric(
            &text,
            "deepvue_rotator_rotations_total",
            "outcome=\"failed\"",
        ) == Some(1.0)
    })
    .await;
    let next = metric(
        &text,
        "deepvue_rotator_token_next_rotation_timestamp_seconds",
        "token=\"prod\"",
    )
    .unwrap_or_default() as i64;
    assert!(
        next >= t0 + 5,
        "the retry waits at least 5 s after the failure: next {next}, started {t0}\n{text}"
    );
    // Then it recovers on its own.
    until(&d, 30, "recovery after two 503s", async || {
        env.current_version("prod").await.is_some()
    })
    .await;
    assert_eq!(env.calls(), 3);
    until(&d, 5, "/readyz 200 after recovery", async || {
        d.get("/readyz").await.0 == 200
    })
    .await;
    let (_, text) = d.get("/metrics").await;
    assert_eq!(
        metric(
            &text,
            "deepvue_rotator_rotations_total",
            "outcome=\"failed\""
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "deepvue_rotator_authorize_requests_total",
            "class=\"transient\""
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(d.stop().await, 0);
}

#[tokio::test]
async fn polls_notice_another_writer_and_a_deleted_token() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = config(&env, port, "", &["prod"])
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&cfg)
        .unwrap_or_default()
        .replace("poll_every = \"1h\"", "poll_every = \"1s\"");
    std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
    let cfg = PathBuf::from(cfg);
    let d = Daemon::start(&env, &cfg, port, &[]).await;
    until(&d, 10, "the first mint", async || {
        env.current_version("prod").await.is_some()
    })
    .await;
    // Another runner rotates: the daemon's next poll picks up the new expiry, and mints nothing.
    // Its token lives an hour less (an expiry that differs even within the same second).
    env.sim.set_behavior(Behavior {
        token_ttl_secs: 23 * 3600,
        ..Behavior::default()
    });
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 0, "{out}");
    let theirs = env
        .current("prod")
        .await
        .and_then(|s| s.document.ok())
        .map(|d| d.expiry.timestamp())
        .unwrap_or_default();
    until(
        &d,
        10,
        "the expiry gauge showing the other writer's token",
        async || {
            let (_, text) = d.get("/metrics").await;
            metric(
                &text,
                "deepvue_rotator_token_expiry_timestamp_seconds",
                "token=\"prod\"",
            ) == Some(theirs as f64)
        },
    )
    .await;
    assert_eq!(env.calls(), 2, "the daemon stayed quiet");
    // The token is deleted under it: noticed at the next poll, minted again.
    std::fs::remove_dir_all(env.store_dir("prod")).unwrap_or_else(|e| panic!("{e}"));
    until(&d, 10, "a deleted token minted again", async || {
        env.current_version("prod").await.is_some()
    })
    .await;
    assert_eq!(env.calls(), 3);
    assert_eq!(d.stop().await, 0);
}

#[tokio::test]
async fn credentials_from_a_systemd_credential_count_as_a_secret_manager() {
    let env = Env::new().await;
    let creds_dir = env.path("credentials");
    std::fs::create_dir(&creds_dir).unwrap_or_else(|e| panic!("{e}"));
    let file = creds_dir.join("deepvue");
    std::fs::write(
        &file,
        format!(
            r#"{{"client_id":"{}","client_secret":"{}"}}"#,
            crate::support::CLIENT_ID,
            crate::support::CLIENT_SECRET
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let cfg = env.write_config(&format!(
        "{}{}",
        env.deepvue_section(""),
        env.token_block("prod", "{ backend = \"file\", credential = \"deepvue\" }")
    ));
    let mut cmd = env.command(&cfg, &["rotate"]);
    cmd.env("CREDENTIALS_DIRECTORY", &creds_dir)
        .env_remove("DEEPVUE_CLIENT_ID")
        .env_remove("DEEPVUE_CLIENT_SECRET");
    let out = crate::support::run(cmd).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.calls(), 1);
    let mut cmd = env.command(&cfg, &["check", "--json"]);
    cmd.env("CREDENTIALS_DIRECTORY", &creds_dir);
    let out = crate::support::run(cmd).await;
    let items: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let creds = items
        .as_array()
        .and_then(|a| a.iter().find(|i| i["item"] == "credentials"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(creds["status"], "pass", "{out}");
    assert!(
        creds["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("systemd credential deepvue"),
        "{creds}"
    );
    // Outside systemd, the same config says what is missing.
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("CREDENTIALS_DIRECTORY"), "{out}");
}

#[tokio::test]
async fn sigterm_while_minting_writes_the_token_and_exits_0() {
    let env = Env::with(Behavior {
        latency_ms: 2000,
        ..Behavior::default()
    })
    .await;
    let port = free_port();
    let cfg = config(&env, port, "", &["prod"]);
    let d = Daemon::start(&env, &cfg, port, &[]).await;
    until(&d, 10, "an authorize call in flight", async || {
        env.calls() >= 1
    })
    .await;
    assert!(env.current("prod").await.is_none(), "still minting");
    let log_before = d.log();
    assert_eq!(d.stop().await, 0, "{log_before}");
    assert_eq!(
        env.current_version("prod").await.as_deref(),
        Some("1"),
        "the token minted during shutdown was written"
    );
}

#[tokio::test]
async fn sighup_adds_a_token_and_a_broken_config_keeps_the_running_one() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = config(&env, port, "", &["a"]);
    let d = Daemon::start(&env, &cfg, port, &[]).await;
    until(&d, 10, "token a stored", async || {
        env.current_version("a").await.is_some()
    })
    .await;
    let two = std::fs::read_to_string(config(&env, port, "", &["a", "b"]))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&cfg, two).unwrap_or_else(|e| panic!("{e}"));
    d.signal("HUP");
    until(&d, 10, "token b stored after SIGHUP", async || {
        env.current_version("b").await.is_some()
    })
    .await;
    std::fs::write(&cfg, "[[tokens]]\nname = ").unwrap_or_else(|e| panic!("{e}"));
    d.signal("HUP");
    until(&d, 10, "the reload error logged", async || {
        d.log().contains("reload failed")
    })
    .await;
    let (code, body) = d.get("/status").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"a\"") && body.contains("\"b\""), "{body}");
    assert_eq!(d.get("/healthz").await.0, 200);
    assert_eq!(env.calls(), 2);
    assert_eq!(d.stop().await, 0);
}

/// The notifications a daemon sends to `$NOTIFY_SOCKET`, read as they arrive.
struct Notifications {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let sock = UnixDatagram::bind(path).unwrap_or_else(|e| panic!("{e}"));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap_or_else(|e| panic!("{e}"));
        Notifications {
            sock,
            seen: Vec::new(),
        }
    }

    fn next(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push(m.clone());
        Some(m)
    }

    /// Read until a message contains `what` (an event; the bound is only for a broken run).
    fn until(&mut self, what: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(m) = self.next()
                && m.contains(what)
            {
                return m;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no {what} within 30 s: {:?}",
                self.seen
            );
        }
    }

    /// Everything that arrives within `window`.
    fn during(&mut self, window: Duration) -> Vec<String> {
        let started = Instant::now();
        let mut got = Vec::new();
        while started.elapsed() < window {
            if let Some(m) = self.next() {
                got.push(m);
            }
        }
        got
    }
}

/// READY, STATUS and watchdog pings; a reload is RELOADING=1 then READY=1; a loop stalled by a
/// reload that hangs on its config file (a FIFO nobody writes: a hung network mount) stops
/// the pings, so systemd's watchdog restarts it; once the file answers, pings resume; a stop
/// is STOPPING=1.
#[tokio::test]
async fn tells_systemd_ready_status_watchdog_stopping_and_stops_pinging_when_its_loop_stalls() {
    let env = Env::new().await;
    let sock_path = env.path("notify.sock");
    let mut n = Notifications::bind(&sock_path);
    let port = free_port();
    let cfg = config(&env, port, "", &["prod"]);
    let notify = sock_path.display().to_string();
    // WATCHDOG_USEC = 1 s: systemd expects a ping within every second.
    let d = Daemon::start(
        &env,
        &cfg,
        port,
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "1000000")],
    )
    .await;
    n.until("READY=1");
    let status = n.until("STATUS=");
    assert!(status.contains("1 token(s)"), "{status}");
    for _ in 0..3 {
        n.until("WATCHDOG=1");
    }
    d.signal("HUP");
    n.until("RELOADING=1");
    n.until("READY=1");
    n.until("WATCHDOG=1");

    // The config becomes a FIFO: the next reload blocks the loop on it.
    let text = std::fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let made = std::process::Command::new("mkfifo")
        .arg(&cfg)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo {}", cfg.display());
    d.signal("HUP");
    n.until("RELOADING=1");
    // Stalled: not one ping over twice the watchdog interval (what systemd acts on).
    let stalled = n.during(Duration::from_secs(2));
    assert!(
        !stalled.iter().any(|m| m.contains("WATCHDOG=1")),
        "a stalled loop must not ping the watchdog: {stalled:?}"
    );
    // The file answers: the reload completes and the pings resume.
    let fifo = cfg.clone();
    let writer = std::thread::spawn(move || std::fs::write(&fifo, text));
    n.until("READY=1");
    n.until("WATCHDOG=1");
    writer
        .join()
        .unwrap_or_else(|_| panic!("the FIFO writer panicked"))
        .unwrap_or_else(|e| panic!("write the FIFO: {e}"));
    assert_eq!(d.get("/healthz").await.0, 200);

    d.signal("TERM");
    n.until("STOPPING=1");
    assert_eq!(d.stop_after_term().await, 0);
}

impl Daemon {
    async fn stop_after_term(mut self) -> i32 {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|s| s.code())
            .unwrap_or(-1)
    }
}

#[tokio::test]
async fn listens_on_port_from_the_environment_like_cloud_run() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = config(&env, port, "", &["prod"]);
    // No `listen` in the config: $PORT decides (all interfaces, as Cloud Run expects).
    let text = std::fs::read_to_string(&cfg)
        .unwrap_or_default()
        .replace(&format!("listen = \"127.0.0.1:{port}\"\n"), "");
    std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
    let p = port.to_string();
    let d = Daemon::start(&env, &cfg, port, &[("PORT", &p)]).await;
    assert_eq!(d.get("/healthz").await.0, 200);
    assert!(d.log().contains(&format!("0.0.0.0:{port}")), "{}", d.log());
    // A listener others reach: /status (secret ids, errors) is off unless asked for;
    // /metrics (token names and counts, for a scrape of the pod address) stays on.
    let (code, body) = d.get("/status").await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(d.get("/metrics").await.0, 200);
    assert_eq!(d.stop().await, 0);
}

#[tokio::test]
async fn two_hundred_idle_connections_under_a_64_descriptor_limit_do_not_starve_healthz() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = config(&env, port, "", &["prod"]);
    let d = Daemon::start_limited(&env, &cfg, port, 64).await;
    // 200 clients that connect and never send a byte (or half a request line).
    let mut idle = Vec::new();
    for i in 0..200 {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(mut s) => {
                if i % 2 == 0 {
                    use tokio::io::AsyncWriteExt;
                    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x").await;
                }
                idle.push(s);
            }
            Err(e) => panic!("connect {i}: {e}"),
        }
    }
    // A health check (and a second one) still gets an answer while they hang on: before any
    // of them could time out on its own (the 10 s idle timeout), so by evicting idle ones, not
    // by waiting them out (a graceful close of a half-sent request waits for its head).
    for _ in 0..2 {
        let answer = tokio::time::timeout(Duration::from_secs(5), d.get("/healthz")).await;
        assert_eq!(
            answer.map(|a| a.0).ok(),
            Some(200),
            "healthz starved by idle connections (not answered before their idle timeout)\n{}",
            d.log()
        );
    }
    drop(idle);
    assert_eq!(d.stop().await, 0);
}

/// Replicas' schedule: tokens live 70 s (the client refuses one that dies within a minute)
/// and are renewed 64 s before expiry, with up to 2 s of jitter: a replica wakes at the
/// earliest 4 s after the token it saw was issued.
const REPLICA_TTL: u64 = 70;
const REPLICA_RENEW: &str = "64s";
const REPLICA_JITTER: &str = "2s";
/// What separates two versions when the replicas share a window (documents keep whole seconds).
const REPLICA_GAP: i64 = 3;

/// Versions, in the order they were issued, at least `REPLICA_GAP` s apart: no two replicas
/// rotated in one window.
fn one_per_window(mut issued: Vec<chrono::DateTime<chrono::Utc>>) {
    issued.sort();
    for w in issued.windows(2) {
        let gap = (w[1] - w[0]).num_seconds();
        assert!(
            gap >= REPLICA_GAP,
            "two versions {gap} s apart: two replicas rotated in one window: {issued:?}"
        );
    }
}

/// Wait (an event: the store's version) until `versions()` reaches `n`.
async fn until_versions(daemons: &[Daemon], n: u64, mut versions: impl AsyncFnMut() -> u64) {
    let started = Instant::now();
    loop {
        let v = versions().await;
        if v >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{n} versions within 90 s (have {v})\n{}",
            daemons
                .iter()
                .map(Daemon::log)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn three_replicas_on_one_file_store_mint_once_per_window() {
    let env = Env::with(Behavior {
        token_ttl_secs: REPLICA_TTL,
        ..Behavior::default()
    })
    .await;
    let mut daemons = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let cfg = env.write_config(
            &std::fs::read_to_string(config(&env, port, "", &["prod"]))
                .unwrap_or_default()
                .replace(&format!("\"{RENEW}\""), &format!("\"{REPLICA_RENEW}\""))
                .replace("jitter = \"0s\"", &format!("jitter = \"{REPLICA_JITTER}\"")),
        );
        daemons.push(Daemon::start(&env, &cfg, port, &[]).await);
    }
    until_versions(&daemons, 4, async || {
        env.current_version("prod")
            .await
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    })
    .await;
    // Stopped first, so that no rotation is between its mint and its write when counting.
    for d in daemons {
        assert_eq!(d.stop().await, 0);
    }
    let versions: u64 = env
        .current_version("prod")
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert_eq!(
        env.calls(),
        versions,
        "every mint became a version: replicas serialised on the store's lock"
    );
    let store = env.store("prod");
    let mut issued = Vec::new();
    for v in 1..=versions {
        use deepvue_rotator::core::store::{TokenStore, Version};
        let doc = store
            .read_version(&Version(v.to_string()))
            .await
            .unwrap_or_else(|e| panic!("read version {v}: {e}"))
            .and_then(|s| s.document.ok())
            .unwrap_or_else(|| panic!("version {v} is a token document"));
        issued.push(doc.issued_at);
    }
    one_per_window(issued);
}

#[tokio::test]
async fn three_replicas_on_one_aws_store_write_one_version_per_window() {
    let env = Env::with(Behavior {
        token_ttl_secs: REPLICA_TTL,
        ..Behavior::default()
    })
    .await;
    let moto = crate::moto::Moto::start().await;
    let sm = crate::aws::sm(&moto).await;
    crate::aws::create_creds(&sm).await;
    crate::aws::create_secret(&sm, crate::aws::TOKEN, None).await;
    let mut daemons = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let cfg = env.write_config(&format!(
            "{}{}[rotation]\nrenew_before = \"{REPLICA_RENEW}\"\nmin_interval = \"1s\"\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\njitter = \"{REPLICA_JITTER}\"\npoll_every = \"1h\"\nretry_initial = \"1s\"\n\n{}",
            env.deepvue_section("max_attempts = 1"),
            crate::aws::aws_section(&moto),
            crate::aws::aws_token_block("prod", crate::aws::CREDS, "")
        ));
        let cmd = crate::aws::aws_command(&env, &cfg, &["--log-format", "json", "daemon"]);
        daemons.push(Daemon::spawn(&env, cmd, port, &[]).await);
    }
    until_versions(&daemons, 4, async || {
        crate::aws::versions(&sm, crate::aws::TOKEN).await.len() as u64
    })
    .await;
    let mut stopped = Vec::new();
    for d in daemons {
        stopped.push(d.stop().await);
    }
    assert!(stopped.iter().all(|c| *c == 0), "{stopped:?}");
    let ids: Vec<String> = crate::aws::versions(&sm, crate::aws::TOKEN)
        .await
        .into_keys()
        .collect();
    let versions = ids.len() as u64;
    let calls = env.calls();
    // A replica that wakes in the same instant mints for nothing (its write is a lost race):
    // at most the two others per window, never a version of their own.
    assert!(
        (versions..=3 * versions).contains(&calls),
        "{calls} mints, {versions} versions"
    );
    let mut issued = Vec::new();
    for id in &ids {
        issued.push(
            crate::aws::document_at(&sm, crate::aws::TOKEN, id)
                .await
                .issued_at,
        );
    }
    one_per_window(issued);
    // For the record (BENCHMARKS.md): what lost races cost in mints.
    eprintln!("three daemons on one AWS store: {calls} mints, {versions} versions");
    let current = crate::aws::document(&sm, crate::aws::TOKEN, "AWSCURRENT").await;
    assert!(
        current.expiry > chrono::Utc::now(),
        "AWSCURRENT is a live token"
    );
}
