//! Fan-out (`stores = [primary, replica, …]`): one mint, the same token in every store; a
//! replica that refuses is reported and healed by the next pass without a mint; a replica
//! holding a newer token is never overwritten; concurrent runners leave one version per store.
//! Real servers: a file store as the primary, moto, OpenBao and the Secret Manager fake as
//! replicas.

use chrono::{DateTime, Utc};
use deepvue_rotator::core::store::WriteMode;
use secrecy::SecretString;
use serde_json::Value;

use crate::aws::AwsFixture;
use crate::gcp::GcpFixture;
use crate::gcp_fake::Fault;
use crate::scenarios::{FileFixture, Fixture, Store, current_token, valid_credentials};
use crate::support::{Env, Output, run};
use crate::vault::VaultFixture;

/// Four stores of one token: file (primary), AWS, Vault, GCP.
struct Fan {
    env: Env,
    file: FileFixture,
    aws: AwsFixture,
    vault: VaultFixture,
    gcp: GcpFixture,
    stores: Vec<Store>,
    cfg: std::path::PathBuf,
}

impl Fan {
    async fn start() -> Fan {
        let env = Env::new().await;
        let file = FileFixture::start();
        let aws = AwsFixture::provisioned().await;
        let vault = VaultFixture::start().await;
        let gcp = GcpFixture::fake().await;
        let creds = aws.credentials(Some(&valid_credentials())).await;
        let stores = vec![
            file.store().await,
            aws.store().await,
            vault.store().await,
            gcp.store().await,
        ];
        let list: Vec<&str> = stores.iter().map(|s| s.toml.as_str()).collect();
        let cfg = env.write_config(&format!(
            "{}{}{}{}[[tokens]]\nname = \"prod\"\ncredentials = {}\nstores = [\n  {}\n]\n",
            env.deepvue_section(""),
            aws.sections(),
            vault.sections(),
            gcp.sections(),
            creds.toml,
            list.join(",\n  ")
        ));
        Fan {
            env,
            file,
            aws,
            vault,
            gcp,
            stores,
            cfg,
        }
    }

    fn fixtures(&self) -> [&dyn Fixture; 4] {
        [&self.file, &self.aws, &self.vault, &self.gcp]
    }

    /// The binary with every backend's test environment.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.env.command(&self.cfg, args);
        for fx in self.fixtures() {
            let theirs = fx.command(&self.env, &self.cfg, args);
            for (k, v) in theirs.as_std().get_envs() {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
        }
        cmd
    }

    async fn rotate(&self, args: &[&str]) -> (Output, Value) {
        let out = run(self.command(args)).await;
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        (out, v[0].clone())
    }

    /// The token each store holds (read with our stores).
    async fn tokens(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (fx, store) in self.fixtures().into_iter().zip(&self.stores) {
            all.push(current_token(fx, store).await);
        }
        all
    }

    async fn versions(&self) -> Vec<usize> {
        let mut all = Vec::new();
        for (fx, store) in self.fixtures().into_iter().zip(&self.stores) {
            all.push(fx.versions(store).await);
        }
        all
    }

    async fn cleanup(&self) {
        self.gcp.cleanup().await;
    }
}

