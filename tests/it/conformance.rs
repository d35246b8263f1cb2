//! The store conformance suite: the contract every `TokenStore` backend must meet, run
//! against each backend's real server.
//!
//! A backend joins by implementing [`Fixture`] (fresh, empty stores on its server, in its own
//! test module) and adding **one line** to the list at the bottom of this file.

use chrono::{Duration, SubsecRound, Utc};
use deepvue_rotator::core::document::TokenDocument;
use deepvue_rotator::core::error::ErrorKind;
use deepvue_rotator::core::state::RunState;
use deepvue_rotator::core::store::{StateRead, TokenStore, Version, WriteMode};
use secrecy::{ExposeSecret, SecretString};

pub fn doc(token: &str) -> TokenDocument {
    let now = Utc::now().trunc_subsecs(0);
    TokenDocument {
        access_token: SecretString::from(token.to_string()),
        token_type: "bearer".into(),
        expiry: now + Duration::hours(24),
        issued_at: now,
    }
}

async fn token_at(store: &dyn TokenStore, v: Option<&Version>) -> Option<(Version, String)> {
    let stored = match v {
        None => store.read_current().await,
        Some(v) => store.read_version(v).await,
    };
    let stored = stored.unwrap_or_else(|e| panic!("{}: read failed: {e}", store.backend()))?;
    let doc = stored
        .document
        .unwrap_or_else(|e| panic!("{}: document unusable: {e}", store.backend()));
    Some((stored.version, doc.access_token.expose_secret().to_string()))
}

/// A backend under test: hands out fresh, empty stores; its server lives as long as it does.
#[async_trait::async_trait]
pub trait Fixture {
    /// A new, empty store.
    async fn store(&self) -> Box<dyn TokenStore>;
}

/// Run every check against fresh stores from `fixture`.
pub async fn run_suite(fixture: &dyn Fixture) {
    empty_store(fixture.store().await.as_ref()).await;
    create_update_and_keep_previous(fixture.store().await.as_ref()).await;
    concurrent_writers_one_wins(fixture.store().await.as_ref()).await;
    state_round_trip(fixture.store().await.as_ref()).await;
}

async fn empty_store(s: &dyn TokenStore) {
    let b = s.backend();
    assert!(
        token_at(s, None).await.is_none(),
        "{b}: a new store reads as empty"
    );
    assert!(
        s.read_version(&Version("1".into()))
            .await
            .ok()
            .flatten()
            .is_none(),
        "{b}: unknown versions read as None"
    );
    s.check()
        .await
        .unwrap_or_else(|e| panic!("{b}: check on an empty store: {e}"));
}

async fn create_update_and_keep_previous(s: &dyn TokenStore) {
    let b = s.backend();
    let v1 = s
        .write(&doc("tok-one"), WriteMode::Create { lease: None })
        .await
        .unwrap_or_else(|e| panic!("{b}: create: {e}"));
    assert_eq!(
        token_at(s, None).await,
        Some((v1.clone(), "tok-one".into())),
        "{b}"
    );
    let current = s
        .read_current()
        .await
        .ok()
        .flatten()
        .and_then(|c| c.document.ok());
    let expiry = current.map(|d| (d.expiry - d.issued_at).num_hours());
    assert_eq!(expiry, Some(24), "{b}: times survive the round trip");

    // "Only if empty" on a non-empty store: conflict, nothing written.
    let e = s.write(&doc("tok-lost"), WriteMode::Create { lease: None }).await.err();
    assert_eq!(
        e.as_ref().map(|e| e.kind),
        Some(ErrorKind::Conflict),
        "{b}: create over existing must conflict"
    );
    let msg = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains(b) && msg.contains(&s.secret_id()),
        "{b}: errors name backend and secret id: {msg}"
    );
    assert!(
        !msg.contains("tok-"),
        "{b}: errors never carry a token: {msg}"
    );
    assert_eq!(
        token_at(s, None).await.map(|t| t.1).as_deref(),
        Some("tok-one")
    );

    // Conditional update: a new version; the previous one stays readable.
    let v2 = s
        .write(&doc("tok-two"), WriteMode::Update { expected: &v1, lease: None })
        .await
        .unwrap_or_else(|e| panic!("{b}: update: {e}"));
    assert_ne!(v1, v2, "{b}: a write makes a new version");
    assert_eq!(
        token_at(s, None).await,
        Some((v2.clone(), "tok-two".into())),
        "{b}"
    );
    assert_eq!(
        token_at(s, Some(&v1)).await,
        Some((v1.clone(), "tok-one".into())),
        "{b}: previous kept"
    );

    // A stale expected version: conflict, nothing written.
    let e = s
        .write(&doc("tok-stale"), WriteMode::Update { expected: &v1, lease: None })
        .await
        .err()
        .map(|e| e.kind);
    assert_eq!(
        e,
        Some(ErrorKind::Conflict),
        "{b}: stale version must conflict"
    );
    assert_eq!(
        token_at(s, None).await,
        Some((v2, "tok-two".into())),
        "{b}: a lost race writes nothing"
    );
}

