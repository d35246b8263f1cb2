//! The Lambda adapter: the real binary as a Lambda function under `cargo lambda watch` (the
//! Lambda Runtime API emulator from PyPI `cargo-lambda`), against moto and the simulator.

use std::time::{Duration, Instant};

use deepvue_rotator::simulator::Behavior;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::aws::{
    CREDS, TOKEN, aws_section, aws_token_block, describe, document, provisioned, put_due, stage_of,
    versions,
};
use crate::moto::Moto;
use crate::support::{BIN, Env, allow_only, free_port, test_tool};

/// `cargo lambda watch --only-lambda-apis` plus our binary polling it as the function.
struct Lambda {
    port: u16,
    _watch: tokio::process::Child,
    function: Option<tokio::process::Child>,
    http: reqwest::Client,
}

impl Lambda {
    async fn start() -> Lambda {
        let bin = test_tool("CARGO_LAMBDA", "cargo-lambda");
        let port = free_port();
        let watch = tokio::process::Command::new(&bin)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install the test tools with ./scripts/test.sh \
                     (pip install cargo-lambda into .tools/venv) or set CARGO_LAMBDA",
                    bin.display()
                )
            });
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cargo lambda watch did not listen on 127.0.0.1:{port} within 30 s; run \
                 ./scripts/test.sh to (re)install cargo-lambda"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Lambda {
            port,
            _watch: watch,
            function: None,
            http: reqwest::Client::new(),
        }
    }

    /// Start the function: the real binary, no arguments, as Lambda would run `bootstrap`.
    fn function(&mut self, env: &Env, config_toml: &str) {
        self.function_with(env, config_toml, &[]);
    }

    /// The same with `extra` environment variables.
    fn function_with(&mut self, env: &Env, config_toml: &str, extra: &[(&str, &str)]) {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("DEEPVUE_ROTATOR_CONFIG_TOML", config_toml)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(env.path("function.log")).unwrap_or_else(|e| panic!("{e}")),
            )
            .kill_on_drop(true);
        cmd.envs(extra.iter().copied());
        self.function = Some(cmd.spawn().unwrap_or_else(|e| panic!("run {BIN}: {e}")));
    }

    /// Invoke and return (ok, body): `ok` false when the function returned an error.
    async fn invoke(&self, event: Value) -> (bool, Value) {
        let resp = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
                self.port
            ))
            .json(&event)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (ok, body)
    }
}

fn log(env: &Env) -> String {
    std::fs::read_to_string(env.path("function.log")).unwrap_or_default()
}

fn config(env: &Env, moto: &Moto) -> String {
    format!(
        "{}{}{}",
        env.deepvue_section(""),
        aws_section(moto),
        aws_token_block("prod", CREDS, "")
    )
}

fn scheduler_event() -> Value {
    // EventBridge Scheduler's default event: `detail` is the string "{}".
    json!({
        "version": "0", "id": "5e2a3b1c-0000-4000-8000-000000000001",
        "detail-type": "Scheduled Event", "source": "aws.scheduler",
        "account": "123456789012", "time": "2026-11-28T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/deepvue"],
        "detail": "{}"
    })
}

#[tokio::test]
async fn scheduled_invocation_runs_one_pass_and_403_fails_as_forbidden() {
    let (env, moto, sm) = provisioned().await;
    let mut lambda = Lambda::start().await;
    lambda.function(&env, &config(&env, &moto));

    let (ok, body) = lambda.invoke(scheduler_event()).await;
    assert!(ok, "{body}\n{}", log(&env));
    assert_eq!(body["tokens"][0]["outcome"], "rotated", "{body}");
    assert_eq!(versions(&sm, TOKEN).await.len(), 1);
    // A second pass is a no-op.
    let (ok, body) = lambda.invoke(json!({})).await;
    assert!(ok, "{body}");
    assert_eq!(body["tokens"][0]["outcome"], "fresh", "{body}");
    assert_eq!(env.calls(), 1);
    let logs = log(&env);
    assert!(
        logs.lines().all(|l| l.starts_with('{')),
        "JSON logs: {logs}"
    );

    // Deepvue answers 403 (egress IP not whitelisted): the invocation fails, typed Forbidden,
    // naming the egress IP; the stored token is untouched.
    env.sim.set_behavior(allow_only("203.0.113.0/24"));
    let before = versions(&sm, TOKEN).await;
    // Make the token due: an expiring document.
    put_due(&sm, "old-token-bbbb", 4).await;
    let (ok, body) = lambda.invoke(scheduler_event()).await;
    assert!(!ok, "{body}");
    assert_eq!(body["errorType"], "Forbidden", "{body}");
    let msg = body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        msg.contains("egress IP 127.0.0.1") && msg.contains("403"),
        "{msg}"
    );
    assert_eq!(versions(&sm, TOKEN).await.len(), before.len() + 1);
    assert_eq!(
        document(&sm, TOKEN, "AWSCURRENT")
            .await
            .access_token
            .expose_secret(),
        "old-token-bbbb"
    );
}

