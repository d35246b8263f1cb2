//! 403 diagnosis, drift warnings, alert dedup/resolve and every sink's payload, end to end:
//! the real binary, the simulator (with an IP allowlist and a `/ip` egress probe), a local
//! HTTPS receiver, and moto for SNS.

use deepvue_rotator::simulator::Behavior;

use crate::moto::Moto;
use crate::receiver::Receiver;
use crate::support::{Env, allow_only, run};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `[egress]` probing the simulator's `/ip`, `[alerting]` trusting the receiver, plus sinks.
fn alert_config(env: &Env, rx: &Receiver, expected: &str, sinks: &str) -> std::path::PathBuf {
    let rx_ca = env.path("receiver-ca.pem");
    std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let base = env.deepvue_section("").replace(
        "[egress]\n",
        &format!("[egress]\nexpected_ips = [{expected}]\n"),
    );
    env.write_config(&format!(
        "{base}[alerting]\nenvironment = \"it\"\nca_file = \"{}\"\n\n{sinks}\n{}",
        rx_ca.display(),
        env.token_block("prod", "{ backend = \"env\" }"),
    ))
}

#[tokio::test]
async fn forbidden_alerts_once_with_the_egress_ip_and_verifies_as_standard_webhook() {
    let env = Env::new().await;
    let rx = Receiver::start(&[("/hook", 200, "")]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = {{ env = \"IT_WEBHOOK_SECRET\" }}\n",
        rx.url("/hook")
    );
    let cfg = alert_config(&env, &rx, "\"203.0.113.10\"", &sinks);
    let cmd = |args: &[&str]| {
        let mut c = env.command(&cfg, args);
        c.env("IT_WEBHOOK_SECRET", WHSEC);
        c
    };
    // A token is stored while the IP is still allowed (drift is already visible: 127.0.0.1).
    env.sim.set_behavior(Behavior::default());
    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(rx.posts("/hook").len(), 1, "the drift warning: {out}");

    // Now Deepvue enforces the whitelist.
    env.sim.set_behavior(allow_only("203.0.113.0/24"));
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        out.stdout
            .contains("egress IP 127.0.0.1 is not in the whitelist (expected 203.0.113.10/32)"),
        "the operator is told exactly what: {out}"
    );
    assert_eq!(
        env.current_version("prod").await.as_deref(),
        Some("1"),
        "stored token untouched"
    );
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 2, "one 403 alert after the drift warning");
    let alert = posts[1].json();
    assert_eq!(alert["action"], "trigger");
    assert_eq!(alert["condition"], "ip-403");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["environment"], "it");
    assert_eq!(alert["token"], "prod");
    assert_eq!(alert["egress"]["observed"][0]["ip"], "127.0.0.1");
    assert_eq!(alert["egress"]["observed"][0]["in_expected"], false);
    assert_eq!(alert["expected_ips"][0], "203.0.113.10/32");
    let left = alert["token_expires_in_secs"].as_i64().unwrap_or_default();
    assert!((86_000..=86_400).contains(&left), "time left: {left}");
    assert!(
        alert["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("expires in 23h"),
        "{alert}"
    );
    assert!(
        alert["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("whitelist 127.0.0.1"),
        "{alert}"
    );
    assert!(
        alert["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not whitelisted"),
        "Deepvue's detail: {alert}"
    );

    // Standard Webhooks signature, checked by an independent implementation.
    let wh = standardwebhooks::Webhook::new(WHSEC).unwrap_or_else(|e| panic!("{e:?}"));
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let v = posts[1]
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"));
        headers.insert(
            name,
            axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    assert!(
        wh.verify(&posts[1].body, &headers).is_ok(),
        "signature must verify"
    );
    let mut tampered = posts[1].body.clone();
    tampered.push(b' ');
    assert!(
        wh.verify(&tampered, &headers).is_err(),
        "a tampered body must not verify"
    );
}

#[tokio::test]
async fn a_failing_first_rotation_says_no_token_is_stored_once() {
    let env = Env::with(Behavior {
        default: deepvue_rotator::simulator::Reply::Status {
            status: 503,
            detail: None,
            retry_after: None,
        },
        ..Behavior::default()
    })
    .await;
    let rx = Receiver::start(&[("/hook", 200, "")]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        rx.url("/hook")
    );
    let cfg = alert_config(&env, &rx, "", &sinks);
    let cfg_text = std::fs::read_to_string(&cfg).unwrap_or_default();
    std::fs::write(
        &cfg,
        cfg_text.replace("[deepvue]\n", "[deepvue]\nmax_attempts = 1\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 1, "{out}");
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 1, "{out}");
    let alert = posts[0].json();
    assert_eq!(alert["condition"], "rotation-failing");
    let summary = alert["summary"].as_str().unwrap_or_default();
    assert_eq!(
        summary.matches("no usable token is stored").count(),
        1,
        "said once: {summary}"
    );
    assert_eq!(
        out.stdout.matches("no usable token is stored").count(),
        1,
        "{out}"
    );
}

#[tokio::test]
async fn drift_warns_before_any_403_and_rotation_proceeds() {
    let env = Env::new().await;
    let rx = Receiver::start(&[]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        rx.url("/hook")
    );
    let cfg = alert_config(&env, &rx, "\"203.0.113.10\", \"198.51.100.0/24\"", &sinks);
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("rotated -> version 1"), "{out}");
    assert!(
        out.stdout
            .contains("WARNING egress drift: egress IP 127.0.0.1 is not in the whitelist"),
        "{out}"
    );
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 1);
    let a = posts[0].json();
    assert_eq!(
        (a["condition"].as_str(), a["severity"].as_str()),
        (Some("egress-drift"), Some("warning"))
    );

    // Whitelisted egress: no warning, and the drift alert resolves.
    let cfg = alert_config(&env, &rx, "\"127.0.0.1\"", &sinks);
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.stdout.contains("WARNING egress drift"), "{out}");
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].json()["action"], "resolve");
    assert_eq!(posts[1].json()["dedup_key"], a["dedup_key"]);
}

