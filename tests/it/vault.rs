//! The `vault` backend (KV v2 credentials and token store, token / AppRole / Kubernetes / JWT
//! auth) against a real OpenBao dev server over TLS on 127.0.0.1: the shared scenario suite,
//! and what is Vault's own (cas, auth methods, namespaces, token maintenance, policies).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use deepvue_rotator::backends::vault::{
    AppRoleAuth, AuthValue, TokenAuth, VaultAuth, VaultClients, VaultSection, VaultStore,
};
use deepvue_rotator::backends::{Clients, Sections};
use deepvue_rotator::core::store::TokenStore;
use deepvue_rotator::simulator::{Behavior, Reply};
use deepvue_rotator::support::secret_ref::SecretRef;
use serde_json::{Value, json};

use crate::openbao::{OpenBao, ROOT};
use crate::receiver::Receiver;
use crate::support::{CLIENT_ID, CLIENT_SECRET, Env, Output, run};

pub const CREDS: &str = "deepvue/prod/credentials";
pub const TOKEN: &str = "deepvue/prod/token";
/// The issue's least-privilege policy, exactly.
pub const POLICY: &str = r#"path "secret/data/deepvue/prod/credentials" { capabilities = ["read"] }
path "secret/data/deepvue/prod/token"       { capabilities = ["create", "read", "update"] }
path "secret/metadata/deepvue/prod/token"   { capabilities = ["read", "update"] }
"#;

/// A file readable by its owner only.
fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    p
}

/// The simulator, OpenBao, and the Deepvue credentials in `secret/deepvue/prod/credentials`.
async fn setup() -> (Env, OpenBao) {
    let env = Env::new().await;
    let bao = OpenBao::start().await;
    bao.put(
        CREDS,
        json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "note": "x"}),
    )
    .await;
    (env, bao)
}

/// `[vault]` for this server with `auth`.
fn vault_section(bao: &OpenBao, auth: &str) -> String {
    // A plain-http dev server has no CA.
    let ca = if bao.ca.exists() {
        format!("ca_file = \"{}\"\n", bao.ca.display())
    } else {
        String::new()
    };
    format!("[vault]\naddress = \"{}\"\n{ca}auth = {auth}\n\n", bao.addr)
}

const TOKEN_AUTH: &str = "{ method = \"token\", token = { env = \"IT_VAULT_TOKEN\" } }";

fn token_block(store_extra: &str) -> String {
    format!(
        "[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"vault\", path = \"{CREDS}\" }}\nstore = {{ backend = \"vault\", path = \"{TOKEN}\"{store_extra} }}\n"
    )
}

/// A config: the simulator, this server with `auth`, the prod token.
fn config(env: &Env, bao: &OpenBao, auth: &str, store_extra: &str) -> PathBuf {
    env.write_config(&format!(
        "{}{}{}",
        env.deepvue_section(""),
        vault_section(bao, auth),
        token_block(store_extra)
    ))
}

/// The binary with nothing from the host's Vault setup, the root token in IT_VAULT_TOKEN, and
/// no Deepvue credentials in the environment (they come from Vault).
fn vault_command(env: &Env, cfg: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = env.command(cfg, args);
    for v in [
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_NAMESPACE",
        "VAULT_CACERT",
        "BAO_ADDR",
        "BAO_TOKEN",
        "DEEPVUE_CLIENT_ID",
        "DEEPVUE_CLIENT_SECRET",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("HOME", env.dir.path()).env("IT_VAULT_TOKEN", ROOT);
    cmd
}

async fn rotate(env: &Env, cfg: &Path, args: &[&str]) -> Output {
    run(vault_command(env, cfg, args)).await
}

/// The stored document's access token at `version` (latest when `None`).
async fn stored_token(bao: &OpenBao, version: Option<u64>) -> Option<String> {
    bao.get(TOKEN, version)
        .await
        .and_then(|d| d["data"]["access_token"].as_str().map(str::to_string))
}

/// Make the current token due: a new version expiring in an hour.
async fn put_due(bao: &OpenBao, access_token: &str) -> u64 {
    let now = chrono::Utc::now();
    bao.put(
        TOKEN,
        json!({
            "access_token": access_token,
            "token_type": "bearer",
            "issued_at": deepvue_rotator::core::document::format_time(now - chrono::Duration::hours(23)),
            "expiry": deepvue_rotator::core::document::format_time(now + chrono::Duration::hours(1)),
        }),
    )
    .await
}

/// Requests the rotator made to the data/metadata/login paths, as `operation path`.
fn requests(bao: &OpenBao, mark: usize) -> Vec<String> {
    bao.audited_since(mark)
        .into_iter()
        .map(|a| format!("{} {}", a.operation, a.path))
        .collect()
}

#[tokio::test]
async fn the_write_id_sits_beside_the_document_and_a_no_op_is_one_read() {
    let (env, bao) = setup().await;
    // The token from $VAULT_TOKEN (the token method's default).
    let cfg = config(&env, &bao, "{ method = \"token\" }", "");
    let cmd = |args: &[&str]| {
        let mut c = vault_command(&env, &cfg, args);
        c.env("VAULT_TOKEN", ROOT);
        c
    };

    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    let data = bao.get(TOKEN, None).await.unwrap_or_default();
    let fields = &data["data"];
    for k in ["access_token", "token_type", "expiry", "issued_at"] {
        assert!(fields[k].is_string(), "document field {k}: {fields}");
    }
    assert!(
        fields["deepvue_rotator_write_id"].is_string(),
        "the write id sits beside the document: {fields}"
    );

    // A fresh token: one read, nothing minted.
    let mark = bao.audited().len();
    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("fresh"), "{out}");
    assert_eq!(
        requests(&bao, mark),
        ["read secret/data/deepvue/prod/token"],
        "a no-op is one read"
    );
}

