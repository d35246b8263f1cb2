//! No secret in any output: the binary at RUST_LOG=trace, both log formats, through success,
//! 401, 403, 5xx and malformed answers.

use deepvue_rotator::simulator::{Behavior, Malformed, Reply};

use crate::support::{CLIENT_SECRET, Env, Output, run};

fn assert_clean(out: &Output, secrets: &[String], what: &str) {
    let all = out.all();
    for s in secrets {
        assert!(
            !all.contains(s.as_str()),
            "{what}: output contains a secret ({} chars)\n{out}",
            s.len()
        );
    }
}

#[tokio::test]
async fn trace_logs_never_show_secrets_or_tokens() {
    let env = Env::new().await;
    let cfg = env.write_config(&format!(
        "{}{}",
        env.deepvue_section("max_attempts = 2"),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let wrong_secret = "wrong-SENTINEL-secret-77".to_string();
    let mut outputs: Vec<(String, Output)> = Vec::new();
    for format in ["text", "json"] {
        let scenarios: Vec<(&str, Behavior, Vec<&str>, Option<&str>)> = vec![
            (
                "success",
                Behavior::default(),
                vec!["rotate", "--force"],
                None,
            ),
            (
                "401",
                Behavior::default(),
                vec!["rotate", "--force"],
                Some(wrong_secret.as_str()),
            ),
            (
                "403",
                Behavior {
                    allowed_ips: Some(vec![
                        "203.0.113.0/24".parse().unwrap_or_else(|e| panic!("{e}")),
                    ]),
                    ..Behavior::default()
                },
                vec!["rotate", "--force"],
                None,
            ),
            (
                "5xx",
                Behavior {
                    default: Reply::Status {
                        status: 500,
                        detail: None,
                        retry_after: None,
                    },
                    ..Behavior::default()
                },
                vec!["rotate", "--force"],
                None,
            ),
            (
                "not-json",
                Behavior {
                    default: Reply::Malformed {
                        what: Malformed::NotJson,
                    },
                    ..Behavior::default()
                },
                vec!["rotate", "--force"],
                None,
            ),
            (
                "huge",
                Behavior {
                    default: Reply::Malformed {
                        what: Malformed::Huge,
                    },
                    ..Behavior::default()
                },
                vec!["rotate", "--force"],
                None,
            ),
            (
                "expired",
                Behavior {
                    default: Reply::Malformed {
                        what: Malformed::Expired,
                    },
                    ..Behavior::default()
                },
                vec!["rotate", "--force"],
                None,
            ),
            ("status", Behavior::default(), vec!["status"], None),
            ("check", Behavior::default(), vec!["check"], None),
        ];
        for (name, behavior, args, secret) in scenarios {
            env.sim.set_behavior(behavior);
            let mut full = vec!["--log-format", format];
            full.extend(args);
            let mut cmd = env.command(&cfg, &full);
            cmd.env("RUST_LOG", "trace");
            if let Some(s) = secret {
                cmd.env("DEEPVUE_CLIENT_SECRET", s);
            }
            let out = run(cmd).await;
            if full.contains(&"rotate") {
                assert!(
                    out.stderr.contains("TRACE") || out.stderr.contains("\"level\":\"TRACE\""),
                    "{name}/{format}: trace logging must be on\n{out}"
                );
            }
            outputs.push((format!("{name}/{format}"), out));
        }
    }
    let mut secrets = env.sim.issued_tokens();
    assert!(secrets.len() >= 8, "tokens issued: {}", secrets.len());
    secrets.push(CLIENT_SECRET.to_string());
    secrets.push(wrong_secret);
    for (what, out) in &outputs {
        assert_clean(out, &secrets, what);
    }

    // Positive control: `read` is the one command that prints the token, and the check sees it.
    let out = env.run(&cfg, &["read", "prod"]).await;
    assert!(
        secrets.iter().any(|s| out.stdout.contains(s.as_str())),
        "read prints the token\n{out}"
    );
}
