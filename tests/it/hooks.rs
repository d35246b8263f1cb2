//! `on_rotate` hooks through the real binary: a command after a write, with the token's facts
//! and none of the rotator's secrets in its environment; nothing on a no-op; a failing or
//! hanging command reported (exit code, `--json` `hooks`, the `hook-failed` alert condition)
//! without undoing the write; a pid file that names a process that is gone read again until
//! the restarted process is there.

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

use crate::support::{CLIENT_SECRET, Env};

fn config(env: &Env, hook: &str) -> std::path::PathBuf {
    env.write_config(&format!(
        "{}{}on_rotate = {hook}\n",
        env.deepvue_section(""),
        env.token_block("prod", "{ backend = \"env\" }")
    ))
}

fn report(out: &crate::support::Output) -> Value {
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    v[0].clone()
}

#[tokio::test]
async fn a_command_runs_after_a_write_with_the_tokens_facts_and_no_secret() {
    let env = Env::new().await;
    let seen = env.path("hook-env");
    let cfg = config(
        &env,
        &format!(
            "{{ command = [\"/bin/sh\", \"-c\", \"env > {}\"] }}",
            seen.display()
        ),
    );
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let r = report(&out);
    assert_eq!(r["hooks"][0]["kind"], "command", "{out}");
    assert_eq!(r["hooks"][0]["ok"], true, "{out}");
    let vars = std::fs::read_to_string(&seen).unwrap_or_else(|e| panic!("the hook ran: {e}"));
    assert!(vars.contains("DEEPVUE_TOKEN_NAME=prod"), "{vars}");
    assert!(vars.contains("DEEPVUE_TOKEN_VERSION=1"), "{vars}");
    assert!(
        vars.lines()
            .any(|l| l.starts_with("DEEPVUE_TOKEN_EXPIRY=") && l.ends_with('Z')),
        "{vars}"
    );
    assert!(vars.contains("DEEPVUE_TOKEN_STORE=file "), "{vars}");
    for token in env.sim.issued_tokens() {
        assert!(
            !vars.contains(&token),
            "the token is not in the hook's environment"
        );
    }
    assert!(
        !vars.contains(CLIENT_SECRET) && !vars.contains("DEEPVUE_CLIENT"),
        "the rotator's own environment is not passed on: {vars}"
    );
    // A no-op writes nothing and runs nothing.
    std::fs::remove_file(&seen).unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    assert_eq!(report(&out)["outcome"], "fresh", "{out}");
    assert!(report(&out).get("hooks").is_none(), "{out}");
    assert!(!seen.exists(), "no hook on a no-op");
}

#[tokio::test]
async fn a_failing_hook_is_reported_and_alerted_and_never_undoes_the_write() {
    let env = Env::new().await;
    let bad = config(
        &env,
        "{ command = [\"/bin/sh\", \"-c\", \"echo reload refused >&2; exit 3\"] }",
    );
    let prom = env.path("rotate.prom");
    let out = env
        .run(
            &bad,
            &[
                "rotate",
                "--json",
                "--metrics-file",
                &prom.to_string_lossy(),
            ],
        )
        .await;
    assert_eq!(out.code, 1, "a failed hook fails the run: {out}");
    let metrics = std::fs::read_to_string(&prom).unwrap_or_default();
    assert!(
        metrics.lines().any(|l| l
            == "deepvue_rotator_hooks_total{token=\"prod\",kind=\"command\",result=\"failed\"} 1"),
        "the failure is counted: {metrics}"
    );
    let r = report(&out);
    assert_eq!(r["outcome"], "rotated", "{out}");
    assert_eq!(r["version"], "1", "the token stays written: {out}");
    assert_eq!(r["hooks"][0]["ok"], false, "{out}");
    let msg = r["hooks"][0]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains("token `prod`")
            && msg.contains("exit status: 3")
            && msg.contains("reload refused"),
        "{out}"
    );
    let alerted = |r: &Value, action: &str| {
        r["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["condition"] == "hook-failed" && x["action"] == action)
        })
    };
    assert!(alerted(&r, "trigger"), "{out}");
    assert!(env.current("prod").await.is_some(), "written");
    let human = env.run(&bad, &["rotate", "--force"]).await;
    assert!(
        human.stdout.contains("on_rotate command [/bin/sh]: FAILED"),
        "{human}"
    );
    // Fixed: the next rotation resolves the condition.
    let good = config(&env, "{ command = [\"/bin/true\"] }");
    let out = env.run(&good, &["rotate", "--force", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(alerted(&report(&out), "resolve"), "{out}");
}

#[tokio::test]
async fn a_hanging_command_is_killed_with_its_process_group_at_its_timeout() {
    let env = Env::new().await;
    let child_pid = env.path("grandchild.pid");
    let cfg = config(
        &env,
        &format!(
            "{{ command = [\"/bin/sh\", \"-c\", \"sleep 60 & echo $! > {}; wait\"], timeout = \"1s\" }}",
            child_pid.display()
        ),
    );
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        report(&out)["hooks"][0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not finish within 1s and was killed")),
        "{out}"
    );
    // What the command started went with it.
    let pid: i32 = std::fs::read_to_string(&child_pid)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("the hook wrote its child's pid: {e}"));
    let gone = std::path::Path::new(&format!("/proc/{pid}/stat"))
        .exists()
        .then(|| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default());
    assert!(
        gone.is_none_or(|s| s.contains(") Z ")),
        "the hook's child {pid} was killed with it"
    );
}