#[tokio::test]
async fn a_scheduled_pass_pushes_its_metrics_to_a_pushgateway() {
    let (env, moto, _sm) = provisioned().await;
    let gateway = crate::metrics::Pushgateway::start(env.dir.path()).await;
    let mut lambda = Lambda::start().await;
    lambda.function_with(
        &env,
        &config(&env, &moto),
        &[
            ("DEEPVUE_ROTATOR_PUSH_GATEWAY", gateway.url.as_str()),
            ("DEEPVUE_ROTATOR_PUSH_JOB", "deepvue_lambda"),
        ],
    );
    let (ok, body) = lambda.invoke(scheduler_event()).await;
    assert!(ok, "{body}\n{}", log(&env));
    let pushed = gateway.metrics().await;
    let line = |needle: &[&str]| {
        pushed
            .lines()
            .find(|l| !l.starts_with('#') && needle.iter().all(|n| l.contains(n)))
            .map(str::to_string)
    };
    let rotated = line(&[
        "deepvue_rotator_rotations_total{",
        "job=\"deepvue_lambda\"",
        "token=\"prod\"",
        "outcome=\"rotated\"",
    ]);
    assert!(
        rotated.as_deref().is_some_and(|l| l.ends_with(" 1")),
        "{rotated:?}\n{pushed}\n{}",
        log(&env)
    );
    assert!(
        line(&["deepvue_rotator_token_ready{", "token=\"prod\""])
            .is_some_and(|l| l.ends_with(" 1")),
        "{pushed}"
    );
    assert!(
        line(&[
            "deepvue_rotator_store_requests_total{",
            "backend=\"aws\"",
            "job=\"deepvue_lambda\""
        ])
        .is_some(),
        "the run's own group: {pushed}"
    );
}

fn step(name: &str, secret: &str, token: &str) -> Value {
    json!({ "Step": name, "SecretId": secret, "ClientRequestToken": token })
}

#[tokio::test]
async fn secrets_manager_rotation_runs_all_four_steps_and_replays_safely() {
    let (env, moto, sm) = provisioned().await;
    let mut lambda = Lambda::start().await;
    lambda.function(&env, &config(&env, &moto));
    // A first token through the scheduled path.
    let (ok, body) = lambda.invoke(scheduler_event()).await;
    assert!(ok, "{body}");
    let old = stage_of(&versions(&sm, TOKEN).await, "AWSCURRENT").unwrap_or_default();
    let arn = describe(&sm).await.arn().unwrap_or_default().to_string();

    // Rotation not enabled yet: the preamble refuses.
    let token = "7f3c2a10-5b7e-4c1a-9d2e-0123456789ab";
    let (ok, body) = lambda.invoke(step("createSecret", &arn, token)).await;
    assert!(!ok);
    assert_eq!(body["errorType"], "Config", "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("rotation is not enabled")
    );

    // What Secrets Manager does before calling the function: enable rotation and stage an empty
    // AWSPENDING version under the request token. moto's RotateSecret records exactly that, then
    // fails to find the (external) function, so the steps are ours to drive.
    let _ = sm
        .rotate_secret()
        .secret_id(TOKEN)
        .client_request_token(token)
        .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:deepvue-rotator")
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(1)
                .build(),
        )
        .send()
        .await;
    let d = describe(&sm).await;
    assert_eq!(d.rotation_enabled(), Some(true), "{d:?}");
    assert_eq!(
        stage_of(&versions(&sm, TOKEN).await, "AWSPENDING").as_deref(),
        Some(token)
    );

    // An unknown version: refused.
    let (ok, body) = lambda
        .invoke(step(
            "createSecret",
            &arn,
            "00000000-0000-4000-8000-000000000000",
        ))
        .await;
    assert!(!ok);
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("is not a version"),
        "{body}"
    );

    // Deepvue answers 403 during createSecret: the step fails typed Forbidden with the egress
    // IP, nothing is written, and the same step succeeds once the IP is whitelisted.
    env.sim.set_behavior(allow_only("203.0.113.0/24"));
    let before = versions(&sm, TOKEN).await;
    let (ok, body) = lambda.invoke(step("createSecret", &arn, token)).await;
    assert!(!ok, "{body}");
    assert_eq!(body["errorType"], "Forbidden", "{body}");
    let msg = body["errorMessage"].as_str().unwrap_or_default();
    assert!(msg.contains("egress IP 127.0.0.1"), "{msg}");
    assert_eq!(versions(&sm, TOKEN).await, before);
    env.sim.set_behavior(Behavior::default());

    let calls = env.calls();
    for name in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let (ok, body) = lambda.invoke(step(name, &arn, token)).await;
        assert!(ok, "{name}: {body}\n{}", log(&env));
        let after = versions(&sm, TOKEN).await;
        // Replay: changes nothing.
        let (ok, body) = lambda.invoke(step(name, &arn, token)).await;
        assert!(ok, "{name} replay: {body}");
        assert_eq!(
            versions(&sm, TOKEN).await,
            after,
            "{name} replay changed the secret"
        );
        if name == "createSecret" {
            assert_eq!(env.calls(), calls + 1, "minted once");
            assert_eq!(
                stage_of(&after, "AWSCURRENT").as_deref(),
                Some(old.as_str())
            );
            let pending = document(&sm, TOKEN, "AWSPENDING").await;
            assert!(pending.expires_in(chrono::Utc::now()) > chrono::Duration::hours(23));
        }
    }
    assert_eq!(env.calls(), calls + 1, "one mint in all");
    let v = versions(&sm, TOKEN).await;
    assert_eq!(stage_of(&v, "AWSCURRENT").as_deref(), Some(token), "{v:?}");
    assert_eq!(
        stage_of(&v, "AWSPREVIOUS").as_deref(),
        Some(old.as_str()),
        "{v:?}"
    );
    assert_eq!(stage_of(&v, "AWSPENDING"), None, "{v:?}");
    // A finishSecret that moved AWSCURRENT but died before dropping AWSPENDING: its replay
    // completes the job.
    sm.update_secret_version_stage()
        .secret_id(TOKEN)
        .version_stage("AWSPENDING")
        .move_to_version_id(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (ok, body) = lambda.invoke(step("finishSecret", &arn, token)).await;
    assert!(ok, "{body}");
    assert_eq!(stage_of(&versions(&sm, TOKEN).await, "AWSPENDING"), None);
    // The snake_case spelling of the steps is accepted too (and is a replay here).
    let (ok, body) = lambda
        .invoke(json!({"step": "create_secret", "secret_id": arn, "client_request_token": token}))
        .await;
    assert!(ok, "{body}");
    assert_eq!(body["result"], "already_current", "{body}");
}