#[tokio::test]
async fn cas_required_on_the_mount_and_on_the_path() {
    let (env, bao) = setup().await;
    bao.ok("POST", "secret/config", Some(json!({"cas_required": true})))
        .await;
    let cfg = config(&env, &bao, TOKEN_AUTH, "");
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    bao.ok(
        "POST",
        &format!("secret/metadata/{TOKEN}"),
        Some(json!({"cas_required": true})),
    )
    .await;
    let out = rotate(&env, &cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(bao.current_version(TOKEN).await, 2);
    let meta = bao.metadata(TOKEN).await.unwrap_or_default();
    assert_eq!(meta["cas_required"], true);
    // Without cas the server would refuse: the rotator always sends it.
    let (status, body) = bao
        .api(
            "POST",
            &format!("secret/data/{TOKEN}"),
            Some(json!({"data": {"x": "y"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

/// The verbatim example of the issue, with the values filled in, as AppRole with a role bound
/// to only the issue's policy (no `default` policy either).
#[tokio::test]
async fn approle_with_exactly_the_issue_policy_and_the_issue_config() {
    let (env, bao) = setup().await;
    bao.policy("rotator", POLICY).await;
    let (role_id, secret_id) = bao
        .approle(
            "rotator",
            json!({"token_policies": ["rotator"], "token_no_default_policy": true}),
        )
        .await;
    let sid = secret_file(env.dir.path(), "vault-secret-id", &format!("{secret_id}\n"));
    let example = format!(
        r#"[vault]
address = "{addr}"   # default: $VAULT_ADDR
# namespace = "team-a"                       # default: $VAULT_NAMESPACE (Enterprise / HCP)
ca_file = "{ca}"          # default: $VAULT_CACERT, else the OS roots
auth = {{ method = "approle", role_id = "{role_id}", secret_id = {{ file = "{sid}" }} }}
# auth = {{ method = "token" }}               # $VAULT_TOKEN, else ~/.vault-token; or token = {{ env = "…" }}
# auth = {{ method = "kubernetes", role = "deepvue-rotator" }}   # service-account token file by default
# auth = {{ method = "jwt", role = "deepvue-rotator", jwt = {{ file = "/var/run/secrets/tokens/vault" }} }}
# every method takes mount = "…" for a non-default auth mount

[[tokens]]
name = "prod"
credentials = {{ backend = "vault", path = "deepvue/prod/credentials" }}   # mount = "secret" by default
store = {{ backend = "vault", path = "deepvue/prod/token", keep_versions = 10 }}
"#,
        addr = bao.addr,
        ca = bao.ca.display(),
        sid = sid.display(),
    );
    let cfg = env.write_config(&format!("{}{example}", env.deepvue_section("")));

    let mark = bao.audited().len();
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("prod: rotated -> version 1"), "{out}");
    assert_eq!(
        requests(&bao, mark),
        [
            "update auth/approle/login",
            "read secret/data/deepvue/prod/token",
            "read secret/metadata/deepvue/prod/token",
            "read secret/data/deepvue/prod/credentials",
            "create secret/data/deepvue/prod/token",
            "read secret/metadata/deepvue/prod/token",
            "update secret/metadata/deepvue/prod/token",
        ],
        "first mint: login, read, its run state (a suspension?), credentials, cas-0 write, keep_versions"
    );
    let meta = bao.metadata(TOKEN).await.unwrap_or_default();
    assert_eq!(meta["max_versions"], 10, "keep_versions is max_versions");

    // No-op: login + one read.
    let mark = bao.audited().len();
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        requests(&bao, mark),
        [
            "update auth/approle/login",
            "read secret/data/deepvue/prod/token"
        ]
    );

    // Forced: update under cas = 1; max_versions already right, so not written again.
    let mark = bao.audited().len();
    let out = rotate(&env, &cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("version 2 (previous 1 kept)"), "{out}");
    assert_eq!(
        requests(&bao, mark),
        [
            "update auth/approle/login",
            "read secret/data/deepvue/prod/token",
            "read secret/data/deepvue/prod/credentials",
            "update secret/data/deepvue/prod/token",
            "read secret/metadata/deepvue/prod/token",
        ]
    );
    assert!(
        bao.audited_errors().is_empty(),
        "{:?}",
        bao.audited_errors()
    );

    // `check` with this policy: the store is reachable (capabilities-self needs the default
    // policy, which this role does not have: the read is what check can prove).
    let out = rotate(&env, &cfg, &["check"]).await;
    assert!(
        out.stdout
            .contains("vault store `secret/deepvue/prod/token` reachable and writable"),
        "{out}"
    );
}

#[tokio::test]
async fn a_policy_missing_one_capability_fails_clearly_and_mints_nothing() {
    let (env, bao) = setup().await;
    // No read on the credentials: found before anything is minted.
    let no_creds = POLICY.replace(
        "path \"secret/data/deepvue/prod/credentials\" { capabilities = [\"read\"] }\n",
        "",
    );
    bao.policy("partial", &no_creds).await;
    let (role_id, secret_id) = bao
        .approle("partial", json!({"token_policies": ["partial"]}))
        .await;
    let sid = secret_file(env.dir.path(), "sid", &secret_id);
    let auth = format!(
        "{{ method = \"approle\", role_id = \"{role_id}\", secret_id = {{ file = \"{}\" }} }}",
        sid.display()
    );
    let cfg = config(&env, &bao, &auth, "");
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains(
            "permission denied on `secret/data/deepvue/prod/credentials`: the Vault policy \
             needs the `read` capability"
        ),
        "{out}"
    );
    assert_eq!(env.calls(), 0, "nothing minted");
    assert_eq!(bao.current_version(TOKEN).await, 0, "nothing written");

    // No update on the token path: `check` names it before any run; a rotation fails at the
    // write and leaves the stored token as it was.
    let no_update = POLICY.replace(
        "[\"create\", \"read\", \"update\"]",
        "[\"create\", \"read\"]",
    );
    bao.policy("partial", &no_update).await;
    let out = rotate(&env, &cfg, &["check"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("lacks `update`, `create` on `secret/data/deepvue/prod/token`")
            || out
                .stdout
                .contains("lacks `update` on `secret/data/deepvue/prod/token`"),
        "{out}"
    );
    let v1 = put_due(&bao, "kept-token").await;
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains(
            "permission denied on `secret/data/deepvue/prod/token`: the Vault policy needs the \
             `update` capability"
        ),
        "{out}"
    );
    assert_eq!(bao.current_version(TOKEN).await, v1);
    assert_eq!(
        stored_token(&bao, None).await.as_deref(),
        Some("kept-token")
    );
}

#[tokio::test]
async fn credentials_with_own_key_names_and_a_pinned_version() {
    let (env, bao) = setup().await;
    // Version 2 holds the credentials under the operator's key names; version 3 is a newer,
    // wrong pair that a pinned reader must not pick up.
    bao.put(CREDS, json!({"id": CLIENT_ID, "secret": CLIENT_SECRET}))
        .await;
    bao.put(CREDS, json!({"id": "someone-else", "secret": "not-it"}))
        .await;
    let cfg = |version: u64| {
        env.write_config(&format!(
            "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"vault\", path = \"{CREDS}\", version = {version}, client_id_key = \"id\", client_secret_key = \"secret\" }}\nstore = {{ backend = \"vault\", path = \"{TOKEN}\" }}\n",
            env.deepvue_section(""),
            vault_section(&bao, TOKEN_AUTH),
        ))
    };
    let out = rotate(&env, &cfg(2), &["rotate"]).await;
    assert_eq!(out.code, 0, "version 2 under its own key names: {out}");
    assert_eq!(bao.current_version(TOKEN).await, 1);
    let out = rotate(&env, &cfg(3), &["rotate", "--force"]).await;
    assert_eq!(
        out.code, 4,
        "version 3 is the wrong pair: rejected by Deepvue: {out}"
    );
    assert_eq!(bao.current_version(TOKEN).await, 1, "nothing written");
    assert_eq!(env.calls(), 2);
}

#[tokio::test]
async fn vault_down_exits_1_naming_the_address_and_leaves_the_token() {
    let (env, mut bao) = setup().await;
    let cfg = config(&env, &bao, TOKEN_AUTH, "");
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    let before = stored_token(&bao, None).await;

    bao.seal().await;
    let out = rotate(&env, &cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains(&format!("Vault at {} is sealed", bao.addr)),
        "{out}"
    );
    bao.unseal().await;
    assert_eq!(bao.current_version(TOKEN).await, 1, "token untouched");
    assert_eq!(stored_token(&bao, None).await, before);

    bao.stop().await;
    let calls = env.calls();
    let out = rotate(&env, &cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains(&format!("Vault at {} cannot be reached", bao.addr)),
        "{out}"
    );
    assert_eq!(env.calls(), calls, "nothing minted");
}

/// A fake Kubernetes TokenReview API over plain http on 127.0.0.1: every review of a token is
/// authenticated as system:serviceaccount:deepvue:rotator.
async fn fake_token_review() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let reviews = Arc::new(AtomicUsize::new(0));
    let count = reviews.clone();
    let app = axum::Router::new().route(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(json!({
                        "kind": "TokenReview",
                        "apiVersion": "authentication.k8s.io/v1",
                        "spec": body["spec"],
                        "status": {
                            "authenticated": true,
                            "user": {
                                "username": "system:serviceaccount:deepvue:rotator",
                                "uid": "11111111-2222-3333-4444-555555555555",
                                "groups": ["system:serviceaccounts", "system:authenticated"],
                            },
                            "audiences": body["spec"]["audiences"],
                        },
                    })),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("fake TokenReview must bind 127.0.0.1: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), reviews, task)
}

/// A compact JWS: ES256 over `claims` with `key` (a P-256 PKCS#8 key).
fn es256(key: &rcgen::KeyPair, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let payload = b64.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let rng = ring::rand::SystemRandom::new();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.serialize_der(),
        &rng,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let sig = signer
        .sign(&rng, input.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    format!("{input}.{}", b64.encode(sig.as_ref()))
}

fn p256() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn kubernetes_login_through_a_fake_token_review() {
    let (env, bao) = setup().await;
    bao.policy("rotator", POLICY).await;
    let (host, reviews, _server) = fake_token_review().await;
    let ca = rcgen::generate_simple_self_signed(vec!["fake-k8s".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    bao.ok(
        "POST",
        "sys/auth/kubernetes",
        Some(json!({"type": "kubernetes"})),
    )
    .await;
    bao.ok(
        "POST",
        "auth/kubernetes/config",
        Some(json!({
            "kubernetes_host": host,
            "disable_local_ca_jwt": true,
            "kubernetes_ca_cert": ca.cert.pem(),
        })),
    )
    .await;
    bao.ok(
        "POST",
        "auth/kubernetes/role/deepvue-rotator",
        Some(json!({
            "bound_service_account_names": ["rotator"],
            "bound_service_account_namespaces": ["deepvue"],
            "token_policies": ["rotator"],
            "token_ttl": "1h",
        })),
    )
    .await;
    let jwt = es256(
        &p256(),
        &json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "deepvue",
            "kubernetes.io/serviceaccount/secret.name": "rotator-token-abcde",
            "kubernetes.io/serviceaccount/service-account.name": "rotator",
            "kubernetes.io/serviceaccount/service-account.uid": "11111111-2222-3333-4444-555555555555",
            "sub": "system:serviceaccount:deepvue:rotator",
        }),
    );
    let file = secret_file(env.dir.path(), "sa-token", &jwt);
    let auth = format!(
        "{{ method = \"kubernetes\", role = \"deepvue-rotator\", jwt = {{ file = \"{}\" }} }}",
        file.display()
    );
    let cfg = config(&env, &bao, &auth, "");
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("prod: rotated -> version 1"), "{out}");
    assert_eq!(reviews.load(Ordering::SeqCst), 1, "one login, one review");
    assert!(!out.all().contains(&jwt), "{out}");

    // A role that does not exist: a clear login error, nothing minted.
    let calls = env.calls();
    let cfg = env.write_config(
        &std::fs::read_to_string(&cfg)
            .unwrap_or_default()
            .replace("role = \"deepvue-rotator\"", "role = \"nope\""),
    );
    let out = rotate(&env, &cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("Vault refused the login at `auth/kubernetes/login`"),
        "{out}"
    );
    assert_eq!(env.calls(), calls);
}

#[tokio::test]
async fn jwt_login_with_a_generated_key() {
    let (env, bao) = setup().await;
    bao.policy("rotator", POLICY).await;
    let key = p256();
    bao.ok("POST", "sys/auth/jwt", Some(json!({"type": "jwt"})))
        .await;
    bao.ok(
        "POST",
        "auth/jwt/config",
        Some(json!({
            "jwt_validation_pubkeys": [key.public_key_pem()],
            "bound_issuer": "https://ci.example.test",
        })),
    )
    .await;
    bao.ok(
        "POST",
        "auth/jwt/role/deepvue-rotator",
        Some(json!({
            "role_type": "jwt",
            "bound_audiences": ["deepvue-rotator"],
            "user_claim": "sub",
            "token_policies": ["rotator"],
            "token_ttl": "1h",
        })),
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let jwt = es256(
        &key,
        &json!({
            "iss": "https://ci.example.test",
            "sub": "deepvue-rotator-job",
            "aud": "deepvue-rotator",
            "iat": now, "nbf": now, "exp": now + 300,
        }),
    );
    let file = secret_file(env.dir.path(), "jwt", &jwt);
    let auth = format!(
        "{{ method = \"jwt\", role = \"deepvue-rotator\", jwt = {{ file = \"{}\" }} }}",
        file.display()
    );
    let cfg = config(&env, &bao, &auth, "");
    let mark = bao.audited().len();
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("prod: rotated -> version 1"), "{out}");
    assert_eq!(
        requests(&bao, mark).first().map(String::as_str),
        Some("update auth/jwt/login")
    );
    assert!(!out.all().contains(&jwt), "{out}");

    // Signed by another key: refused at login, clearly, nothing minted.
    let calls = env.calls();
    std::fs::write(
        &file,
        es256(&p256(), &json!({"sub": "x", "aud": "deepvue-rotator"})),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = rotate(&env, &cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("Vault refused the login at `auth/jwt/login` (HTTP 400)"),
        "{out}"
    );
    assert_eq!(env.calls(), calls);
}

/// Alert state in custom_metadata: kept while an alert is open, gone after recovery, the
/// operator's own keys untouched, and a healthy no-op still one read.
#[tokio::test]
async fn alert_state_lives_in_custom_metadata_and_clears_on_recovery() {
    let (env, bao) = setup().await;
    let rx = Receiver::start(&[("/hook", 200, "")]).await;
    let rx_ca = env.path("receiver-ca.pem");
    std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.write_config(&format!(
        "{}{}[alerting]\nenvironment = \"it\"\nca_file = \"{}\"\n\n[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n\n{}",
        env.deepvue_section("max_attempts = 1"),
        vault_section(&bao, TOKEN_AUTH),
        rx_ca.display(),
        rx.url("/hook"),
        token_block("")
    ));
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    bao.ok(
        "POST",
        &format!("secret/metadata/{TOKEN}"),
        Some(json!({"custom_metadata": {"team": "payments"}})),
    )
    .await;

    env.sim.set_behavior(Behavior {
        default: Reply::Status {
            status: 503,
            detail: None,
            retry_after: None,
        },
        ..Behavior::default()
    });
    // Due within escalate_before, and Deepvue failing: a critical alert.
    put_due(&bao, "due-token").await;
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(rx.posts("/hook").len(), 1, "{out}");
    assert_eq!(rx.posts("/hook")[0].json()["severity"], "critical");
    let custom = bao.metadata(TOKEN).await.unwrap_or_default()["custom_metadata"].clone();
    assert_eq!(custom["team"], "payments", "{custom}");
    assert!(custom["deepvue-rotator.state.n"].is_string(), "{custom}");

    env.sim.set_behavior(Behavior::default());
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].json()["action"], "resolve");
    let custom = bao.metadata(TOKEN).await.unwrap_or_default()["custom_metadata"].clone();
    assert_eq!(
        custom,
        json!({"team": "payments"}),
        "state keys removed, the operator's kept"
    );

    // Healthy no-op with sinks configured: one read, no metadata call.
    let mark = bao.audited().len();
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        requests(&bao, mark),
        ["read secret/data/deepvue/prod/token"]
    );
}

#[tokio::test]
async fn trace_logs_never_show_vault_secrets() {
    let (env, bao) = setup().await;
    bao.policy("rotator", POLICY).await;
    let vault_token = "it-vault-token-SENTINEL-4242";
    bao.ok(
        "POST",
        "auth/token/create",
        Some(json!({"id": vault_token, "policies": ["rotator"], "ttl": "1h"})),
    )
    .await;
    let (role_id, _) = bao
        .approle("rotator", json!({"token_policies": ["rotator"]}))
        .await;
    let secret_id = "it-secret-id-SENTINEL-9191";
    bao.ok(
        "POST",
        "auth/approle/role/rotator/custom-secret-id",
        Some(json!({ "secret_id": secret_id })),
    )
    .await;
    let wrong_secret_id = "it-wrong-secret-id-SENTINEL-7373";
    let sid = secret_file(env.dir.path(), "sid", secret_id);
    let wrong = secret_file(env.dir.path(), "wrong-sid", wrong_secret_id);
    let token_cfg = config(
        &env,
        &bao,
        "{ method = \"token\", token = { env = \"IT_TOKEN\" } }",
        "",
    );
    let approle = |file: &Path| {
        config(
            &env,
            &bao,
            &format!(
                "{{ method = \"approle\", role_id = \"{role_id}\", secret_id = {{ file = \"{}\" }} }}",
                file.display()
            ),
            "",
        )
    };
    let (approle_cfg, wrong_cfg) = (approle(&sid), approle(&wrong));
    let mut outputs = Vec::new();
    for format in ["text", "json"] {
        for (name, cfg, args) in [
            ("token first", &token_cfg, vec!["rotate"]),
            ("token no-op", &token_cfg, vec!["rotate"]),
            ("token forced", &token_cfg, vec!["rotate", "--force"]),
            ("approle forced", &approle_cfg, vec!["rotate", "--force"]),
            (
                "approle wrong secret_id",
                &wrong_cfg,
                vec!["rotate", "--force"],
            ),
            ("status", &approle_cfg, vec!["status"]),
            ("check", &approle_cfg, vec!["check"]),
        ] {
            let mut full = vec!["--log-format", format];
            full.extend(args);
            let mut cmd = vault_command(&env, cfg, &full);
            cmd.env("RUST_LOG", "trace").env("IT_TOKEN", vault_token);
            let out = run(cmd).await;
            if full.contains(&"rotate") && !name.contains("wrong") {
                assert_eq!(out.code, 0, "{name}/{format}\n{out}");
                assert!(
                    out.stderr.contains("TRACE") || out.stderr.contains("\"level\":\"TRACE\""),
                    "{name}/{format}: trace logging must be on\n{out}"
                );
            }
            outputs.push((format!("{name}/{format}"), out));
        }
    }
    let mut secrets = env.sim.issued_tokens();
    assert!(secrets.len() >= 4, "tokens issued: {}", secrets.len());
    secrets.extend(
        [
            CLIENT_SECRET,
            vault_token,
            secret_id,
            wrong_secret_id,
            &role_id,
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    // Tokens AppRole logins issued (unknown to the test) look like `s.` + 24 characters.
    let issued = |text: &str| {
        text.match_indices("s.").any(|(i, _)| {
            let rest = &text[i + 2..];
            rest.len() >= 24 && rest[..24].chars().all(|c| c.is_ascii_alphanumeric())
        })
    };
    for (what, out) in &outputs {
        let all = out.all();
        for s in &secrets {
            assert!(
                !all.contains(s.as_str()),
                "{what}: output contains a secret ({} chars)\n{out}",
                s.len()
            );
        }
        assert!(
            !issued(&all),
            "{what}: output contains a Vault token\n{out}"
        );
    }
}

/// `Clients::maintain` (what a long-running mode runs beside its passes): an AppRole token
/// with a 3 s TTL and an 8 s max TTL is renewed, then replaced by a fresh login before it
/// dies, while store reads keep working and Vault never refuses a token.
#[tokio::test]
async fn maintain_renews_then_logs_in_again_while_reads_keep_working() {
    let bao = OpenBao::start().await;
    bao.policy("rotator", POLICY).await;
    let (role_id, secret_id) = bao
        .approle(
            "rotator",
            json!({"token_policies": ["rotator"], "token_ttl": "3s", "token_max_ttl": "8s"}),
        )
        .await;
    put_due(&bao, "kept").await;
    let sid = secret_file(bao.dir.path(), "sid", &secret_id);
    let section = VaultSection {
        address: Some(bao.addr.clone()),
        namespace: None,
        ca_file: Some(bao.ca.clone()),
        auth: VaultAuth::Approle(AppRoleAuth {
            role_id: AuthValue::Inline(role_id.into()),
            secret_id: AuthValue::Ref(SecretRef {
                env: None,
                file: Some(sid),
                credential: None,
            }),
            mount: None,
        }),
    };
    let clients = Clients::new(&Sections {
        vault: section,
        ..Sections::default()
    });
    let store = VaultStore::new(clients.vault.clone(), "secret".into(), TOKEN.into(), None);
    let maintainer = {
        let clients = clients.clone();
        tokio::spawn(async move { clients.maintain().await })
    };
    // Reads keep working (each one checked) until the events: two renewals and a second login.
    let started = Instant::now();
    loop {
        let got = store
            .read_current()
            .await
            .unwrap_or_else(|e| panic!("read at {:?}: {e}", started.elapsed()));
        assert_eq!(got.map(|s| s.version.0), Some("1".to_string()));
        let audited = bao.audited();
        let count = |p: &str| audited.iter().filter(|a| a.path == p).count();
        let (logins, renewals) = (count("auth/approle/login"), count("auth/token/renew-self"));
        if renewals >= 2 && logins >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "renewed {renewals} times and logged in {logins} times within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And once more after the new login.
    store
        .read_current()
        .await
        .unwrap_or_else(|e| panic!("read after the new login: {e}"));
    maintainer.abort();
    assert!(
        bao.audited_errors().is_empty(),
        "no request was refused: {:?}",
        bao.audited_errors()
    );
}

/// What the gateway in front of OpenBao does with the rotator's first data write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lose {
    /// Forward it, then answer 502 as if the answer was lost on the way back.
    AnswerOfOurWrite,
    /// Let another runner write first (same cas), drop ours, answer 502.
    OurWriteToAnotherRunner,
}

/// A plain-http gateway on 127.0.0.1 in front of OpenBao (loopback http is allowed for dev
/// servers) that loses the answer to the first `POST` on the token's data path.
async fn lossy_gateway(bao: &OpenBao, lose: Lose) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let http = deepvue_rotator::support::tls::https_client(
        &deepvue_rotator::support::tls::HttpsSettings {
            extra_ca: Some(&bao.ca),
            connect_timeout: Duration::from_secs(5),
            family: deepvue_rotator::support::net::IpFamily::Any,
            user_agent: "it-gateway",
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let upstream = bao.addr.clone();
    let lost = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (http, upstream, lost) = (http.clone(), upstream.clone(), lost.clone());
            async move {
                let path = uri.path().to_string();
                let forward = |body: Bytes| {
                    let mut req = http.request(
                        method.clone(),
                        format!(
                            "{upstream}{}",
                            uri.path_and_query().map_or("", |p| p.as_str())
                        ),
                    );
                    for (k, v) in &headers {
                        if k != "host" && k != "content-length" {
                            req = req.header(k, v);
                        }
                    }
                    req.body(body).send()
                };
                let write = method == Method::POST && path == format!("/v1/secret/data/{TOKEN}");
                if write && lost.fetch_add(1, Ordering::SeqCst) == 0 {
                    match lose {
                        Lose::AnswerOfOurWrite => {
                            let _ = forward(body).await;
                        }
                        Lose::OurWriteToAnotherRunner => {
                            let mut other: Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            other["data"]["access_token"] = json!("another-runners-token");
                            other["data"]["deepvue_rotator_write_id"] = json!("someone-else");
                            let _ = forward(Bytes::from(other.to_string())).await;
                        }
                    }
                    return (StatusCode::BAD_GATEWAY, Bytes::new());
                }
                match forward(body).await {
                    Ok(r) => {
                        let status = StatusCode::from_u16(r.status().as_u16())
                            .unwrap_or(StatusCode::BAD_GATEWAY);
                        (status, r.bytes().await.unwrap_or_default())
                    }
                    Err(_) => (StatusCode::BAD_GATEWAY, Bytes::new()),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("gateway must bind 127.0.0.1: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn a_lost_write_answer_is_resolved_by_reading_back_never_by_minting_again() {
    for lose in [Lose::AnswerOfOurWrite, Lose::OurWriteToAnotherRunner] {
        let (env, bao) = setup().await;
        put_due(&bao, "due-token").await;
        let (gateway, _task) = lossy_gateway(&bao, lose).await;
        let cfg = env.write_config(&format!(
            "{}[vault]\naddress = \"{gateway}\"\nauth = {TOKEN_AUTH}\n\n{}",
            env.deepvue_section(""),
            token_block("")
        ));
        let out = rotate(&env, &cfg, &["rotate"]).await;
        assert_eq!(out.code, 0, "{out}");
        assert_eq!(env.calls(), 1, "minted once\n{out}");
        assert_eq!(bao.current_version(TOKEN).await, 2, "one new version");
        let current = stored_token(&bao, None).await.unwrap_or_default();
        match lose {
            Lose::AnswerOfOurWrite => {
                assert!(out.stdout.contains("prod: rotated -> version 2"), "{out}");
                assert!(
                    out.stderr
                        .contains("the write landed although its answer was lost"),
                    "{out}"
                );
                assert_ne!(current, "another-runners-token");
            }
            Lose::OurWriteToAnotherRunner => {
                assert!(
                    out.stdout
                        .contains("prod: rotated by another runner -> version 2"),
                    "{out}"
                );
                assert_eq!(current, "another-runners-token");
            }
        }
    }
}

#[tokio::test]
async fn a_namespace_isolates_the_paths() {
    let env = Env::new().await;
    let bao = OpenBao::start().await;
    bao.ok("POST", "sys/namespaces/team-a", Some(json!({})))
        .await;
    let ns = |method: &'static str, path: &'static str, body: Value| {
        let http = deepvue_rotator::support::tls::https_client(
            &deepvue_rotator::support::tls::HttpsSettings {
                extra_ca: Some(&bao.ca),
                connect_timeout: Duration::from_secs(5),
                family: deepvue_rotator::support::net::IpFamily::Any,
                user_agent: "it",
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let url = format!("{}/v1/{path}", bao.addr);
        async move {
            let r = http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_default(),
                    url,
                )
                .header("X-Vault-Token", ROOT)
                .header("X-Vault-Namespace", "team-a")
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (s, _) = ns(
        "POST",
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = ns(
        "POST",
        "secret/data/deepvue/prod/credentials",
        json!({"data": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}}),
    )
    .await;
    assert_eq!(s, 200);
    let cfg = env.write_config(&format!(
        "{}{}{}",
        env.deepvue_section(""),
        vault_section(&bao, TOKEN_AUTH).replace("[vault]\n", "[vault]\nnamespace = \"team-a\"\n"),
        token_block("")
    ));
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    let (s, v) = ns("GET", "secret/metadata/deepvue/prod/token", Value::Null).await;
    assert_eq!((s, v["data"]["current_version"].as_u64()), (200, Some(1)));
    assert_eq!(
        bao.current_version(TOKEN).await,
        0,
        "nothing in the root namespace"
    );
}

/// A role whose tokens may not renew themselves (no `default` policy): maintenance logs in
/// again before each token dies instead; a static root token (TTL 0) is looked up once and
/// then left alone.
#[tokio::test]
async fn maintain_logs_in_again_when_renewal_is_not_allowed_and_leaves_a_root_token_alone() {
    let bao = OpenBao::start().await;
    bao.policy("rotator", POLICY).await;
    let (role_id, secret_id) = bao
        .approle(
            "rotator",
            json!({"token_policies": ["rotator"], "token_no_default_policy": true,
                   "token_ttl": "3s", "token_max_ttl": "60s"}),
        )
        .await;
    put_due(&bao, "kept").await;
    let sid = secret_file(bao.dir.path(), "sid", &secret_id);
    let root = secret_file(bao.dir.path(), "root", ROOT);
    let maintained = |auth| {
        let clients = VaultClients::new(&VaultSection {
            address: Some(bao.addr.clone()),
            namespace: None,
            ca_file: Some(bao.ca.clone()),
            auth,
        });
        let store = VaultStore::new(clients.clone(), "secret".into(), TOKEN.into(), None);
        let maintainer = tokio::spawn(async move { clients.maintain().await });
        (store, maintainer)
    };
    let count = |p: &str| bao.audited().iter().filter(|a| a.path == p).count();
    // The static root token's maintenance runs beside the whole AppRole part below: looked up
    // once (an event), then it has all that time to renew it, and must not.
    let (root_store, root_maintainer) = maintained(VaultAuth::Token(TokenAuth {
        token: Some(AuthValue::Ref(SecretRef {
            env: None,
            file: Some(root.clone()),
            credential: None,
        })),
        mount: None,
    }));
    root_store
        .read_current()
        .await
        .unwrap_or_else(|e| panic!("read with the root token: {e}"));
    let started = Instant::now();
    while count("auth/token/lookup-self") < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the static token was never looked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // AppRole without renewal: reads keep working until it has logged in again twice.
    let (store, maintainer) = maintained(VaultAuth::Approle(AppRoleAuth {
        role_id: AuthValue::Inline(role_id.clone().into()),
        secret_id: AuthValue::Ref(SecretRef {
            env: None,
            file: Some(sid.clone()),
            credential: None,
        }),
        mount: None,
    }));
    let started = Instant::now();
    while count("auth/approle/login") < 3 {
        store
            .read_current()
            .await
            .unwrap_or_else(|e| panic!("read at {:?}: {e}", started.elapsed()));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "logged in again twice within 60 s: {:?}",
            bao.audited()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store
        .read_current()
        .await
        .unwrap_or_else(|e| panic!("read after the logins: {e}"));
    root_store
        .read_current()
        .await
        .unwrap_or_else(|e| panic!("read with the root token: {e}"));
    maintainer.abort();
    root_maintainer.abort();
    let audited = bao.audited();
    assert_eq!(
        count("auth/token/renew-self"),
        1,
        "the AppRole token's renewal denied once, then not tried; the root token's never tried: {audited:?}"
    );
    assert_eq!(
        count("auth/token/lookup-self"),
        1,
        "the static token looked up once: {audited:?}"
    );
    let refused: Vec<_> = bao
        .audited_errors()
        .into_iter()
        .filter(|(path, _)| path != "auth/token/renew-self")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

/// Plain http is for a loopback dev server only: `check` fails the HTTPS item for a configured
/// address, and an address from `$VAULT_ADDR` is refused when the client is built (exit 2).
#[tokio::test]
async fn plain_http_to_a_non_loopback_vault_is_refused() {
    let env = Env::new().await;
    let cfg = env.write_config(&format!(
        "{}[vault]\naddress = \"http://vault.example.com:8200\"\nauth = {TOKEN_AUTH}\n\n{}",
        env.deepvue_section(""),
        token_block("")
    ));
    let out = rotate(&env, &cfg, &["check"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stdout.contains("FAIL     every endpoint is HTTPS")
            && out.stdout.contains("vault.address must use https://"),
        "{out}"
    );
    let cfg = env.write_config(&format!(
        "{}[vault]\nauth = {TOKEN_AUTH}\n\n{}",
        env.deepvue_section(""),
        token_block("")
    ));
    let mut cmd = vault_command(&env, &cfg, &["rotate"]);
    cmd.env("VAULT_ADDR", "http://vault.example.com:8200");
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("VAULT_ADDR must use https://"), "{out}");
    let out = rotate(&env, &cfg, &["rotate"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stdout
            .contains("no Vault address: set [vault] address or VAULT_ADDR"),
        "{out}"
    );
    assert_eq!(env.calls(), 0);
}

/// Without maintenance (a long-running process that does not run it), a login method whose
/// token expired logs in again once when Vault refuses it, and the call succeeds.
#[tokio::test]
async fn an_expired_login_token_is_replaced_on_first_refusal() {
    let bao = OpenBao::start().await;
    bao.policy("rotator", POLICY).await;
    let (role_id, secret_id) = bao
        .approle(
            "rotator",
            json!({"token_policies": ["rotator"], "token_ttl": "2s", "token_max_ttl": "2s"}),
        )
        .await;
    put_due(&bao, "kept").await;
    let sid = secret_file(bao.dir.path(), "sid", &secret_id);
    let clients = VaultClients::new(&VaultSection {
        address: Some(bao.addr.clone()),
        namespace: None,
        ca_file: Some(bao.ca.clone()),
        auth: VaultAuth::Approle(AppRoleAuth {
            role_id: AuthValue::Inline(role_id.into()),
            secret_id: AuthValue::Ref(SecretRef {
                env: None,
                file: Some(sid),
                credential: None,
            }),
            mount: None,
        }),
    });
    let store = VaultStore::new(clients, "secret".into(), TOKEN.into(), None);
    // The first read logs in; the token dies 2 s later on OpenBao's own clock (no clock of
    // ours to move), and the read after that finds it expired and logs in again.
    let logged_in = Instant::now();
    let got = store.read_current().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.map(|s| s.version.0), Some("1".to_string()));
    tokio::time::sleep_until((logged_in + Duration::from_millis(2500)).into()).await;
    let got = store.read_current().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.map(|s| s.version.0), Some("1".to_string()));
    let audited = bao.audited();
    let logins = audited
        .iter()
        .filter(|a| a.path == "auth/approle/login")
        .count();
    assert_eq!(logins, 2, "{audited:?}");
    let refused = bao.audited_errors();
    assert_eq!(
        refused.len(),
        1,
        "one refusal of the expired token: {refused:?}"
    );
}

#[tokio::test]
async fn the_daemon_renews_its_vault_token_and_logs_in_again_while_rotating() {
    let env = Env::with(deepvue_rotator::simulator::Behavior {
        token_ttl_secs: 70,
        ..deepvue_rotator::simulator::Behavior::default()
    })
    .await;
    let bao = OpenBao::start().await;
    bao.put(
        CREDS,
        json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    )
    .await;
    bao.policy("rotator", POLICY).await;
    let (role_id, secret_id) = bao
        .approle(
            "rotator",
            json!({"token_policies": ["rotator"], "token_ttl": "3s", "token_max_ttl": "8s"}),
        )
        .await;
    let sid = secret_file(bao.dir.path(), "sid", &secret_id);
    let port = crate::support::free_port();
    // Tokens renewed 66 s before their 70 s expiry: a rotation every ~4 s.
    let cfg = env.write_config(&format!(
        "{}{}[rotation]\nrenew_before = \"66s\"\nmin_interval = \"1s\"\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\njitter = \"0s\"\npoll_every = \"1h\"\n\n{}",
        env.deepvue_section(""),
        vault_section(
            &bao,
            &format!(
                "{{ method = \"approle\", role_id = \"{role_id}\", secret_id = {{ file = \"{}\" }} }}",
                sid.display()
            )
        ),
        token_block("")
    ));
    let cmd = vault_command(&env, &cfg, &["--log-format", "json", "daemon"]);
    let d = crate::daemon::Daemon::spawn(&env, cmd, port, &[]).await;
    // The events: two renewals, a second login at the max TTL, and rotations on after it.
    let started = Instant::now();
    loop {
        let audited = bao.audited();
        let count = |p: &str| audited.iter().filter(|a| a.path == p).count();
        let (logins, renewals) = (count("auth/approle/login"), count("auth/token/renew-self"));
        let version = bao.current_version(TOKEN).await;
        if renewals >= 2 && logins >= 2 && version >= 3 {
            // A rotation after the second login: the new token works.
            let since = version;
            while bao.current_version(TOKEN).await <= since {
                assert!(
                    started.elapsed() < Duration::from_secs(90),
                    "no rotation after the new login\n{}",
                    d.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "within 90 s: {renewals} renewals, {logins} logins, version {version}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        bao.audited_errors().is_empty(),
        "no request was refused: {:?}",
        bao.audited_errors()
    );
    assert_eq!(d.stop().await, 0);
    assert_eq!(
        env.calls(),
        bao.current_version(TOKEN).await,
        "every mint became a version"
    );
}

#[tokio::test]
async fn a_proxy_never_sees_a_loopback_vault_plain_or_tls() {
    let trap = crate::support::ProxyTrap::start().await;
    for bao in [OpenBao::start_plain().await, OpenBao::start().await] {
        let env = Env::new().await;
        bao.put(
            CREDS,
            json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
        )
        .await;
        let cfg = config(&env, &bao, TOKEN_AUTH, "");
        let mut cmd = vault_command(&env, &cfg, &["rotate"]);
        trap.set_on(&mut cmd);
        let out = run(cmd).await;
        assert_eq!(out.code, 0, "{}: {out}", bao.addr);
        assert_eq!(bao.current_version(TOKEN).await, 1, "{}", bao.addr);
    }
    assert_eq!(
        trap.hits(),
        0,
        "HTTP_PROXY / HTTPS_PROXY were used for a loopback Vault (and the Deepvue simulator)"
    );
}

/// Fresh KV v2 paths on one OpenBao, through the root token (in a file).
pub struct VaultFixture {
    bao: OpenBao,
    clients: Arc<VaultClients>,
    counter: AtomicUsize,
}

impl VaultFixture {
    /// Its OpenBao server.
    pub fn bao(&self) -> &OpenBao {
        &self.bao
    }

    pub async fn start() -> VaultFixture {
        let bao = OpenBao::start().await;
        let token = secret_file(bao.dir.path(), "root-token", ROOT);
        let clients = VaultClients::new(&VaultSection {
            address: Some(bao.addr.clone()),
            namespace: None,
            ca_file: Some(bao.ca.clone()),
            auth: VaultAuth::Token(TokenAuth {
                token: Some(AuthValue::Ref(SecretRef {
                    env: None,
                    file: Some(token),
                    credential: None,
                })),
                mount: None,
            }),
        });
        VaultFixture {
            bao,
            clients,
            counter: AtomicUsize::new(0),
        }
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl crate::scenarios::Fixture for VaultFixture {
    fn backend(&self) -> &'static str {
        "vault"
    }

    fn sections(&self) -> String {
        vault_section(&self.bao, TOKEN_AUTH)
    }

    fn clients(&self) -> Clients {
        let mut c = Clients::new(&Sections::default());
        c.vault = self.clients.clone();
        c
    }

    fn command(&self, env: &Env, config: &Path, args: &[&str]) -> tokio::process::Command {
        vault_command(env, config, args)
    }

    async fn store(&self) -> crate::scenarios::Store {
        let path = format!("scenario/s{}/token", self.next());
        crate::scenarios::Store {
            toml: format!("{{ backend = \"vault\", path = \"{path}\", keep_versions = 5 }}"),
            id: format!("secret/{path}"),
        }
    }

    async fn missing_store(&self) -> Option<crate::scenarios::Store> {
        None // a KV v2 path is made by its first write
    }

    async fn credentials(&self, value: Option<&str>) -> crate::scenarios::Creds {
        let path = format!("scenario/creds{}", self.next());
        if let Some(v) = value {
            let data: Value = serde_json::from_str(v)
                .unwrap_or_else(|e| panic!("a KV v2 path holds a JSON object: {e}"));
            self.bao.put(&path, data).await;
        }
        crate::scenarios::Creds {
            toml: format!("{{ backend = \"vault\", path = \"{path}\" }}"),
            // How every Vault message names a secret.
            id: format!("KV v2 mount `secret`, path `{path}`"),
        }
    }

    async fn versions(&self, store: &crate::scenarios::Store) -> usize {
        let path = store.id.trim_start_matches("secret/");
        self.bao.current_version(path).await as usize
    }

    async fn previous(&self, store: &crate::scenarios::Store) -> Option<String> {
        let path = store.id.trim_start_matches("secret/");
        let current = self.bao.current_version(path).await;
        current
            .checked_sub(1)
            .filter(|p| *p > 0)
            .map(|p| p.to_string())
    }

    async fn calls(&self) -> Option<u64> {
        Some(self.bao.audited().len() as u64)
    }

    async fn state_kept(&self, store: &crate::scenarios::Store) -> Option<bool> {
        let path = store.id.trim_start_matches("secret/");
        let meta = self.bao.metadata(path).await.unwrap_or_default();
        Some(meta["custom_metadata"]["deepvue-rotator.state.n"].is_string())
    }

    fn holds_text(&self) -> bool {
        false
    }

    fn missing_says(&self) -> &'static str {
        "no such secret"
    }
}

crate::scenarios::suite!(VaultFixture::start().await);

impl crate::faults::Faulty for VaultFixture {
    fn upstream(&self) -> (String, Option<PathBuf>) {
        (self.bao.addr.clone(), Some(self.bao.ca.clone()))
    }

    fn sections_via(&self, proxy: &str) -> String {
        // Plain http to a loopback address: what Vault's client allows for a local server.
        format!("[vault]\naddress = \"{proxy}\"\nauth = {TOKEN_AUTH}\n\n")
    }

    fn throttled(&self) -> crate::faults::Action {
        crate::faults::Action::Fail {
            status: 429,
            body: r#"{"errors":["request path \"secret/data\": rate limit quota exceeded"]}"#
                .into(),
            headers: vec![("content-type".into(), "application/json".into())],
        }
    }
}
