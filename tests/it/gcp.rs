//! The `gcp` backend (credentials and token store): the shared scenario suite, and what is
//! Secret Manager's own (the lease, crc32c, GC, ADC, call accounting).
//!
//! **Where they run.** Against the Secret Manager fake (`gcp_fake.rs`) on 127.0.0.1, or — when
//! `DEEPVUE_ROTATOR_TEST_GCP_PROJECT` is set (with Application Default Credentials) — against
//! real Secret Manager in that project, with secrets named `deepvue-it-<random>-…` that the
//! tests delete at the end. Call counts are asserted on the fake only (Secret Manager has no
//! request log to read); checks that need an injected fault (a lost answer, a corrupted
//! checksum, a required service-account key) always use the fake, and say so on stderr.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deepvue_rotator::backends::gcp::{
    GcpClients, GcpSection, GcpStore, LEASE_ANNOTATION, STATE_ANNOTATION_PREFIX,
};
use deepvue_rotator::core::state::StateStore;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model::secret_version::State;
use google_cloud_secretmanager_v1::model::{Replication, Secret, SecretPayload, replication};

use crate::gcp_fake::{Fault, GcpFake};
use crate::support::{CLIENT_ID, CLIENT_SECRET, Env, Output, run};

pub const REAL_PROJECT_VAR: &str = "DEEPVUE_ROTATOR_TEST_GCP_PROJECT";
const FAKE_PROJECT: &str = "it-project";

/// The Secret Manager under test: the fake, or a real project.
pub struct Gcp {
    pub fake: Option<GcpFake>,
    pub project: String,
    pub client: SecretManagerService,
    prefix: String,
    created: std::sync::Mutex<Vec<String>>,
}

impl Gcp {
    /// Real Secret Manager when `DEEPVUE_ROTATOR_TEST_GCP_PROJECT` is set, else the fake.
    pub async fn start() -> Gcp {
        match std::env::var(REAL_PROJECT_VAR)
            .ok()
            .filter(|p| !p.is_empty())
        {
            Some(project) => Self::real(project).await,
            None => Self::fake().await,
        }
    }

    /// Always the fake (checks that inject faults).
    pub async fn fake() -> Gcp {
        let fake = GcpFake::start().await;
        let client = SecretManagerService::builder()
            .with_endpoint(fake.endpoint.clone())
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .build()
            .await
            .unwrap_or_else(|e| panic!("test client for the fake: {e}"));
        Gcp {
            fake: Some(fake),
            project: FAKE_PROJECT.into(),
            client,
            prefix: "deepvue-it".into(),
            created: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn real(project: String) -> Gcp {
        deepvue_rotator::support::tls::install_default_provider();
        let creds = google_cloud_auth::credentials::Builder::default()
            .build()
            .unwrap_or_else(|e| panic!("{REAL_PROJECT_VAR} is set but ADC does not load: {e}"));
        let client = SecretManagerService::builder()
            .with_credentials(creds)
            .build()
            .await
            .unwrap_or_else(|e| panic!("Secret Manager client: {e}"));
        let r: u32 = rand::random();
        Gcp {
            fake: None,
            project,
            client,
            prefix: format!("deepvue-it-{r:08x}"),
            created: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn is_fake(&self) -> bool {
        self.fake.is_some()
    }

    /// A secret id unique to this run.
    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    pub fn name(&self, id: &str) -> String {
        format!("projects/{}/secrets/{id}", self.project)
    }

    /// `[gcp]` for the binary.
    pub fn section(&self) -> String {
        match &self.fake {
            Some(f) => format!(
                "[gcp]\nproject = \"{}\"\nendpoint_url = \"{}\"\nanonymous = true\n\n",
                self.project, f.endpoint
            ),
            None => format!("[gcp]\nproject = \"{}\"\n\n", self.project),
        }
    }

    pub fn gcp_section(&self) -> GcpSection {
        GcpSection {
            project: Some(self.project.clone()),
            endpoint_url: self.fake.as_ref().map(|f| f.endpoint.clone()),
            anonymous: self.is_fake(),
            allow_custom_endpoint_with_credentials: false,
        }
    }

    pub async fn create(&self, id: &str, destroy_ttl_secs: Option<i64>) {
        let mut secret = Secret::new()
            .set_replication(Replication::new().set_automatic(replication::Automatic::default()));
        if let Some(t) = destroy_ttl_secs {
            secret = secret.set_version_destroy_ttl(google_cloud_wkt::Duration::clamp(t, 0));
        }
        self.client
            .create_secret()
            .set_parent(format!("projects/{}", self.project))
            .set_secret_id(id)
            .set_secret(secret)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create {id}: {e}"));
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id.to_string());
    }

    pub async fn add(&self, id: &str, data: &[u8]) -> u64 {
        let v = self
            .client
            .add_secret_version()
            .set_parent(self.name(id))
            .set_payload(
                SecretPayload::new()
                    .set_data(bytes::Bytes::copy_from_slice(data))
                    .set_data_crc32c(i64::from(crate::gcp_fake::crc32c(data))),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("add to {id}: {e}"));
        number(&v.name)
    }

    /// Version number → state, newest first.
    pub async fn versions(&self, id: &str) -> Vec<(u64, State, bool)> {
        let page = self
            .client
            .list_secret_versions()
            .set_parent(self.name(id))
            .set_page_size(1000)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list {id}: {e}"));
        let mut out: Vec<(u64, State, bool)> = page
            .versions
            .iter()
            .map(|v| {
                (
                    number(&v.name),
                    v.state.clone(),
                    v.scheduled_destroy_time.is_some(),
                )
            })
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.0));
        out
    }

    pub async fn secret(&self, id: &str) -> Secret {
        self.client
            .get_secret()
            .set_name(self.name(id))
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e}"))
    }

