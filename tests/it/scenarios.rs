//! The shared scenario suite: the behaviours every token store must show, written once (as
//! object_store's `integration.rs`) and run against each backend's real server — the file
//! store in a temp dir, AWS on moto, Vault on OpenBao, GCP on the Secret Manager fake — by one
//! line in that backend's test module:
//!
//! ```text
//! crate::scenarios::suite!(AwsFixture::provisioned());
//! ```
//!
//! Two kinds of scenario:
//! - **contract** scenarios drive the store's contracts in-process (token versions, leases,
//!   run state, credentials), as the composition root builds them from a config entry;
//! - **runner** scenarios drive the real binary against the HTTPS simulator, as a user runs
//!   it.
//!
//! A backend's own test file keeps only what is its own (labels, cas, GC, auth methods, call
//! accounting per API).

use std::path::Path;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use deepvue_rotator::backends::{BuildContext, Clients, CredentialsConfig, StoreConfig};
use deepvue_rotator::core::document::TokenDocument;
use deepvue_rotator::core::error::ErrorKind;
use deepvue_rotator::core::parts::StoreParts;
use deepvue_rotator::core::state::StatePolicy;
use deepvue_rotator::core::store::{Version, WriteMode};
use deepvue_rotator::simulator::Behavior;
use secrecy::{ExposeSecret, SecretString};

use crate::receiver::Receiver;
use crate::support::{CLIENT_ID, CLIENT_SECRET, Env, Output, allow_only, run, secret_forms};

/// A store a fixture made: its `store = …` inline table, and its id as messages name it.
#[derive(Clone, Debug)]
pub struct Store {
    /// The inline TOML table.
    pub toml: String,
    /// The secret id / path, as errors and reports name it.
    pub id: String,
}

/// A credentials secret a fixture made: its `credentials = …` inline table and its id.
#[derive(Clone, Debug)]
pub struct Creds {
    /// The inline TOML table.
    pub toml: String,
    /// The secret id / path, as errors name it.
    pub id: String,
}

/// A backend under test, on its own real server.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    /// The backend's name, as reports show it.
    fn backend(&self) -> &'static str;
    /// Top-level TOML the binary needs (`[aws] …`); empty for none.
    fn sections(&self) -> String;
    /// The backend's clients for in-process scenarios, built without the environment.
    fn clients(&self) -> Clients;
    /// The binary for `config` with this backend's environment (and nothing of the host's).
    fn command(&self, env: &Env, config: &Path, args: &[&str]) -> tokio::process::Command;
    /// A new, empty token store.
    async fn store(&self) -> Store;
    /// A token store that does not exist and is not created by a write; `None` when the
    /// backend creates a missing store on the first write (the file store, a Vault path).
    async fn missing_store(&self) -> Option<Store>;
    /// A credentials secret holding `value`, or one that does not exist (`None`).
    async fn credentials(&self, value: Option<&str>) -> Creds;
    /// How many versions the store holds, read with the backend's own client (not ours).
    async fn versions(&self, store: &Store) -> usize;
    /// The version the backend itself calls the previous one (AWSPREVIOUS, the second
    /// newest), read with its own client.
    async fn previous(&self, store: &Store) -> Option<String>;
    /// Requests the backend has served so far, when it can count them.
    async fn calls(&self) -> Option<u64> {
        None
    }
    /// Whether run state is kept beside the token (`Some(true)`), none is kept
    /// (`Some(false)`), read with the backend's own client; `None` where every run's outcome
    /// is kept anyway (the file store).
    async fn state_kept(&self, store: &Store) -> Option<bool> {
        let _ = store;
        None
    }
    /// Whether concurrent runners wait for the rotation lease (a flock) and then find the
    /// token fresh, rather than ending as "rotated by another runner".
    fn losers_wait(&self) -> bool {
        false
    }
    /// Whether a credentials secret can hold any text (not only a JSON object, as a KV v2
    /// path does).
    fn holds_text(&self) -> bool {
        true
    }
    /// What a missing credentials secret's error says besides its id.
    fn missing_says(&self) -> &'static str;
    /// Store calls of a healthy no-op with alert sinks configured: the token read, plus the
    /// state read where the token read cannot tell whether state is kept.
    fn no_op_calls_with_sinks(&self) -> u64 {
        1
    }
    /// The log formats to scan at trace level.
    fn log_formats(&self) -> &'static [&'static str] {
        &["text", "json"]
    }
    /// Whether credentials this fixture makes live in a secret store (`check` passes them),
    /// rather than in a loose file (`check` reads and then fails them).
    fn credentials_in_a_secret_store(&self) -> bool {
        true
    }
    /// Remove what the scenario made where it outlives the test (a real cloud project).
    async fn cleanup(&self) {}
}