#[tokio::test]
async fn repeated_403_alerts_once_then_resolves_with_the_same_dedup_key() {
    let env = Env::new().await;
    let rx = Receiver::start(&[
        ("/v2/enqueue", 202, "{\"status\":\"success\"}"),
        ("/slack", 200, "ok"),
        ("/broken", 500, "oops"),
    ])
    .await;
    let sinks = format!(
        "[[alerts]]\nkind = \"pagerduty\"\nrouting_key = {{ env = \"IT_PD_KEY\" }}\nurl = \"{}\"\n\n\
         [[alerts]]\nkind = \"slack\"\nurl = {{ env = \"IT_SLACK_URL\" }}\n\n\
         [[alerts]]\nkind = \"webhook\"\nname = \"broken\"\nurl = \"{}\"\n",
        rx.url("/v2/enqueue"),
        rx.url("/broken")
    );
    let cfg = alert_config(&env, &rx, "\"127.0.0.1\"", &sinks);
    let pd_key = "R0UT1NGKEY0000000000000000000001";
    let cmd = |args: &[&str]| {
        let mut c = env.command(&cfg, args);
        c.env("IT_PD_KEY", pd_key)
            .env("IT_SLACK_URL", rx.url("/slack"));
        c
    };
    assert_eq!(run(cmd(&["rotate"])).await.code, 0);
    env.sim.set_behavior(allow_only("203.0.113.0/24"));
    for _ in 0..2 {
        let out = run(cmd(&["rotate", "--force"])).await;
        assert_eq!(
            out.code, 3,
            "a failing sink never changes the exit code: {out}"
        );
    }
    let pd = rx.posts("/v2/enqueue");
    assert_eq!(pd.len(), 1, "two runs with the same 403 alert once");
    let trigger = pd[0].json();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], pd_key);
    assert_eq!(trigger["dedup_key"], "deepvue-rotator:it:prod:ip-403");
    for k in [
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
    ] {
        assert!(trigger["payload"][k].is_string(), "payload.{k}: {trigger}");
    }
    assert!(
        ["critical", "error", "warning", "info"]
            .contains(&trigger["payload"]["severity"].as_str().unwrap_or_default())
    );
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .unwrap_or_default()
            .len()
            <= 1024
    );

    let slack = rx.posts("/slack");
    assert_eq!(slack.len(), 1);
    let s = slack[0].json();
    assert!(
        s["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Deepvue answered 403"),
        "{s}"
    );
    let blocks = s["blocks"].as_array().cloned().unwrap_or_default();
    assert!(
        !blocks.is_empty() && blocks.iter().all(|b| b["type"].is_string()),
        "{s}"
    );
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");

    // The broken sink was tried (with retries) and its failure is visible in status.
    assert!(rx.posts("/broken").len() >= 3, "retries on 5xx");
    let out = run(cmd(&["status"])).await;
    assert!(
        out.stdout.contains("alert delivery failed") && out.stdout.contains("broken: HTTP 500"),
        "{out}"
    );
    assert!(out.stdout.contains("open alerts: ip-403"), "{out}");

    // Deepvue accepts us again: one resolve with the same dedup_key.
    env.sim.set_behavior(Behavior::default());
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    let pd = rx.posts("/v2/enqueue");
    assert_eq!(pd.len(), 2, "exactly one resolve");
    let resolve = pd[1].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(resolve["routing_key"], pd_key);
}