    /// Calls per RPC on the fake; `None` on real Secret Manager.
    pub fn calls(&self) -> Option<BTreeMap<String, u64>> {
        self.fake.as_ref().map(GcpFake::calls)
    }

    pub fn total(&self) -> Option<u64> {
        self.fake.as_ref().map(GcpFake::total_calls)
    }

    /// Delete what this run created (real Secret Manager; the fake just goes away).
    pub async fn cleanup(&self) {
        if self.is_fake() {
            return;
        }
        let ids = self
            .created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for id in ids {
            let _ = self
                .client
                .delete_secret()
                .set_name(self.name(&id))
                .send()
                .await;
        }
    }

    /// The credentials secret (`{client_id, client_secret, note}`) and an empty token secret.
    pub async fn provision(&self) -> (String, String) {
        let (creds, token) = (self.id("credentials"), self.id("token"));
        self.create(&creds, None).await;
        self.add(
            &creds,
            format!(
                r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}","note":"x"}}"#
            )
            .as_bytes(),
        )
        .await;
        self.create(&token, None).await;
        (creds, token)
    }

    /// The binary with nothing from the host's Google setup (the fake), or with it (real).
    pub fn command(&self, env: &Env, config: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = env.command(config, args);
        cmd.env_remove("DEEPVUE_CLIENT_ID")
            .env_remove("DEEPVUE_CLIENT_SECRET");
        if self.is_fake() {
            for v in [
                "GOOGLE_APPLICATION_CREDENTIALS",
                "GOOGLE_CLOUD_PROJECT",
                "GOOGLE_CLOUD_QUOTA_PROJECT",
                "GCE_METADATA_HOST",
                "GOOGLE_CLOUD_RUST_LOGGING",
            ] {
                cmd.env_remove(v);
            }
        }
        cmd
    }
}

