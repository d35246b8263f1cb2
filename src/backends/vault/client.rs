//! Our own small Vault HTTP client: reqwest on the process's TLS stack (the shared OS roots plus
//! `[vault] ca_file` / `$VAULT_CACERT`), `X-Vault-Token`, `X-Vault-Namespace` and
//! `X-Vault-Request` headers, one login per process (lazily, on first use, shared by every
//! token of the config), and [`VaultClient::maintain`] for long-running processes: renew the
//! token at about ⅔ of its TTL with jitter, log in again when renewal stops extending it.
//!
//! The Vault token lives in a `SecretString` and goes out only as the (sensitive-marked)
//! `X-Vault-Token` header. Nothing here logs a token, a secret_id, a JWT or a response body.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method as HttpMethod;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::VaultSection;
use super::auth::{Method, parse_auth};
use super::errors::{Op, VaultError, classify, is_token_refused, transport};
use crate::core::error::ErrorKind;
use crate::support::http::USER_AGENT;
use crate::support::net::IpFamily;
use crate::support::text::shown_url;
use crate::support::tls::{HttpsSettings, client_builder};

/// The address default.
pub(super) const ENV_ADDR: &str = "VAULT_ADDR";
/// The namespace default.
pub(super) const ENV_NAMESPACE: &str = "VAULT_NAMESPACE";
/// The CA default.
pub(super) const ENV_CACERT: &str = "VAULT_CACERT";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest lease planned for; a longer one is renewed as if it were this long.
const MAX_LEASE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest answer body read (KV values are small; a token document is < 1 KiB).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The Vault clients of one config: at most one [`VaultClient`], built on first use (a run that
/// touches no Vault backend reads no `VAULT_*` variable and loads no trust store).
pub struct VaultClients {
    section: VaultSection,
    built: watch::Sender<Option<Arc<VaultClient>>>,
    build_lock: Mutex<()>,
}

impl VaultClients {
    /// Clients for this `[vault]` section (nothing is built yet).
    pub fn new(section: &VaultSection) -> Arc<Self> {
        Arc::new(VaultClients {
            section: section.clone(),
            built: watch::Sender::new(None),
            build_lock: Mutex::new(()),
        })
    }

    /// The client, built on first use (reads the `VAULT_*` defaults, builds the HTTPS client;
    /// no request yet).
    pub async fn client(&self) -> Result<Arc<VaultClient>, VaultError> {
        if let Some(c) = self.built.borrow().clone() {
            return Ok(c);
        }
        let _guard = self.build_lock.lock().await;
        if let Some(c) = self.built.borrow().clone() {
            return Ok(c);
        }
        let client = Arc::new(VaultClient::build(&self.section)?);
        self.built.send_replace(Some(client.clone()));
        Ok(client)
    }

    /// Keep the Vault token alive for as long as the process runs; never returns. Waits until
    /// a store or credential source has used Vault (so a config without Vault tokens does
    /// nothing), then runs [`VaultClient::maintain`].
    pub async fn maintain(&self) {
        let mut rx = self.built.subscribe();
        let client = loop {
            if let Some(c) = rx.borrow_and_update().clone() {
                break c;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        };
        client.maintain().await
    }
}

/// A Vault token as held by the process.
pub(super) struct Session {
    token: SecretString,
    /// The lease (TTL) when obtained; `None` for a static token not looked up yet; zero for a
    /// token that never expires.
    lease: Option<Duration>,
    renewable: bool,
    /// When the lease started (the request was sent).
    since: Instant,
    /// The increment renewals ask for (the TTL the token was issued with).
    increment: Duration,
    /// The last renewal gave less than asked: the max TTL is near, renewing no longer helps.
    capped: bool,
}

/// An answer: status and body (zeroised on drop: KV reads carry secrets).
pub(super) struct Reply {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

impl Reply {
    /// Vault's `{"errors":[…]}` strings.
    pub(super) fn errors(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<String>,
        }
        serde_json::from_slice::<Errors>(&self.body)
            .map(|e| e.errors)
            .unwrap_or_default()
    }

    pub(super) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One Vault server, with the process's token.
pub struct VaultClient {
    http: reqwest::Client,
    base: url::Url,
    shown: String,
    namespace: Option<String>,
    method: Method,
    session: watch::Sender<Option<Arc<Session>>>,
    login_lock: Mutex<()>,
    /// `renew-self` was refused (a token without the `default` policy): log in again instead.
    renew_denied: std::sync::atomic::AtomicBool,
}

impl VaultClient {
    fn build(section: &VaultSection) -> Result<Self, VaultError> {
        let config = |m: String| VaultError::new(ErrorKind::Config, m);
        let (raw, at) = match &section.address {
            Some(a) => (a.clone(), "vault.address"),
            None => match std::env::var(ENV_ADDR) {
                Ok(a) if !a.trim().is_empty() => (a, ENV_ADDR),
                _ => {
                    return Err(config(format!(
                        "no Vault address: set [vault] address or {ENV_ADDR}"
                    )));
                }
            },
        };
        let base = super::check_address(at, raw.trim()).map_err(|p| config(p.message))?;
        let namespace = section
            .namespace
            .clone()
            .or_else(|| std::env::var(ENV_NAMESPACE).ok())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.trim_matches('/').is_empty());
        let ca: Option<PathBuf> = match &section.ca_file {
            Some(p) => Some(p.clone()),
            None => match std::env::var_os(ENV_CACERT) {
                Some(p) if !p.is_empty() => {
                    let p = PathBuf::from(p);
                    if !p.is_file() {
                        return Err(config(format!(
                            "{ENV_CACERT} `{}` does not exist or is not a file",
                            p.display()
                        )));
                    }
                    Some(p)
                }
                _ => None,
            },
        };
        let https_only = base.scheme() == "https";
        let http = client_builder(
            &HttpsSettings {
                extra_ca: ca.as_deref(),
                connect_timeout: CONNECT_TIMEOUT,
                family: IpFamily::Any,
                user_agent: USER_AGENT,
            },
            https_only,
        )
        .and_then(|b| b.build().map_err(crate::support::tls::TlsError::Client))
        .map_err(|e| config(format!("Vault HTTPS client: {e}")).with_source(e))?;
        Ok(VaultClient {
            http,
            shown: shown_url(base.as_str()).trim_end_matches('/').to_string(),
            base,
            namespace,
            method: Method::new(&section.auth),
            session: watch::Sender::new(None),
            login_lock: Mutex::new(()),
            renew_denied: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The address, for messages.
    pub fn address(&self) -> &str {
        &self.shown
    }

    /// The auth method's name (`token`, `approle`, `kubernetes`, `jwt`).
    pub fn method(&self) -> &'static str {
        self.method.name()
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<url::Url, VaultError> {
        let mut url = self.base.clone();
        {
            let mut seg = url.path_segments_mut().map_err(|_| {
                VaultError::new(
                    ErrorKind::Config,
                    format!("Vault address {} cannot take a path", self.shown),
                )
            })?;
            seg.pop_if_empty().push("v1");
            for s in path.split('/') {
                seg.push(s);
            }
        }
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// One HTTP exchange, with `token` when given. Any HTTP status is an answer.
    async fn exchange(
        &self,
        method: &HttpMethod,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        token: Option<&SecretString>,
        content_type: &str,
    ) -> Result<Reply, VaultError> {
        let url = self.url(path, query)?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(REQUEST_TIMEOUT)
            .header("X-Vault-Request", "true");
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(t) = token {
            let mut v = http::HeaderValue::from_str(t.expose_secret()).map_err(|_| {
                VaultError::new(
                    ErrorKind::Config,
                    "the Vault token contains characters not allowed in an HTTP header",
                )
            })?;
            v.set_sensitive(true);
            req = req.header("X-Vault-Token", v);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", content_type).body(b.to_vec());
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| transport(&self.shown, path, e))?;
        let status = resp.status().as_u16();
        let mut buf = Zeroizing::new(Vec::new());
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_BODY {
                        return Err(VaultError::new(
                            ErrorKind::Transient,
                            format!(
                                "Vault at {} sent more than {} MiB for `{path}`",
                                self.shown,
                                MAX_BODY >> 20
                            ),
                        ));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(transport(&self.shown, path, e)),
            }
        }
        Ok(Reply { status, body: buf })
    }

    /// A call with the process's token (logging in first if needed). A login method whose
    /// token was refused as invalid or expired logs in again once and retries.
    pub(super) async fn call(
        &self,
        method: HttpMethod,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, VaultError> {
        let session = self.session().await?;
        let reply = self
            .exchange(
                &method,
                path,
                query,
                body,
                Some(&session.token),
                "application/json",
            )
            .await?;
        if self.method.can_login() && is_token_refused(reply.status, &reply.errors()) {
            info!("the Vault token was refused (expired?); logging in again");
            let fresh = self.relogin(&session).await?;
            return self
                .exchange(
                    &method,
                    path,
                    query,
                    body,
                    Some(&fresh.token),
                    "application/json",
                )
                .await;
        }
        Ok(reply)
    }

    /// The error for a failed answer to `op` on `path`.
    pub(super) fn fail(&self, op: Op, path: &str, reply: &Reply) -> VaultError {
        classify(&self.shown, op, path, reply.status, &reply.errors())
    }

    /// The current session, logging in (or reading the static token) on first use.
    async fn session(&self) -> Result<Arc<Session>, VaultError> {
        if let Some(s) = self.session.borrow().clone() {
            return Ok(s);
        }
        let _guard = self.login_lock.lock().await;
        if let Some(s) = self.session.borrow().clone() {
            return Ok(s);
        }
        let s = Arc::new(self.login().await?);
        self.session.send_replace(Some(s.clone()));
        Ok(s)
    }

    /// Replace `stale` with a fresh login, unless someone already did.
    async fn relogin(&self, stale: &Arc<Session>) -> Result<Arc<Session>, VaultError> {
        let _guard = self.login_lock.lock().await;
        if let Some(cur) = self.session.borrow().clone()
            && !Arc::ptr_eq(&cur, stale)
        {
            return Ok(cur);
        }
        let s = Arc::new(self.login().await?);
        self.session.send_replace(Some(s.clone()));
        Ok(s)
    }

    async fn login(&self) -> Result<Session, VaultError> {
        let Some(path) = self.method.login_path() else {
            return Ok(Session {
                token: self.method.static_token()?,
                lease: None,
                renewable: false,
                since: Instant::now(),
                increment: Duration::ZERO,
                capped: false,
            });
        };
        let body = self.method.login_body()?;
        let since = Instant::now();
        let reply = self
            .exchange(
                &HttpMethod::POST,
                &path,
                &[],
                Some(&body),
                None,
                "application/json",
            )
            .await?;
        drop(body);
        if !reply.ok() {
            return Err(self.fail(Op::Login, &path, &reply));
        }
        let auth = parse_auth(&reply.body).ok_or_else(|| {
            VaultError::new(
                ErrorKind::Transient,
                format!(
                    "Vault at {} answered the login at `{path}` without a token",
                    self.shown
                ),
            )
        })?;
        let lease = Duration::from_secs(auth.lease_duration);
        info!(
            method = self.method.name(),
            lease_secs = auth.lease_duration,
            renewable = auth.renewable,
            "logged in to Vault"
        );
        Ok(Session {
            token: auth.client_token,
            lease: Some(lease),
            renewable: auth.renewable,
            since,
            increment: lease,
            capped: false,
        })
    }

    /// Keep the token alive; never returns. Renews at about ⅔ of the lease (minus up to a
    /// tenth as jitter, so many processes spread out), logs in again when a renewal no longer
    /// extends the lease (max TTL) or fails, and does nothing for a token that never expires
    /// (`lease_duration = 0`). A static token is looked up once to learn its TTL. Failures
    /// back off (from a tenth of the lease, at least 1 s, doubling to 5 min); requests keep
    /// using the last good token meanwhile.
    pub async fn maintain(&self) {
        let mut rx = self.session.subscribe();
        let mut failures: u32 = 0;
        let mut warned_end = false;
        loop {
            let current = rx.borrow_and_update().clone();
            let Some(s) = current else {
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
                continue;
            };
            let Some((when, action)) = self.plan(&s) else {
                if !warned_end && s.lease.is_some_and(|l| !l.is_zero()) {
                    warn!(
                        "the Vault token cannot be renewed any further and the token method \
                         cannot log in again; it expires at its TTL"
                    );
                    warned_end = true;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
                continue;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(when) => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                    continue;
                }
            }
            let result = match action {
                Action::Lookup => match self.lookup(&s).await {
                    // Not allowed to look itself up (no `default` policy): leave it alone.
                    Err(e) if e.kind == ErrorKind::Permanent => {
                        warn!(error = %e, "cannot look up the Vault token's TTL; it will not be renewed");
                        self.replace(
                            &s,
                            Session {
                                token: s.token.clone(),
                                lease: Some(Duration::ZERO),
                                renewable: false,
                                since: Instant::now(),
                                increment: Duration::ZERO,
                                capped: false,
                            },
                        );
                        Ok(())
                    }
                    other => other,
                },
                Action::Renew => match self.renew(&s).await {
                    Err(e) if self.method.can_login() => {
                        if e.kind == ErrorKind::Permanent {
                            self.renew_denied
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        warn!(error = %e, "Vault token renewal failed; logging in again");
                        self.relogin(&s).await.map(|_| ())
                    }
                    other => other,
                },
                Action::Relogin => {
                    info!(
                        "logging in to Vault again before the token expires (max TTL, or not renewable)"
                    );
                    self.relogin(&s).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let base = s
                        .lease
                        .map_or(Duration::from_secs(10), |l| l / 10)
                        .clamp(Duration::from_secs(1), Duration::from_secs(10));
                    let wait = base
                        .saturating_mul(1 << failures.min(9))
                        .min(Duration::from_secs(300));
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "Vault token maintenance failed");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// What to do next with `s`, and when; `None` when nothing can or needs to be done.
    fn plan(&self, s: &Session) -> Option<(Instant, Action)> {
        let Some(lease) = s.lease else {
            return Some((Instant::now(), Action::Lookup));
        };
        if lease.is_zero() {
            return None;
        }
        let fraction = 2.0 / 3.0 - rand::random::<f64>() * 0.1;
        // A server-supplied lease can be anything: a year is plenty, and no arithmetic on it
        // may overflow.
        let lease = lease.min(MAX_LEASE);
        let wait = Duration::try_from_secs_f64(lease.as_secs_f64() * fraction).unwrap_or(lease);
        let at = s
            .since
            .checked_add(wait)
            .unwrap_or_else(|| Instant::now() + MAX_LEASE);
        let denied = self.renew_denied.load(std::sync::atomic::Ordering::Relaxed);
        if !s.renewable || s.capped || denied {
            return self.method.can_login().then_some((at, Action::Relogin));
        }
        Some((at, Action::Renew))
    }

    /// `lookup-self` for a static token: learn its TTL and whether it renews.
    async fn lookup(&self, s: &Arc<Session>) -> Result<(), VaultError> {
        #[derive(Deserialize)]
        struct Lookup {
            data: LookupData,
        }
        #[derive(Deserialize)]
        struct LookupData {
            #[serde(default)]
            ttl: u64,
            #[serde(default)]
            creation_ttl: u64,
            #[serde(default)]
            renewable: bool,
        }
        let path = "auth/token/lookup-self";
        let since = Instant::now();
        let reply = self
            .exchange(
                &HttpMethod::GET,
                path,
                &[],
                None,
                Some(&s.token),
                "application/json",
            )
            .await?;
        if !reply.ok() {
            return Err(self.fail(Op::LookupSelf, path, &reply));
        }
        let d = serde_json::from_slice::<Lookup>(&reply.body)
            .map_err(|e| {
                VaultError::new(
                    ErrorKind::Transient,
                    format!("unexpected lookup-self answer: {e}"),
                )
            })?
            .data;
        debug!(
            ttl_secs = d.ttl,
            renewable = d.renewable,
            "looked up the Vault token"
        );
        self.replace(
            s,
            Session {
                token: s.token.clone(),
                lease: Some(Duration::from_secs(d.ttl)),
                renewable: d.renewable,
                since,
                increment: Duration::from_secs(d.creation_ttl.max(d.ttl)),
                capped: false,
            },
        );
        Ok(())
    }

    /// `renew-self`, asking for the TTL the token was issued with.
    async fn renew(&self, s: &Arc<Session>) -> Result<(), VaultError> {
        let path = "auth/token/renew-self";
        let body = format!(r#"{{"increment":"{}s"}}"#, s.increment.as_secs());
        let since = Instant::now();
        let reply = self
            .exchange(
                &HttpMethod::POST,
                path,
                &[],
                Some(body.as_bytes()),
                Some(&s.token),
                "application/json",
            )
            .await?;
        if !reply.ok() {
            return Err(self.fail(Op::RenewSelf, path, &reply));
        }
        let auth = parse_auth(&reply.body).ok_or_else(|| {
            VaultError::new(
                ErrorKind::Transient,
                "Vault answered renew-self without an auth object",
            )
        })?;
        let lease = Duration::from_secs(auth.lease_duration);
        let capped = lease < s.increment;
        info!(
            lease_secs = auth.lease_duration,
            capped, "renewed the Vault token"
        );
        self.replace(
            s,
            Session {
                token: s.token.clone(),
                lease: Some(lease),
                renewable: auth.renewable,
                since,
                increment: s.increment,
                capped,
            },
        );
        Ok(())
    }

    /// Put `new` in place of `old`, unless `old` was replaced meanwhile (a fresh login).
    fn replace(&self, old: &Arc<Session>, new: Session) {
        let new = Arc::new(new);
        self.session.send_if_modified(|cur| match cur {
            Some(c) if Arc::ptr_eq(c, old) => {
                *cur = Some(new);
                true
            }
            _ => false,
        });
    }

    /// `sys/capabilities-self` for `paths`: path → capabilities (`None` when the call is not
    /// allowed, e.g. the default policy was detached).
    pub(super) async fn capabilities(
        &self,
        paths: &[String],
    ) -> Result<Option<std::collections::HashMap<String, Vec<String>>>, VaultError> {
        #[derive(Deserialize)]
        struct Caps {
            data: std::collections::HashMap<String, serde_json::Value>,
        }
        let path = "sys/capabilities-self";
        let body = serde_json::to_vec(&serde_json::json!({ "paths": paths }))
            .map_err(|e| VaultError::new(ErrorKind::Permanent, e.to_string()))?;
        let reply = self.call(HttpMethod::POST, path, &[], Some(&body)).await?;
        if reply.status == 403 {
            return Ok(None);
        }
        if !reply.ok() {
            return Err(self.fail(Op::Capabilities, path, &reply));
        }
        let caps = serde_json::from_slice::<Caps>(&reply.body).map_err(|e| {
            VaultError::new(
                ErrorKind::Transient,
                format!("unexpected capabilities-self answer: {e}"),
            )
        })?;
        Ok(Some(
            caps.data
                .into_iter()
                .filter_map(|(k, v)| {
                    let list: Vec<String> = serde_json::from_value(v).ok()?;
                    Some((k, list))
                })
                .collect(),
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Lookup,
    Renew,
    Relogin,
}