#[tokio::test]
async fn sns_alerts_are_published_through_moto() {
    let moto = Moto::start().await;
    let env = Env::new().await;
    let rx = Receiver::start(&[]).await;
    // A topic with an SQS subscription, so the published alert can be read back.
    let topic = moto
        .query(
            "sns",
            &[
                ("Action", "CreateTopic"),
                ("Name", "deepvue-alerts"),
                ("Version", "2010-03-31"),
            ],
        )
        .await;
    let topic_arn = between(&topic, "<TopicArn>", "</TopicArn>");
    let queue = moto
        .query(
            "sqs",
            &[
                ("Action", "CreateQueue"),
                ("QueueName", "alerts"),
                ("Version", "2012-11-05"),
            ],
        )
        .await;
    let queue_url = between(&queue, "<QueueUrl>", "</QueueUrl>");
    let sub = moto
        .query(
            "sns",
            &[
                ("Action", "Subscribe"),
                ("TopicArn", &topic_arn),
                ("Protocol", "sqs"),
                ("Endpoint", "arn:aws:sqs:us-east-1:123456789012:alerts"),
                ("Version", "2010-03-31"),
            ],
        )
        .await;
    assert!(sub.contains("SubscriptionArn"), "{sub}");

    let sinks = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[[alerts]]\nkind = \"sns\"\ntopic_arn = \"{topic_arn}\"\n",
        moto.endpoint
    );
    let cfg = alert_config(&env, &rx, "\"127.0.0.1\"", &sinks);
    let cmd = |args: &[&str]| {
        let mut c = env.command(&cfg, args);
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_PROFILE");
        c
    };
    assert_eq!(run(cmd(&["rotate"])).await.code, 0);
    env.sim.set_behavior(allow_only("203.0.113.0/24"));
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        out.stdout.contains("alert ip-403 (warning) -> sns-0"),
        "{out}"
    );
    let msgs = moto
        .query(
            "sqs",
            &[
                ("Action", "ReceiveMessage"),
                ("QueueUrl", &queue_url),
                ("MaxNumberOfMessages", "10"),
                ("Version", "2012-11-05"),
            ],
        )
        .await;
    assert!(
        msgs.contains("ip-403") && msgs.contains("deepvue-rotator:it:prod:ip-403"),
        "{msgs}"
    );

    // check reaches the topic.
    let out = run(cmd(&["check"])).await;
    assert!(
        out.stdout
            .contains("PASS     alerting is configured and reachable (sink sns-0)"),
        "{out}"
    );
}

