//! The audit trail (`[audit]`): one JSON line per rotation attempt, never a secret, read back
//! by `status --history`; and `status` saying when each token will be renewed.

use std::os::unix::fs::PermissionsExt as _;

use deepvue_rotator::core::store::TokenStore as _;

use crate::support::{CLIENT_SECRET, Env, allow_only, assert_secret_free};

fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn every_attempt_is_recorded_without_a_secret_and_status_shows_the_history() {
    let env = Env::new().await;
    let dir = env.path("audit");
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("audit.jsonl");
    let cfg = env.write_config(&format!(
        "{}[audit]\nfile = \"{}\"\n\n{}",
        env.deepvue_section(""),
        file.display(),
        env.token_block("prod", "{ backend = \"env\" }")
    ));

    // First mint (schedule), a fresh pass (no attempt, no record), a forced one (manual).
    for args in [&["rotate"][..], &["rotate"], &["rotate", "--force"]] {
        let out = env.run(&cfg, args).await;
        assert_eq!(out.code, 0, "{out}");
    }
    // A 403: recorded as forbidden, with the egress IP the probe saw.
    env.sim.set_behavior(allow_only("203.0.113.0/24"));
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 3, "{out}");
    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());

    let r = records(&file);
    assert_eq!(r.len(), 3, "{r:#?}");
    let field = |i: usize, k: &str| r[i][k].as_str().unwrap_or_default().to_string();
    assert_eq!(
        (
            field(0, "trigger"),
            field(0, "outcome"),
            field(0, "version")
        ),
        ("schedule".into(), "rotated".into(), "1".into())
    );
    assert_eq!(
        (
            field(1, "trigger"),
            field(1, "outcome"),
            field(1, "version"),
            field(1, "previous_version")
        ),
        ("manual".into(), "rotated".into(), "2".into(), "1".into())
    );
    assert_eq!(
        (field(2, "outcome"), field(2, "error_class")),
        ("failed".into(), "forbidden".into())
    );
    assert_eq!(
        r[2]["egress_ips"],
        serde_json::json!(["127.0.0.1"]),
        "{r:#?}"
    );
    assert_eq!(r[0]["runner"]["mode"], "cli");
    assert!(r[0]["runner"]["pid"].as_u64().is_some());
    assert_eq!(r[0]["stores"][0]["backend"], "file");
    let mode = std::fs::metadata(&file)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let mut tokens = Vec::new();
    for v in ["1", "2"] {
        let stored = env
            .store("prod")
            .read_version(&deepvue_rotator::core::store::Version(v.into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("version {v}"));
        let doc = stored.document.unwrap_or_else(|e| panic!("{e}"));
        tokens.push(secrecy::ExposeSecret::expose_secret(&doc.access_token).to_string());
    }
    let mut secrets = tokens;
    secrets.push(CLIENT_SECRET.to_string());
    assert_secret_free(&text, &secrets, "the audit file");

    // `status --history 2`: the last two attempts, oldest first, as text and JSON.
    let out = env.run(&cfg, &["status", "--history", "2"]).await;
    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{out}");
    assert!(
        lines[1].contains("manual") && lines[1].contains("rotated"),
        "{out}"
    );
    assert!(lines[2].contains("failed"), "{out}");
    assert!(out.stdout.contains("egress IP: 127.0.0.1"), "{out}");
    let out = env
        .run(
            &cfg,
            &["status", "--history", "1", "--token", "prod", "--json"],
        )
        .await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(v[0]["outcome"], "failed");
    let out = env
        .run(&cfg, &["status", "--history", "1", "--token", "nope"])
        .await;
    assert_eq!(out.code, 2, "{out}");

    // A world-readable audit file is refused (the run says so, and still rotates).
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["rotate", "--force", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("audit file"),
        "the report's warnings say it: {out}"
    );
    assert_eq!(records(&file).len(), 3, "nothing appended to a loose file");
}

#[tokio::test]
async fn status_says_when_each_token_renews_and_history_needs_an_audit_file() {
    let env = Env::new().await;
    let cfg = env.config();
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    let out = env.run(&cfg, &["status", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(v[0][k].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{k}: {e}: {out}"))
    };
    // The default renew_before is 12h.
    assert_eq!(at("expiry") - at("renews_at"), chrono::Duration::hours(12));
    let out = env.run(&cfg, &["status"]).await;
    assert!(out.stdout.contains("  renews at "), "{out}");

    let out = env.run(&cfg, &["status", "--history", "3"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("[audit] file"), "{out}");
}

#[tokio::test]
async fn sinks_that_take_rotation_attempted_receive_every_audit_record() {
    let env = Env::new().await;
    let rx = crate::receiver::Receiver::start(&[("/hook", 200, "")]).await;
    let rx_ca = env.path("receiver-ca.pem");
    std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.write_config(&format!(
        "{}[alerting]\nca_file = \"{}\"\n\n[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"rotation.attempted\"]\n\n{}",
        env.deepvue_section(""),
        rx_ca.display(),
        rx.url("/hook"),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    for args in [&["rotate"][..], &["rotate"], &["rotate", "--force"]] {
        let out = env.run(&cfg, args).await;
        assert_eq!(out.code, 0, "{out}");
    }
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 2, "a fresh pass is no attempt");
    let (a, b) = (posts[0].json(), posts[1].json());
    assert_eq!(a["type"], "rotation.attempted");
    assert_eq!(
        (&a["trigger"], &a["outcome"], &a["version"]),
        (&"schedule".into(), &"rotated".into(), &"1".into())
    );
    assert_eq!(
        (&b["trigger"], &b["previous_version"]),
        (&"manual".into(), &"1".into())
    );
    assert_eq!(b["mode"], "cli");
    let tokens: Vec<String> = env
        .current("prod")
        .await
        .and_then(|s| s.document.ok())
        .map(|d| secrecy::ExposeSecret::expose_secret(&d.access_token).to_string())
        .into_iter()
        .collect();
    let bodies: String = posts.iter().map(|p| p.json().to_string()).collect();
    let mut secrets = tokens;
    secrets.push(CLIENT_SECRET.to_string());
    assert_secret_free(&bodies, &secrets, "rotation.attempted events");
}