fn states(report: &Value) -> Vec<String> {
    report["replicas"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["state"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn all_same(tokens: &[String]) -> bool {
    tokens.windows(2).all(|w| w[0] == w[1])
}

#[tokio::test]
async fn one_mint_writes_the_same_token_to_file_aws_vault_and_gcp_and_a_rerun_copies_nothing() {
    let fan = Fan::start().await;
    let (out, r) = fan.rotate(&["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(r["outcome"], "rotated", "{out}");
    assert_eq!(states(&r), ["copied", "copied", "copied"], "{out}");
    assert_eq!(fan.env.calls(), 1, "one authorize call for four stores");
    let tokens = fan.tokens().await;
    assert!(
        all_same(&tokens) && tokens[0].starts_with("simtok_"),
        "four stores, one token"
    );
    let expiries: Vec<&Value> = r["replicas"]
        .as_array()
        .map(|a| a.iter().map(|x| &x["expiry"]).collect())
        .unwrap_or_default();
    assert!(
        expiries.iter().all(|e| **e == r["expiry"]),
        "the same expiry everywhere: {out}"
    );
    assert_eq!(fan.versions().await, [1, 1, 1, 1]);

    // Again: the primary is fresh, every replica in sync; nothing minted or written.
    let (out, r) = fan.rotate(&["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(r["outcome"], "fresh", "{out}");
    assert_eq!(states(&r), ["in_sync", "in_sync", "in_sync"], "{out}");
    assert_eq!(fan.env.calls(), 1);
    assert_eq!(fan.versions().await, [1, 1, 1, 1]);

    // The human line says how the replicas stand.
    let out = run(fan.command(&["rotate"])).await;
    assert!(out.stdout.contains("replicas: 3 of 3 in sync"), "{out}");

    // `status` shows each store's version and whether it holds the primary's token.
    let out = run(fan.command(&["status", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    let rows: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let replicas = rows[0]["replicas"].as_array().cloned().unwrap_or_default();
    assert_eq!(replicas.len(), 3, "{out}");
    for x in &replicas {
        assert_eq!(x["in_sync"], true, "{out}");
        assert_eq!(
            x["version"].as_str().map(str::is_empty),
            Some(false),
            "{out}"
        );
    }
    // `check` reaches every store, replicas included.
    let out = run(fan.command(&["check", "--json"])).await;
    let items: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let stores: Vec<&Value> = items
        .as_array()
        .map(|a| a.iter().filter(|i| i["item"] == "stores").collect())
        .unwrap_or_default();
    assert_eq!(stores.len(), 4, "{out}");
    assert!(stores.iter().all(|i| i["status"] == "pass"), "{out}");

    // A forced fan-out at trace level: no token or client secret, in any encoding, anywhere.
    let mut cmd = fan.command(&["rotate", "--force", "--json"]);
    cmd.env("RUST_LOG", "trace");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{out}");
    let all = out.all();
    let mut secrets = fan.env.sim.issued_tokens();
    secrets.push(crate::support::CLIENT_SECRET.to_string());
    for secret in &secrets {
        for form in crate::support::secret_forms(secret) {
            assert!(
                !all.contains(&form),
                "a secret ({} chars) in the output",
                secret.len()
            );
        }
    }
    assert!(all_same(&fan.tokens().await));
    fan.cleanup().await;
}

#[tokio::test]
async fn a_replica_that_refuses_is_reported_and_the_next_pass_heals_it_without_a_mint() {
    let fan = Fan::start().await;
    if let Some(f) = fan.gcp.fake_server() {
        for _ in 0..10 {
            f.inject("AddSecretVersion", Fault::Unavailable);
        }
    }
    let (out, r) = fan.rotate(&["rotate", "--json"]).await;
    assert_eq!(out.code, 1, "a failed replica fails the run: {out}");
    assert_eq!(r["outcome"], "rotated", "the primary rotated: {out}");
    assert_eq!(states(&r), ["copied", "copied", "failed"], "{out}");
    let gcp = &r["replicas"][2];
    assert_eq!(gcp["backend"], "gcp");
    assert_eq!(gcp["error"]["kind"], "transient", "{out}");
    assert!(
        gcp["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("token `prod`") && m.contains("replica gcp")),
        "names the token and the replica: {out}"
    );
    // The condition alerts (log only here: no sink configured), with the replica's token's
    // time left deciding its severity.
    let alert = |r: &Value, action: &str| {
        r["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["condition"] == "replica-behind" && x["action"] == action)
        })
    };
    assert!(alert(&r, "trigger"), "replica-behind triggered: {out}");
    let human = run(fan.command(&["rotate"])).await;
    assert!(
        human.stdout.contains("1 failed") || human.stdout.contains("3 of 3 in sync"),
        "{human}"
    );

    // The store answers again: the next pass copies the primary's token, no mint.
    if let Some(f) = fan.gcp.fake_server() {
        f.clear_faults();
    }
    let (out, r) = fan.rotate(&["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(r["outcome"], "fresh", "{out}");
    assert!(
        states(&r).iter().all(|s| s == "in_sync" || s == "copied"),
        "{out}"
    );
    assert_eq!(fan.env.calls(), 1, "healed without calling Deepvue");
    assert!(alert(&r, "resolve"), "replica-behind resolved: {out}");
    assert!(all_same(&fan.tokens().await), "healed");
    assert_eq!(fan.versions().await, [1, 1, 1, 1]);
    fan.cleanup().await;
}

/// A Vault replica whose policy may read but not write: a permanent failure, named, with the
/// exit code it maps to; once the policy allows it (here: the root token again), the next pass
/// copies without a mint.
#[tokio::test]
async fn a_vault_replica_without_write_permission_fails_permanently_then_heals() {
    let fan = Fan::start().await;
    fan.vault
        .bao()
        .policy(
            "read-only",
            "path \"secret/data/*\" { capabilities = [\"read\"] }\npath \"secret/metadata/*\" { capabilities = [\"read\"] }\n",
        )
        .await;
    let ro = fan
        .vault
        .bao()
        .ok(
            "POST",
            "auth/token/create",
            Some(serde_json::json!({"policies": ["read-only"], "no_default_policy": true})),
        )
        .await["auth"]["client_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!ro.is_empty());
    let mut cmd = fan.command(&["rotate", "--json"]);
    cmd.env("IT_VAULT_TOKEN", &ro);
    let out = run(cmd).await;
    let r: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let r = &r[0];
    assert_eq!(r["outcome"], "rotated", "{out}");
    assert_eq!(states(r), ["copied", "failed", "copied"], "{out}");
    assert_eq!(r["replicas"][1]["error"]["kind"], "permanent", "{out}");
    assert_eq!(out.code, 1, "{out}");
    let (out, r) = fan.rotate(&["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(states(&r), ["in_sync", "copied", "in_sync"], "{out}");
    assert_eq!(fan.env.calls(), 1, "healed without a mint");
    assert!(all_same(&fan.tokens().await));
    fan.cleanup().await;
}

/// An AWS replica whose IAM policy (enforced by moto) lacks `secretsmanager:PutSecretValue`:
/// the primary rotates, the replica fails (permanent, naming the action), the run fails; run
/// with an identity that may write, the next pass copies the token without a mint.
#[tokio::test]
async fn an_aws_replica_denied_by_iam_is_reported_then_healed_without_a_mint() {
    use crate::scenarios::Fixture as _;
    const REPLICA: &str = "replica/token";
    // Set-up requests before moto starts enforcing IAM: the secret, then 3 per user.
    let moto = crate::moto::Moto::enforcing_after(1 + 3 * 2).await;
    crate::aws::create_secret(&crate::aws::sm(&moto).await, REPLICA, None).await;
    let read = [
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    ];
    let no_put = moto.iam_user("replica-no-put", &read).await;
    let full = moto
        .iam_user(
            "replica-writer",
            &[read[0], read[1], "secretsmanager:PutSecretValue"],
        )
        .await;

    let env = Env::new().await;
    let file = FileFixture::start();
    let primary = file.store().await;
    let creds = file.credentials(Some(&valid_credentials())).await;
    // Straight to moto: SigV4 signs the Host header, which the counting proxy changes.
    let cfg = env.write_config(&format!(
        "{}[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[[tokens]]\nname = \"prod\"\ncredentials = {}\nstores = [\n  {},\n  {{ backend = \"aws\", secret_id = \"{REPLICA}\" }}\n]\n",
        env.deepvue_section(""),
        moto.direct,
        creds.toml,
        primary.toml,
    ));
    let as_user = |key: &(String, String), args: &[&str]| {
        let mut cmd = crate::aws::aws_command(&env, &cfg, args);
        cmd.env("AWS_ACCESS_KEY_ID", &key.0)
            .env("AWS_SECRET_ACCESS_KEY", &key.1);
        cmd
    };

    let out = run(as_user(&no_put, &["rotate", "--json"])).await;
    let r: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let r = &r[0];
    assert_eq!(r["outcome"], "rotated", "the primary rotated: {out}");
    assert_eq!(states(r), ["failed"], "{out}");
    let err = &r["replicas"][0]["error"];
    assert_eq!(err["kind"], "permanent", "{out}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("secretsmanager:PutSecretValue")
                && m.contains("token `prod`")
                && m.contains(REPLICA)),
        "names the missing action, the token and the secret: {out}"
    );
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(env.calls(), 1);

    let out = run(as_user(&full, &["rotate", "--json"])).await;
    let r: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(r[0]["outcome"], "fresh", "{out}");
    assert_eq!(states(&r[0]), ["copied"], "{out}");
    assert_eq!(env.calls(), 1, "healed without calling Deepvue");
    let out = run(as_user(&full, &["status", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("\"in_sync\":true") || out.stdout.contains("\"in_sync\": true"),
        "status: the replica holds the primary's token: {out}"
    );
    let out = run(as_user(&full, &["rotate", "--json"])).await;
    let r: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(states(&r[0]), ["in_sync"], "{out}");
}

/// A no-op pass reads a network primary once, as a single-store pass does: the read that
/// found the token fresh is what the replicas are compared with.
#[tokio::test]
async fn a_no_op_fan_out_reads_the_primary_once() {
    let env = Env::new().await;
    let aws = AwsFixture::provisioned().await;
    let file = FileFixture::start();
    let creds = aws.credentials(Some(&valid_credentials())).await;
    let (primary, replica) = (aws.store().await, file.store().await);
    let config = |stores: &str| {
        env.write_config(&format!(
            "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {}\n{stores}\n",
            env.deepvue_section(""),
            aws.sections(),
            creds.toml,
        ))
    };
    let fan = config(&format!("stores = [{}, {}]", primary.toml, replica.toml));
    let single = config(&format!("store = {}", primary.toml));
    let calls_of = |cfg: std::path::PathBuf| {
        let aws = &aws;
        let env = &env;
        async move {
            let before = aws.calls().await.unwrap_or_default();
            let out = run(aws.command(env, &cfg, &["rotate", "--json"])).await;
            assert_eq!(out.code, 0, "{out}");
            (aws.calls().await.unwrap_or_default() - before, out)
        }
    };
    let (_, out) = calls_of(fan.clone()).await;
    assert!(out.stdout.contains("\"rotated\""), "{out}");
    let (single_calls, out) = calls_of(single).await;
    assert!(out.stdout.contains("\"fresh\""), "{out}");
    let (fan_calls, out) = calls_of(fan).await;
    assert_eq!(
        states(&serde_json::from_str::<Value>(&out.stdout).unwrap_or_default()[0]),
        ["in_sync"],
        "{out}"
    );
    assert_eq!(
        fan_calls, single_calls,
        "the fan-out's no-op pass makes the single store's calls to the primary: {out}"
    );
    assert_eq!(env.calls(), 1);
}

/// Two regions, one secret name: the replica named by its `eu-west-1` ARN is written in
/// eu-west-1 (its own region, not `[aws] region`), and the two are two stores.
#[tokio::test]
async fn a_replica_in_another_region_is_written_in_its_own_region() {
    use crate::scenarios::Fixture as _;
    const NAME: &str = "deepvue/prod/token";
    let env = Env::new().await;
    let aws = AwsFixture::provisioned().await;
    let moto = aws.moto();
    let (east, west) = (
        crate::aws::sm(moto).await,
        crate::aws::sm_in(moto, "eu-west-1").await,
    );
    // Both by ARN: a plain name may be in any region, so it would collide with the other.
    let east_arn = east
        .create_secret()
        .name(NAME)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .arn
        .unwrap_or_default();
    let west_arn = west
        .create_secret()
        .name(NAME)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .arn
        .unwrap_or_default();
    assert!(west_arn.contains(":eu-west-1:"), "{west_arn}");
    let creds = aws.credentials(Some(&valid_credentials())).await;
    let cfg = env.write_config(&format!(
        "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {}\nstores = [\n  {{ backend = \"aws\", secret_id = \"{east_arn}\" }},\n  {{ backend = \"aws\", secret_id = \"{west_arn}\" }}\n]\n",
        env.deepvue_section(""),
        aws.sections(),
        creds.toml,
    ));
    let out = run(aws.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    let r: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(states(&r[0]), ["copied"], "{out}");
    let (a, b) = (
        crate::aws::document(&east, NAME, "AWSCURRENT").await,
        crate::aws::document(&west, NAME, "AWSCURRENT").await,
    );
    assert!(a.same_token(&b), "the same token in both regions");
    assert_eq!(env.calls(), 1);
}

/// A Kubernetes Secret as a replica (the API fake): one mint, the same token in the Secret's
/// `access_token` key, and a re-run leaves it alone.
#[tokio::test]
async fn a_kubernetes_secret_is_a_replica_like_any_store() {
    let env = Env::new().await;
    let file = FileFixture::start();
    let kube = crate::kubernetes::KubeFixture::fake().await;
    let (primary, replica) = (file.store().await, kube.store().await);
    let creds = file.credentials(Some(&valid_credentials())).await;
    let cfg = env.write_config(&format!(
        "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {}\nstores = [{}, {}]\n",
        env.deepvue_section(""),
        kube.sections(),
        creds.toml,
        primary.toml,
        replica.toml,
    ));
    let rotate = || run(kube.command(&env, &cfg, &["rotate", "--json"]));
    let out = rotate().await;
    assert_eq!(out.code, 0, "{out}");
    let r: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(states(&r[0]), ["copied"], "{out}");
    assert_eq!(
        current_token(&file, &primary).await,
        current_token(&kube, &replica).await,
        "the same token in the file and the Secret"
    );
    let out = rotate().await;
    let r: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(states(&r[0]), ["in_sync"], "{out}");
    assert_eq!(kube.versions(&replica).await, 1);
    assert_eq!(env.calls(), 1);
}

#[tokio::test]
async fn a_replica_holding_a_newer_token_is_never_overwritten() {
    use deepvue_rotator::core::document::TokenDocument;
    let fan = Fan::start().await;
    let (out, _) = fan.rotate(&["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    // Someone writes a token issued later than the primary's into the Vault replica.
    let later: DateTime<Utc> =
        chrono::DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).unwrap_or_else(Utc::now);
    let newer = TokenDocument {
        access_token: SecretString::from("newer-than-the-primary".to_string()),
        token_type: "bearer".into(),
        expiry: later + chrono::Duration::hours(24),
        issued_at: later,
        x_api_key: None,
    };
    let parts = crate::scenarios::parts(&fan.vault, &fan.stores[2]);
    let cur = parts
        .tokens
        .read_current()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|s| s.version);
    parts
        .tokens
        .write(&newer, WriteMode::from_current(cur.as_ref(), None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (out, r) = fan.rotate(&["rotate", "--force", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(r["outcome"], "rotated", "{out}");
    assert_eq!(states(&r), ["copied", "newer", "copied"], "{out}");
    assert_eq!(
        current_token(&fan.vault, &fan.stores[2]).await,
        "newer-than-the-primary",
        "left alone"
    );
    fan.cleanup().await;
}

#[tokio::test]
async fn six_concurrent_runners_mint_once_and_leave_one_version_per_store() {
    let fan = Fan::start().await;
    let runs: Vec<_> = (0..6)
        .map(|_| tokio::spawn(run(fan.command(&["rotate", "--json"]))))
        .collect();
    for r in runs {
        let out = r.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.code, 0, "{out}");
    }
    assert_eq!(fan.env.calls(), 1, "one mint");
    assert_eq!(fan.versions().await, [1, 1, 1, 1], "one version per store");
    assert!(all_same(&fan.tokens().await));
    fan.cleanup().await;
}

/// The daemon fans out on every pass, polls included: a replica that refuses shows as
/// `deepvue_rotator_replica_in_sync 0`, and the next poll heals it (gauge 1) without a mint.
#[tokio::test]
async fn the_daemon_heals_a_replica_at_its_next_poll_and_says_so_in_metrics() {
    let env = Env::new().await;
    let file = FileFixture::start();
    let gcp = GcpFixture::fake().await;
    let creds = gcp.credentials(Some(&valid_credentials())).await;
    let (primary, replica) = (file.store().await, gcp.store().await);
    let port = crate::support::free_port();
    let cfg = env.write_config(&format!(
        "{}{}[daemon]\nlisten = \"127.0.0.1:{port}\"\npoll_every = \"1s\"\njitter = \"0s\"\n\n[[tokens]]\nname = \"prod\"\ncredentials = {}\nstores = [{}, {}]\n",
        env.deepvue_section(""),
        gcp.sections(),
        creds.toml,
        primary.toml,
        replica.toml
    ));
    if let Some(f) = gcp.fake_server() {
        for _ in 0..10 {
            f.inject("AddSecretVersion", Fault::Unavailable);
        }
    }
    let cmd = gcp.command(&env, &cfg, &["--log-format", "json", "daemon"]);
    let d = crate::daemon::Daemon::spawn(&env, cmd, port, &[]).await;
    let gauge = async || {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with("deepvue_rotator_replica_in_sync{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let until = async |want: f64, what: &str| {
        let started = std::time::Instant::now();
        while gauge().await != Some(want) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "{what} within 60 s\n{}",
                d.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    until(0.0, "the replica reported behind").await;
    if let Some(f) = gcp.fake_server() {
        f.clear_faults();
    }
    until(1.0, "the replica healed by a poll").await;
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(
        text.contains(
            "deepvue_rotator_replica_in_sync{token=\"prod\",replica=\"1\",backend=\"gcp\"} 1"
        ),
        "{text}"
    );
    assert!(
        !text.contains(&replica.id),
        "/metrics never shows a secret id"
    );
    assert_eq!(env.calls(), 1, "healed without a mint");
    assert_eq!(
        current_token(&file, &primary).await,
        current_token(&gcp, &replica).await
    );
    assert_eq!(d.stop().await, 0);
    gcp.cleanup().await;
}