fn between(s: &str, a: &str, b: &str) -> String {
    s.split(a)
        .nth(1)
        .and_then(|r| r.split(b).next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no {a} in {s}"))
}

#[tokio::test]
async fn check_evaluates_the_production_checklist() {
    let env = Env::new().await;
    let rx = Receiver::start(&[]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        rx.url("/hook")
    );
    let good = alert_config(&env, &rx, "\"127.0.0.1\"", &sinks);
    let text = std::fs::read_to_string(&good)
        .unwrap_or_default()
        .replace("[rotation]", "");
    let good =
        env.write_config(&text.replace("[egress]", "[rotation]\nrun_every = \"1h\"\n\n[egress]"));
    let out = env.run(&good, &["check"]).await;
    assert_eq!(out.code, 0, "{out}");
    for item in [
        "every endpoint is HTTPS",
        "credentials come from env",
        "no credential in the config",
        "egress IP is in expected_ips",
        "refreshed ahead",
        "alerting is configured",
        "stores are reachable",
        "Deepvue TLS handshake",
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with("PASS") && l.contains(item)),
            "{item}: {out}"
        );
    }
    assert!(
        out.stdout
            .contains("egress IP 127.0.0.1 is in the whitelist"),
        "{out}"
    );
    assert!(rx.posts("/hook").is_empty(), "check sends no alert");
    assert_eq!(env.calls(), 0, "check never mints");

    let good_text = std::fs::read_to_string(&good).unwrap_or_default();
    let cases = [
        (
            good_text.replace(&rx.url("/hook"), &rx.url("/hook").replace("https", "http")),
            "FAIL     every endpoint is HTTPS",
            2,
        ),
        (
            good_text.replace(
                "{ backend = \"env\" }",
                "{ backend = \"env\", client_secret = \"x\" }",
            ),
            "FAIL     no credential in the config",
            2,
        ),
        (
            good_text.replace("\"127.0.0.1\"", "\"203.0.113.10\""),
            "FAIL     egress IP is in expected_ips: egress IP 127.0.0.1 is not in the whitelist",
            1,
        ),
        (
            good_text.replace(
                &env.store_dir("prod").display().to_string(),
                "/proc/version/x",
            ),
            "FAIL     stores are reachable",
            1,
        ),
    ];
    for (text, needle, code) in cases {
        let cfg = env.write_config(&text);
        let out = env.run(&cfg, &["check"]).await;
        assert_eq!(out.code, code, "{needle}: {out}");
        assert!(out.stdout.contains(needle), "{needle}: {out}");
    }
    let out = env.run(&good, &["check", "--json"]).await;
    let items: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert!(
        items
            .as_array()
            .is_some_and(|a| a.iter().all(|i| i["status"] == "pass")),
        "{out}"
    );
}