/// The pid file names a process that has exited (the application is restarting): the file is
/// read again until the new process is there, which then gets the signal.
#[tokio::test]
async fn a_pid_file_is_read_again_until_the_restarted_process_gets_the_signal() {
    let env = Env::new().await;
    let pid_file = env.path("app.pid");
    let marker = env.path("got-hup");
    // A process that has exited: its pid names nothing now.
    let mut dead = tokio::process::Command::new("/bin/true")
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let dead_pid = dead.id().unwrap_or_default();
    let _ = dead.wait().await;
    std::fs::write(&pid_file, format!("{dead_pid}\n")).unwrap_or_else(|e| panic!("{e}"));
    let cfg = config(
        &env,
        &format!(
            "{{ pid_file = \"{}\", signal = \"HUP\", timeout = \"30s\" }}",
            pid_file.display()
        ),
    );
    let mut cmd = env.command(&cfg, &["--log-format", "json", "rotate", "--json"]);
    cmd.stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut rotator = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    let mut lines =
        tokio::io::BufReader::new(rotator.stderr.take().unwrap_or_else(|| panic!())).lines();
    // Wait until the rotator found the process gone, then "restart" the application.
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no retry seen"))
            .unwrap_or_default()
            .unwrap_or_else(|| panic!("the rotator ended before retrying"));
        if line.contains("reading the pid file again") {
            break;
        }
    }
    let ready = env.path("app-ready");
    let app = tokio::process::Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "trap 'echo hup > {}; exit 0' HUP; : > {}; while :; do sleep 0.05; done",
                marker.display(),
                ready.display()
            ),
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // Once its trap is set (it says so), the pid file names the new process.
    let started = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the app did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&pid_file, format!("{}\n", app.id().unwrap_or_default()))
        .unwrap_or_else(|e| panic!("{e}"));
    while lines.next_line().await.ok().flatten().is_some() {}
    let out = rotator
        .wait_with_output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let r: Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_eq!(r[0]["hooks"][0]["kind"], "signal", "{stdout}");
    assert_eq!(r[0]["hooks"][0]["ok"], true, "{stdout}");
    // The shell runs its trap once its current `sleep` ends, then exits.
    let mut app = app;
    let status = tokio::time::timeout(Duration::from_secs(20), app.wait())
        .await
        .unwrap_or_else(|_| panic!("the app did not exit on SIGHUP"));
    assert!(status.is_ok_and(|s| s.success()));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default().trim(),
        "hup",
        "the restarted process got SIGHUP"
    );
}

#[tokio::test]
async fn hook_settings_are_checked_at_load() {
    let env = Env::new().await;
    for (hook, says) in [
        ("{ command = [] }", "non-empty argv list"),
        ("{ signal = \"HUP\" }", "signal needs `pid_file`"),
        ("{ pid_file = \"app.pid\" }", "absolute path"),
        (
            "{ pid_file = \"/run/app.pid\", signal = \"KILL\" }",
            "is not one of HUP",
        ),
        (
            "{ command = [\"/bin/true\"], timeout = \"11m\" }",
            "at most 10m",
        ),
        ("{ }", "give `command`"),
        (
            "{ command = [\"/bin/true\"], shell = true }",
            "unknown field",
        ),
    ] {
        let out = env.run(&config(&env, hook), &["rotate"]).await;
        assert_eq!(out.code, 2, "{hook}: {out}");
        assert!(out.all().contains(says), "{hook}: {says}: {out}");
        assert!(
            out.all().contains("tokens[0].on_rotate"),
            "{hook}: names the key: {out}"
        );
    }
    assert_eq!(env.calls(), 0);
}

/// A hook that (re)starts an application in the background is done when it exits, though
/// the application keeps its output open; the application is not killed with it.
#[tokio::test]
async fn a_hook_that_starts_a_background_process_finishes_and_leaves_it_running() {
    let env = Env::new().await;
    let pid_out = env.path("bg.pid");
    let cfg = config(
        &env,
        &format!(
            "{{ command = [\"/bin/sh\", \"-c\", \"sleep 30 & echo $! > {}\"], timeout = \"20s\" }}",
            pid_out.display()
        ),
    );
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(report(&out)["hooks"][0]["ok"], true, "{out}");
    let pid: i32 = std::fs::read_to_string(&pid_out)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        !stat.is_empty() && !stat.contains(") Z "),
        "the background process lives"
    );
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}
