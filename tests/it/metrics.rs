//! Metrics everywhere: a one-shot `rotate` writes a textfile for node_exporter and pushes to a
//! real Pushgateway (Debian `prometheus-pushgateway`); the daemon's `/metrics` negotiates the
//! format. Every exposition passes `promtool check metrics` (Debian `prometheus`), and the
//! families are exactly deploy/systemd/README.md's table (what the shipped rules and dashboard
//! are checked against).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::support::{Env, free_port};

/// `promtool`: `$PROMTOOL`, else on PATH (installed by scripts/test.sh).
fn promtool() -> PathBuf {
    let p = std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    let ok = std::process::Command::new(&p)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "promtool not found ({}): install it with ./scripts/test.sh (Debian: apt-get install prometheus)",
        p.display()
    );
    p
}

/// `promtool check metrics` on `text`: what it said when it failed.
pub fn promtool_check(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real Pushgateway on a free loopback port, killed on drop.
pub struct Pushgateway {
    _child: tokio::process::Child,
    pub url: String,
}

impl Pushgateway {
    pub async fn start(dir: &Path) -> Pushgateway {
        let bin = std::env::var_os("PUSHGATEWAY")
            .map_or_else(|| PathBuf::from("prometheus-pushgateway"), PathBuf::from);
        let port = free_port();
        let child = tokio::process::Command::new(&bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--persistence.file={}",
                dir.join("pushgateway.db").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the Pushgateway ({}) must start: {e}; install it with ./scripts/test.sh \
                     (Debian: apt-get install prometheus-pushgateway)",
                    bin.display()
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while !reqwest::get(format!("{url}/-/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the Pushgateway did not become ready on {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Pushgateway { _child: child, url }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default()
    }
}

/// The value of the first sample of `name` whose labels contain every one of `labels`.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Family names (`# TYPE` lines; OpenMetrics' counter families get their `_total`).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| {
            if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_string()
            }
        })
        .collect()
}

/// deploy/systemd/README.md's metric table.
fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/README.md"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .filter_map(|l| l.strip_prefix("| `deepvue_rotator_"))
        .filter_map(|l| l.split_once('`'))
        .map(|(rest, _)| format!("deepvue_rotator_{rest}"))
        .collect()
}

#[tokio::test]
async fn a_one_shot_run_writes_a_textfile_and_pushes_one_group_per_token() {
    let env = Env::new().await;
    let gateway = Pushgateway::start(env.dir.path()).await;
    let cfg = env.write_config(&format!(
        "{}{}{}",
        env.deepvue_section(""),
        env.token_block("alpha", "{ backend = \"env\" }"),
        env.token_block("beta", "{ backend = \"env\" }")
    ));
    let textfile = env.path("textfile/deepvue.prom");
    std::fs::create_dir(env.path("textfile")).unwrap_or_else(|e| panic!("{e}"));
    let args = [
        "rotate",
        "--metrics-file",
        textfile.to_str().unwrap_or_default(),
        "--push-gateway",
        &gateway.url,
    ];
    let out = env.run(&cfg, &args).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.stderr.contains("not exported"), "{out}");

    let text = std::fs::read_to_string(&textfile).unwrap_or_else(|e| panic!("{e}"));
    promtool_check(&text);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&textfile)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o644,
        "node_exporter reads it as another user"
    );
    assert!(
        !std::fs::read_dir(env.path("textfile"))
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".tmp")),
        "no temp file left"
    );
    for t in ["alpha", "beta"] {
        let token = format!("token=\"{t}\"");
        let v = |name: &str, extra: &[&str]| {
            let mut labels = vec![token.as_str()];
            labels.extend_from_slice(extra);
            sample(&text, name, &labels)
        };
        assert_eq!(
            v("deepvue_rotator_rotations_total", &["outcome=\"rotated\""]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            v("deepvue_rotator_rotations_total", &["outcome=\"failed\""]),
            Some(0.0),
            "counters exist at zero: {text}"
        );
        assert_eq!(v("deepvue_rotator_token_ready", &[]), Some(1.0), "{text}");
        let expiry = v("deepvue_rotator_token_expiry_timestamp_seconds", &[]).unwrap_or_default();
        let next =
            v("deepvue_rotator_token_next_rotation_timestamp_seconds", &[]).unwrap_or_default();
        assert!(
            next < expiry && expiry - next <= 12.0 * 3600.0,
            "renewal at expiry - renew_before: {text}"
        );
        assert!(v("deepvue_rotator_token_last_rotation_timestamp_seconds", &[]).is_some());
        assert!(v("deepvue_rotator_token_last_pass_timestamp_seconds", &[]).is_some());
    }
    assert_eq!(
        sample(
            &text,
            "deepvue_rotator_authorize_requests_total",
            &["class=\"ok\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "deepvue_rotator_authorize_duration_seconds_count",
            &["class=\"ok\""]
        ),
        Some(2.0)
    );
    assert!(
        sample(
            &text,
            "deepvue_rotator_store_request_duration_seconds_count",
            &["backend=\"file\"", "operation=\"write\""]
        ) == Some(2.0),
        "{text}"
    );
    assert!(text.contains("commit=\""), "{text}");

    // One group per token (with the token in its key) and one for the run's own series.
    let pushed = gateway.metrics().await;
    promtool_check(&pushed);
    for t in ["alpha", "beta"] {
        assert_eq!(
            sample(
                &pushed,
                "push_time_seconds",
                &["job=\"deepvue_rotator\"", &format!("token=\"{t}\"")]
            )
            .map(|v| v > 0.0),
            Some(true),
            "{pushed}"
        );
        assert_eq!(
            sample(
                &pushed,
                "deepvue_rotator_rotations_total",
                &[&format!("token=\"{t}\""), "outcome=\"rotated\""]
            ),
            Some(1.0),
            "{pushed}"
        );
    }
    assert_eq!(
        sample(
            &pushed,
            "deepvue_rotator_authorize_requests_total",
            &["class=\"ok\"", "job=\"deepvue_rotator\""]
        ),
        Some(2.0),
        "{pushed}"
    );

    // The next run replaces the groups and the file: nothing rotated this time.
    let out = env.run(&cfg, &args).await;
    assert_eq!(out.code, 0, "{out}");
    let text = std::fs::read_to_string(&textfile).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sample(
            &text,
            "deepvue_rotator_rotations_total",
            &["token=\"alpha\"", "outcome=\"rotated\""]
        ),
        Some(0.0),
        "{text}"
    );
    let pushed = gateway.metrics().await;
    assert_eq!(
        sample(
            &pushed,
            "deepvue_rotator_authorize_requests_total",
            &["class=\"ok\""]
        ),
        Some(0.0),
        "{pushed}"
    );

    // A Pushgateway that is down is reported and does not fail the run; bad destinations are
    // usage errors before anything runs.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = env.run(&cfg, &["rotate", "--push-gateway", &dead]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("metrics not exported: Pushgateway PUT"),
        "{out}"
    );
    let calls = env.calls();
    let out = env
        .run(&cfg, &["rotate", "--force", "--metrics-file", "/tmp/x.txt"])
        .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("must end in .prom"), "{out}");
    let out = env
        .run(
            &cfg,
            &[
                "rotate",
                "--force",
                "--push-gateway",
                "http://192.0.2.1:9091",
            ],
        )
        .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("must use https://"), "{out}");
    assert_eq!(env.calls(), calls, "nothing minted after a usage error");
}