/// `events = ["token.rotated"]`: a write sends the event (signed as alerts are, verified by an
/// independent Standard Webhooks implementation) with name, version, expiry, store and runner
/// and never the token or the client secret; a no-op sends nothing; a sink without `events`
/// gets no event.
#[tokio::test]
async fn a_rotation_sends_a_signed_token_rotated_event_to_the_sinks_that_ask_for_it() {
    let env = Env::new().await;
    let rx = Receiver::start(&[("/events", 200, ""), ("/alerts", 200, "")]).await;
    let sinks = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = {{ env = \"IT_WEBHOOK_SECRET\" }}\nevents = [\"token.rotated\"]\n\n[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        rx.url("/events"),
        rx.url("/alerts")
    );
    let cfg = alert_config(&env, &rx, "\"127.0.0.1\"", &sinks);
    let cmd = |args: &[&str]| {
        let mut c = env.command(&cfg, args);
        c.env("IT_WEBHOOK_SECRET", WHSEC);
        c
    };
    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    let posts = rx.posts("/events");
    assert_eq!(posts.len(), 1, "one event: {out}");
    let e = posts[0].json();
    assert_eq!(e["type"], "token.rotated");
    assert_eq!(e["token"], "prod");
    assert_eq!(e["version"], "1");
    assert!(
        e["expiry"].as_str().is_some_and(|x| x.ends_with('Z')),
        "{e}"
    );
    assert!(
        e["store"].as_str().is_some_and(|s| s.starts_with("file ")),
        "{e}"
    );
    assert!(
        e["runner"]["pid"].as_u64().is_some() && e["runner"]["host"].is_string(),
        "{e}"
    );
    assert!(
        e["id"].as_str().is_some_and(|i| i.starts_with("evt_")),
        "{e}"
    );
    let body = String::from_utf8_lossy(&posts[0].body).into_owned();
    for t in env.sim.issued_tokens() {
        for form in crate::support::secret_forms(&t) {
            assert!(!body.contains(&form), "the token is not in the event");
        }
    }
    for form in crate::support::secret_forms(crate::support::CLIENT_SECRET) {
        assert!(
            !body.contains(&form),
            "the client secret is not in the event"
        );
    }
    // Signed; the webhook-id is the event's id.
    let wh = standardwebhooks::Webhook::new(WHSEC).unwrap_or_else(|e| panic!("{e:?}"));
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let v = posts[0]
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"));
        headers.insert(
            name,
            axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    assert!(
        wh.verify(&posts[0].body, &headers).is_ok(),
        "signature must verify"
    );
    assert_eq!(
        posts[0]
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok()),
        e["id"].as_str()
    );
    assert!(
        rx.posts("/alerts").is_empty(),
        "a sink without events gets none"
    );
    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(rx.posts("/events").len(), 1, "a no-op sends no event");
}

#[tokio::test]
async fn events_are_refused_where_unknown() {
    let env = Env::new().await;
    let rx = Receiver::start(&[]).await;
    for (sink, says) in [
        (
            format!(
                "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"token.expired\"]\n",
                rx.url("/x")
            ),
            "`token.expired` is not an event kind",
        ),
        (
            "[[alerts]]\nkind = \"slack\"\nwebhook_url = { env = \"X\" }\nevents = [\"token.rotated\"]\n".to_string(),
            "events",
        ),
    ] {
        let cfg = alert_config(&env, &rx, "\"127.0.0.1\"", &sink);
        let out = env.run(&cfg, &["rotate"]).await;
        assert_eq!(out.code, 2, "{out}");
        assert!(out.all().contains(says), "{says}: {out}");
    }
}

#[tokio::test]
async fn token_rotated_events_are_published_to_sns_with_an_event_type_attribute() {
    let moto = Moto::start().await;
    let env = Env::new().await;
    let rx = Receiver::start(&[]).await;
    let topic = moto
        .query(
            "sns",
            &[
                ("Action", "CreateTopic"),
                ("Name", "deepvue-events"),
                ("Version", "2010-03-31"),
            ],
        )
        .await;
    let topic_arn = between(&topic, "<TopicArn>", "</TopicArn>");
    let queue = moto
        .query(
            "sqs",
            &[
                ("Action", "CreateQueue"),
                ("QueueName", "events"),
                ("Version", "2012-11-05"),
            ],
        )
        .await;
    let queue_url = between(&queue, "<QueueUrl>", "</QueueUrl>");
    moto.query(
        "sns",
        &[
            ("Action", "Subscribe"),
            ("TopicArn", &topic_arn),
            ("Protocol", "sqs"),
            ("Endpoint", "arn:aws:sqs:us-east-1:123456789012:events"),
            ("Version", "2010-03-31"),
        ],
    )
    .await;
    let sinks = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[[alerts]]\nkind = \"sns\"\ntopic_arn = \"{topic_arn}\"\nevents = [\"token.rotated\"]\n",
        moto.endpoint
    );
    let cfg = alert_config(&env, &rx, "\"127.0.0.1\"", &sinks);
    let mut c = env.command(&cfg, &["rotate"]);
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE");
    let out = run(c).await;
    assert_eq!(out.code, 0, "{out}");
    let msgs = moto
        .query(
            "sqs",
            &[
                ("Action", "ReceiveMessage"),
                ("QueueUrl", &queue_url),
                ("MaxNumberOfMessages", "10"),
                ("Version", "2012-11-05"),
            ],
        )
        .await;
    assert!(
        msgs.contains("token.rotated") && msgs.contains("event_type") && msgs.contains("prod"),
        "{msgs}"
    );
    for t in env.sim.issued_tokens() {
        assert!(!msgs.contains(&t), "the token is not in the event");
    }
}

