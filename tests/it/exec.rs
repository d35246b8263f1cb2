//! `exec -- CMD`: the token in the child's environment and a 0600 file; a new version restarts
//! or signals the child; signals to `exec` reach the child; `exec` exits with the child's
//! status; a failing child is restarted only with `--restart-on-failure`, with backoff.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{CLIENT_SECRET, Env, run};

/// Wait (bounded) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < Duration::from_secs(30), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Send `sig` to a spawned exec.
fn signal(exec: &tokio::process::Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(exec.id().unwrap_or_default() as i32)
        .unwrap_or_else(|| panic!("exec pid"));
    let _ = rustix::process::kill_process(pid, sig);
}

/// TERM to a spawned exec, and its exit status (bounded).
async fn stop(exec: &mut tokio::process::Child) -> std::process::ExitStatus {
    signal(exec, rustix::process::Signal::TERM);
    tokio::time::timeout(Duration::from_secs(30), exec.wait())
        .await
        .unwrap_or_else(|_| panic!("exec did not end"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn exec_cmd(env: &Env, cfg: &Path, extra: &[&str], script: &str) -> tokio::process::Command {
    let mut args = vec!["exec", "--token", "prod"];
    args.extend(extra);
    args.extend(["--", "/bin/sh", "-c", script]);
    let mut cmd = env.command(cfg, &args);
    // A spawned exec (and its child) never holds the test's own output open.
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// Spawn exec (`extra` options) on a child that appends `start <token>` to `log` when it starts
/// and then runs `traps` (shell) and loops; rotate once, and wait for the child's second start.
async fn through_a_rotation(
    env: &Env,
    cfg: &Path,
    extra: &[&str],
    log: &Path,
    traps: &str,
) -> tokio::process::Child {
    let script = format!(
        "echo \"start $DEEPVUE_ACCESS_TOKEN\" >> {}; {traps}; while :; do sleep 0.05; done",
        log.display()
    );
    let mut exec = exec_cmd(env, cfg, extra, &script)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    until("the child started", || lines(log).len() == 1).await;
    assert_eq!(env.run(cfg, &["rotate", "--force"]).await.code, 0);
    until("a second start, with the new token", || {
        lines(log)
            .iter()
            .filter(|l| l.starts_with("start "))
            .count()
            == 2
    })
    .await;
    if let Ok(Some(status)) = exec.try_wait() {
        panic!("exec ended ({status})");
    }
    exec
}

#[tokio::test]
async fn the_child_gets_the_token_in_its_environment_and_a_private_file_and_its_exit_status() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let file = env.path("token.json");
    let seen = env.path("seen");
    let out = run(exec_cmd(
        &env,
        &cfg,
        &["--file", &file.to_string_lossy()],
        &format!(
            "echo \"$DEEPVUE_ACCESS_TOKEN\" > {0}; echo \"client:$DEEPVUE_CLIENT_SECRET\" >> {0}; exit 7",
            seen.display()
        ),
    ))
    .await;
    assert_eq!(out.code, 7, "exec exits with the child's status: {out}");
    let token = env.sim.issued_tokens().last().cloned().unwrap_or_default();
    let got = lines(&seen);
    assert_eq!(got[0], token, "the token in the environment");
    assert_eq!(got[1], "client:", "not the rotator's client secret");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(doc["access_token"], token);
    let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600));
    assert!(
        !out.all().contains(&token) && !out.all().contains(CLIENT_SECRET),
        "{out}"
    );
}

#[tokio::test]
async fn a_new_version_restarts_the_child_and_signals_are_forwarded() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let log = env.path("starts");
    // The rotator writes a new version: the child is stopped (TERM) and started again.
    let mut exec = through_a_rotation(
        &env,
        &cfg,
        &["--poll", "200ms", "--stop-timeout", "5s"],
        &log,
        &format!(
            "trap 'echo usr1 >> {0}' USR1; trap 'echo term >> {0}; exit 0' TERM",
            log.display()
        ),
    )
    .await;
    let tokens = env.sim.issued_tokens();
    let got = lines(&log);
    assert_eq!(got[0], format!("start {}", tokens[0]));
    assert_eq!(got[1], "term", "the old child was asked to stop: {got:?}");
    assert_eq!(got[2], format!("start {}", tokens[1]));
    // Signals to exec reach the child.
    signal(&exec, rustix::process::Signal::USR1);
    until("USR1 forwarded", || {
        lines(&log).contains(&"usr1".to_string())
    })
    .await;
    let status = stop(&mut exec).await;
    assert_eq!(
        status.code(),
        Some(0),
        "the child's status (its TERM trap exits 0)"
    );
}