pub fn number(name: &str) -> u64 {
    name.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn token_block(name: &str, creds: &str, token: &str, store_extra: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\ncredentials = {{ backend = \"gcp\", secret_id = \"{creds}\" }}\nstore = {{ backend = \"gcp\", secret_id = \"{token}\"{store_extra} }}\n"
    )
}

/// The issue's config example, values filled in (plus the simulator's `[deepvue]`).
fn config(env: &Env, gcp: &Gcp, creds: &str, token: &str, extra: &str) -> PathBuf {
    env.write_config(&format!(
        "{}{}{}{}",
        env.deepvue_section(""),
        gcp.section(),
        extra,
        token_block("prod", creds, token, ", keep_versions = 5")
    ))
}

/// Replace the current token with one that is due (`hours_left` of validity).
pub async fn put_due(gcp: &Gcp, id: &str, access_token: &str, hours_left: i64) -> u64 {
    let now = chrono::Utc::now();
    let due = serde_json::json!({
        "access_token": access_token,
        "token_type": "bearer",
        "issued_at": deepvue_rotator::core::document::format_time(now - chrono::Duration::hours(24 - hours_left)),
        "expiry": deepvue_rotator::core::document::format_time(now + chrono::Duration::hours(hours_left)),
    });
    gcp.add(id, due.to_string().as_bytes()).await
}

fn outcome(out: &Output) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    v[0]["outcome"].as_str().unwrap_or_default().to_string()
}

fn delta(before: &Option<BTreeMap<String, u64>>, after: &Option<BTreeMap<String, u64>>) -> String {
    let (Some(b), Some(a)) = (before, after) else {
        return "(real Secret Manager: not counted)".into();
    };
    a.iter()
        .filter_map(|(k, v)| {
            let d = v - b.get(k).copied().unwrap_or(0);
            (d > 0).then(|| format!("{k}={d}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn count(c: &Option<BTreeMap<String, u64>>, rpc: &str) -> u64 {
    c.as_ref()
        .and_then(|m| m.get(rpc).copied())
        .unwrap_or_default()
}

#[tokio::test]
async fn calls_of_a_no_op_and_a_rotation_and_the_previous_version_stays_enabled() {
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let (creds, token) = gcp.provision().await;
    let cfg = config(&env, &gcp, &creds, &token, "");
    let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(outcome(&out), "rotated", "{out}");

    // A no-op: one AccessSecretVersion, nothing else; no authorize call.
    let before = gcp.calls();
    let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(outcome(&out), "fresh", "{out}");
    let after = gcp.calls();
    if gcp.is_fake() {
        assert_eq!(
            delta(&before, &after),
            "AccessSecretVersion=1",
            "a no-op is one call"
        );
    }

    // Forced: a new version; the previous one is still enabled.
    let before = gcp.calls();
    let out = run(gcp.command(&env, &cfg, &["rotate", "--force", "--json"])).await;
    assert_eq!(outcome(&out), "rotated", "{out}");
    let after = gcp.calls();
    if gcp.is_fake() {
        // Token secret: read, the run state (a suspension? get), lease (get + update),
        // re-read, add = 6; plus the credentials read. No GC list while the newest version is
        // within keep_versions.
        assert_eq!(
            delta(&before, &after),
            "AccessSecretVersion=3 AddSecretVersion=1 GetSecret=2 UpdateSecret=1",
            "{out}"
        );
    }
    let v = gcp.versions(&token).await;
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v.iter().all(|(_, s, _)| *s == State::Enabled), "{v:?}");
    gcp.cleanup().await;
}

#[tokio::test]
async fn a_lease_left_by_a_killed_holder_expires_and_the_next_run_rotates() {
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let (creds, token) = gcp.provision().await;
    // Leases live lock_timeout (4 s here); minting takes 3 s, so the holder is killed mid-mint.
    let extra = "[rotation]\nlock_timeout = \"4s\"\n\n";
    let cfg = env.write_config(&format!(
        "{}{}{}{}",
        env.deepvue_section(
            "request_timeout = \"3500ms\"\nretry_deadline = \"100ms\"\nmax_attempts = 1"
        ),
        gcp.section(),
        extra,
        token_block("prod", &creds, &token, "")
    ));
    env.sim.set_behavior(deepvue_rotator::simulator::Behavior {
        latency_ms: 3000,
        ..Default::default()
    });
    let mut holder = gcp
        .command(&env, &cfg, &["rotate"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let started = Instant::now();
    loop {
        let s = gcp.secret(&token).await;
        if s.annotations.contains_key(LEASE_ANNOTATION) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the holder took no lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.kill().await.unwrap_or_else(|e| panic!("kill: {e}"));
    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());

    // While the dead holder's lease lives: another runner, nothing written.
    let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(outcome(&out), "rotated_by_another_runner", "{out}");
    assert!(gcp.versions(&token).await.is_empty());

    // Once it expires (an event the runs themselves observe), the next run rotates; until
    // then every run stands aside and writes nothing.
    let started = Instant::now();
    loop {
        let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
        assert_eq!(out.code, 0, "{out}");
        match outcome(&out).as_str() {
            "rotated" => break,
            "rotated_by_another_runner" => {
                assert!(gcp.versions(&token).await.is_empty(), "{out}");
            }
            other => panic!("{other}: {out}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the dead holder's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gcp.versions(&token).await.len(), 1);
    gcp.cleanup().await;
}

#[tokio::test]
async fn version_gc_destroys_beyond_keep_versions_and_honours_version_destroy_ttl() {
    for ttl in [None, Some(86_400)] {
        let env = Env::new().await;
        let gcp = Gcp::start().await;
        let (creds, _) = gcp.provision().await;
        let token = gcp.id(if ttl.is_some() {
            "ttl-token"
        } else {
            "gc-token"
        });
        gcp.create(&token, ttl).await;
        let cfg = env.write_config(&format!(
            "{}{}{}",
            env.deepvue_section(""),
            gcp.section(),
            token_block("prod", &creds, &token, ", keep_versions = 3")
        ));
        // A disabled old version is billed too: GC destroys it like an enabled one.
        for i in 0..4 {
            put_due(&gcp, &token, &format!("old-{i}"), 30).await;
        }
        gcp.client
            .disable_secret_version()
            .set_name(format!("{}/versions/1", gcp.name(&token)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("disable: {e}"));
        let out = run(gcp.command(&env, &cfg, &["rotate", "--force"])).await;
        assert_eq!(out.code, 0, "{out}");
        let v = gcp.versions(&token).await;
        assert_eq!(v.len(), 5, "{v:?}");
        let live: Vec<u64> = v
            .iter()
            .filter(|(_, s, sched)| *s == State::Enabled && !sched)
            .map(|x| x.0)
            .collect();
        assert_eq!(live, vec![5, 4, 3], "the newest keep_versions stay: {v:?}");
        for (n, state, scheduled) in v.iter().filter(|x| x.0 <= 2) {
            match ttl {
                None => assert_eq!(*state, State::Destroyed, "version {n}: {v:?}"),
                Some(_) => assert!(
                    *state == State::Disabled && *scheduled,
                    "version {n} is scheduled for destruction: {v:?}"
                ),
            }
        }
        if ttl.is_some() {
            assert!(
                out.stderr.contains("scheduled for destruction"),
                "the schedule is reported: {out}"
            );
        } else {
            assert!(out.stderr.contains("destroyed old versions"), "{out}");
        }
        // The next rotation destroys one more (and leaves scheduled ones alone).
        let out = run(gcp.command(&env, &cfg, &["rotate", "--force"])).await;
        assert_eq!(out.code, 0, "{out}");
        let v = gcp.versions(&token).await;
        let live: Vec<u64> = v
            .iter()
            .filter(|(_, s, sched)| *s == State::Enabled && !sched)
            .map(|x| x.0)
            .collect();
        assert_eq!(live, vec![6, 5, 4], "{v:?}");
        gcp.cleanup().await;
    }
}

#[tokio::test]
async fn a_checksum_mismatch_makes_the_token_due_and_says_why() {
    eprintln!("a_checksum_mismatch…: needs a corrupted stored checksum, so it runs on the fake");
    let env = Env::new().await;
    let gcp = Gcp::fake().await;
    let (creds, token) = gcp.provision().await;
    let cfg = config(&env, &gcp, &creds, &token, "");
    assert_eq!(run(gcp.command(&env, &cfg, &["rotate"])).await.code, 0);
    if let Some(f) = &gcp.fake {
        f.corrupt_checksum(&gcp.project, &token, 1);
    }
    let out = run(gcp.command(&env, &cfg, &["status", "--json"])).await;
    assert!(
        out.stdout.contains("dataCrc32c") && out.stdout.contains("\"due\": true"),
        "{out}"
    );
    let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(outcome(&out), "rotated", "a corrupt document is due: {out}");
    assert!(
        out.stdout.contains("dataCrc32c"),
        "the reason says why: {out}"
    );
    assert_eq!(gcp.versions(&token).await.len(), 2);
}

#[tokio::test]
async fn a_redirect_from_the_endpoint_is_never_followed() {
    eprintln!("a_redirect…: needs an injected redirect, so it runs on the fake");
    let env = Env::new().await;
    let gcp = Gcp::fake().await;
    let (creds, token) = gcp.provision().await;
    let cfg = config(&env, &gcp, &creds, &token, "");
    let elsewhere = crate::support::ProxyTrap::start().await;
    let port = elsewhere
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if let Some(f) = &gcp.fake {
        f.inject("AccessSecretVersion", Fault::RedirectTo(port));
    }
    let out = run(gcp.command(&env, &cfg, &["rotate"])).await;
    assert_ne!(out.code, 0, "a redirect is an error, not followed: {out}");
    assert_eq!(
        elsewhere.hits(),
        0,
        "the client went where the redirect pointed"
    );
    assert_eq!(env.calls(), 0, "nothing minted");
}

#[tokio::test]
async fn a_lost_add_answer_is_found_by_its_write_id_not_added_twice() {
    eprintln!("a_lost_add_answer…: needs an injected lost answer, so it runs on the fake");
    let env = Env::new().await;
    let gcp = Gcp::fake().await;
    let (creds, token) = gcp.provision().await;
    let cfg = config(&env, &gcp, &creds, &token, "");
    if let Some(f) = &gcp.fake {
        f.inject("AddSecretVersion", Fault::LoseAnswer);
    }
    let adds = count(&gcp.calls(), "AddSecretVersion");
    let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(outcome(&out), "rotated", "{out}");
    assert_eq!(gcp.versions(&token).await.len(), 1, "one version, not two");
    assert_eq!(
        count(&gcp.calls(), "AddSecretVersion") - adds,
        1,
        "added once"
    );
    assert!(out.stderr.contains("whose add answer was lost"), "{out}");

    // An add that never landed is tried once more.
    if let Some(f) = &gcp.fake {
        f.inject("AddSecretVersion", Fault::Unavailable);
    }
    let out = run(gcp.command(&env, &cfg, &["rotate", "--force", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(gcp.versions(&token).await.len(), 2);
}

#[tokio::test]
async fn credentials_with_own_key_names_and_a_full_resource_name() {
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let token = gcp.id("token");
    gcp.create(&token, None).await;
    let custom = gcp.id("creds-custom");
    gcp.create(&custom, None).await;
    gcp.add(
        &custom,
        format!(r#"{{"id":"{CLIENT_ID}","key":"{CLIENT_SECRET}"}}"#).as_bytes(),
    )
    .await;
    let cfg = env.write_config(&format!(
        "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"gcp\", secret_id = \"{custom}\", client_id_key = \"id\", client_secret_key = \"key\" }}\nstore = {{ backend = \"gcp\", secret_id = \"projects/{}/secrets/{token}\" }}\n",
        env.deepvue_section(""),
        gcp.section(),
        gcp.project,
    ));
    let out = run(gcp.command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.calls(), 1);
    gcp.cleanup().await;
}

/// A 2048-bit RSA key from `openssl genpkey` (ring cannot generate RSA keys), PKCS#8 PEM, made
/// once per test run.
pub fn rsa_key_pem() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "openssl is needed to generate the test RSA key (apt-get install openssl): {e}"
                )
            });
        assert!(out.status.success(), "openssl genpkey failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

/// The key pair of [`rsa_key_pem`] and its public (n, e).
pub fn rsa_key() -> (ring::signature::RsaKeyPair, Vec<u8>, Vec<u8>) {
    let pem = rsa_key_pem();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
        .unwrap_or_else(|e| panic!("PEM: {e}"));
    let kp = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap_or_else(|e| panic!("key: {e}"));
    let c: ring::rsa::PublicKeyComponents<Vec<u8>> = kp.public().into();
    (kp, c.n, c.e)
}

#[tokio::test]
async fn adc_with_a_service_account_key_signs_its_own_jwts() {
    eprintln!(
        "adc_with_a_service_account_key…: the fake verifies the key's JWTs, so it runs on the fake"
    );
    let env = Env::new().await;
    let gcp = Gcp::fake().await;
    let (creds, token) = gcp.provision().await;
    let email = "rotator@it-project.iam.gserviceaccount.com";
    let (_, n, e) = rsa_key();
    let fake = gcp.fake.as_ref().unwrap_or_else(|| unreachable!());
    fake.require_service_account(n, e, email);
    // token_uri points at a local endpoint; google-cloud-auth signs a JWT itself for service
    // account keys (it never calls token_uri), which the fake verifies with the public half.
    let key_file = env.path("sa.json");
    std::fs::write(
        &key_file,
        serde_json::json!({
            "type": "service_account",
            "project_id": gcp.project,
            "private_key_id": "it-key-1",
            "private_key": rsa_key_pem(),
            "client_email": email,
            "client_id": "1",
            "token_uri": format!("{}/token", fake.endpoint),
        })
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // No [gcp] project, no anonymous: the project comes from the key file. Credentials go
    // to a non-Google endpoint only when that is said explicitly.
    let text = |allow: &str| {
        format!(
            "{}[gcp]\nendpoint_url = \"{}\"\n{allow}\n{}",
            env.deepvue_section(""),
            fake.endpoint,
            token_block("prod", &creds, &token, "")
        )
    };
    let refused = env.write_config(&text(""));
    let out = run(gcp.command(&env, &refused, &["rotate"])).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.all().contains("allow_custom_endpoint_with_credentials"),
        "{out}"
    );
    let cfg = env.write_config(&text("allow_custom_endpoint_with_credentials = true\n"));
    let mut cmd = gcp.command(&env, &cfg, &["rotate", "--json"]);
    cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &key_file);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(outcome(&out), "rotated", "{out}");
    let (ok, rejected) = fake.auth_counts();
    assert!(
        ok >= 5 && rejected == 0,
        "verified {ok}, rejected {rejected}"
    );
    assert!(
        !gcp.calls().unwrap_or_default().contains_key("OAuthToken"),
        "token_uri is never called"
    );

    // A key the fake does not know: 401 UNAUTHENTICATED, a config error, nothing minted.
    let other = env.path("other.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key_file).unwrap_or_default()).unwrap_or_default();
    v["client_email"] = serde_json::json!("someone-else@it-project.iam.gserviceaccount.com");
    std::fs::write(&other, v.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let minted = env.calls();
    let mut cmd = gcp.command(&env, &cfg, &["rotate", "--force"]);
    cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &other);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("not authenticated"), "{out}");
    assert_eq!(env.calls(), minted);
}

#[tokio::test]
async fn alert_state_lives_in_annotations_and_a_run_that_wrote_nothing_clears_its_lease() {
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let (creds, token) = gcp.provision().await;
    let rx =
        crate::receiver::Receiver::start(&[("/v2/enqueue", 202, "{\"status\":\"success\"}")]).await;
    let rx_ca = env.path("receiver-ca.pem");
    std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let alerting = format!(
        "[alerting]\nenvironment = \"it\"\nca_file = \"{}\"\n\n[[alerts]]\nkind = \"pagerduty\"\nrouting_key = {{ env = \"IT_PD_KEY\" }}\nurl = \"{}\"\n\n",
        rx_ca.display(),
        rx.url("/v2/enqueue")
    );
    let cfg = config(&env, &gcp, &creds, &token, &alerting);
    let cmd = |args: &[&str]| {
        let mut c = gcp.command(&env, &cfg, args);
        c.env("IT_PD_KEY", "R0UT1NGKEY0000000000000000000002");
        c
    };
    assert_eq!(run(cmd(&["rotate"])).await.code, 0);
    env.sim
        .set_behavior(crate::support::allow_only("203.0.113.0/24"));
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(rx.posts("/v2/enqueue").len(), 1, "{out}");
    let s = gcp.secret(&token).await;
    assert!(
        !s.annotations.contains_key(LEASE_ANNOTATION),
        "a run that wrote no version clears its lease, after recording its state: {:?}",
        s.annotations
    );
    assert!(
        s.annotations
            .keys()
            .any(|k| k.starts_with(STATE_ANNOTATION_PREFIX)),
        "{:?}",
        s.annotations
    );
    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    let pd = rx.posts("/v2/enqueue");
    assert_eq!(pd.len(), 2, "one resolve");
    assert_eq!(pd[1].json()["event_action"], "resolve");
    let s = gcp.secret(&token).await;
    assert!(
        !s.annotations
            .keys()
            .any(|k| k.starts_with(STATE_ANNOTATION_PREFIX)),
        "state gone once nothing is open: {:?}",
        s.annotations
    );
    gcp.cleanup().await;
}

#[tokio::test]
async fn a_cloud_run_job_logs_cloud_logging_json_with_its_execution_in_every_record() {
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let (creds, token) = gcp.provision().await;
    let cfg = config(&env, &gcp, &creds, &token, "");
    let mut cmd = gcp.command(&env, &cfg, &["rotate"]);
    cmd.env("CLOUD_RUN_JOB", "deepvue-rotator")
        .env("CLOUD_RUN_EXECUTION", "deepvue-rotator-x7k2p")
        .env("CLOUD_RUN_TASK_INDEX", "0")
        .env("CLOUD_RUN_TASK_ATTEMPT", "1")
        .env("RUST_LOG", "info");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(lines.len() >= 2, "{out}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            matches!(
                v["severity"].as_str(),
                Some("INFO" | "WARNING" | "ERROR" | "DEBUG")
            ),
            "{line}"
        );
        assert!(v["message"].is_string(), "{line}");
        assert_eq!(v["CLOUD_RUN_EXECUTION"], "deepvue-rotator-x7k2p", "{line}");
        assert_eq!(v["CLOUD_RUN_TASK_ATTEMPT"], "1", "{line}");
    }
    let rotated = out
        .stderr
        .lines()
        .find(|l| l.contains("\"rotated\""))
        .unwrap_or_default();
    assert!(
        rotated.contains("\"token\":\"prod\"") && rotated.contains("\"backend\":\"gcp\""),
        "span fields are in the record: {rotated}"
    );
    gcp.cleanup().await;
}

#[tokio::test]
async fn a_disabled_latest_version_makes_the_token_due_not_an_error() {
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let (creds, token) = gcp.provision().await;
    let cfg = config(&env, &gcp, &creds, &token, "");
    assert_eq!(run(gcp.command(&env, &cfg, &["rotate"])).await.code, 0);
    gcp.client
        .disable_secret_version()
        .set_name(format!("{}/versions/latest", gcp.name(&token)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("disable: {e}"));
    let out = run(gcp.command(&env, &cfg, &["status", "--json"])).await;
    assert!(
        out.stdout.contains("\"due\": true") && out.stdout.contains("not readable"),
        "{out}"
    );
    let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(outcome(&out), "rotated", "{out}");
    let v = gcp.versions(&token).await;
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0].1, State::Enabled, "{v:?}");
    gcp.cleanup().await;
}

#[tokio::test]
async fn credentials_by_version_alias_and_the_16_kib_annotation_cap() {
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let (_, token) = gcp.provision().await;
    // Version 1 holds the credentials, version 2 something else; the alias names version 1.
    let creds = gcp.id("creds-aliased");
    gcp.create(&creds, None).await;
    let good = gcp
        .add(
            &creds,
            format!(r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}"}}"#)
                .as_bytes(),
        )
        .await;
    gcp.add(&creds, b"not the credentials").await;
    gcp.client
        .update_secret()
        .set_secret(
            Secret::new()
                .set_name(gcp.name(&creds))
                .set_version_aliases([("pinned", good as i64)]),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["version_aliases"]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("alias: {e}"));
    let cfg = env.write_config(&format!(
        "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"gcp\", secret_id = \"{creds}\", version = \"pinned\" }}\nstore = {{ backend = \"gcp\", secret_id = \"{token}\" }}\n",
        env.deepvue_section(""),
        gcp.section(),
    ));
    let out = run(gcp.command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.calls(), 1);

    // The user's own annotations leave no room for the state: refused before the call.
    let big = "x".repeat(15 * 1024 + 800);
    let s = gcp.secret(&token).await;
    let mut annotations = s.annotations.clone();
    annotations.insert("team-notes".to_string(), big);
    gcp.client
        .update_secret()
        .set_secret(
            Secret::new()
                .set_name(gcp.name(&token))
                .set_etag(s.etag.clone())
                .set_annotations(annotations),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["annotations"]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("annotate: {e}"));
    let store = GcpStore::new(
        GcpClients::new(&gcp.gcp_section()),
        token.clone(),
        5,
        Duration::from_secs(60),
    );
    let state = deepvue_rotator::core::state::RunState {
        last_outcome: Some(deepvue_rotator::core::result::OutcomeKind::Failed),
        last_error: Some("forbidden: token `prod`: Deepvue answered 403".into()),
        consecutive_failures: 1,
        ..Default::default()
    };
    let read = store
        .read_state()
        .await
        .unwrap_or_else(|e| panic!("read_state: {e}"));
    let bytes = state.to_bytes(4096).unwrap_or_default();
    let err = store
        .write_state(Some(&bytes), read.etag.as_ref())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("16 KiB"), "{err}");
    gcp.cleanup().await;
}

/// Fresh GCP stores (each on its own secret) on one Secret Manager: the fake, or the real
/// service when `DEEPVUE_ROTATOR_TEST_GCP_PROJECT` is set.
pub struct GcpFixture {
    gcp: Gcp,
    clients: std::sync::Arc<GcpClients>,
    counter: std::sync::atomic::AtomicU32,
}

impl GcpFixture {
    pub async fn start() -> GcpFixture {
        Self::on(Gcp::start().await)
    }

    /// Always on the fake (a proxy in front of it injects faults).
    pub async fn fake() -> GcpFixture {
        Self::on(Gcp::fake().await)
    }

    /// The fake behind it (faults are injected there).
    pub fn fake_server(&self) -> Option<&GcpFake> {
        self.gcp.fake.as_ref()
    }

    fn on(gcp: Gcp) -> GcpFixture {
        let clients = GcpClients::new(&gcp.gcp_section());
        GcpFixture {
            gcp,
            clients,
            counter: std::sync::atomic::AtomicU32::new(0),
        }
    }

    fn next(&self) -> u32 {
        self.counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    fn store_of(id: String) -> crate::scenarios::Store {
        crate::scenarios::Store {
            toml: format!("{{ backend = \"gcp\", secret_id = \"{id}\", keep_versions = 5 }}"),
            id,
        }
    }
}

#[async_trait::async_trait]
impl crate::scenarios::Fixture for GcpFixture {
    fn backend(&self) -> &'static str {
        "gcp"
    }

    fn sections(&self) -> String {
        self.gcp.section()
    }

    fn clients(&self) -> deepvue_rotator::backends::Clients {
        let mut c = deepvue_rotator::backends::Clients::new(&Default::default());
        c.gcp = self.clients.clone();
        c
    }

    fn command(&self, env: &Env, config: &Path, args: &[&str]) -> tokio::process::Command {
        self.gcp.command(env, config, args)
    }

    async fn store(&self) -> crate::scenarios::Store {
        let id = self.gcp.id(&format!("scenario-{}", self.next()));
        self.gcp.create(&id, None).await;
        Self::store_of(id)
    }

    async fn missing_store(&self) -> Option<crate::scenarios::Store> {
        Some(Self::store_of(
            self.gcp.id(&format!("missing-{}", self.next())),
        ))
    }

    async fn credentials(&self, value: Option<&str>) -> crate::scenarios::Creds {
        let id = self.gcp.id(&format!("creds-{}", self.next()));
        if let Some(v) = value {
            self.gcp.create(&id, None).await;
            self.gcp.add(&id, v.as_bytes()).await;
        }
        crate::scenarios::Creds {
            toml: format!("{{ backend = \"gcp\", secret_id = \"{id}\" }}"),
            id,
        }
    }

    async fn versions(&self, store: &crate::scenarios::Store) -> usize {
        self.gcp.versions(&store.id).await.len()
    }

    async fn previous(&self, store: &crate::scenarios::Store) -> Option<String> {
        let v = self.gcp.versions(&store.id).await;
        v.get(1).map(|(n, _, _)| n.to_string())
    }

    async fn calls(&self) -> Option<u64> {
        self.gcp.total()
    }

    async fn state_kept(&self, store: &crate::scenarios::Store) -> Option<bool> {
        let s = self.gcp.secret(&store.id).await;
        Some(
            s.annotations
                .keys()
                .any(|k| k.starts_with(STATE_ANNOTATION_PREFIX)),
        )
    }

    fn missing_says(&self) -> &'static str {
        "does not exist"
    }

    fn no_op_calls_with_sinks(&self) -> u64 {
        2 // the token read cannot tell whether annotations hold state
    }

    fn log_formats(&self) -> &'static [&'static str] {
        &["text", "json", "gcp"]
    }

    async fn cleanup(&self) {
        self.gcp.cleanup().await;
    }
}

crate::scenarios::suite!(GcpFixture::start().await);

impl crate::faults::Faulty for GcpFixture {
    fn upstream(&self) -> (String, Option<PathBuf>) {
        let endpoint = self.gcp.fake.as_ref().map(|f| f.endpoint.clone());
        (endpoint.unwrap_or_default(), None)
    }

    fn sections_via(&self, proxy: &str) -> String {
        format!(
            "[gcp]\nproject = \"{}\"\nendpoint_url = \"{proxy}\"\nanonymous = true\n\n",
            self.gcp.project
        )
    }

    fn throttled(&self) -> crate::faults::Action {
        crate::faults::Action::Fail {
            status: 429,
            body: r#"{"error":{"code":429,"message":"Quota exceeded for quota metric 'Access requests'","status":"RESOURCE_EXHAUSTED"}}"#.into(),
            headers: vec![("content-type".into(), "application/json".into())],
        }
    }

    fn has_leases(&self) -> bool {
        true
    }
}

/// The fake checked with Google's own Python client (REST transport) for every call the
/// rotator makes, including errors and the injected denial, quota and abort with their
/// `details`; and plain JSON requests (no `$alt`) answer enums by name.
#[tokio::test]
async fn the_official_python_client_agrees_with_the_fake() {
    let fake = GcpFake::start().await;
    let python = crate::support::test_tool("SECRET_MANAGER_PYTHON", "python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gcp_fake_check.py");
    let check = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg(&script)
            .arg(&fake.endpoint)
            .arg("my-project")
            .args(args);
        cmd
    };
    let out = run(check(&["calls"])).await;
    assert!(
        out.code == 0 && !out.stdout.contains("FAIL"),
        "the official client disagrees with the fake (the client is installed by \
         ./scripts/test.sh: pip install google-cloud-secret-manager into .tools/venv, or set \
         SECRET_MANAGER_PYTHON to a python that has it):\n{out}"
    );
    let checks = out.stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(checks >= 30, "{checks} checks ran:\n{out}");
    for (kind, fault) in [
        ("PERMISSION_DENIED", Fault::PermissionDenied),
        ("RESOURCE_EXHAUSTED", Fault::ResourceExhausted),
        ("ABORTED", Fault::Aborted),
    ] {
        fake.inject("AddSecretVersion", fault);
        let out = run(check(&["fault", kind, "py-check"])).await;
        assert!(
            out.code == 0 && !out.stdout.contains("FAIL"),
            "{kind}:\n{out}"
        );
    }

    // Plain JSON (what curl or another client sends): enums by name.
    let v: serde_json::Value = reqwest::get(format!(
        "{}/v1/projects/my-project/secrets/py-check/versions/2",
        fake.endpoint
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["state"], "ENABLED", "{v}");
    let status = reqwest::get(format!(
        "{}/v1/projects/my-project/secrets/py-check/versions/2?$alt=proto",
        fake.endpoint
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .status();
    assert_eq!(status.as_u16(), 400, "an unknown $alt is refused");
}

/// What the rotator makes of Secret Manager's denial, quota and abort on its write (as the
/// API sends them, with details): a denial names the permission and fails for good; quota
/// and an abort are transient, never a second version, and the next run rotates.
#[tokio::test]
async fn a_denied_throttled_or_aborted_write_is_classified_and_never_doubles_a_version() {
    for (fault, transient) in [
        (Fault::PermissionDenied, false),
        (Fault::ResourceExhausted, true),
        (Fault::Aborted, true),
    ] {
        let env = Env::new().await;
        let gcp = Gcp::fake().await;
        let (creds, token) = gcp.provision().await;
        let cfg = config(&env, &gcp, &creds, &token, "");
        if let Some(f) = &gcp.fake {
            for _ in 0..10 {
                f.inject("AddSecretVersion", fault);
            }
        }
        let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
        assert_eq!(outcome(&out), "failed", "{fault:?}: {out}");
        assert!(gcp.versions(&token).await.is_empty(), "{fault:?}");
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        let kind = report[0]["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if transient {
            assert_eq!(kind, "transient", "{fault:?}: {out}");
        } else {
            assert_eq!(kind, "permanent", "{fault:?}: {out}");
            assert!(
                out.stderr.contains("secretmanager.versions.add"),
                "{fault:?}: the denial names the permission: {out}"
            );
        }
        assert_eq!(env.calls(), 1, "{fault:?}: minted once");
        // The faults used up or cleared: the next run rotates, one version.
        let adds = count(&gcp.calls(), "AddSecretVersion");
        if let Some(f) = &gcp.fake {
            f.clear_faults();
        }
        let out = run(gcp.command(&env, &cfg, &["rotate", "--json"])).await;
        assert_eq!(outcome(&out), "rotated", "{fault:?}: {out}");
        assert_eq!(gcp.versions(&token).await.len(), 1, "{fault:?}");
        assert!(count(&gcp.calls(), "AddSecretVersion") > adds);
    }
}
