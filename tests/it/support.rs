//! Test fixtures: a simulator, a temp dir, a config, and the real binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use deepvue_rotator::backends::file::FileStore;
use deepvue_rotator::core::store::{Stored, TokenStore};
use deepvue_rotator::simulator::{Behavior, SimOptions, Simulator};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_deepvue-rotator");
pub const CLIENT_ID: &str = "it-client-7d41";
pub const CLIENT_SECRET: &str = "it-secret-SENTINEL-5f1c2a9e";

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A simulator that accepts only CLIENT_ID/CLIENT_SECRET, a temp dir, and its CA file.
pub struct Env {
    pub sim: Simulator,
    pub dir: TempDir,
    pub ca: PathBuf,
}

impl Env {
    pub async fn new() -> Env {
        Self::with(Behavior::default()).await
    }

    pub async fn with(behavior: Behavior) -> Env {
        Self::on(behavior, None).await
    }

    /// A simulator that issues expiries from `clock`.
    pub async fn on(
        behavior: Behavior,
        clock: Option<std::sync::Arc<dyn deepvue_rotator::core::clock::Clock>>,
    ) -> Env {
        Self::start(behavior, clock, CLIENT_SECRET).await
    }

    /// A simulator that accepts [`CLIENT_ID`] with `secret` (not [`CLIENT_SECRET`]).
    pub async fn accepting(secret: &str) -> Env {
        Self::start(Behavior::default(), None, secret).await
    }