#[tokio::test]
async fn a_config_that_does_not_load_fails_every_invocation_as_config() {
    let env = Env::new().await;
    let mut lambda = Lambda::start().await;
    lambda.function(&env, "[deepvue]\nbase_url = \"http://example.com\"\n");
    let (ok, body) = lambda.invoke(scheduler_event()).await;
    assert!(!ok);
    assert_eq!(body["errorType"], "Config", "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("https"),
        "{body}"
    );
}

/// Fan-out in the scheduled mode: a replica that cannot be written fails the invocation
/// (naming the replica) although the primary rotated; once it can, the next invocation copies
/// the token to it without a mint.
#[tokio::test]
async fn a_scheduled_fan_out_fails_on_a_replica_it_cannot_write_then_heals_it() {
    const REPLICA: &str = "deepvue/replica";
    let (env, moto, sm) = provisioned().await;
    let mut lambda = Lambda::start().await;
    lambda.function(
        &env,
        &format!(
            "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"aws\", secret_id = \"{CREDS}\" }}\nstores = [{{ backend = \"aws\", secret_id = \"{TOKEN}\" }}, {{ backend = \"aws\", secret_id = \"{REPLICA}\" }}]\n",
            env.deepvue_section(""),
            aws_section(&moto)
        ),
    );
    // The replica's secret does not exist yet (and the store may not create it).
    let (ok, body) = lambda.invoke(scheduler_event()).await;
    assert!(!ok, "{body}\n{}", log(&env));
    let msg = body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("replica aws `{REPLICA}`")),
        "names the replica: {msg}"
    );
    assert_eq!(versions(&sm, TOKEN).await.len(), 1, "the primary rotated");
    crate::aws::create_secret(&sm, REPLICA, None).await;
    let (ok, body) = lambda.invoke(scheduler_event()).await;
    assert!(ok, "{body}\n{}", log(&env));
    assert_eq!(body["tokens"][0]["outcome"], "fresh", "{body}");
    assert_eq!(
        body["tokens"][0]["replicas"][0]["state"], "copied",
        "{body}"
    );
    assert_eq!(env.calls(), 1, "healed without a mint");
    assert_eq!(
        document(&sm, REPLICA, "AWSCURRENT")
            .await
            .access_token
            .expose_secret(),
        document(&sm, TOKEN, "AWSCURRENT")
            .await
            .access_token
            .expose_secret()
    );
}