#[tokio::test]
async fn the_daemons_metrics_negotiate_the_format_and_match_the_documented_table() {
    let env = Env::new().await;
    let port = free_port();
    let cfg = env.write_config(&format!(
        "{}[daemon]\nlisten = \"127.0.0.1:{port}\"\njitter = \"0s\"\n\n{}",
        env.deepvue_section(""),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let d = Daemon::spawn(&env, env.command(&cfg, &["daemon"]), port, &[]).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let get = async |accept: Option<&str>| {
        let mut req = reqwest::Client::new().get(&url);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{e}"));
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (ct, r.text().await.unwrap_or_default())
    };
    // Counters exist at zero from the start, before the first pass ended.
    let (ct, text) = get(None).await;
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF"));
    promtool_check(&text);
    assert_eq!(
        sample(
            &text,
            "deepvue_rotator_authorize_requests_total",
            &["class=\"forbidden\""]
        ),
        Some(0.0),
        "{text}"
    );
    // The first pass rotates; then every documented family is there.
    let started = Instant::now();
    let text = loop {
        let (_, text) = get(None).await;
        if sample(&text, "deepvue_rotator_token_ready", &["token=\"prod\""]) == Some(1.0) {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first pass did not end within 30 s:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    promtool_check(&text);
    assert_eq!(
        sample(
            &text,
            "deepvue_rotator_rotations_total",
            &["token=\"prod\"", "outcome=\"rotated\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "deepvue_rotator_rotations_total",
            &["token=\"prod\"", "outcome=\"failed\""]
        ),
        Some(0.0),
        "{text}"
    );
    let (ct, om) = get(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ))
    .await;
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    // Families that need an event this test does not make (alerts, pushes, replicas, hooks)
    // are registered but empty: promtool and the table are checked on what is there.
    let shown = families(&text);
    let documented = documented();
    let missing: Vec<_> = shown.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "exported but not in deploy/systemd/README.md's table: {missing:?}"
    );
    let absent: Vec<_> = documented
        .difference(&shown)
        .filter(|n| {
            !matches!(
                n.as_str(),
                "deepvue_rotator_alerts_total"
                    | "deepvue_rotator_pubsub_pushes_total"
                    | "deepvue_rotator_replica_in_sync"
                    | "deepvue_rotator_hooks_total"
            )
        })
        .collect();
    assert!(
        absent.is_empty(),
        "in the table but not exported: {absent:?}\n{text}"
    );
    assert_eq!(families(&om), shown, "both formats carry the same families");
    assert_eq!(d.stop().await, 0);
}