async fn concurrent_writers_one_wins(s: &dyn TokenStore) {
    let b = s.backend();
    let v1 = s
        .write(&doc("tok-base"), WriteMode::Create { lease: None })
        .await
        .unwrap_or_else(|e| panic!("{b}: create: {e}"));
    let docs: Vec<TokenDocument> = (0..6).map(|i| doc(&format!("tok-racer-{i}"))).collect();
    let results =
        futures::future::join_all(docs.iter().map(|d| s.write(d, WriteMode::Update { expected: &v1, lease: None }))).await;
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
    let winner = winners[0];
    let current = token_at(s, None).await.map(|t| t.1);
    assert_eq!(
        current,
        Some(format!("tok-racer-{winner}")),
        "{b}: the winner is current"
    );
}

async fn state_round_trip(s: &dyn TokenStore) {
    let b = s.backend();
    let state = RunState {
        last_run_at: Some("2026-11-28T12:00:00Z".into()),
        last_outcome: Some("failed".into()),
        last_error: Some("forbidden: token `x`: Deepvue answered 403".into()),
        consecutive_failures: 2,
        ..RunState::default()
    };
    s.write_state(&state, &StateRead::default())
        .await
        .unwrap_or_else(|e| panic!("{b}: write_state: {e}"));
    let back = s
        .read_state()
        .await
        .unwrap_or_else(|e| panic!("{b}: read_state: {e}"))
        .state;
    assert_eq!(back, Some(state), "{b}: state round trip");
}

/// Fresh file stores in one temp dir.
pub struct FileFixture {
    root: tempfile::TempDir,
    counter: std::sync::atomic::AtomicU32,
}

impl FileFixture {
    pub async fn start() -> FileFixture {
        FileFixture {
            root: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            counter: std::sync::atomic::AtomicU32::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Fixture for FileFixture {
    async fn store(&self) -> Box<dyn TokenStore> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::new(deepvue_rotator::backends::file::FileStore::new(
            self.root.path().join(format!("s{n}/token")),
            5,
            std::time::Duration::from_secs(10),
        ))
    }
}

/// One conformance test per backend fixture.
macro_rules! conformance {
    ($name:ident, $fixture:expr) => {
        #[tokio::test]
        async fn $name() {
            run_suite(&$fixture.await).await;
        }
    };
}

// The backends. A new backend adds its line here.
conformance!(file_store_conforms, FileFixture::start());
conformance!(
    aws_store_conforms_on_provisioned_secrets,
    crate::aws::AwsFixture::start(false)
);
conformance!(
    aws_store_conforms_when_it_creates_the_secret,
    crate::aws::AwsFixture::start(true)
);
conformance!(vault_store_conforms, crate::vault::VaultFixture::start());
conformance!(gcp_store_conforms, crate::gcp::GcpFixture::start());