#[tokio::test]
async fn on_change_signal_rewrites_the_file_and_signals_without_a_restart() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let file = env.path("token.json");
    let log = env.path("events");
    let script = format!(
        "echo start >> {0}; trap 'echo \"hup $(cat {1})\" >> {0}' HUP; while :; do sleep 0.05; done",
        log.display(),
        file.display()
    );
    let mut cmd = exec_cmd(
        &env,
        &cfg,
        &[
            "--poll",
            "200ms",
            "--no-env",
            "--file",
            &file.to_string_lossy(),
            "--on-change",
            "signal",
        ],
        &script,
    );
    let mut exec = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    until("the child started", || lines(&log).len() == 1).await;
    assert_eq!(env.run(&cfg, &["rotate", "--force"]).await.code, 0);
    until("HUP after the file changed", || {
        lines(&log).iter().any(|l| l.starts_with("hup "))
    })
    .await;
    let new = env.sim.issued_tokens()[1].clone();
    let got = lines(&log);
    assert_eq!(
        got.iter().filter(|l| *l == "start").count(),
        1,
        "no restart"
    );
    assert!(
        got[1].contains(&new),
        "the file held the new token when HUP came: {got:?}"
    );
    // TERM to exec reaches the child (no trap: it dies of it), and exec says so: 128 + 15.
    let status = stop(&mut exec).await;
    assert_eq!(status.code(), Some(143));
}

#[tokio::test]
async fn a_failing_child_is_restarted_with_backoff_only_when_asked_and_then_ends_exec() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let runs = env.path("runs");
    let script = format!("echo run >> {}; exit 3", runs.display());
    // Without --restart-on-failure: one run, exec ends with its status.
    let out = run(exec_cmd(&env, &cfg, &[], &script)).await;
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(lines(&runs).len(), 1);
    // With it: two restarts after 1 s and 2 s, then the third failure ends exec.
    std::fs::remove_file(&runs).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = exec_cmd(&env, &cfg, &["--restart-on-failure", "2"], &script);
    cmd.env("RUST_LOG", "warn");
    let out = run(cmd).await;
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(lines(&runs).len(), 3, "the first run and two restarts");
    assert!(
        out.stderr.contains("restarting it")
            && out.stderr.contains("1s")
            && out.stderr.contains("2s"),
        "the backoff is said: {out}"
    );
}

#[tokio::test]
async fn exec_refuses_what_cannot_work() {
    let env = Env::new().await;
    let cfg = env.config();
    // No token stored yet: exec never mints.
    let out = run(exec_cmd(&env, &cfg, &[], "exit 0")).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("holds no token yet"), "{out}");
    assert_eq!(env.calls(), 0, "nothing minted");
    let out = run(exec_cmd(&env, &cfg, &["--no-env"], "exit 0")).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--no-env needs --file"), "{out}");
}

/// A current version that has expired is never given to a child: the previous one is while
/// it is valid; with neither, no child starts. The file may be shared with one group (0640),
/// exactly, whatever the umask; other modes are refused.
#[tokio::test]
async fn exec_never_starts_a_child_with_a_dead_token_and_shares_its_file_with_one_group() {
    use deepvue_rotator::core::store::{TokenStore as _, WriteMode};
    use std::os::unix::fs::MetadataExt as _;
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let t1 = env.sim.issued_tokens().last().cloned().unwrap_or_default();
    let store = env.store("prod");
    let expire = |expected: String| {
        let store = &store;
        async move {
            store
                .write(
                    &crate::scenarios::doc_left("tok-expired-SENTINEL", -1),
                    WriteMode::Update {
                        expected: &deepvue_rotator::core::store::Version(expected),
                        lease: None,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("write an expired version: {e}"))
        }
    };
    let v1 = env.current_version("prod").await.unwrap_or_default();
    let v2 = expire(v1).await;
    let file = env.path("shared/token.json");
    std::fs::create_dir_all(env.path("shared")).unwrap_or_else(|e| panic!("{e}"));
    let seen = env.path("seen");
    let gid = rustix::process::getgid().as_raw().to_string();
    let script = format!("echo \"$DEEPVUE_ACCESS_TOKEN\" > {}", seen.display());
    let args = [
        "--file",
        &*file.to_string_lossy(),
        "--file-mode",
        "0640",
        "--file-group",
        &gid,
    ];
    let mut cmd = exec_cmd(&env, &cfg, &args, &script);
    cmd.env("RUST_LOG", "warn");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        lines(&seen),
        std::slice::from_ref(&t1),
        "the previous, valid version"
    );
    assert!(
        out.stderr.contains("using the previous version") && out.stderr.contains("expired at"),
        "{out}"
    );
    let meta = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (meta.mode() & 0o777, meta.gid().to_string()),
        (0o640, gid.clone()),
        "the file: 0640, in the group asked for"
    );
    assert!(
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .contains(&t1)
    );

    // The previous version has expired too: no child, and exec says why.
    std::fs::remove_file(&seen).unwrap_or_else(|e| panic!("{e}"));
    expire(v2.0).await;
    let out = run(exec_cmd(&env, &cfg, &[], &script)).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("expired at") && out.stderr.contains("no valid previous version"),
        "{out}"
    );
    assert!(!seen.exists(), "no child was started");

    // Modes that are not owner-only or one group's are refused before anything runs.
    let file_arg = file.to_string_lossy().to_string();
    for (bad, says) in [
        (&["--file-mode", "0644"][..], "--file-mode 0644"),
        (
            &["--file-group", "0"][..],
            "--file-group needs --file-mode 0640",
        ),
    ] {
        let mut args = vec!["--file", file_arg.as_str()];
        args.extend_from_slice(bad);
        let out = run(exec_cmd(&env, &cfg, &args, "exit 0")).await;
        assert_eq!(out.code, 2, "{out}");
        assert!(out.stderr.contains(says), "{out}");
    }
}