/// The runner scenarios, one test each, then the contract scenarios; `$fixture` is an
/// expression giving a started fixture.
macro_rules! suite {
    ($fixture:expr) => {
        mod scenarios {
            #[allow(unused_imports)]
            use super::*;
            use crate::scenarios as s;

            #[tokio::test]
            async fn contract_versions_and_leases() {
                let fx = $fixture;
                s::contract_versions_and_leases(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn contract_state_round_trip() {
                let fx = $fixture;
                s::contract_state_round_trip(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn contract_credentials() {
                let fx = $fixture;
                s::contract_credentials(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn first_mint_no_op_and_forced_rotation_keep_the_previous_version() {
                let fx = $fixture;
                s::first_mint_no_op_and_forced_rotation(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn six_concurrent_runners_mint_once_and_leave_one_version() {
                let fx = $fixture;
                s::six_concurrent_runners(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn bad_or_missing_credentials_are_config_errors_naming_them() {
                let fx = $fixture;
                s::bad_or_missing_credentials(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn a_missing_store_is_named_or_created() {
                let fx = $fixture;
                s::missing_store(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn trace_logs_never_show_a_secret_in_any_encoding() {
                let fx = $fixture;
                s::trace_logs_never_show_secrets(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn alerts_dedup_across_runs_and_resolve() {
                let fx = $fixture;
                s::alerts_dedup_and_resolve(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
            #[tokio::test]
            async fn a_suspended_token_is_never_minted_and_alerts_critical_until_resumed() {
                let fx = $fixture;
                s::suspend_and_resume(&fx).await;
                s::Fixture::cleanup(&fx).await;
            }
        }
    };
}
pub(crate) use suite;

/// A token document issued now (whole seconds), valid 24 h.
pub fn doc(token: &str) -> TokenDocument {
    doc_left(token, 24)
}

/// A token document with `hours_left` of its 24 h left.
pub fn doc_left(token: &str, hours_left: i64) -> TokenDocument {
    let now = Utc::now().trunc_subsecs(0);
    TokenDocument {
        access_token: SecretString::from(token.to_string()),
        token_type: "bearer".into(),
        expiry: now + chrono::Duration::hours(hours_left),
        issued_at: now - chrono::Duration::hours(24 - hours_left),
        x_api_key: None,
    }
}

/// The valid credentials JSON.
pub fn valid_credentials() -> String {
    format!(r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}","note":"x"}}"#)
}

/// How long an in-process flock lease is waited for.
const LOCK_TIMEOUT: Duration = Duration::from_millis(400);

/// The store's contracts, built by the registry from its config entry, as the app builds them.
pub fn parts(fx: &dyn Fixture, store: &Store) -> StoreParts {
    #[derive(serde::Deserialize)]
    struct Entry {
        store: StoreConfig,
    }
    let entry: Entry = toml::from_str(&format!("store = {}", store.toml))
        .unwrap_or_else(|e| panic!("{}: store entry {}: {e}", fx.backend(), store.toml));
    let clients = fx.clients();
    entry.store.build(&BuildContext {
        clients: &clients,
        lock_timeout: LOCK_TIMEOUT,
    })
}

/// The credential source of a credentials entry.
fn credential_source(
    fx: &dyn Fixture,
    creds: &Creds,
) -> Box<dyn deepvue_rotator::core::credentials::CredentialSource> {
    #[derive(serde::Deserialize)]
    struct Entry {
        credentials: CredentialsConfig,
    }
    let entry: Entry = toml::from_str(&format!("credentials = {}", creds.toml))
        .unwrap_or_else(|e| panic!("{}: credentials entry {}: {e}", fx.backend(), creds.toml));
    let clients = fx.clients();
    entry.credentials.build(&BuildContext {
        clients: &clients,
        lock_timeout: LOCK_TIMEOUT,
    })
}

/// The token (and version) at `v`, or the current one.
async fn token_at(p: &StoreParts, v: Option<&Version>) -> Option<(Version, String)> {
    let b = p.tokens.backend();
    let stored = match v {
        None => p.tokens.read_current().await,
        Some(v) => p.tokens.read_version(v).await,
    };
    let stored = stored.unwrap_or_else(|e| panic!("{b}: read failed: {e}"))?;
    let doc = stored
        .document
        .unwrap_or_else(|e| panic!("{b}: document unusable: {e}"));
    Some((stored.version, doc.access_token.expose_secret().to_string()))
}

/// The token a store holds now, read with our store: a valid document, or a panic.
pub async fn current_token(fx: &dyn Fixture, store: &Store) -> String {
    let p = parts(fx, store);
    token_at(&p, None)
        .await
        .map(|t| t.1)
        .unwrap_or_else(|| panic!("{}: nothing stored", fx.backend()))
}

/// A one-token config (`prod`) for the binary, with `extra` top-level TOML.
fn config(
    fx: &dyn Fixture,
    env: &Env,
    creds: &Creds,
    store: &Store,
    extra: &str,
) -> std::path::PathBuf {
    env.write_config(&format!(
        "{}{}{extra}[[tokens]]\nname = \"prod\"\ncredentials = {}\nstore = {}\n",
        env.deepvue_section(""),
        fx.sections(),
        creds.toml,
        store.toml
    ))
}

fn reports(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

// ---- contract scenarios ---------------------------------------------------------------------

/// Token versions: empty, create, update, the previous version readable, conditional writes
/// that lose cleanly, N concurrent writers leaving one version; leases taken, held elsewhere
/// and given back.
pub async fn contract_versions_and_leases(fx: &dyn Fixture) {
    let b = fx.backend();
    let store = fx.store().await;
    let p = parts(fx, &store);
    assert_eq!(p.tokens.backend(), b);

    // Empty: reads answer "nothing", never an error.
    assert!(
        token_at(&p, None).await.is_none(),
        "{b}: a new store reads as empty"
    );
    for v in [
        "1",
        "0",
        "not-a-version",
        "3f2c6e9a-0000-4000-8000-000000000000",
    ] {
        let got = p
            .tokens
            .read_version(&Version(v.into()))
            .await
            .unwrap_or_else(|e| panic!("{b}: an unknown version `{v}` is not an error: {e}"));
        assert!(got.is_none(), "{b}: unknown version `{v}` reads as None");
    }
    p.tokens
        .check()
        .await
        .unwrap_or_else(|e| panic!("{b}: check on an empty store: {e}"));

    // First write, under the lease when the store has one.
    let lease = match &p.leases {
        Some(l) => Some(
            l.acquire(None)
                .await
                .unwrap_or_else(|e| panic!("{b}: lease on an empty store: {e}")),
        ),
        None => None,
    };
    if let (Some(leases), Some(held)) = (&p.leases, &lease) {
        // Held elsewhere: another runner cannot take it while it holds.
        let other = leases.acquire(None).await;
        let e = other
            .err()
            .unwrap_or_else(|| panic!("{b}: a second runner took a lease that is held"));
        assert!(
            matches!(e.kind, ErrorKind::Conflict | ErrorKind::Transient),
            "{b}: a held lease is busy: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(b) && msg.contains(&store.id),
            "{b}: the busy lease names backend and secret: {msg}"
        );
        assert!(held.base().is_none() && !held.holder().is_empty());
    }
    let v1 = p
        .tokens
        .write(
            &doc("tok-one"),
            WriteMode::Create {
                lease: lease.as_ref(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{b}: create: {e}"));
    if let (Some(leases), Some(mut held)) = (&p.leases, lease) {
        held.spend();
        leases.release(held).await;
    }
    assert_eq!(
        token_at(&p, None).await,
        Some((v1.clone(), "tok-one".into())),
        "{b}"
    );
    let current = p
        .tokens
        .read_current()
        .await
        .ok()
        .flatten()
        .and_then(|c| c.document.ok());
    let expiry = current.map(|d| (d.expiry - d.issued_at).num_hours());
    assert_eq!(expiry, Some(24), "{b}: times survive the round trip");

    // "Only if empty" on a non-empty store: conflict, nothing written.
    let e = p
        .tokens
        .write(&doc("tok-lost"), WriteMode::Create { lease: None })
        .await
        .err();
    assert_eq!(
        e.as_ref().map(|e| e.kind),
        Some(ErrorKind::Conflict),
        "{b}: create over existing must conflict"
    );
    let msg = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains(b) && msg.contains(&p.tokens.secret_id()),
        "{b}: errors name backend and secret id: {msg}"
    );
    assert!(
        !msg.contains("tok-"),
        "{b}: errors never carry a token: {msg}"
    );
    assert_eq!(
        token_at(&p, None).await.map(|t| t.1).as_deref(),
        Some("tok-one")
    );

    // A lease taken from v1 and given back unspent: the next runner takes it at once.
    if let Some(leases) = &p.leases {
        let l = leases
            .acquire(Some(&v1))
            .await
            .unwrap_or_else(|e| panic!("{b}: lease after a spent one: {e}"));
        assert_eq!(l.base(), Some(&v1));
        leases.release(l).await;
        let again = leases
            .acquire(Some(&v1))
            .await
            .unwrap_or_else(|e| panic!("{b}: a released lease is free: {e}"));
        leases.release(again).await;
    }

    // Conditional update: a new version; the previous one stays readable.
    let v2 = p
        .tokens
        .write(
            &doc("tok-two"),
            WriteMode::Update {
                expected: &v1,
                lease: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{b}: update: {e}"));
    assert_ne!(v1, v2, "{b}: a write makes a new version");
    assert_eq!(
        token_at(&p, None).await,
        Some((v2.clone(), "tok-two".into())),
        "{b}"
    );
    assert_eq!(
        token_at(&p, Some(&v1)).await,
        Some((v1.clone(), "tok-one".into())),
        "{b}: previous kept"
    );

    // A stale expected version: conflict, nothing written.
    let e = p
        .tokens
        .write(
            &doc("tok-stale"),
            WriteMode::Update {
                expected: &v1,
                lease: None,
            },
        )
        .await
        .err()
        .map(|e| e.kind);
    assert_eq!(
        e,
        Some(ErrorKind::Conflict),
        "{b}: stale version must conflict"
    );
    assert_eq!(
        token_at(&p, None).await,
        Some((v2.clone(), "tok-two".into())),
        "{b}: a lost race writes nothing"
    );

    // Six writers from the same version: exactly one wins, the others conflict.
    let docs: Vec<TokenDocument> = (0..6).map(|i| doc(&format!("tok-racer-{i}"))).collect();
    let results = futures::future::join_all(docs.iter().map(|d| {
        p.tokens.write(
            d,
            WriteMode::Update {
                expected: &v2,
                lease: None,
            },
        )
    }))
    .await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{b}: exactly one of six racing writers wins"
    );
    for r in &results {
        if let Err(e) = r {
            assert_eq!(
                e.kind,
                ErrorKind::Conflict,
                "{b}: losers see a conflict: {e}"
            );
        }
    }
    assert_eq!(
        token_at(&p, None).await.map(|t| t.1),
        Some(format!("tok-racer-{}", winners[0])),
        "{b}: the winner is current"
    );
    assert_eq!(
        fx.versions(&store).await,
        3,
        "{b}: three versions written in all"
    );
}

/// Run state: nothing kept at first, bytes round trip through the etag of a read, and a
/// removal leaves none.
pub async fn contract_state_round_trip(fx: &dyn Fixture) {
    let b = fx.backend();
    let store = fx.store().await;
    let p = parts(fx, &store);
    let read = p
        .state
        .read_state()
        .await
        .unwrap_or_else(|e| panic!("{b}: read_state: {e}"));
    assert!(
        read.bytes.is_none() && !read.needs_write,
        "{b}: no state at first"
    );
    assert!(p.state.capacity() >= 1000, "{b}: room for a state");
    let state = deepvue_rotator::core::state::RunState {
        last_run_at: Some("2026-11-28T12:00:00Z".into()),
        last_outcome: Some(deepvue_rotator::core::result::OutcomeKind::Failed),
        last_error: Some("forbidden: token `x`: Deepvue answered 403".into()),
        consecutive_failures: 2,
        ..Default::default()
    };
    let bytes = state
        .to_bytes(p.state.capacity())
        .unwrap_or_else(|e| panic!("{b}: {e}"));
    p.state
        .write_state(Some(&bytes), read.etag.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{b}: write_state: {e}"));
    let back = p
        .state
        .read_state()
        .await
        .unwrap_or_else(|e| panic!("{b}: read_state: {e}"));
    assert_eq!(
        back.bytes.as_deref(),
        Some(bytes.as_slice()),
        "{b}: state round trip"
    );
    assert_eq!(
        back.bytes
            .as_deref()
            .and_then(deepvue_rotator::core::state::RunState::from_bytes),
        Some(state),
        "{b}"
    );
    if fx.state_kept(&store).await.is_some() {
        assert_eq!(
            fx.state_kept(&store).await,
            Some(true),
            "{b}: kept where the backend keeps it"
        );
    }
    // Without the etag of a read (a write that did not read first) the store reads itself.
    p.state
        .write_state(None, None)
        .await
        .unwrap_or_else(|e| panic!("{b}: removing the state: {e}"));
    let gone = p
        .state
        .read_state()
        .await
        .unwrap_or_else(|e| panic!("{b}: read_state: {e}"));
    assert!(gone.bytes.is_none(), "{b}: removed");
    if fx.state_kept(&store).await.is_some() {
        assert_eq!(
            fx.state_kept(&store).await,
            Some(false),
            "{b}: nothing left behind"
        );
    }
    assert_eq!(
        p.state.policy() == StatePolicy::EveryRun,
        fx.state_kept(&store).await.is_none(),
        "{b}: only a store that keeps every run's outcome has no metadata to look at"
    );
}

/// Credentials: read, a missing field, a missing secret.
pub async fn contract_credentials(fx: &dyn Fixture) {
    let b = fx.backend();
    let creds = fx.credentials(Some(&valid_credentials())).await;
    let loaded = credential_source(fx, &creds)
        .load()
        .await
        .unwrap_or_else(|e| panic!("{b}: credentials: {e}"));
    assert_eq!(loaded.client_id.expose_secret(), CLIENT_ID, "{b}");
    assert_eq!(loaded.client_secret.expose_secret(), CLIENT_SECRET, "{b}");
    assert!(
        !format!("{loaded:?}").contains(CLIENT_SECRET),
        "{b}: Debug redacts"
    );

    let bad = fx
        .credentials(Some(&format!(r#"{{"client_id":"{CLIENT_ID}"}}"#)))
        .await;
    let e = credential_source(fx, &bad)
        .load()
        .await
        .err()
        .unwrap_or_else(|| panic!("{b}: a missing field must fail"));
    let msg = e.to_string();
    assert_eq!(e.kind, ErrorKind::Config, "{b}: {msg}");
    assert!(
        msg.contains("client_secret") && msg.contains(&bad.id),
        "{b}: names the field and the secret: {msg}"
    );

    let missing = fx.credentials(None).await;
    let e = credential_source(fx, &missing)
        .load()
        .await
        .err()
        .unwrap_or_else(|| panic!("{b}: a missing secret must fail"));
    assert_eq!(e.kind, ErrorKind::Config, "{b}: {e}");
    assert!(e.to_string().contains(&missing.id), "{b}: names it: {e}");
}

// ---- runner scenarios -----------------------------------------------------------------------

/// The first run mints, the second is a no-op, a forced one adds a version and keeps the
/// previous; `read`, `status` and `check` work on the store.
pub async fn first_mint_no_op_and_forced_rotation(fx: &dyn Fixture) {
    let b = fx.backend();
    let env = Env::new().await;
    let store = fx.store().await;
    let creds = fx.credentials(Some(&valid_credentials())).await;
    let cfg = config(fx, &env, &creds, &store, "");
    let p = parts(fx, &store);
    let cmd = |args: &[&str]| fx.command(&env, &cfg, args);

    let out = run(cmd(&["rotate"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert_eq!(env.calls(), 1, "{b}");
    assert_eq!(fx.versions(&store).await, 1, "{b}");
    let (v1, first) = token_at(&p, None)
        .await
        .unwrap_or_else(|| panic!("{b}: nothing stored"));
    assert!(
        out.stdout
            .contains(&format!("prod: rotated -> version {v1}")),
        "{b}: {out}"
    );
    assert!(first.starts_with("simtok_"), "{b}: stored token: {first:?}");
    let stored = p
        .tokens
        .read_current()
        .await
        .ok()
        .flatten()
        .and_then(|s| s.document.ok());
    assert!(
        stored.is_some_and(|d| d.expires_in(Utc::now()) > chrono::Duration::hours(23)),
        "{b}: a fresh 24 h token"
    );

    // A fresh token: no authorize call, no new version, one store read.
    let before = fx.calls().await;
    let out = run(cmd(&["rotate"])).await;
    if let (Some(before), Some(after)) = (before, fx.calls().await) {
        assert_eq!(after - before, 1, "{b}: a no-op is one store call");
    }
    assert_eq!(out.code, 0, "{b}: {out}");
    assert!(
        out.stdout.contains(&format!("prod: fresh, version {v1}")),
        "{b}: {out}"
    );
    assert_eq!(env.calls(), 1, "{b}: a fresh token must not be re-minted");
    assert_eq!(fx.versions(&store).await, 1, "{b}");

    // Forced: a new version; the previous one stays readable.
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert_eq!(env.calls(), 2, "{b}");
    assert_eq!(fx.versions(&store).await, 2, "{b}");
    let (v2, current) = token_at(&p, None)
        .await
        .unwrap_or_else(|| panic!("{b}: nothing stored"));
    assert!(
        out.stdout.contains(&format!(
            "prod: rotated -> version {v2} (previous {v1} kept)"
        )),
        "{b}: {out}"
    );
    assert_ne!(current, first, "{b}");
    assert_eq!(
        token_at(&p, Some(&v1)).await,
        Some((v1.clone(), first)),
        "{b}: previous kept"
    );

    // read prints the current token, and the document for --json.
    let out = run(cmd(&["read", "prod"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert_eq!(out.stdout.trim(), current, "{b}");
    let out = run(cmd(&["read", "prod", "--json"])).await;
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert_eq!(doc["access_token"], current.as_str(), "{b}");
    assert_eq!(doc["token_type"], "bearer", "{b}");
    for k in ["expiry", "issued_at"] {
        let t = doc[k].as_str().unwrap_or_default();
        assert!(
            t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{b}: {k} = {t}"
        );
    }

    // status: the documented fields, never the token.
    let out = run(cmd(&["status", "--json"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert!(!out.all().contains(&current), "{b}");
    let rows = reports(&out);
    let row = &rows[0];
    assert_eq!(row["name"], "prod", "{b}");
    assert_eq!(row["backend"], b, "{b}");
    assert_eq!(row["version"], v2.0.as_str(), "{b}");
    assert_eq!(row["due"], false, "{b}");
    if fx.state_kept(&store).await.is_none() {
        assert_eq!(
            row["last_outcome"], "rotated",
            "{b}: every run's outcome is kept"
        );
    }
    let left = row["expires_in_secs"].as_i64().unwrap_or_default();
    assert!(
        (86_000..=86_400).contains(&left),
        "{b}: expires_in_secs {left}"
    );
    assert!(
        row["issued_at"].is_string() && row["expiry"].is_string(),
        "{b}"
    );
    let out = run(cmd(&["status"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert!(
        out.stdout.contains("NAME") && !out.all().contains(&current),
        "{b}: {out}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("prod") && l.split_whitespace().nth(1) == Some(v2.0.as_str())),
        "{b}: {out}"
    );

    // check reaches the store and reads the credentials, never showing them (a loose
    // credentials file is read, and then failed as loose).
    let out = run(cmd(&["check", "--json"])).await;
    let items = reports(&out);
    for id in ["credentials", "stores"] {
        let got: Vec<String> = items
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["item"] == id)
            .map(|i| format!("{} {}", i["status"], i["detail"]))
            .collect();
        let expected = |g: &String| {
            g.starts_with("\"pass\"")
                || (id == "credentials"
                    && !fx.credentials_in_a_secret_store()
                    && g.contains("loose file"))
        };
        assert!(
            !got.is_empty() && got.iter().all(expected),
            "{b}: {id}: {got:?}\n{out}"
        );
    }
    assert!(!out.all().contains(CLIENT_SECRET), "{b}: {out}");
}

/// Six runners at once, on an empty store and on a due token: one mint, one new version each
/// time; every runner exits 0; the version decided from stays readable.
pub async fn six_concurrent_runners(fx: &dyn Fixture) {
    let b = fx.backend();
    let env = Env::with(Behavior {
        latency_ms: 300,
        ..Behavior::default()
    })
    .await;
    let store = fx.store().await;
    let creds = fx.credentials(Some(&valid_credentials())).await;
    let cfg = config(fx, &env, &creds, &store, "");
    let p = parts(fx, &store);
    for round in 0..2 {
        let due = if round == 1 {
            let current = p
                .tokens
                .read_current()
                .await
                .ok()
                .flatten()
                .map(|s| s.version);
            let v = p
                .tokens
                .write(
                    &doc_left("old-token-aaaa", 1),
                    WriteMode::from_current(current.as_ref(), None),
                )
                .await
                .unwrap_or_else(|e| panic!("{b}: make it due: {e}"));
            Some(v)
        } else {
            None
        };
        let (versions, minted) = (fx.versions(&store).await, env.calls());
        let runs = (0..6).map(|_| run(fx.command(&env, &cfg, &["rotate", "--json"])));
        let outs: Vec<Output> = futures::future::join_all(runs).await;
        let mut rotated = 0;
        for out in &outs {
            assert_eq!(
                out.code, 0,
                "{b} round {round}: every runner exits 0: {out}"
            );
            match reports(out)[0]["outcome"].as_str() {
                Some("rotated") => rotated += 1,
                Some("fresh") => {}
                Some("rotated_by_another_runner") if !fx.losers_wait() => {}
                other => panic!("{b} round {round}: unexpected outcome {other:?}: {out}"),
            }
        }
        assert_eq!(rotated, 1, "{b} round {round}: exactly one runner rotates");
        if p.leases.is_some() {
            assert_eq!(
                env.calls(),
                minted + 1,
                "{b} round {round}: losers never mint"
            );
        } else {
            // The conditional write alone: losers may mint, and never write what they minted.
            assert!(env.calls() > minted, "{b} round {round}");
        }
        assert_eq!(
            fx.versions(&store).await,
            versions + 1,
            "{b} round {round}: one new version"
        );
        if let Some(due) = &due {
            assert_eq!(
                token_at(&p, Some(due)).await.map(|t| t.1).as_deref(),
                Some("old-token-aaaa"),
                "{b}: the version the runners decided from stays readable"
            );
            assert_eq!(
                fx.previous(&store).await.as_deref(),
                Some(due.0.as_str()),
                "{b}: and it is the previous one"
            );
            let cur = token_at(&p, None).await.map(|t| t.1).unwrap_or_default();
            assert_ne!(cur, "old-token-aaaa", "{b}");
        }
    }
}

/// Malformed credentials and a missing credentials secret: exit 2 naming the secret and the
/// field, nothing minted, nothing written, the secret never shown.
pub async fn bad_or_missing_credentials(fx: &dyn Fixture) {
    let b = fx.backend();
    let env = Env::new().await;
    let store = fx.store().await;
    let cases = [
        (
            "no-secret-field",
            Some(format!(r#"{{"client_id":"{CLIENT_ID}"}}"#)),
            "field `client_secret` is missing",
        ),
        (
            "empty-id",
            Some(format!(
                r#"{{"client_id":"","client_secret":"{CLIENT_SECRET}"}}"#
            )),
            "field `client_id` is empty",
        ),
        (
            "id-not-a-string",
            Some(format!(
                r#"{{"client_id":5,"client_secret":"{CLIENT_SECRET}"}}"#
            )),
            "field `client_id` is not a string",
        ),
        (
            "empty-secret",
            Some(format!(
                r#"{{"client_id":"{CLIENT_ID}","client_secret":""}}"#
            )),
            "field `client_secret` is empty",
        ),
        (
            "not-json",
            Some(format!("client_secret={CLIENT_SECRET}")),
            "not a JSON object",
        ),
        ("absent", None, fx.missing_says()),
    ];
    for (name, value, expect) in cases {
        if name == "not-json" && !fx.holds_text() {
            continue; // a KV v2 path holds a JSON object, never text
        }
        let creds = fx.credentials(value.as_deref()).await;
        let cfg = config(fx, &env, &creds, &store, "");
        let out = run(fx.command(&env, &cfg, &["rotate"])).await;
        assert_eq!(out.code, 2, "{b} {name}: config error: {out}");
        assert!(
            out.stdout.contains(expect) && out.stdout.contains(&creds.id),
            "{b} {name}: names the secret and the field: {out}"
        );
        assert!(!out.all().contains(CLIENT_SECRET), "{b} {name}: {out}");
        assert_eq!(env.calls(), 0, "{b} {name}: nothing minted");
    }
    assert_eq!(fx.versions(&store).await, 0, "{b}: nothing written");
}

/// A token store that does not exist: a config error naming it, nothing minted; a backend
/// that makes missing stores on the first write makes it.
pub async fn missing_store(fx: &dyn Fixture) {
    let b = fx.backend();
    let env = Env::new().await;
    let creds = fx.credentials(Some(&valid_credentials())).await;
    match fx.missing_store().await {
        Some(store) => {
            let cfg = config(fx, &env, &creds, &store, "");
            let out = run(fx.command(&env, &cfg, &["rotate"])).await;
            assert_eq!(out.code, 2, "{b}: {out}");
            assert!(
                out.stdout.contains(&store.id) && out.stdout.contains("does not exist"),
                "{b}: names the store: {out}"
            );
            assert_eq!(env.calls(), 0, "{b}: nothing minted");
            let out = run(fx.command(&env, &cfg, &["check"])).await;
            assert_eq!(out.code, 1, "{b}: check fails the store item: {out}");
            assert!(out.stdout.contains(&store.id), "{b}: {out}");
        }
        None => {
            let store = fx.store().await;
            let cfg = config(fx, &env, &creds, &store, "");
            let out = run(fx.command(&env, &cfg, &["rotate"])).await;
            assert_eq!(
                out.code, 0,
                "{b}: a missing store is made on the first write: {out}"
            );
            assert_eq!(fx.versions(&store).await, 1, "{b}");
        }
    }
}

/// Trace-level logs, in both formats, of a first mint, a no-op, a forced rotation and a
/// failing one never hold a token or the client secret in any encoding.
pub async fn trace_logs_never_show_secrets(fx: &dyn Fixture) {
    let b = fx.backend();
    let env = Env::new().await;
    let store = fx.store().await;
    let creds = fx.credentials(Some(&valid_credentials())).await;
    // With the client secret published beside the token: it passes through every store's
    // write path too, and must still never be logged.
    let cfg = env.write_config(&format!(
        "{}{}[[tokens]]\nname = \"prod\"\ncredentials = {}\nstore = {}\npublish_api_key = true\n",
        env.deepvue_section(""),
        fx.sections(),
        creds.toml,
        store.toml
    ));
    let mut outs = Vec::new();
    for format in fx.log_formats().iter().copied() {
        for (args, code) in [
            (vec!["rotate"], 0),
            (vec!["rotate"], 0),
            (vec!["rotate", "--force"], 0),
            (vec!["status"], 0),
            (vec!["read", "prod", "--json"], 0),
        ] {
            let mut full = vec!["--log-format", format];
            full.extend(&args);
            let mut cmd = fx.command(&env, &cfg, &full);
            cmd.env("RUST_LOG", "trace");
            let out = run(cmd).await;
            assert_eq!(out.code, code, "{b} {args:?}: {out}");
            if args.contains(&"--force") {
                assert!(
                    out.stderr.contains("TRACE")
                        || out.stderr.contains("\"level\":\"TRACE\"")
                        || (format == "gcp" && out.stderr.contains("DEBUG")),
                    "{b}: trace logging must be on\n{out}"
                );
            }
            if args[0] == "read" {
                let doc: serde_json::Value = serde_json::from_str(&out.stdout)
                    .unwrap_or_else(|e| panic!("{b}: read --json: {e}: {out}"));
                assert_eq!(
                    doc["x_api_key"], CLIENT_SECRET,
                    "{b}: the stored document carries the client secret"
                );
            } else {
                outs.push(out);
            }
        }
        env.sim.set_behavior(allow_only("203.0.113.0/24"));
        let mut cmd = fx.command(&env, &cfg, &["--log-format", format, "rotate", "--force"]);
        cmd.env("RUST_LOG", "trace");
        let out = run(cmd).await;
        assert_eq!(out.code, 3, "{b}: {out}");
        outs.push(out);
        env.sim.set_behavior(Behavior::default());
    }
    let tokens = env.sim.issued_tokens();
    assert!(tokens.len() >= 3, "{b}: tokens issued: {}", tokens.len());
    let mut secrets: Vec<String> = tokens.iter().flat_map(|t| secret_forms(t)).collect();
    secrets.extend(secret_forms(CLIENT_SECRET));
    for out in &outs {
        let all = out.all();
        for s in &secrets {
            assert!(
                !all.contains(s.as_str()),
                "{b}: a secret ({} chars) appears in trace output",
                s.len()
            );
        }
    }
}

/// A one-token config (`prod`) on a new store with valid credentials, alerting to a webhook
/// receiver.
struct Alerted {
    env: Env,
    store: Store,
    rx: Receiver,
    cfg: std::path::PathBuf,
}

impl Alerted {
    async fn start(fx: &dyn Fixture) -> Alerted {
        let env = Env::new().await;
        let store = fx.store().await;
        let creds = fx.credentials(Some(&valid_credentials())).await;
        let rx = Receiver::start(&[("/hook", 200, "")]).await;
        let rx_ca = env.path("receiver-ca.pem");
        std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
        let cfg = config(
            fx,
            &env,
            &creds,
            &store,
            &format!(
                "[alerting]\nenvironment = \"it\"\nca_file = \"{}\"\n\n[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n\n",
                rx_ca.display(),
                rx.url("/hook")
            ),
        );
        Alerted {
            env,
            store,
            rx,
            cfg,
        }
    }
}

/// A 403 alerts once across two runs (the state kept beside the token dedups it), `status`
/// shows it open, a rotation resolves it under the same key, and afterwards nothing is kept
/// (where keeping costs calls) and a healthy no-op with sinks is one call again.
pub async fn alerts_dedup_and_resolve(fx: &dyn Fixture) {
    let b = fx.backend();
    let Alerted {
        env,
        store,
        rx,
        cfg,
    } = Alerted::start(fx).await;
    let cmd = |args: &[&str]| fx.command(&env, &cfg, args);
    assert_eq!(run(cmd(&["rotate"])).await.code, 0, "{b}");
    if fx.state_kept(&store).await.is_some() {
        assert_eq!(
            fx.state_kept(&store).await,
            Some(false),
            "{b}: a success keeps nothing"
        );
        let before = fx.calls().await;
        assert_eq!(run(cmd(&["rotate"])).await.code, 0, "{b}");
        if let (Some(before), Some(after)) = (before, fx.calls().await) {
            assert_eq!(
                after - before,
                fx.no_op_calls_with_sinks(),
                "{b}: a no-op with sinks and nothing open"
            );
        }
    }

    env.sim.set_behavior(allow_only("203.0.113.0/24"));
    for run_no in 0..2 {
        let out = run(cmd(&["rotate", "--force"])).await;
        assert_eq!(out.code, 3, "{b}: {out}");
        assert_eq!(
            rx.posts("/hook").len(),
            1,
            "{b} run {run_no}: alerted once\n{out}"
        );
    }
    let posts = rx.posts("/hook");
    assert_eq!(posts[0].json()["action"], "trigger", "{b}");
    assert_eq!(posts[0].json()["condition"], "ip-403", "{b}");
    if fx.state_kept(&store).await.is_some() {
        assert_eq!(
            fx.state_kept(&store).await,
            Some(true),
            "{b}: the open alert is kept"
        );
    }
    let out = run(cmd(&["status"])).await;
    assert!(out.stdout.contains("open alerts: ip-403"), "{b}: {out}");

    env.sim.set_behavior(Behavior::default());
    let out = run(cmd(&["rotate", "--force"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 2, "{b}: one resolve");
    assert_eq!(posts[1].json()["action"], "resolve", "{b}");
    assert_eq!(
        posts[1].json()["dedup_key"],
        posts[0].json()["dedup_key"],
        "{b}"
    );
    let out = run(cmd(&["status"])).await;
    assert!(!out.stdout.contains("open alerts"), "{b}: {out}");
    if fx.state_kept(&store).await.is_some() {
        assert_eq!(
            fx.state_kept(&store).await,
            Some(false),
            "{b}: nothing open, nothing kept"
        );
        let before = fx.calls().await;
        assert_eq!(run(cmd(&["rotate"])).await.code, 0, "{b}");
        if let (Some(before), Some(after)) = (before, fx.calls().await) {
            assert_eq!(
                after - before,
                fx.no_op_calls_with_sinks(),
                "{b}: a healthy no-op costs what it did before the alert"
            );
        }
    }
}

// ---- the file store's fixture ---------------------------------------------------------------

/// Fresh file stores and credentials files in one temp dir.
pub struct FileFixture {
    root: tempfile::TempDir,
    counter: std::sync::atomic::AtomicU32,
}

impl FileFixture {
    pub fn start() -> FileFixture {
        FileFixture {
            root: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            counter: std::sync::atomic::AtomicU32::new(0),
        }
    }

    fn next(&self) -> u32 {
        self.counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// The version numbers in `versions/`, oldest first.
    fn version_files(&self, store: &Store) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(Path::new(&store.id).join("versions"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".json").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[async_trait::async_trait]
impl Fixture for FileFixture {
    fn backend(&self) -> &'static str {
        "file"
    }

    fn sections(&self) -> String {
        String::new()
    }

    fn clients(&self) -> Clients {
        Clients::new(&Default::default())
    }

    fn command(&self, env: &Env, config: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = env.command(config, args);
        cmd.env_remove("DEEPVUE_CLIENT_ID")
            .env_remove("DEEPVUE_CLIENT_SECRET");
        cmd
    }

    async fn store(&self) -> Store {
        let path = self.root.path().join(format!("store{}/token", self.next()));
        Store {
            toml: format!("{{ backend = \"file\", path = \"{}\" }}", path.display()),
            id: path.display().to_string(),
        }
    }

    async fn missing_store(&self) -> Option<Store> {
        None
    }

    async fn credentials(&self, value: Option<&str>) -> Creds {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.root.path().join(format!("creds{}.json", self.next()));
        if let Some(v) = value {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap_or_else(|e| panic!("{e}"));
            std::io::Write::write_all(&mut f, v.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        }
        Creds {
            toml: format!("{{ backend = \"file\", path = \"{}\" }}", path.display()),
            id: path.display().to_string(),
        }
    }

    async fn versions(&self, store: &Store) -> usize {
        self.version_files(store).len()
    }

    async fn previous(&self, store: &Store) -> Option<String> {
        let files = self.version_files(store);
        files
            .len()
            .checked_sub(2)
            .and_then(|i| files.get(i))
            .map(|n| n.trim_start_matches('0').to_string())
    }

    fn losers_wait(&self) -> bool {
        true
    }

    fn missing_says(&self) -> &'static str {
        "cannot read"
    }

    fn credentials_in_a_secret_store(&self) -> bool {
        false
    }
}

// The file store: one line.
suite!(FileFixture::start());

/// `suspend` holds a token for every runner: a due pass mints nothing and raises a critical
/// `suspended` alert (whatever the time left); `status` shows who and why; `resume` lifts it,
/// the next pass rotates and resolves the alert, and nothing is left kept.
pub async fn suspend_and_resume(fx: &dyn Fixture) {
    let b = fx.backend();
    let Alerted {
        env,
        store,
        rx,
        cfg,
    } = Alerted::start(fx).await;
    let cmd = |args: &[&str]| fx.command(&env, &cfg, args);
    assert_eq!(run(cmd(&["rotate"])).await.code, 0, "{b}");
    let versions = fx.versions(&store).await;

    let out = run(cmd(&[
        "suspend",
        "--token",
        "prod",
        "--reason",
        "client secret being changed",
    ]))
    .await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert!(out.stdout.contains("is suspended since"), "{b}: {out}");
    let out = run(cmd(&["suspend", "--token", "prod"])).await;
    assert!(
        out.stdout.contains("client secret being changed"),
        "{b}: a second suspend keeps the first: {out}"
    );
    let out = run(cmd(&["status"])).await;
    assert!(
        out.stdout.contains("SUSPENDED since")
            && out.stdout.contains("client secret being changed"),
        "{b}: {out}"
    );
    if fx.state_kept(&store).await.is_some() {
        assert_eq!(
            fx.state_kept(&store).await,
            Some(true),
            "{b}: the suspension is kept"
        );
    }
    // A fresh token's pass: what a suspension costs before the token is due.
    let before = fx.calls().await;
    assert_eq!(run(cmd(&["rotate"])).await.code, 0, "{b}");
    if let (Some(before), Some(after)) = (before, fx.calls().await) {
        eprintln!(
            "{b}: a no-op pass of a suspended token: {} store calls",
            after - before
        );
        assert!(
            after - before <= fx.no_op_calls_with_sinks() + 1,
            "{b}: a no-op of a suspended token costs at most the state read"
        );
    }

    // Due (forced here): nothing minted, a critical alert with 24 h left.
    let calls = env.calls();
    let out = run(cmd(&["rotate", "--force", "--json"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert_eq!(reports(&out)[0]["outcome"], "suspended", "{b}: {out}");
    assert_eq!(env.calls(), calls, "{b}: nothing minted");
    assert_eq!(fx.versions(&store).await, versions, "{b}: nothing written");
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 1, "{b}: {out}");
    assert_eq!(posts[0].json()["condition"], "suspended", "{b}");
    assert_eq!(posts[0].json()["severity"], "critical", "{b}");
    // Lambda, push and the daemon go through the same pass; a second due pass does not repeat
    // the alert (dedup) and the suspension survives the recorded state.
    let out = run(cmd(&["rotate", "--force"])).await;
    assert!(out.stdout.contains("SUSPENDED"), "{b}: {out}");
    assert_eq!(rx.posts("/hook").len(), 1, "{b}");

    let out = run(cmd(&["resume", "--token", "prod"])).await;
    assert_eq!(out.code, 0, "{b}: {out}");
    assert!(out.stdout.contains("is not suspended"), "{b}: {out}");
    let out = run(cmd(&["rotate", "--force", "--json"])).await;
    assert_eq!(reports(&out)[0]["outcome"], "rotated", "{b}: {out}");
    let posts = rx.posts("/hook");
    assert_eq!(posts.len(), 2, "{b}");
    assert_eq!(posts[1].json()["action"], "resolve", "{b}");
    assert_eq!(posts[1].json()["condition"], "suspended", "{b}");
    let out = run(cmd(&["status"])).await;
    assert!(!out.stdout.contains("SUSPENDED"), "{b}: {out}");
    if fx.state_kept(&store).await.is_some() {
        assert_eq!(
            fx.state_kept(&store).await,
            Some(false),
            "{b}: nothing kept after resume"
        );
    }
    let out = run(cmd(&["suspend", "--token", "nope"])).await;
    assert_eq!(out.code, 2, "{b}: {out}");
}
