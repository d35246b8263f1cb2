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

    fn signal(&self, sig: &str) {
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
    until(&d, 30, "three mints on schedule", async || env.calls() >= 3).await;
    let version = env.current_version("prod").await.unwrap_or_default();
    assert!(version.parse::<u32>().unwrap_or_default() >= 3, "{version}");

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
    let d = Daemon::start(&env, &cfg, port, &[]).await;
    until(&d, 10, "the first attempt", async || env.calls() >= 1).await;
    let (code, body) = d.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["tokens"][0]["token"], "prod", "{body}");
    // Backed off: a transient failure waits at least 5 s, Deepvue is not hammered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.calls(), 1, "no retry within the 5 s floor");
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
    tokio::time::sleep(Duration::from_secs(1)).await;
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

#[tokio::test]
async fn tells_systemd_ready_status_watchdog_and_stopping() {
    let env = Env::new().await;
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("{e}"));
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let cfg = config(&env, port, "", &["prod"]);
    let notify = sock_path.display().to_string();
    let d = Daemon::start(
        &env,
        &cfg,
        port,
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "1000000")],
    )
    .await;
    let recv = |deadline: Duration| {
        let mut got = Vec::new();
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        while started.elapsed() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        got
    };
    let first = recv(Duration::from_secs(3));
    assert!(first.iter().any(|m| m.contains("READY=1")), "{first:?}");
    assert!(
        first
            .iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("1 token(s)")),
        "{first:?}"
    );
    let pings = first.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        (4..=12).contains(&pings),
        "a ping every half interval (0.5 s) over 3 s: {pings} {first:?}"
    );
    d.signal("HUP");
    let reload = recv(Duration::from_secs(2));
    let at = |what: &str| reload.iter().position(|m| m.contains(what));
    assert!(
        matches!((at("RELOADING=1"), at("READY=1")), (Some(r), Some(y)) if r < y),
        "a reload is RELOADING=1, then READY=1 again: {reload:?}"
    );
    d.signal("TERM");
    let last = recv(Duration::from_secs(2));
    assert!(last.iter().any(|m| m.contains("STOPPING=1")), "{last:?}");
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
    // A health check (and a second one) still gets an answer while they hang on.
    for _ in 0..2 {
        let answer = tokio::time::timeout(Duration::from_secs(20), d.get("/healthz")).await;
        assert_eq!(
            answer.map(|a| a.0).ok(),
            Some(200),
            "healthz starved by idle connections\n{}",
            d.log()
        );
    }
    drop(idle);
    assert_eq!(d.stop().await, 0);
}

#[tokio::test]
async fn three_replicas_on_one_file_store_mint_once_per_window() {
    let env = Env::with(Behavior {
        token_ttl_secs: 90,
        ..Behavior::default()
    })
    .await;
    let mut daemons = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        // Renewed 80 s before expiry (every ~10 s), jitter up to 5 s between the replicas.
        let cfg = env.write_config(
            &std::fs::read_to_string(config(&env, port, "", &["prod"]))
                .unwrap_or_default()
                .replace(&format!("\"{RENEW}\""), "\"80s\"")
                .replace("jitter = \"0s\"", "jitter = \"5s\""),
        );
        daemons.push(Daemon::start(&env, &cfg, port, &[]).await);
    }
    tokio::time::sleep(Duration::from_secs(25)).await;
    // Stopped first, so that no rotation is between its mint and its write when counting.
    for d in daemons {
        assert_eq!(d.stop().await, 0);
    }
    let versions: u64 = env
        .current_version("prod")
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let calls = env.calls();
    assert_eq!(
        calls, versions,
        "every mint became a version: replicas serialised on the store's lock"
    );
    // The first mint, then one per window: a window is 90 − 80 s less the waking replica's
    // jitter (≤ 5 s), so at least 5 s apart; three replicas each minting would be ~3× that.
    assert!(
        (2..=6).contains(&versions),
        "one rotation per 5–10 s window over 25 s, not one per replica: {versions}"
    );
}

#[tokio::test]
async fn three_replicas_on_one_aws_store_write_one_version_per_window() {
    let env = Env::with(Behavior {
        token_ttl_secs: 90,
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
            "{}{}[rotation]\nrenew_before = \"80s\"\nmin_interval = \"1s\"\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\njitter = \"5s\"\npoll_every = \"1h\"\nretry_initial = \"1s\"\n\n{}",
            env.deepvue_section("max_attempts = 1"),
            crate::aws::aws_section(&moto),
            crate::aws::aws_token_block("prod", crate::aws::CREDS, "")
        ));
        let cmd = crate::aws::aws_command(&env, &cfg, &["--log-format", "json", "daemon"]);
        daemons.push(Daemon::spawn(&env, cmd, port, &[]).await);
    }
    tokio::time::sleep(Duration::from_secs(25)).await;
    let mut stopped = Vec::new();
    for d in daemons {
        stopped.push(d.stop().await);
    }
    assert!(stopped.iter().all(|c| *c == 0), "{stopped:?}");
    let versions = crate::aws::versions(&sm, crate::aws::TOKEN).await.len() as u64;
    let calls = env.calls();
    // As on the file store: the first version, then one per window of at least 5 s (90 − 80 s
    // less the waking replica's jitter).
    assert!(
        (2..=6).contains(&versions),
        "one version per 5–10 s window over 25 s, not one per replica: {versions} ({calls} mints)"
    );
    // A replica that wakes in the same instant mints for nothing (its write is a lost race):
    // at most the two others per window, never a version of their own.
    assert!(
        (versions..=3 * versions).contains(&calls),
        "{calls} mints, {versions} versions"
    );
    // For the record (BENCHMARKS.md): what lost races cost in mints.
    eprintln!("three daemons on one AWS store: {calls} mints, {versions} versions");
    let current = crate::aws::document(&sm, crate::aws::TOKEN, "AWSCURRENT").await;
    assert!(
        current.expiry > chrono::Utc::now(),
        "AWSCURRENT is a live token"
    );
}
