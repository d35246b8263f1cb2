//! The `aws` backend (credentials and token store) against a real `moto_server` on 127.0.0.1:
//! the shared scenario suite (provisioned secrets, and secrets the store creates), and what is
//! Secrets Manager's own (staging labels, derived version ids, tags, call counts).

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{Credentials, Region};
use deepvue_rotator::backends::aws::AwsSection;
use deepvue_rotator::backends::aws::AwsStore;
use deepvue_rotator::backends::aws::sm_code;
use deepvue_rotator::core::document::TokenDocument;
use secrecy::ExposeSecret;

use crate::moto::Moto;
use crate::support::{CLIENT_ID, CLIENT_SECRET, Env, run};

pub const CREDS: &str = "deepvue/creds";
pub const TOKEN: &str = "deepvue/token";

pub fn aws_config(moto: &Moto) -> AwsSection {
    AwsSection {
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.endpoint.clone()),
        profile: None,
        ca_file: None,
    }
}

/// A Secrets Manager client for the test itself (static test credentials).
pub async fn sm(moto: &Moto) -> Client {
    sm_in(moto, "us-east-1").await
}

/// The same, in `region` (moto keeps each region's secrets apart, as AWS does).
pub async fn sm_in(moto: &Moto, region: &str) -> Client {
    let sdk = deepvue_rotator::backends::aws::sdk_config(&aws_config(moto))
        .await
        .unwrap_or_else(|e| panic!("sdk config: {e}"));
    let conf = aws_sdk_secretsmanager::config::Builder::from(&sdk)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    Client::from_conf(conf)
}