/// `check` probes a webhook where deliveries go: a path that answers 404 fails the item
/// (deliveries would fail there), an existing one passes; nothing is POSTed either way.
#[tokio::test]
async fn check_finds_a_webhook_path_that_does_not_exist() {
    let env = Env::new().await;
    let rx = Receiver::start(&[("/gone", 404, "not found")]).await;
    for (path, status) in [("/gone", "fail"), ("/hook", "pass")] {
        let sinks = format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            rx.url(path)
        );
        let cfg = alert_config(&env, &rx, "\"127.0.0.1\"", &sinks);
        let out = env.run(&cfg, &["check", "--json"]).await;
        let items: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
        let sink = items
            .iter()
            .find(|i| i["item"] == "alerting")
            .unwrap_or_else(|| panic!("{out}"));
        assert_eq!(sink["status"], status, "{path}: {out}");
        if status == "fail" {
            assert!(
                sink["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("HTTP 404")),
                "{out}"
            );
        }
        assert!(rx.posts(path).is_empty(), "check posts nothing");
    }
}

/// The Pub/Sub sink on the Pub/Sub fake: a `token.rotated` event (attributes `event_type` and
/// `token`, the JSON in `data`, never a secret), a transient 503 retried, an alert published as
/// `event_type = alert` with the egress IP, and `check` reading the topic (a missing one fails,
/// naming it).
#[tokio::test]
async fn events_and_alerts_are_published_to_pubsub_and_check_reads_the_topic() {
    let fake = crate::pubsub_fake::PubsubFake::start().await;
    let topic = fake.create_topic("p1", "deepvue-events");
    let env = Env::new().await;
    let secrets = || {
        let mut s = env.sim.issued_tokens();
        s.push(crate::support::CLIENT_SECRET.to_string());
        s
    };
    let rx = Receiver::start(&[]).await;
    let sinks = |topic: &str| {
        format!(
            "[gcp]\nproject = \"p1\"\nanonymous = true\nendpoint_url = \"{0}\"\n\n[[alerts]]\nkind = \"pubsub\"\nname = \"events\"\ntopic = \"{topic}\"\nendpoint_url = \"{0}\"\nevents = [\"token.rotated\"]\n",
            fake.endpoint
        )
    };
    // A short topic id: the [gcp] project's.
    let cfg = alert_config(&env, &rx, "\"127.0.0.1\"", &sinks("deepvue-events"));
    fake.fail_next(503, 1);
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    let got = fake.published();
    assert_eq!(got.len(), 1, "one event after a retried 503: {out}");
    assert_eq!(got[0].topic, topic);
    assert_eq!(
        got[0].attributes.get("event_type").map(String::as_str),
        Some("token.rotated")
    );
    assert_eq!(
        got[0].attributes.get("token").map(String::as_str),
        Some("prod")
    );
    assert!(
        got[0].authorization.is_none(),
        "anonymous: no credentials sent"
    );
    let event: serde_json::Value = serde_json::from_slice(&got[0].data).unwrap_or_default();
    assert_eq!(event["type"], "token.rotated");
    assert_eq!(event["token"], "prod");
    assert_eq!(
        event["version"].as_str(),
        env.current_version("prod").await.as_deref()
    );
    let text = String::from_utf8_lossy(&got[0].data).to_string();
    crate::support::assert_secret_free(&text, &secrets(), "the event");

    // An alert: Deepvue refuses the egress IP.
    env.sim.set_behavior(allow_only("203.0.113.0/24"));
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_ne!(out.code, 0, "{out}");
    let got = fake.published();
    let alert = got
        .iter()
        .find(|m| m.attributes.get("event_type").map(String::as_str) == Some("alert"))
        .unwrap_or_else(|| panic!("no alert published: {got:?}\n{out}"));
    let text = String::from_utf8_lossy(&alert.data);
    assert!(text.contains("egress IP 127.0.0.1"), "{text}");
    crate::support::assert_secret_free(&text, &secrets(), "the alert");

    // check reads the topic; a missing topic fails, named.
    let out = env.run(&cfg, &["check", "--json"]).await;
    assert!(
        out.stdout
            .contains("topic projects/p1/topics/deepvue-events reachable"),
        "{out}"
    );
    let missing = alert_config(
        &env,
        &rx,
        "\"127.0.0.1\"",
        &sinks("projects/p1/topics/gone"),
    );
    let out = env.run(&missing, &["check", "--json"]).await;
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("projects/p1/topics/gone") && out.stdout.contains("HTTP 404"),
        "{out}"
    );
}
