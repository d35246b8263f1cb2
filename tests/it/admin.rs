//! The daemon's admin socket (`rotate --via-daemon`) and SIGUSR1: rotate now through the
//! running daemon's own pass, never over its TCP listener.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::metrics::sample;
use crate::support::{Env, free_port};

async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default()
}

/// Wait until the daemon's metrics satisfy `cond`.
async fn until(d: &Daemon, port: u16, what: &str, cond: impl Fn(&str) -> bool) {
    let started = Instant::now();
    loop {
        if cond(&metrics(port).await) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} within 30 s\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rotate_via_daemon_runs_the_daemons_pass_and_sigusr1_passes_every_token() {
    let env = Env::new().await;
    let port = free_port();
    let run = env.path("run");
    std::fs::create_dir(&run).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let sock = run.join("admin.sock");
    let audit = env.path("audit.jsonl");
    let cfg = env.write_config(&format!(
        "{}[daemon]\nlisten = \"127.0.0.1:{port}\"\njitter = \"1h\"\npoll_every = \"1h\"\nadmin_socket = \"{}\"\n\n[audit]\nfile = \"{}\"\n\n{}",
        env.deepvue_section(""),
        sock.display(),
        audit.display(),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let d = Daemon::spawn(&env, env.command(&cfg, &["daemon"]), port, &[]).await;
    until(&d, port, "the first rotation", |m| {
        sample(
            m,
            "deepvue_rotator_rotations_total",
            &["outcome=\"rotated\""],
        ) == Some(1.0)
    })
    .await;
    let meta = std::fs::symlink_metadata(&sock).unwrap_or_else(|e| panic!("{e}"));
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner only");

    // Not forced: the daemon's pass finds the token fresh.
    let out = env.run(&cfg, &["rotate", "--via-daemon", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v[0]["outcome"], "fresh", "{out}");
    // Forced: it rotates, and the daemon's own metrics and schedule know it.
    let calls = env.calls();
    let out = env
        .run(
            &cfg,
            &["rotate", "--via-daemon", "--force", "--token", "prod"],
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("prod: rotated -> version 2"), "{out}");
    assert_eq!(env.calls(), calls + 1, "one mint, by the daemon");
    until(&d, port, "the daemon's metrics count it", |m| {
        sample(
            m,
            "deepvue_rotator_rotations_total",
            &["outcome=\"rotated\""],
        ) == Some(2.0)
    })
    .await;
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["trigger"], "schedule");
    assert_eq!(records[1]["trigger"], "manual");
    assert_eq!(records[1]["runner"]["mode"], "daemon");

    // `status` shows the running daemon's schedule (its jitter included), as its /status does.
    let daemon_status: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["status", "--json"]).await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v[0]["renews_at"].is_string(), "{out}");
    assert_eq!(v[0]["renews_at"], daemon_status[0]["renews_at"], "{out}");

    let out = env
        .run(&cfg, &["rotate", "--via-daemon", "--token", "nope"])
        .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("no token named `nope`"), "{out}");
    // The TCP listener has no such route.
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/rotate"))
        .json(&serde_json::json!({"force": true}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 404);

    // A second daemon does not take over the live socket.
    let port2 = free_port();
    let cfg2 = env.write_config(
        &std::fs::read_to_string(&cfg)
            .unwrap_or_default()
            .replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{port2}")),
    );
    let out = tokio::time::timeout(Duration::from_secs(30), env.run(&cfg2, &["daemon"]))
        .await
        .unwrap_or_else(|_| panic!("a second daemon on a live admin socket must exit"));
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("is in use"), "{out}");

    // SIGUSR1: a pass over every token now (a fresh one costs a store read).
    let reads = |m: &str| {
        sample(
            m,
            "deepvue_rotator_store_requests_total",
            &["operation=\"read_current\"", "result=\"ok\""],
        )
        .unwrap_or_default()
    };
    let before = reads(&metrics(port).await);
    d.signal("USR1");
    until(&d, port, "a pass after SIGUSR1", |m| reads(m) > before).await;
    assert!(d.log().contains("SIGUSR1"), "{}", d.log());
    assert_eq!(env.calls(), calls + 1, "a fresh token is not minted");

    assert_eq!(d.stop().await, 0);
    assert!(!sock.exists(), "the daemon removes its socket on exit");

    // Without an admin socket configured: a usage error naming the key.
    let plain = env.config();
    let out = env.run(&plain, &["rotate", "--via-daemon"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("[daemon] admin_socket"), "{out}");
}
