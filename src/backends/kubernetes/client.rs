//! One Kubernetes API client per process, built on first use: the API server, its CA, the
//! identity, the default namespace.
//!
//! - **In a pod** (no kubeconfig): `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
//!   the CA `ca.crt`, the namespace `namespace` and the token `token` of the service-account
//!   directory. The token file is re-read every [`TOKEN_REREAD`] and after a 401: the kubelet
//!   rotates projected tokens in place.
//! - **A kubeconfig** (`[kubernetes] kubeconfig`, else the first file of `$KUBECONFIG`): the
//!   context's cluster (`server`, `certificate-authority[-data]`), user (`token`, `tokenFile`,
//!   or `client-certificate[-data]` + `client-key[-data]`) and namespace. Relative paths are
//!   relative to the kubeconfig's directory. Exec and auth-provider plugins, basic auth,
//!   `insecure-skip-tls-verify`, `tls-server-name` and `proxy-url` are refused with a message:
//!   this client runs no programs and never skips verification.
//! - **TLS** trusts the cluster's CA only when one is given (else the OS roots), TLS 1.2+,
//!   no redirects; plain `http://` only to a loopback address.
//! - **Errors** are `Status` objects: 401/403/404/409/422/429/5xx are classified here, and a
//!   403 names the verb and the Secret the identity needs RBAC for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell};

use super::{KubernetesSection, SERVICE_ACCOUNT_DIR};
use crate::core::error::ErrorKind;
use crate::support::secret_ref::{read_secret_file, read_token_file};
use crate::support::text::truncate;

/// One attempt of one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one watch request lasts before it is made again (`timeoutSeconds`).
pub const WATCH_SECONDS: u64 = 300;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a service-account token read from its file is used before it is read again.
pub const TOKEN_REREAD: Duration = Duration::from_secs(60);
/// The largest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// A failed call or set-up, classified. Never carries a token or a Secret's data.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct KubeError {
    /// Its class.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
    /// The HTTP status, when the API answered.
    pub status: Option<u16>,
    /// The underlying failure.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl KubeError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        KubeError {
            kind,
            message: message.into(),
            status: None,
            source: None,
        }
    }

    fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
}

/// The lazily built client, shared by every token of one config.
pub struct KubeClients {
    section: KubernetesSection,
    client: OnceCell<KubeClient>,
}

impl KubeClients {
    /// Clients for this `[kubernetes]` section (nothing is built yet).
    pub fn new(section: &KubernetesSection) -> Arc<Self> {
        Arc::new(KubeClients {
            section: section.clone(),
            client: OnceCell::new(),
        })
    }

    /// The client, built on first use.
    pub async fn client(&self) -> Result<&KubeClient, KubeError> {
        self.client
            .get_or_try_init(|| async { KubeClient::connect(&self.section, None) })
            .await
    }