    async fn start(
        behavior: Behavior,
        clock: Option<std::sync::Arc<dyn deepvue_rotator::core::clock::Clock>>,
        secret: &str,
    ) -> Env {
        let sim = Simulator::start(SimOptions {
            credentials: Some((CLIENT_ID.into(), secret.into())),
            behavior,
            clock,
            ..SimOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("the Deepvue simulator must start on 127.0.0.1: {e:#}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, sim.ca_pem()).unwrap_or_else(|e| panic!("write CA: {e}"));
        Env { sim, dir, ca }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn store_dir(&self, token: &str) -> PathBuf {
        self.path(&format!("store/{token}"))
    }

    /// `[deepvue]` pointing at the simulator with fast retries, plus `extra` lines in it, and
    /// `[egress]` probing the simulator's `/ip` (tests never reach beyond loopback).
    pub fn deepvue_section(&self, extra: &str) -> String {
        format!(
            "[deepvue]\nbase_url = \"{0}\"\nca_file = \"{1}\"\nbackoff_base = \"50ms\"\nbackoff_max = \"200ms\"\n{extra}\n\n[egress]\nprobe_urls = [\"{0}/ip\"]\n\n",
            self.sim.base_url(),
            self.ca.display()
        )
    }

    pub fn token_block(&self, name: &str, credentials: &str) -> String {
        format!(
            "[[tokens]]\nname = \"{name}\"\ncredentials = {credentials}\nstore = {{ backend = \"file\", path = \"{}\" }}\n",
            self.store_dir(name).display()
        )
    }

    /// The usual one-token config, written to a file.
    pub fn config(&self) -> PathBuf {
        self.write_config(&format!(
            "{}{}",
            self.deepvue_section(""),
            self.token_block("prod", "{ backend = \"env\" }")
        ))
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path(&format!("config-{}.toml", rand::random::<u32>()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write config: {e}"));
        path
    }

    pub fn calls(&self) -> u64 {
        self.sim.stats().authorize_calls
    }

    pub fn store(&self, token: &str) -> FileStore {
        FileStore::new(self.store_dir(token), 5, Duration::from_secs(10))
    }

    pub async fn current(&self, token: &str) -> Option<Stored> {
        self.store(token)
            .read_current()
            .await
            .unwrap_or_else(|e| panic!("store must stay readable: {e}"))
    }

    pub async fn current_version(&self, token: &str) -> Option<String> {
        self.current(token).await.map(|s| s.version.0)
    }

    pub fn command(&self, config: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env_remove("DEEPVUE_ROTATOR_CONFIG")
            .env_remove("DEEPVUE_ROTATOR_CONFIG_TOML")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env("DEEPVUE_CLIENT_ID", CLIENT_ID)
            .env("DEEPVUE_CLIENT_SECRET", CLIENT_SECRET)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, config: &Path, args: &[&str]) -> Output {
        run(self.command(config, args)).await
    }

    /// An application's API call to the simulator (`GET /v1/ping`) with `token` and the
    /// client secret as `x-api-key`: its HTTP status (0 when it could not be sent).
    pub async fn ping(&self, token: &str) -> u16 {
        let http = deepvue_rotator::support::tls::https_client(
            &deepvue_rotator::support::tls::HttpsSettings {
                extra_ca: Some(&self.ca),
                connect_timeout: Duration::from_secs(5),
                family: deepvue_rotator::support::net::IpFamily::Any,
                user_agent: "app",
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        http.get(format!("{}/v1/ping", self.sim.base_url()))
            .bearer_auth(token)
            .header("x-api-key", CLIENT_SECRET)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or_default()
    }
}

/// Fail when any of `secrets` appears in `text` in any encoding ([`secret_forms`]); `what`
/// names the text.
pub fn assert_secret_free<S: AsRef<str>>(text: &str, secrets: &[S], what: &str) {
    for secret in secrets {
        for form in secret_forms(secret.as_ref()) {
            assert!(
                !text.contains(&form),
                "a secret form {form:?} in {what}:\n{text}"
            );
        }
    }
}

pub async fn run(mut cmd: tokio::process::Command) -> Output {
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {BIN}: {e}"));
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Simulator behaviour: only `net` is whitelisted (so loopback calls get 403).
pub fn allow_only(net: &str) -> Behavior {
    Behavior {
        allowed_ips: Some(vec![net.parse().unwrap_or_else(|e| panic!("{e}"))]),
        ..Behavior::default()
    }
}

/// A free TCP port on 127.0.0.1 for a server a test starts (which binds it a moment later).
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`): a port from that range
/// (what binding port 0 gives) can be handed to the next outgoing connection's local end in the
/// gap before the server binds it — seen once in CI as "Address already in use". Below the
/// range only another test's pick can collide, and this process never hands out a port twice.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.saturating_sub(1));
    if to > from + 1000 {
        for _ in 0..200 {
            let port = rand::random_range(from..=to);
            let mut given = GIVEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if given.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// A test tool installed by `./scripts/test.sh`: `$ENV_VAR` if set, else `.tools/venv/bin/NAME`
/// in the checkout, else NAME on PATH.
pub fn test_tool(env_var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/venv/bin")
        .join(name);
    if local.exists() {
        return local;
    }
    PathBuf::from(name)
}

/// Every wire form of a secret that must never appear in output: raw, JSON-escaped,
/// percent-encoded (form and URL style, either hex case), base64 (standard and URL-safe, and
/// its middle at any alignment inside a longer stream). Computed here, not by the code under
/// test.
pub fn secret_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let percent = |space: &str, upper: bool| -> String {
        secret
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => space.to_string(),
                _ if upper => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect()
    };
    let json = serde_json::to_string(secret).unwrap_or_default();
    let mut forms = vec![
        secret.to_string(),
        json.get(1..json.len().saturating_sub(1))
            .unwrap_or_default()
            .to_string(),
        percent("+", true),
        percent("+", false),
        percent("%20", true),
        b64.encode(secret),
        b64url.encode(secret),
    ];
    // The middle of the base64 form, whatever its alignment in a longer stream.
    let bytes = secret.as_bytes();
    if bytes.len() >= 12 {
        for start in 0..3 {
            forms.push(
                b64.encode(&bytes[start..bytes.len() - 3])
                    .trim_end_matches('=')[..8]
                    .to_string(),
            );
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// A "proxy" on 127.0.0.1 that only counts the connections it gets (and closes them): set
/// as `HTTP_PROXY` / `HTTPS_PROXY` to prove a client went direct.
pub struct ProxyTrap {
    pub url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyTrap {
    pub async fn start() -> ProxyTrap {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy trap must bind 127.0.0.1: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(s);
            }
        });
        ProxyTrap {
            url: format!("http://{addr}"),
            hits,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every proxy variable a client might read, pointing here.
    pub fn set_on(&self, cmd: &mut tokio::process::Command) {
        for v in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env(v, &self.url);
        }
        cmd.env("NO_PROXY", "example.invalid")
            .env("no_proxy", "example.invalid");
    }
}

impl Drop for ProxyTrap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