/// A child that ignores the stop signal is killed (SIGKILL) after `--stop-timeout` and started
/// again with the new token; `--on-change none` only rewrites the file. (The child ignores
/// only the first TERM, so the test can end it.)
#[tokio::test]
async fn a_child_that_ignores_the_stop_signal_is_killed_and_on_change_none_only_rewrites_the_file()
{
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let log = env.path("starts");
    let mut exec = through_a_rotation(
        &env,
        &cfg,
        &["--poll", "200ms", "--stop-timeout", "300ms"],
        &log,
        &format!("trap 'echo term >> {}; trap - TERM' TERM", log.display()),
    )
    .await;
    let tokens = env.sim.issued_tokens();
    let got = lines(&log);
    assert_eq!(
        got,
        [
            format!("start {}", tokens[0]),
            "term".to_string(),
            format!("start {}", tokens[1])
        ],
        "asked to stop, ignored it, killed, started with the new token"
    );
    // The new child ignores the first TERM too; the second ends it, and exec with it.
    signal(&exec, rustix::process::Signal::TERM);
    until("the first TERM reached the new child", || {
        lines(&log).iter().filter(|l| *l == "term").count() == 2
    })
    .await;
    assert_eq!(stop(&mut exec).await.code(), Some(143));

    let file = env.path("none.json");
    let starts = env.path("starts-none");
    let script = format!(
        "echo start >> {}; while :; do sleep 0.05; done",
        starts.display()
    );
    let mut cmd = exec_cmd(
        &env,
        &cfg,
        &[
            "--poll",
            "200ms",
            "--file",
            &file.to_string_lossy(),
            "--on-change",
            "none",
        ],
        &script,
    );
    let mut exec = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    until("the child started", || lines(&starts).len() == 1).await;
    assert_eq!(env.run(&cfg, &["rotate", "--force"]).await.code, 0);
    let newest = env.sim.issued_tokens().last().cloned().unwrap_or_default();
    until("the file holds the new token", || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .contains(&newest)
    })
    .await;
    assert_eq!(lines(&starts).len(), 1, "no restart");
    assert!(
        exec.try_wait().ok().flatten().is_none(),
        "the child and exec run on"
    );
    assert_eq!(stop(&mut exec).await.code(), Some(143));
}

/// Both ways Deepvue may treat earlier tokens, against the simulator's API call: when a new
/// mint revokes the old token, the child `exec` restarted with the new one is accepted again;
/// when earlier tokens stay valid, the old one keeps working until its expiry.
#[tokio::test]
async fn a_restarted_child_calls_deepvue_with_the_new_token_whether_old_ones_are_revoked_or_not() {
    for revoke in [true, false] {
        let env = Env::with(deepvue_rotator::simulator::Behavior {
            revoke_on_mint: revoke,
            ..Default::default()
        })
        .await;
        let cfg = env.config();
        assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
        let log = env.path("tokens");
        let script = format!(
            "echo \"$DEEPVUE_ACCESS_TOKEN\" >> {}; while :; do sleep 0.05; done",
            log.display()
        );
        let mut exec = exec_cmd(&env, &cfg, &["--poll", "200ms"], &script)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        until("the child started", || lines(&log).len() == 1).await;
        let first = lines(&log)[0].clone();
        assert_eq!(env.ping(&first).await, 200, "revoke={revoke}");
        assert_eq!(env.run(&cfg, &["rotate", "--force"]).await.code, 0);
        assert_eq!(
            env.ping(&first).await,
            if revoke { 401 } else { 200 },
            "revoke={revoke}: the old token after a new mint"
        );
        until("the child restarted", || lines(&log).len() == 2).await;
        assert_eq!(
            env.ping(&lines(&log)[1]).await,
            200,
            "revoke={revoke}: the new token"
        );
        let _ = stop(&mut exec).await;
    }
}

/// A stop signal passed on to the child ends exec with the child's status even with
/// `--restart-on-failure` (a `docker stop` must not restart the app).
#[tokio::test]
async fn a_forwarded_stop_ends_exec_without_a_restart() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let runs = env.path("runs");
    let script = format!(
        "echo run >> {}; trap 'exit 9' TERM; while :; do sleep 0.05; done",
        runs.display()
    );
    let mut exec = exec_cmd(&env, &cfg, &["--restart-on-failure", "5"], &script)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    until("the child started", || lines(&runs).len() == 1).await;
    let status = stop(&mut exec).await;
    assert_eq!(status.code(), Some(9));
    assert_eq!(lines(&runs).len(), 1, "not restarted");
}