    /// In-cluster clients for the API at `host:port` instead of the pod's
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` (tests and embedders; the service-account files are
    /// read from `section.service_account_dir` as in a pod).
    pub fn in_cluster_at(
        section: &KubernetesSection,
        host: &str,
        port: u16,
    ) -> Result<Arc<Self>, KubeError> {
        let client = KubeClient::connect(section, Some((host.to_string(), port.to_string())))?;
        Ok(Arc::new(KubeClients {
            section: section.clone(),
            client: OnceCell::new_with(Some(client)),
        }))
    }
}

/// How requests are authenticated.
enum Auth {
    /// A client certificate (in the TLS config), or nothing.
    None,
    /// A fixed bearer token.
    Static(SecretString),
    /// A token file, re-read every [`TOKEN_REREAD`] and after a 401.
    File {
        path: PathBuf,
        cached: Mutex<Option<(SecretString, Instant)>>,
    },
}

/// A connected API client.
pub struct KubeClient {
    http: reqwest::Client,
    server: String,
    auth: Auth,
    namespace: String,
    /// Where the connection settings came from, for messages.
    origin: String,
}

/// An answer.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl KubeClient {
    fn connect(
        section: &KubernetesSection,
        api: Option<(String, String)>,
    ) -> Result<KubeClient, KubeError> {
        let kubeconfig = section.kubeconfig.clone().or_else(|| {
            std::env::var_os("KUBECONFIG")
                .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
        });
        let (server, ca, client_cert, auth, namespace, origin) = match (kubeconfig, api) {
            (_, Some((host, port))) => in_cluster(section, host, port)?,
            (Some(path), None) => from_kubeconfig(&path, section.context.as_deref())?,
            (None, None) => in_cluster(
                section,
                std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default(),
                std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default(),
            )?,
        };
        let namespace = section
            .namespace
            .clone()
            .or(namespace)
            .unwrap_or_else(|| "default".to_string());
        let url = url::Url::parse(&server)
            .map_err(|e| KubeError::config(format!("{origin}: server `{server}`: {e}")))?;
        let loopback = crate::support::net::is_loopback(&url);
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(KubeError::config(format!(
                "{origin}: the API server must be https:// (plain http only on loopback), got \
                 `{}`",
                crate::support::text::shown(&url)
            )));
        }
        let roots = match &ca {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| {
                        KubeError::config(format!("{origin}: the cluster CA is not PEM: {e}"))
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| KubeError::config(format!("{origin}: the cluster CA: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(KubeError::config(format!(
                        "{origin}: the cluster CA holds no certificate"
                    )));
                }
                Arc::new(roots)
            }
            None => crate::support::tls::roots(None)
                .map_err(|e| KubeError::config(format!("{origin}: {e}")))?,
        };
        let tls = crate::support::tls::client_config_trusting(roots, client_cert)
            .map_err(|e| KubeError::config(format!("{origin}: TLS set-up: {e}")))?;
        let http = crate::support::tls::client_builder_from(
            tls,
            &crate::support::tls::HttpsSettings {
                extra_ca: None,
                connect_timeout: CONNECT_TIMEOUT,
                family: crate::support::net::IpFamily::Any,
                user_agent: concat!("deepvue-rotator/", env!("CARGO_PKG_VERSION")),
            },
            !loopback,
        )
        .timeout(CALL_TIMEOUT)
        .build()
        .map_err(|e| KubeError::config(format!("{origin}: HTTP client: {e}")))?;
        Ok(KubeClient {
            http,
            server: server.trim_end_matches('/').to_string(),
            auth,
            namespace,
            origin,
        })
    }

    /// The namespace of an entry that names `ns` (or none).
    pub fn namespace<'a>(&'a self, ns: Option<&'a str>) -> &'a str {
        ns.unwrap_or(&self.namespace)
    }

    /// Where the settings came from (`in-cluster service account`, `kubeconfig PATH`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    async fn token(&self, fresh: bool) -> Result<Option<SecretString>, KubeError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Static(t) => Ok(Some(t.clone())),
            Auth::File { path, cached } => {
                let mut cached = cached.lock().await;
                if !fresh
                    && let Some((t, at)) = cached.as_ref()
                    && at.elapsed() < TOKEN_REREAD
                {
                    return Ok(Some(t.clone()));
                }
                let t = read_token(path)?;
                *cached = Some((t.clone(), Instant::now()));
                Ok(Some(t))
            }
        }
    }

    /// One call; a 401 with a token file reads the file again and tries once more.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Reply, KubeError> {
        let mut reply = self.send(method.clone(), path, body.clone(), false).await?;
        if reply.status == 401 && matches!(self.auth, Auth::File { .. }) {
            reply = self.send(method, path, body, true).await?;
        }
        Ok(reply)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
        fresh_token: bool,
    ) -> Result<Reply, KubeError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server))
            .header("accept", "application/json");
        if let Some(t) = self.token(fresh_token).await? {
            req = req.bearer_auth(t.expose_secret());
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| self.transport(e))?.to_vec();
        Ok(Reply { status, body })
    }

    /// Open a watch on one Secret (`GET …/secrets?watch=1&fieldSelector=metadata.name=NAME`)
    /// from `resource_version`, for at most [`WATCH_SECONDS`]: the streaming answer, whose
    /// body is one JSON watch event per line. A status other than 200 is an error (a 410
    /// `Gone` names an expired resourceVersion).
    pub async fn watch_secret(
        &self,
        ns: &str,
        name: &str,
        resource_version: &str,
    ) -> Result<reqwest::Response, KubeError> {
        let mut url = url::Url::parse(&format!("{}{}", self.server, self.secret_path(ns, None)))
            .map_err(|e| KubeError {
                kind: ErrorKind::Config,
                message: format!("the Kubernetes API URL {} is not a URL: {e}", self.server),
                status: None,
                source: None,
            })?;
        url.query_pairs_mut()
            .append_pair("watch", "1")
            .append_pair("fieldSelector", &format!("metadata.name={name}"))
            .append_pair("resourceVersion", resource_version)
            .append_pair("allowWatchBookmarks", "true")
            .append_pair("timeoutSeconds", &WATCH_SECONDS.to_string());
        let mut req = self
            .http
            .get(url)
            .header("accept", "application/json")
            // The stream lasts up to WATCH_SECONDS: longer than one call.
            .timeout(Duration::from_secs(WATCH_SECONDS + 30));
        if let Some(t) = self.token(false).await? {
            req = req.bearer_auth(t.expose_secret());
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(KubeError {
                kind: if status == 403 {
                    ErrorKind::Forbidden
                } else {
                    ErrorKind::Transient
                },
                message: format!(
                    "watching secret `{name}` in namespace `{ns}`: HTTP {status}{}",
                    if status == 403 {
                        " (RBAC: grant `watch` on it, or the agent polls)"
                    } else {
                        ""
                    }
                ),
                status: Some(status),
                source: None,
            });
        }
        Ok(resp)
    }

    fn transport(&self, e: reqwest::Error) -> KubeError {
        let chain = crate::support::http::error_chain(&e);
        let (kind, message) = match crate::support::tls::tls_failure(&e) {
            Some(tls) => (
                ErrorKind::Config,
                format!(
                    "TLS with the Kubernetes API at {} failed ({tls}): check the cluster CA of \
                     the {}",
                    self.server, self.origin
                ),
            ),
            None => (
                ErrorKind::Transient,
                format!(
                    "cannot reach the Kubernetes API at {}: {chain}",
                    self.server
                ),
            ),
        };
        KubeError {
            kind,
            message,
            status: None,
            source: Some(Box::new(e)),
        }
    }

    fn secret_path(&self, ns: &str, name: Option<&str>) -> String {
        match name {
            Some(n) => format!("/api/v1/namespaces/{ns}/secrets/{n}"),
            None => format!("/api/v1/namespaces/{ns}/secrets"),
        }
    }

    /// `GET` a Secret; `None` when it does not exist.
    pub async fn get_secret(&self, ns: &str, name: &str) -> Result<Option<Value>, KubeError> {
        let reply = self
            .call(Method::GET, &self.secret_path(ns, Some(name)), None)
            .await?;
        match reply.status {
            200 => parse(&reply).map(Some),
            // The API names the missing object; a 404 without that is a wrong server URL (a
            // path prefix missing), not a missing Secret.
            404 if status_detail_name(&reply).as_deref() == Some(name) => Ok(None),
            404 => Err(KubeError {
                kind: ErrorKind::Config,
                message: format!(
                    "the API at {} answered 404 for secrets in namespace `{ns}` without naming \
                     the Secret: is the server URL of the {} right?",
                    self.server, self.origin
                ),
                status: Some(404),
                source: None,
            }),
            _ => Err(self.failed(&reply, "get", ns, name)),
        }
    }

    /// `PUT` a Secret (its `metadata.resourceVersion` is the precondition: stale → 409
    /// `Conflict`); `dry_run`: checked by the API server (RBAC included), nothing stored.
    pub async fn replace_secret(
        &self,
        ns: &str,
        name: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value, KubeError> {
        let mut path = self.secret_path(ns, Some(name));
        if dry_run {
            path.push_str("?dryRun=All");
        }
        let reply = self
            .call(
                Method::PUT,
                &path,
                Some(("application/json", json(object)?)),
            )
            .await?;
        match reply.status {
            200 | 201 => parse(&reply),
            _ => Err(self.failed(&reply, "update", ns, name)),
        }
    }

    /// `POST` a new Secret (409 `AlreadyExists` → conflict).
    pub async fn create_secret(&self, ns: &str, object: &Value) -> Result<Value, KubeError> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let reply = self
            .call(
                Method::POST,
                &self.secret_path(ns, None),
                Some(("application/json", json(object)?)),
            )
            .await?;
        match reply.status {
            200 | 201 => parse(&reply),
            _ => Err(self.failed(&reply, "create", ns, name)),
        }
    }

    /// A JSON merge patch of a Secret (a `metadata.resourceVersion` in it is a precondition).
    pub async fn patch_secret(
        &self,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, KubeError> {
        let reply = self
            .call(
                Method::PATCH,
                &self.secret_path(ns, Some(name)),
                Some(("application/merge-patch+json", json(patch)?)),
            )
            .await?;
        match reply.status {
            200 => parse(&reply),
            _ => Err(self.failed(&reply, "patch", ns, name)),
        }
    }

    /// An answer other than success, classified; names the verb and Secret on a 403.
    fn failed(&self, reply: &Reply, verb: &str, ns: &str, name: &str) -> KubeError {
        let said = message(reply)
            .map(|m| format!(": {}", truncate(&m, 300)))
            .unwrap_or_default();
        let (kind, message) = match reply.status {
            401 => (
                ErrorKind::Permanent,
                format!(
                    "the Kubernetes API refused the credentials of the {} (401 Unauthorized{said})",
                    self.origin
                ),
            ),
            403 => (
                ErrorKind::Permanent,
                format!(
                    "forbidden: the identity needs RBAC verb `{verb}` on secrets `{name}` in \
                     namespace `{ns}` (a Role rule with resourceNames: [\"{name}\"]{}){said}",
                    if verb == "create" {
                        "; `create` cannot be limited by name"
                    } else {
                        ""
                    }
                ),
            ),
            404 => (
                ErrorKind::Permanent,
                format!("secret `{name}` in namespace `{ns}` does not exist{said}"),
            ),
            409 => (
                ErrorKind::Conflict,
                format!("secret `{name}` in namespace `{ns}` changed since it was read{said}"),
            ),
            400 | 422 => (
                ErrorKind::Permanent,
                format!(
                    "the API server refused the request ({}){said}",
                    reply.status
                ),
            ),
            429 | 500..=599 => (
                ErrorKind::Transient,
                format!("the Kubernetes API answered HTTP {}{said}", reply.status),
            ),
            s => (
                ErrorKind::Permanent,
                format!("the Kubernetes API answered HTTP {s}{said}"),
            ),
        };
        KubeError {
            kind,
            message,
            status: Some(reply.status),
            source: None,
        }
    }
}

fn json(v: &Value) -> Result<Vec<u8>, KubeError> {
    serde_json::to_vec(v).map_err(|e| KubeError::new(ErrorKind::Permanent, e.to_string()))
}

fn parse(reply: &Reply) -> Result<Value, KubeError> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        KubeError::new(
            ErrorKind::Transient,
            format!("the Kubernetes API answered something that is not JSON ({e})"),
        )
    })
}

/// A `Status` answer's field.
fn status_field(reply: &Reply, field: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(&reply.body).ok()?;
    (v["kind"] == "Status")
        .then(|| v[field].as_str().map(str::to_string))
        .flatten()
}

/// The object a `Status` answer names (`details.name`).
fn status_detail_name(reply: &Reply) -> Option<String> {
    let v: Value = serde_json::from_slice(&reply.body).ok()?;
    (v["kind"] == "Status")
        .then(|| v["details"]["name"].as_str().map(str::to_string))
        .flatten()
}

fn message(reply: &Reply) -> Option<String> {
    status_field(reply, "message").map(|m| crate::support::text::escape_control(&m))
}

fn read_token(path: &Path) -> Result<SecretString, KubeError> {
    let bytes = read_token_file(path).map_err(|e| {
        KubeError::config(format!("the service-account token: {e}")).with(Box::new(e))
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| KubeError::config(format!("{}: not UTF-8", path.display())))?
        .trim();
    if text.is_empty() {
        return Err(KubeError::config(format!("{} is empty", path.display())));
    }
    Ok(SecretString::from(text.to_string()))
}

impl KubeError {
    fn with(mut self, source: Box<dyn std::error::Error + Send + Sync>) -> Self {
        self.source = Some(source);
        self
    }
}

fn read_ca(path: &Path) -> Result<Vec<u8>, KubeError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|e| KubeError::config(format!("cannot read {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| KubeError::config(format!("cannot read {}: {e}", path.display())))?;
    Ok(bytes)
}

type Connection = (
    String,
    Option<Vec<u8>>,
    Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    Auth,
    Option<String>,
    String,
);

/// The settings of a pod's service account.
fn in_cluster(
    section: &KubernetesSection,
    host: String,
    port: String,
) -> Result<Connection, KubeError> {
    let origin = "in-cluster service account".to_string();
    if host.is_empty() || port.is_empty() {
        return Err(KubeError::config(
            "no Kubernetes API: not in a pod (KUBERNETES_SERVICE_HOST/PORT are not set) and no \
             kubeconfig (set [kubernetes] kubeconfig or KUBECONFIG)",
        ));
    }
    let dir = section
        .service_account_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR));
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let ca = read_ca(&dir.join("ca.crt"))?;
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let token = dir.join("token");
    read_token(&token)?;
    Ok((
        format!("https://{host}:{port}"),
        Some(ca),
        None,
        Auth::File {
            path: token,
            cached: Mutex::new(None),
        },
        namespace,
        origin,
    ))
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    ca: Option<PathBuf>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure: bool,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    user: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Default, Deserialize)]
struct User {
    token: Option<SecretString>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate")]
    cert: Option<PathBuf>,
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key")]
    key: Option<PathBuf>,
    #[serde(rename = "client-key-data")]
    key_data: Option<SecretString>,
    exec: Option<serde_yaml_ng::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_yaml_ng::Value>,
    username: Option<String>,
    password: Option<SecretString>,
}

/// The settings of a kubeconfig's context.
fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Connection, KubeError> {
    let origin = format!("kubeconfig {}", path.display());
    let bytes = read_secret_file(path)
        .map_err(|e| KubeError::config(format!("the kubeconfig: {e}")).with(Box::new(e)))?;
    let cfg: Kubeconfig = serde_yaml_ng::from_slice(&bytes).map_err(|e| {
        // Only where: a type error's text may quote the value it found (a token).
        let at = e
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        KubeError::config(format!(
            "{origin} is not a kubeconfig of clusters, contexts and users{at}"
        ))
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let name = context
        .map(str::to_string)
        .or(cfg.current_context.clone())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            KubeError::config(format!(
                "{origin} has no current-context; set [kubernetes] context"
            ))
        })?;
    let ctx = cfg
        .contexts
        .iter()
        .find(|c| c.name == name)
        .map(|c| &c.context)
        .ok_or_else(|| KubeError::config(format!("{origin} has no context `{name}`")))?;
    let cluster = cfg
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .map(|c| &c.cluster)
        .ok_or_else(|| {
            KubeError::config(format!(
                "{origin}: context `{name}` names cluster `{}`, which is not in the file",
                ctx.cluster
            ))
        })?;
    if cluster.insecure {
        return Err(KubeError::config(format!(
            "{origin}: cluster `{}` sets insecure-skip-tls-verify; the rotator always verifies \
             the API server (give certificate-authority or certificate-authority-data)",
            ctx.cluster
        )));
    }
    if cluster.tls_server_name.is_some() || cluster.proxy_url.is_some() {
        return Err(KubeError::config(format!(
            "{origin}: cluster `{}` sets tls-server-name or proxy-url, which this client does not \
             support (HTTPS_PROXY is honoured)",
            ctx.cluster
        )));
    }
    let ca = match (&cluster.ca_data, &cluster.ca) {
        (Some(data), _) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|_| {
                    KubeError::config(format!(
                        "{origin}: certificate-authority-data is not base64"
                    ))
                })?,
        ),
        (None, Some(p)) => Some(read_ca(&rel(p))?),
        (None, None) => None,
    };
    let empty = User::default();
    let user = match &ctx.user {
        Some(u) => cfg
            .users
            .iter()
            .find(|x| &x.name == u)
            .map(|x| &x.user)
            .ok_or_else(|| {
                KubeError::config(format!(
                    "{origin}: context `{name}` names user `{u}`, which is not in the file"
                ))
            })?,
        None => &empty,
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(KubeError::config(format!(
            "{origin}: user `{}` uses an exec or auth-provider plugin; the rotator runs no \
             programs to log in: use a token, tokenFile or client certificate user (e.g. a \
             service account token), or run it in the cluster",
            ctx.user.as_deref().unwrap_or_default()
        )));
    }
    if user.username.is_some() || user.password.is_some() {
        return Err(KubeError::config(format!(
            "{origin}: basic auth (username/password) is not supported; use a token or client \
             certificate user"
        )));
    }
    let auth = match (&user.token, &user.token_file) {
        (Some(t), _) => Auth::Static(t.clone()),
        (None, Some(f)) => {
            let path = rel(f);
            read_token(&path)?;
            Auth::File {
                path,
                cached: Mutex::new(None),
            }
        }
        (None, None) => Auth::None,
    };
    let pem = |data: Option<&str>, file: &Option<PathBuf>, what: &str| match (data, file) {
        (Some(d), _) => base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map(Some)
            .map_err(|_| KubeError::config(format!("{origin}: {what}-data is not base64"))),
        (None, Some(p)) => read_secret_file(&rel(p))
            .map(|b| Some(b.to_vec()))
            .map_err(|e| KubeError::config(format!("{origin}: {what}: {e}"))),
        (None, None) => Ok(None),
    };
    let key_data = user
        .key_data
        .as_ref()
        .map(|k| secrecy::zeroize::Zeroizing::new(k.expose_secret().to_string()));
    let cert = pem(user.cert_data.as_deref(), &user.cert, "client-certificate")?;
    let key = secrecy::zeroize::Zeroizing::new(pem(
        key_data.as_deref().map(String::as_str),
        &user.key,
        "client-key",
    )?);
    let client_cert = match (cert, key.as_ref()) {
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_slice_iter(&c)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    KubeError::config(format!("{origin}: client-certificate is not PEM: {e}"))
                })?;
            let key = PrivateKeyDer::from_pem_slice(k)
                .map_err(|_| KubeError::config(format!("{origin}: client-key is not a PEM key")))?;
            Some((chain, key))
        }
        (None, None) => None,
        _ => {
            return Err(KubeError::config(format!(
                "{origin}: a client certificate needs both client-certificate and client-key"
            )));
        }
    };
    Ok((
        cluster.server.clone(),
        ca,
        client_cert,
        auth,
        ctx.namespace.clone().filter(|n| !n.is_empty()),
        format!("{origin} (context `{name}`)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    fn refused(yaml: &str) -> String {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(dir.path(), "config", yaml);
        match from_kubeconfig(&p, None) {
            Ok(_) => String::new(),
            Err(e) => e.message,
        }
    }

    const BASE: &str = "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n    namespace: team\nusers:\n- name: u\n  user:\n";

    #[test]
    fn kubeconfig_users_are_read_and_plugins_refused() {
        let ok = format!("{BASE}    token: abc\n");
        assert_eq!(refused(&ok), "");
        for (user, says) in [
            ("    exec:\n      command: aws\n", "runs no programs"),
            ("    username: a\n    password: b\n", "basic auth"),
            (
                "    client-certificate-data: AAAA\n",
                "needs both client-certificate and client-key",
            ),
        ] {
            let m = refused(&format!("{BASE}{user}"));
            assert!(m.contains(says), "{says}: {m}");
        }
        let insecure = ok.replace(
            "server: https://127.0.0.1:6443",
            "server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true",
        );
        assert!(refused(&insecure).contains("always verifies"));
        let no_ctx = ok.replace("current-context: c", "current-context: x");
        assert!(refused(&no_ctx).contains("has no context `x`"));
        assert!(refused("{{{").contains("is not a kubeconfig"));
        // A value of the wrong type is never quoted back.
        let typed = refused(&format!("{BASE}    token:\n      - hunter2-secret\n"));
        assert!(
            typed.contains("line") && !typed.contains("hunter2"),
            "{typed}"
        );
        // Never the token in a message.
        assert!(!refused(&format!("{BASE}    token: abc\n    exec: {{}}\n")).contains("abc"));
    }
}