pub async fn create_secret(sm: &Client, name: &str, value: Option<&str>) {
    let mut req = sm.create_secret().name(name);
    if let Some(v) = value {
        req = req.secret_string(v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

pub async fn create_creds(sm: &Client) {
    create_secret(
        sm,
        CREDS,
        Some(&format!(
            r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}","note":"x"}}"#
        )),
    )
    .await;
}

/// Version id → staging labels (deprecated versions included).
pub async fn versions(sm: &Client, name: &str) -> HashMap<String, Vec<String>> {
    let out = sm
        .list_secret_version_ids()
        .secret_id(name)
        .include_deprecated(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("list versions of {name}: {e:?}"));
    out.versions()
        .iter()
        .map(|v| {
            (
                v.version_id().unwrap_or_default().to_string(),
                v.version_stages().to_vec(),
            )
        })
        .collect()
}

/// DescribeSecret of the token secret.
pub async fn describe(
    sm: &Client,
) -> aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput {
    sm.describe_secret()
        .secret_id(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {TOKEN}: {e:?}"))
}

pub fn stage_of(v: &HashMap<String, Vec<String>>, stage: &str) -> Option<String> {
    v.iter()
        .find(|(_, s)| s.iter().any(|x| x == stage))
        .map(|(id, _)| id.clone())
}

/// The document of a version id.
pub async fn document_at(sm: &Client, name: &str, version_id: &str) -> TokenDocument {
    document_of(
        sm.get_secret_value().version_id(version_id),
        name,
        version_id,
    )
    .await
}

/// The document at a stage.
pub async fn document(sm: &Client, name: &str, stage: &str) -> TokenDocument {
    document_of(sm.get_secret_value().version_stage(stage), name, stage).await
}

async fn document_of(
    get: aws_sdk_secretsmanager::operation::get_secret_value::builders::GetSecretValueFluentBuilder,
    name: &str,
    which: &str,
) -> TokenDocument {
    let out = get
        .secret_id(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {name} {which}: {e:?}"));
    TokenDocument::from_json(out.secret_string().unwrap_or_default().as_bytes())
        .unwrap_or_else(|e| panic!("{name} {which} is not a token document: {e}"))
}

pub fn aws_section(moto: &Moto) -> String {
    format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n",
        moto.endpoint
    )
}

pub fn aws_token_block(name: &str, creds: &str, store_extra: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\ncredentials = {{ backend = \"aws\", secret_id = \"{creds}\" }}\nstore = {{ backend = \"aws\", secret_id = \"{TOKEN}\"{store_extra} }}\n"
    )
}

/// The binary with moto's test credentials and nothing from the host's AWS setup.
pub fn aws_command(env: &Env, config: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = env.command(config, args);
    for v in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("DEEPVUE_CLIENT_ID")
        .env_remove("DEEPVUE_CLIENT_SECRET");
    cmd
}

/// The simulator, moto, a credentials secret and an empty (provisioned) token secret.
pub async fn provisioned() -> (Env, Moto, Client) {
    let env = Env::new().await;
    let moto = Moto::start().await;
    let sm = sm(&moto).await;
    create_creds(&sm).await;
    create_secret(&sm, TOKEN, None).await;
    (env, moto, sm)
}

/// Replace the current token with one that is due (`hours_left` of validity).
pub async fn put_due(sm: &Client, access_token: &str, hours_left: i64) {
    let now = chrono::Utc::now();
    let due = serde_json::json!({
        "access_token": access_token,
        "token_type": "bearer",
        "issued_at": deepvue_rotator::core::document::format_time(now - chrono::Duration::hours(24 - hours_left)),
        "expiry": deepvue_rotator::core::document::format_time(now + chrono::Duration::hours(hours_left)),
    });
    sm.put_secret_value()
        .secret_id(TOKEN)
        .secret_string(due.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
}

/// A config with one PagerDuty sink at `rx` (routing key from IT_PD_KEY) and the aws token.
fn alerting_config(env: &Env, moto: &Moto, rx: &crate::receiver::Receiver) -> std::path::PathBuf {
    let rx_ca = env.path("receiver-ca.pem");
    std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    env.write_config(&format!(
        "{}{}[alerting]\nenvironment = \"it\"\nca_file = \"{}\"\n\n[[alerts]]\nkind = \"pagerduty\"\nrouting_key = {{ env = \"IT_PD_KEY\" }}\nurl = \"{}\"\n\n{}",
        env.deepvue_section(""),
        aws_section(moto),
        rx_ca.display(),
        rx.url("/v2/enqueue"),
        aws_token_block("prod", CREDS, "")
    ))
}

/// A local HTTPS receiver standing in for PagerDuty's Events API.
async fn pagerduty_receiver() -> crate::receiver::Receiver {
    crate::receiver::Receiver::start(&[("/v2/enqueue", 202, "{\"status\":\"success\"}")]).await
}

/// `aws_command` with the routing key `alerting_config` refers to.
fn alerting_command(env: &Env, cfg: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut c = aws_command(env, cfg, args);
    c.env("IT_PD_KEY", "R0UT1NGKEY0000000000000000000002");
    c
}

async fn setup() -> (Env, Moto, Client, std::path::PathBuf) {
    let (env, moto, sm) = provisioned().await;
    let cfg = env.write_config(&format!(
        "{}{}{}",
        env.deepvue_section(""),
        aws_section(&moto),
        aws_token_block("prod", CREDS, "")
    ));
    (env, moto, sm, cfg)
}

#[tokio::test]
async fn awscurrent_and_awsprevious_move_under_the_derived_version_id() {
    let (env, moto, sm, cfg) = setup().await;
    let out = run(aws_command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    let first = stage_of(&versions(&sm, TOKEN).await, "AWSCURRENT").unwrap_or_default();
    let doc = document(&sm, TOKEN, "AWSCURRENT").await;

    // Forced: AWSCURRENT moves to the new version, the old one is AWSPREVIOUS and readable.
    // Three calls: read the token, read the credentials, put.
    let calls = moto.api_calls();
    let out = run(aws_command(&env, &cfg, &["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(moto.api_calls() - calls, 3, "a rotation is three calls");
    let v = versions(&sm, TOKEN).await;
    let current = stage_of(&v, "AWSCURRENT").unwrap_or_default();
    assert_ne!(current, first);
    assert_eq!(stage_of(&v, "AWSPREVIOUS").as_deref(), Some(first.as_str()));
    let prev = document(&sm, TOKEN, "AWSPREVIOUS").await;
    assert_eq!(
        prev.access_token.expose_secret(),
        doc.access_token.expose_secret()
    );
    // The version id is the derived request token: stable for (secret, previous version).
    assert_eq!(
        current,
        AwsStore::request_token(Some(&deepvue_rotator::core::store::Version(first)), 0)
    );
}

#[tokio::test]
async fn credentials_with_own_key_names() {
    let env = Env::new().await;
    let moto = Moto::start().await;
    let sm = sm(&moto).await;
    create_secret(&sm, TOKEN, None).await;
    create_secret(
        &sm,
        "creds/custom",
        Some(&format!(
            r#"{{"id":"{CLIENT_ID}","key":"{CLIENT_SECRET}"}}"#
        )),
    )
    .await;
    let cfg = env.write_config(&format!(
        "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"aws\", secret_id = \"creds/custom\", client_id_key = \"id\", client_secret_key = \"key\" }}\nstore = {{ backend = \"aws\", secret_id = \"{TOKEN}\" }}\n",
        env.deepvue_section(""),
        aws_section(&moto),
    ));
    let out = run(aws_command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.calls(), 1);
}

#[tokio::test]
async fn missing_token_secret_is_a_config_error_unless_created() {
    let env = Env::new().await;
    let moto = Moto::start().await;
    let sm = sm(&moto).await;
    create_creds(&sm).await;
    let cfg = env.write_config(&format!(
        "{}{}{}",
        env.deepvue_section(""),
        aws_section(&moto),
        aws_token_block("prod", CREDS, "")
    ));
    let out = run(aws_command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stdout.contains(TOKEN)
            && out.stdout.contains("does not exist")
            && out.stdout.contains("create_if_missing"),
        "{out}"
    );
    assert_eq!(env.calls(), 0);

    let cfg = env.write_config(&format!(
        "{}{}{}",
        env.deepvue_section(""),
        aws_section(&moto),
        aws_token_block(
            "prod",
            CREDS,
            ", create_if_missing = true, tags = { team = \"payments\" }"
        )
    ));
    let out = run(aws_command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    let d = describe(&sm).await;
    assert!(
        d.tags()
            .iter()
            .any(|t| t.key() == Some("team") && t.value() == Some("payments")),
        "{d:?}"
    );
    assert_eq!(versions(&sm, TOKEN).await.len(), 1);
    let doc = document(&sm, TOKEN, "AWSCURRENT").await;
    assert!(!doc.access_token.expose_secret().is_empty());
}

#[tokio::test]
async fn alert_state_lives_in_tags_marked_on_the_current_version_and_costs_no_call_when_healthy() {
    let (env, moto, sm, _) = setup().await;
    let rx = pagerduty_receiver().await;
    let cfg = alerting_config(&env, &moto, &rx);
    let cmd = |args: &[&str]| alerting_command(&env, &cfg, args);
    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    // With alerting on and nothing open, a no-op is still one call: the state is only read
    // when the current version carries the marker label (or the run rotated or failed).
    let calls = moto.api_calls();
    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(moto.api_calls() - calls, 1, "no-op with alerting: one call");
    let calls = moto.api_calls();
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        moto.api_calls() - calls,
        4,
        "rotation with alerting: three calls plus one state read (where open alerts resolve)"
    );

    env.sim
        .set_behavior(crate::support::allow_only("203.0.113.0/24"));
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 3, "{out}");
    let pd = rx.posts("/v2/enqueue");
    assert_eq!(pd.len(), 1, "{out}");
    assert_eq!(pd[0].json()["event_action"], "trigger");
    let d = describe(&sm).await;
    assert!(
        d.tags().iter().any(|t| t
            .key()
            .is_some_and(|k| k.starts_with("deepvue-rotator:state:"))),
        "{d:?}"
    );
    let marked = stage_of(
        &versions(&sm, TOKEN).await,
        deepvue_rotator::backends::aws::MARKER,
    );
    assert_eq!(
        marked,
        stage_of(&versions(&sm, TOKEN).await, "AWSCURRENT"),
        "the marker label sits on the current version while an alert is open"
    );

    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    let pd = rx.posts("/v2/enqueue");
    assert_eq!(pd.len(), 2, "one resolve");
    assert_eq!(pd[1].json()["event_action"], "resolve");
    assert_eq!(pd[1].json()["dedup_key"], pd[0].json()["dedup_key"]);
    // Nothing open any more: no state tags, no marker, and a no-op is one call again.
    let v = versions(&sm, TOKEN).await;
    assert_eq!(
        stage_of(&v, deepvue_rotator::backends::aws::MARKER),
        None,
        "{v:?}"
    );
    let d = describe(&sm).await;
    assert!(
        !d.tags()
            .iter()
            .any(|t| t.key().is_some_and(|k| k.starts_with("deepvue-rotator:"))),
        "{d:?}"
    );
    let calls = moto.api_calls();
    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(moto.api_calls() - calls, 1, "{out}");
}

#[tokio::test]
async fn a_taken_version_id_with_awscurrent_unchanged_is_not_a_lost_race() {
    // After an operator rolls AWSCURRENT back from T(v1) to v1, the id derived from v1 is taken
    // while AWSCURRENT is still v1. (moto's UpdateSecretVersionStage does not change what
    // GetSecretValue returns, so the rollback itself cannot be replayed here; this builds the
    // same state directly: the derived id exists, AWSCURRENT never moved.)
    let (env, _moto, sm, cfg) = setup().await;
    let out = run(aws_command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    let v1 = stage_of(&versions(&sm, TOKEN).await, "AWSCURRENT").unwrap_or_default();
    let taken =
        AwsStore::request_token(Some(&deepvue_rotator::core::store::Version(v1.clone())), 0);
    sm.put_secret_value()
        .secret_id(TOKEN)
        .client_request_token(&taken)
        .secret_string("{}")
        .version_stages("PARKED")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let out = run(aws_command(&env, &cfg, &["rotate", "--force", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("\"outcome\": \"rotated\""), "{out}");
    let v = versions(&sm, TOKEN).await;
    let now = stage_of(&v, "AWSCURRENT").unwrap_or_default();
    assert_eq!(
        now,
        AwsStore::request_token(Some(&deepvue_rotator::core::store::Version(v1.clone())), 1),
        "{v:?}"
    );
    assert_eq!(stage_of(&v, "AWSPREVIOUS").as_deref(), Some(v1.as_str()));
}

#[tokio::test]
async fn missing_aws_credentials_are_a_config_error() {
    let (env, _moto, _sm, cfg) = setup().await;
    // No AWS credentials anywhere: a config error that says so, not "cannot reach".
    let mut cmd = aws_command(&env, &cfg, &["rotate"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", env.path("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            env.path("no-aws-credentials"),
        );
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("no AWS credentials found"), "{out}");
    assert_eq!(env.calls(), 0);
}

#[tokio::test]
async fn open_alerts_resolve_at_the_next_rotation_even_after_a_foreign_writer() {
    let (env, moto, sm, plain_cfg) = setup().await;
    let rx = pagerduty_receiver().await;
    let cfg = alerting_config(&env, &moto, &rx);
    let cmd = |args: &[&str]| alerting_command(&env, &cfg, args);
    assert_eq!(run(cmd(&["rotate"])).await.code, 0);
    env.sim
        .set_behavior(crate::support::allow_only("203.0.113.0/24"));
    assert_eq!(run(cmd(&["rotate", "--force"])).await.code, 3);
    let flagged = stage_of(
        &versions(&sm, TOKEN).await,
        deepvue_rotator::backends::aws::MARKER,
    );
    assert!(flagged.is_some());
    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());

    // A runner without alert sinks rotates: AWSCURRENT moves away from the flagged version.
    let out = run(aws_command(&env, &plain_cfg, &["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        rx.posts("/v2/enqueue").len(),
        1,
        "that runner sends nothing"
    );
    // The alerting runner's next rotation reads the state and resolves.
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    let pd = rx.posts("/v2/enqueue");
    assert_eq!(pd.len(), 2, "{out}");
    assert_eq!(pd[1].json()["event_action"], "resolve");
    let v = versions(&sm, TOKEN).await;
    assert_eq!(
        stage_of(&v, deepvue_rotator::backends::aws::MARKER),
        None,
        "{v:?}"
    );
}

/// Fresh AWS stores on one moto server: provisioned (an empty secret made first, as Terraform
/// does) or created by the store itself (`create_if_missing`).
pub struct AwsFixture {
    moto: Moto,
    sm: Client,
    clients: std::sync::Arc<deepvue_rotator::backends::aws::AwsClients>,
    create_if_missing: bool,
    counter: std::sync::atomic::AtomicU32,
}

impl AwsFixture {
    async fn start(create_if_missing: bool) -> AwsFixture {
        let moto = Moto::start().await;
        let sm = sm(&moto).await;
        let clients = deepvue_rotator::backends::aws::AwsClients::with_secrets_manager(
            &aws_config(&moto),
            sm.clone(),
        );
        AwsFixture {
            moto,
            sm,
            clients,
            create_if_missing,
            counter: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Stores on secrets provisioned empty.
    pub async fn provisioned() -> AwsFixture {
        Self::start(false).await
    }

    /// The moto behind it.
    pub fn moto(&self) -> &Moto {
        &self.moto
    }

    /// Stores that create their secret on the first write.
    pub async fn created() -> AwsFixture {
        Self::start(true).await
    }

    fn next(&self) -> u32 {
        self.counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// `DescribeSecret`, `None` when the secret does not exist.
    async fn described(
        &self,
        id: &str,
    ) -> Option<aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput> {
        match self.sm.describe_secret().secret_id(id).send().await {
            Ok(d) => Some(d),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => None,
            Err(e) => panic!("describe {id}: {e:?}"),
        }
    }

    fn store_named(&self, name: &str) -> crate::scenarios::Store {
        let create = if self.create_if_missing {
            ", create_if_missing = true"
        } else {
            ""
        };
        crate::scenarios::Store {
            toml: format!("{{ backend = \"aws\", secret_id = \"{name}\"{create} }}"),
            id: name.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl crate::scenarios::Fixture for AwsFixture {
    fn backend(&self) -> &'static str {
        "aws"
    }

    fn sections(&self) -> String {
        aws_section(&self.moto)
    }

    fn clients(&self) -> deepvue_rotator::backends::Clients {
        let mut c = deepvue_rotator::backends::Clients::new(&Default::default());
        c.aws = self.clients.clone();
        c
    }

    fn command(
        &self,
        env: &Env,
        config: &std::path::Path,
        args: &[&str],
    ) -> tokio::process::Command {
        aws_command(env, config, args)
    }

    async fn store(&self) -> crate::scenarios::Store {
        let name = format!("scenario/{}/token{}", self.create_if_missing, self.next());
        if !self.create_if_missing {
            create_secret(&self.sm, &name, None).await;
        }
        self.store_named(&name)
    }

    async fn missing_store(&self) -> Option<crate::scenarios::Store> {
        (!self.create_if_missing)
            .then(|| self.store_named(&format!("scenario/missing{}", self.next())))
    }

    async fn credentials(&self, value: Option<&str>) -> crate::scenarios::Creds {
        let name = format!("scenario/creds{}", self.next());
        if let Some(v) = value {
            create_secret(&self.sm, &name, Some(v)).await;
        }
        crate::scenarios::Creds {
            toml: format!("{{ backend = \"aws\", secret_id = \"{name}\" }}"),
            id: name,
        }
    }

    async fn versions(&self, store: &crate::scenarios::Store) -> usize {
        // moto answers ListSecretVersionIds on a missing secret with a 500: look first.
        if self.described(&store.id).await.is_none() {
            return 0;
        }
        match self
            .sm
            .list_secret_version_ids()
            .secret_id(&store.id)
            .include_deprecated(true)
            .send()
            .await
        {
            Ok(out) => out.versions().len(),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => 0,
            Err(e) => panic!("list versions of {}: {e:?}", store.id),
        }
    }

    async fn previous(&self, store: &crate::scenarios::Store) -> Option<String> {
        stage_of(&versions(&self.sm, &store.id).await, "AWSPREVIOUS")
    }

    async fn calls(&self) -> Option<u64> {
        Some(self.moto.api_calls() as u64)
    }

    fn missing_says(&self) -> &'static str {
        "does not exist"
    }

    async fn state_kept(&self, store: &crate::scenarios::Store) -> Option<bool> {
        let Some(d) = self.described(&store.id).await else {
            return Some(false);
        };
        let tags = d.tags().iter().any(|t| {
            t.key()
                .is_some_and(|k| k.starts_with("deepvue-rotator:state:"))
        });
        let stages = d.version_ids_to_stages();
        let labelled =
            |label: &str| stages.is_some_and(|m| m.values().any(|s| s.iter().any(|x| x == label)));
        // The marker sits on the current version, when there is one.
        if labelled("AWSCURRENT") {
            assert_eq!(
                tags,
                labelled(deepvue_rotator::backends::aws::MARKER),
                "state tags and the marker label go together: {d:?}"
            );
        }
        Some(tags)
    }
}

crate::scenarios::suite!(AwsFixture::provisioned().await);

/// The same scenarios on secrets the store creates itself.
mod created {
    use super::AwsFixture;
    crate::scenarios::suite!(AwsFixture::created().await);
}

impl crate::faults::Faulty for AwsFixture {
    fn upstream(&self) -> (String, Option<std::path::PathBuf>) {
        (self.moto.direct.clone(), None)
    }

    fn sections_via(&self, proxy: &str) -> String {
        format!("[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{proxy}\"\n\n")
    }

    fn throttled(&self) -> crate::faults::Action {
        crate::faults::Action::Fail {
            status: 400,
            body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amzn-errortype".into(), "ThrottlingException".into()),
            ],
        }
    }
}
