//! The binary, as a user runs it, against the simulator.

use std::time::{Duration, Instant};

use deepvue_rotator::simulator::{Behavior, Malformed, Reply, SimOptions, Simulator};

use crate::support::{BIN, CLIENT_ID, Env, run};

fn status(code: u16) -> Reply {
    Reply::Status {
        status: code,
        detail: None,
        retry_after: None,
    }
}

#[tokio::test]
async fn dry_run_and_json_reports() {
    let env = Env::new().await;
    let cfg = env.config();
    let out = env.run(&cfg, &["rotate", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let reports: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert_eq!(reports[0]["outcome"], "would_rotate");
    assert_eq!(reports[0]["reason"], "no token stored yet");
    assert_eq!(env.calls(), 0);
    assert!(env.current("prod").await.is_none());

    let out = env.run(&cfg, &["rotate", "--json"]).await;
    let reports: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert_eq!(reports[0]["outcome"], "rotated", "{out}");
    assert_eq!(reports[0]["version"], "1");
    assert_eq!(reports[0]["backend"], "file");
    assert!(reports[0]["error"].is_null());

    let out = env.run(&cfg, &["read", "nope"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("no token named `nope`"), "{out}");
}

#[tokio::test]
async fn read_before_any_rotation_says_so() {
    let env = Env::new().await;
    let out = env.run(&env.config(), &["read", "prod"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("holds no token yet"), "{out}");
}

#[tokio::test]
async fn transient_5xx_twice_then_success() {
    let env = Env::with(Behavior {
        script: vec![status(500), status(503)],
        ..Behavior::default()
    })
    .await;
    let out = env.run(&env.config(), &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.calls(), 3);
    assert!(out.stderr.contains("retrying"), "{out}");
    assert_eq!(env.current_version("prod").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn rate_limited_429_honours_retry_after() {
    let env = Env::with(Behavior {
        script: vec![Reply::Status {
            status: 429,
            detail: None,
            retry_after: Some("2".into()),
        }],
        ..Behavior::default()
    })
    .await;
    let started = Instant::now();
    let out = env.run(&env.config(), &["rotate"]).await;
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.calls(), 2);
    assert!(
        took >= Duration::from_secs(2),
        "Retry-After: 2 must be waited out, took {took:?}"
    );
}

#[tokio::test]
async fn an_absurd_retry_after_ends_the_retries_cleanly() {
    let env = Env::with(Behavior {
        default: Reply::Status {
            status: 503,
            detail: None,
            retry_after: Some("18446744073709551615".into()),
        },
        ..Behavior::default()
    })
    .await;
    let out = env.run(&env.config(), &["rotate"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("retry deadline"), "{out}");
    assert_eq!(env.calls(), 1);
}

#[tokio::test]
async fn retries_are_bounded() {
    let env = Env::with(Behavior {
        default: status(503),
        ..Behavior::default()
    })
    .await;
    let cfg = env.write_config(&format!(
        "{}{}",
        env.deepvue_section("max_attempts = 3"),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(env.calls(), 3);
    assert!(
        out.stdout.contains("FAILED [transient]") && out.stdout.contains("after 3 attempt(s)"),
        "{out}"
    );
    assert!(
        out.stdout.contains("Source Unavailable"),
        "Deepvue's detail is kept: {out}"
    );
    assert!(env.current("prod").await.is_none());
}

#[tokio::test]
async fn rejected_credentials_exit_4_without_retry_and_keep_the_token() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let out = env
        .run_with_secret(&cfg, "wrong-secret", &["rotate", "--force"])
        .await;
    assert_eq!(out.code, 4, "{out}");
    assert_eq!(env.calls(), 2, "401 must not be retried");
    assert!(
        out.stdout.contains("[credentials_rejected]") && out.stdout.contains("HTTP 401"),
        "{out}"
    );
    assert!(
        out.stdout.contains("Invalid client_id or client_secret"),
        "{out}"
    );
    assert_eq!(env.current_version("prod").await.as_deref(), Some("1"));
    // status shows the failure.
    let out = env.run(&cfg, &["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert_eq!(rows[0]["last_outcome"], "failed");
    assert!(
        rows[0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("credentials_rejected")
    );
}

#[tokio::test]
async fn forbidden_403_exit_3_and_keep_the_token() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    env.sim.set_behavior(Behavior {
        allowed_ips: Some(vec![
            "203.0.113.7/32".parse().unwrap_or_else(|e| panic!("{e}")),
        ]),
        ..Behavior::default()
    });
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(env.calls(), 2, "403 must not be retried");
    assert!(
        out.stdout.contains("[forbidden]") && out.stdout.contains("not whitelisted"),
        "{out}"
    );
    assert!(out.stdout.contains("the stored token expires in"), "{out}");
    assert_eq!(env.current_version("prod").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn malformed_answers_are_never_stored() {
    for what in [
        Malformed::NotJson,
        Malformed::NoToken,
        Malformed::EmptyToken,
        Malformed::Huge,
        Malformed::Expired,
    ] {
        let env = Env::new().await;
        let cfg = env.write_config(&format!(
            "{}{}",
            env.deepvue_section("max_attempts = 2"),
            env.token_block("prod", "{ backend = \"env\" }")
        ));
        assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
        env.sim.set_behavior(Behavior {
            default: Reply::Malformed { what },
            ..Behavior::default()
        });
        let out = env.run(&cfg, &["rotate", "--force"]).await;
        assert_eq!(out.code, 1, "{what:?}: {out}");
        assert!(out.stdout.contains("malformed answer"), "{what:?}: {out}");
        assert_eq!(
            env.calls(),
            3,
            "{what:?}: malformed answers are retried as transient"
        );
        assert_eq!(
            env.current_version("prod").await.as_deref(),
            Some("1"),
            "{what:?}"
        );
        let doc = env.current("prod").await.and_then(|s| s.document.ok());
        assert!(
            doc.is_some(),
            "{what:?}: the stored document must stay valid"
        );
    }
}

#[tokio::test]
async fn http_base_url_is_refused_before_anything_is_sent() {
    let env = Env::new().await;
    let http = env.sim.base_url().replace("https://", "http://");
    let cfg = env.write_config(&format!(
        "[deepvue]\nbase_url = \"{http}\"\n{}",
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("must use https://"), "{out}");
    assert_eq!(env.calls(), 0);
}

#[tokio::test]
async fn untrusted_certificate_fails_and_stores_nothing() {
    let env = Env::new().await;
    // A trust store holding some other CA: the simulator's certificate is not trusted.
    let other = Simulator::start(SimOptions::default())
        .await
        .unwrap_or_else(|e| panic!("second simulator: {e:#}"));
    let other_ca = env.path("other-ca.pem");
    std::fs::write(&other_ca, other.ca_pem()).unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.write_config(&format!(
        "[deepvue]\nbase_url = \"{}\"\n{}",
        env.sim.base_url(),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let mut cmd = env.command(&cfg, &["rotate"]);
    cmd.env("SSL_CERT_FILE", &other_ca);
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains("TLS with 127.0.0.1 failed") && out.stdout.contains("UnknownIssuer"),
        "{out}"
    );
    assert_eq!(env.calls(), 0);
    assert!(env.current("prod").await.is_none());
}

#[tokio::test]
async fn urlencoded_option_and_multipart_default() {
    let env = Env::new().await;
    assert_eq!(
        env.run(&env.config(), &["rotate", "--token", "prod"])
            .await
            .code,
        0
    );
    let cfg = env.write_config(&format!(
        "{}{}",
        env.deepvue_section("request_encoding = \"urlencoded\""),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        env.sim.stats().content_types,
        ["multipart/form-data", "application/x-www-form-urlencoded"]
    );
}

#[tokio::test]
async fn one_rejected_token_does_not_stop_the_others() {
    let env = Env::new().await;
    let cfg = env.write_config(&format!(
        "{}{}{}",
        env.deepvue_section(""),
        env.token_block("good", "{ backend = \"env\" }"),
        env.token_block(
            "bad",
            "{ backend = \"env\", client_secret_var = \"IT_WRONG_SECRET\" }"
        )
    ));
    let mut cmd = env.command(&cfg, &["rotate"]);
    cmd.env("IT_WRONG_SECRET", "not-the-secret");
    let out = run(cmd).await;
    assert_eq!(out.code, 4, "{out}");
    assert_eq!(env.current_version("good").await.as_deref(), Some("1"));
    assert!(env.current("bad").await.is_none());
    assert!(
        out.stdout.contains("good: rotated")
            && out.stdout.contains("bad: FAILED [credentials_rejected]"),
        "{out}"
    );

    // Missing credentials are a config error (2), which outranks everything.
    let mut cmd = env.command(&cfg, &["rotate", "--force"]);
    cmd.env_remove("IT_WRONG_SECRET");
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("IT_WRONG_SECRET is not set"), "{out}");
}

#[tokio::test]
async fn sigkill_at_any_point_leaves_a_valid_store() {
    let env = Env::with(Behavior {
        latency_ms: 20,
        ..Behavior::default()
    })
    .await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let mut completed = 0;
    for i in 0..24u64 {
        let mut child = env
            .command(&cfg, &["rotate", "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        tokio::time::sleep(Duration::from_millis(5 + i * 4)).await;
        let _ = child.start_kill(); // SIGKILL
        let status = child.wait().await.unwrap_or_else(|e| panic!("wait: {e}"));
        if status.success() {
            completed += 1;
        }
        let stored = env.current("prod").await;
        let doc = stored.as_ref().map(|s| s.document.is_ok());
        assert_eq!(
            doc,
            Some(true),
            "after kill #{i} the current document must be complete"
        );
    }
    // The next run cleans up and works.
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 0, "{out}");
    let leftovers: Vec<_> = walk(&env.store_dir("prod"))
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    eprintln!("sigkill test: {completed} of 24 runs completed before the kill");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn config_errors_exit_2_and_name_the_problem() {
    let env = Env::new().await;
    let good = format!(
        "{}{}",
        env.deepvue_section(""),
        env.token_block("prod", "{ backend = \"env\" }")
    );
    let cases = [
        (good.replace("backoff_base", "backof_base"), "backof_base"),
        (
            good.replace(
                "{ backend = \"env\" }",
                "{ backend = \"env\", client_secret = \"inline-SENTINEL\" }",
            ),
            "tokens[0].credentials.client_secret",
        ),
        (
            good.replace("backend = \"file\"", "backend = \"s3\""),
            "tokens[0].store",
        ),
        ("[deepvue]\n".to_string(), "no [[tokens]]"),
    ];
    for (text, needle) in cases {
        let cfg = env.write_config(&text);
        let out = env.run(&cfg, &["rotate"]).await;
        assert_eq!(out.code, 2, "{needle}: {out}");
        assert!(out.stderr.contains(needle), "{needle}: {out}");
        assert!(!out.all().contains("inline-SENTINEL"), "{out}");
    }
    assert_eq!(env.calls(), 0);

    // No config at all, and the inline-TOML environment variable.
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("rotate")
        .env_remove("DEEPVUE_ROTATOR_CONFIG")
        .env_remove("DEEPVUE_ROTATOR_CONFIG_TOML");
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("DEEPVUE_ROTATOR_CONFIG_TOML"), "{out}");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["rotate", "--dry-run"])
        .env_remove("DEEPVUE_ROTATOR_CONFIG")
        .env("DEEPVUE_ROTATOR_CONFIG_TOML", &good);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("would rotate"), "{out}");
    // Usage errors are 2 as well.
    let out = env.run(&env.config(), &["rotate", "--bogus"]).await;
    assert_eq!(out.code, 2, "{out}");
}

#[tokio::test]
async fn check_reports_every_problem_without_minting() {
    let env = Env::new().await;
    let out = env.run(&env.config(), &["check"]).await;
    for needle in [
        "PASS     Deepvue TLS handshake",
        "PASS     credentials come from env or a secret manager (token `prod`)",
        "PASS     stores are reachable and writable (token `prod`)",
        // The bare foundation config misses two production-checklist items.
        "FAIL     egress IP is in expected_ips: egress.expected_ips is not set",
        "FAIL     alerting is configured and reachable: no [[alerts]] sink configured",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {out}");
    }
    assert_eq!(out.code, 1, "{out}");

    let blocker = env.path("not-a-dir");
    std::fs::write(&blocker, "x").unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.write_config(&format!(
        "{}[[tokens]]\nname = \"broken\"\ncredentials = {{ backend = \"env\", client_id_var = \"IT_MISSING_ID\" }}\nstore = {{ backend = \"file\", path = \"{}/x\" }}\n",
        env.deepvue_section(""),
        blocker.display()
    ));
    let out = env.run(&cfg, &["check", "--json"]).await;
    assert_eq!(out.code, 1, "{out}");
    let items: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let failed: Vec<String> = items
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["status"] == "fail")
                .map(|i| i["check"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    for f in [
        "credentials come from env or a secret manager (token `broken`)",
        "stores are reachable and writable (token `broken`)",
    ] {
        assert!(failed.iter().any(|x| x == f), "{f}: {out}");
    }
    assert!(out.stdout.contains("IT_MISSING_ID is not set"), "{out}");
    assert_eq!(env.calls(), 0, "check never mints");
}

#[tokio::test]
async fn demo_runs_offline() {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("demo").env_remove("SSL_CERT_FILE");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{out}");
    for needle in [
        "rotated -> version 1",
        "fresh, version 1",
        "authorize calls so far: 1",
        "FAILED [forbidden]",
        "exit code: 3",
    ] {
        assert!(out.stdout.contains(needle), "missing {needle:?}: {out}");
    }
    assert!(
        !out.all().contains("simtok_"),
        "the demo must not print tokens: {out}"
    );
    let _ = CLIENT_ID;
}

impl Env {
    pub async fn run_with_secret(
        &self,
        config: &std::path::Path,
        secret: &str,
        args: &[&str],
    ) -> crate::support::Output {
        let mut cmd = self.command(config, args);
        cmd.env("DEEPVUE_CLIENT_SECRET", secret);
        run(cmd).await
    }
}

/// `publish_api_key`: off by default (no `x_api_key` in the document); on, the document
/// carries the client secret that minted the token, and `check` warns of the trade-off
/// (naming the token and its store) without failing for it.
#[tokio::test]
async fn the_api_key_is_published_only_when_asked_and_check_warns_about_it() {
    let env = Env::new().await;
    let plain = env.config();
    let out = env.run(&plain, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    let out = env.run(&plain, &["read", "prod", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert!(doc.get("x_api_key").is_none(), "off by default: {out}");
    let out = env.run(&plain, &["check", "--json"]).await;
    assert!(!out.stdout.contains("\"api-key\""), "{out}");

    let published = env.write_config(&format!(
        "{}{}publish_api_key = true\n",
        env.deepvue_section(""),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let out = env.run(&published, &["rotate", "--force"]).await;
    assert_eq!(out.code, 0, "{out}");
    let out = env.run(&published, &["read", "prod", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert_eq!(doc["x_api_key"], crate::support::CLIENT_SECRET, "{out}");
    assert!(
        doc["access_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("simtok_"))
    );
    let out = env.run(&published, &["check", "--json"]).await;
    let items: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
    let warn = items
        .iter()
        .find(|i| i["item"] == "api-key")
        .unwrap_or_else(|| panic!("an api-key item: {out}"));
    assert_eq!(warn["status"], "warn", "{out}");
    assert!(
        warn["detail"]
            .as_str()
            .is_some_and(|d| d.contains("token `prod`") && d.contains("file `")),
        "{out}"
    );
    let out = env.run(&published, &["check"]).await;
    assert!(
        out.stdout.contains("WARN") && out.stdout.contains("1 warning(s)"),
        "{out}"
    );
    assert!(!out.all().contains(crate::support::CLIENT_SECRET), "{out}");
}

/// A no-op logs nothing at the default level (a quiet daemon logs only what changed); the
/// "no rotation needed" line is there at debug.
#[tokio::test]
async fn a_fresh_token_is_a_debug_line_not_an_info_one() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.stderr.contains("no rotation needed"), "{out}");
    let mut cmd = env.command(&cfg, &["rotate"]);
    cmd.env("RUST_LOG", "debug");
    let out = crate::support::run(cmd).await;
    assert!(out.stderr.contains("no rotation needed"), "{out}");
}

#[tokio::test]
async fn with_json_a_broken_config_or_an_unknown_token_is_a_json_error_on_stdout() {
    let env = Env::new().await;
    let broken = env.write_config("[deepvue]\nbase_url = \"http://example.com\"\n");
    let good = env.config();
    for (cfg, args) in [
        (&broken, &["rotate", "--json"][..]),
        (&broken, &["status", "--json"]),
        (&broken, &["read", "prod", "--json"]),
        (&good, &["rotate", "--json", "--token", "nope"]),
        (&good, &["read", "nope", "--json"]),
        (&good, &["status", "--json", "--history", "2"]),
    ] {
        let out = env.run(cfg, args).await;
        assert_eq!(out.code, 2, "{args:?}: {out}");
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is JSON: {e}: {out}"));
        assert_eq!(v["error"]["kind"], "config", "{args:?}: {out}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && out.stderr.contains(message),
            "{args:?}: the same message on stderr: {out}"
        );
    }
    // Without --json stdout stays empty.
    let out = env.run(&broken, &["rotate"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (2, ""), "{out}");
}

#[tokio::test]
async fn completions_man_pages_and_version_come_from_the_command_line_definition() {
    let plain = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .env_remove("DEEPVUE_ROTATOR_CONFIG")
            .env_remove("DEEPVUE_ROTATOR_CONFIG_TOML");
        run(cmd)
    };
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = plain(&["completions", shell]).await;
        assert_eq!(out.code, 0, "{shell}: {out}");
        for word in ["deepvue-rotator", "rotate", "suspend", "via-daemon"] {
            assert!(out.stdout.contains(word), "{shell} completions name {word}");
        }
    }
    // The bash script is valid bash.
    let out = plain(&["completions", "bash"]).await;
    let script = std::env::temp_dir().join(format!("dr-completion-{}.bash", std::process::id()));
    std::fs::write(&script, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    let _ = std::fs::remove_file(&script);
    assert!(syntax.success(), "bash -n on the completion script");

    let out = plain(&["man"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains(".TH deepvue-rotator 1"), "{out}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(out.stdout.contains(section), "{section}");
    }
    let out = plain(&["man", "rotate"]).await;
    assert!(
        out.stdout.contains(".TH deepvue-rotator-rotate 1")
            && out.stdout.contains("\\-\\-metrics\\-file"),
        "{out}"
    );
    let out = plain(&["man", "nope"]).await;
    assert_eq!(out.code, 2, "{out}");

    // --version: the version, the git commit and the enabled features.
    let out = plain(&["--version"]).await;
    let line = out.stdout.trim();
    assert!(
        line.starts_with(&format!(
            "deepvue-rotator {} (commit ",
            env!("CARGO_PKG_VERSION")
        )) && line.ends_with("; features agent,aws,daemon,gcp,kubernetes,lambda,simulator,vault)"),
        "{line}"
    );
    let commit = line
        .split("commit ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_default();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
}
