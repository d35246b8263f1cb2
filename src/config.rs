//! The one TOML schema, validated up front.
//!
//! Parsing goes through private `Raw*` types (`deny_unknown_fields`), then [`Config::validate`]
//! turns them into typed, range-checked values. Apart from the credentials `env` backend (which
//! reads the credentials themselves) this is the only module that reads the environment.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Deserializer};

/// Path of the config file, when `--config` is not given.
pub const ENV_CONFIG_PATH: &str = "DEEPVUE_ROTATOR_CONFIG";
/// The whole config inline (serverless deployments).
pub const ENV_CONFIG_TOML: &str = "DEEPVUE_ROTATOR_CONFIG_TOML";
/// Deepvue's only documented host.
pub const DEFAULT_BASE_URL: &str = "https://production.deepvue.tech";
/// Deepvue tokens live 24 hours.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A config problem: where, and what. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
#[error("config {origin}: {message}")]
pub struct ConfigError {
    /// The file path, or the environment variable holding the inline config.
    pub origin: String,
    /// What is wrong, naming the key path.
    pub message: String,
    /// Which production-checklist item it breaks (for `check`).
    pub category: ProblemCategory,
}

/// The checklist item a config problem belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemCategory {
    /// A secret written inline in the file.
    InlineSecret,
    /// A non-HTTPS endpoint.
    InsecureEndpoint,
    /// Anything else.
    Invalid,
}

impl ConfigError {
    fn new(origin: &str, message: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.to_string(),
            message: message.into(),
            category: ProblemCategory::Invalid,
        }
    }

    fn with(mut self, category: ProblemCategory) -> Self {
        self.category = category;
        self
    }
}

/// A secret value given by reference: `{ env = "NAME" }` or `{ file = "/path" }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Environment variable holding the value.
    pub env: Option<String>,
    /// File holding the value (trailing newline trimmed).
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// Where the value lives, for messages.
    pub fn describe(&self) -> String {
        match (&self.env, &self.file) {
            (Some(e), _) => format!("env {e}"),
            (None, Some(f)) => format!("file {}", f.display()),
            (None, None) => "nothing".into(),
        }
    }

    /// Read the value now.
    pub fn resolve(&self) -> Result<secrecy::SecretString, String> {
        let value = match (&self.env, &self.file) {
            (Some(var), None) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            _ => return Err("a secret reference needs exactly one of env or file".into()),
        };
        if value.trim().is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(secrecy::SecretString::from(value))
    }

    fn validate(&self, at: &str) -> Result<(), String> {
        match (&self.env, &self.file) {
            (Some(e), None) if !e.is_empty() => Ok(()),
            (None, Some(f)) if !f.as_os_str().is_empty() => Ok(()),
            _ => Err(format!(
                "{at} must be {{ env = \"NAME\" }} or {{ file = \"/path\" }} (exactly one)"
            )),
        }
    }
}

/// A URL that may be written inline or given by reference.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UrlValue {
    /// Written in the file.
    Inline(String),
    /// By reference.
    Ref(SecretRef),
}

/// A duration written the human way: `90s`, `10m`, `12h`, `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write e.g. \"90s\", \"10m\", \"12h\""
            ))
        })
    }
}

/// How the authorize form is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestEncoding {
    /// `multipart/form-data`, as Deepvue's current docs show (the default).
    #[default]
    Multipart,
    /// `application/x-www-form-urlencoded`, as an older Deepvue page shows.
    Urlencoded,
}

/// Where a token's client credentials come from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialsConfig {
    /// Environment variables (`DEEPVUE_CLIENT_ID` / `DEEPVUE_CLIENT_SECRET` by default).
    Env {
        /// Override the client id variable name.
        client_id_var: Option<String>,
        /// Override the client secret variable name.
        client_secret_var: Option<String>,
    },
    /// A JSON file `{"client_id","client_secret"}`, readable by its owner only.
    File {
        /// Path to the JSON file.
        path: PathBuf,
    },
    /// An AWS Secrets Manager secret whose SecretString is JSON with the two fields.
    Aws {
        /// Secret name or ARN.
        secret_id: String,
        /// Staging label to read (default AWSCURRENT).
        version_stage: Option<String>,
        /// JSON key of the client id (default `client_id`).
        client_id_key: Option<String>,
        /// JSON key of the client secret (default `client_secret`).
        client_secret_key: Option<String>,
    },
}

/// Where a token document is written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// The embedded, versioned local file store.
    File {
        /// Directory holding the versions (created 0700 if missing).
        path: PathBuf,
        /// How many versions to keep (default 5, at least 2).
        keep_versions: Option<usize>,
    },
    /// An AWS Secrets Manager secret; each rotation is a new version (AWSCURRENT moves, the old
    /// one becomes AWSPREVIOUS).
    Aws {
        /// Secret name or ARN.
        secret_id: String,
        /// Create the secret on the first write when it does not exist (default false: a
        /// missing secret is a config error).
        #[serde(default)]
        create_if_missing: bool,
        /// KMS key for a secret this tool creates (default: the AWS-managed key).
        kms_key_id: Option<String>,
        /// Tags for a secret this tool creates.
        #[serde(default)]
        tags: std::collections::BTreeMap<String, String>,
    },
}

impl StoreConfig {
    /// Backend name and secret id, for messages.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            // Normalised (`/x/`, `/x/.` and `/x` are one store) so duplicates are caught.
            StoreConfig::File { path, .. } => ("file", normalise(path).display().to_string()),
            // By name, so `name` and its ARN are recognised as one secret.
            StoreConfig::Aws { secret_id, .. } => {
                ("aws", crate::aws::secret_name(secret_id).to_string())
            }
        }
    }
}

/// Absolute (against the working directory) with `.` and `..` resolved lexically, so `st`,
/// `./st/` and `$PWD/st` are recognised as one store.
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    deepvue: RawDeepvue,
    #[serde(default)]
    rotation: RawRotation,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    egress: RawEgress,
    #[serde(default)]
    alerting: RawAlerting,
    #[serde(default)]
    alerts: Vec<RawAlert>,
    #[serde(default)]
    aws: RawAws,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    expected_ips: Option<Vec<String>>,
    probe_urls: Option<Vec<String>>,
    probe: Option<bool>,
    probe_timeout: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerting {
    environment: Option<String>,
    escalate_before: Option<Dur>,
    repeat_every: Option<Dur>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawAlert {
    Webhook {
        name: Option<String>,
        url: UrlValue,
        secret: Option<SecretRef>,
    },
    Slack {
        name: Option<String>,
        url: UrlValue,
    },
    Pagerduty {
        name: Option<String>,
        routing_key: SecretRef,
        url: Option<String>,
    },
    Sns {
        name: Option<String>,
        topic_arn: String,
        message_group_id: Option<String>,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAws {
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeepvue {
    base_url: Option<String>,
    ca_file: Option<PathBuf>,
    request_encoding: Option<RequestEncoding>,
    connect_timeout: Option<Dur>,
    request_timeout: Option<Dur>,
    max_attempts: Option<u32>,
    ip_family: Option<IpFamily>,
    retry_deadline: Option<Dur>,
    backoff_base: Option<Dur>,
    backoff_max: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    renew_before: Option<Dur>,
    min_interval: Option<Dur>,
    concurrency: Option<usize>,
    lock_timeout: Option<Dur>,
    run_every: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    credentials: CredentialsConfig,
    store: StoreConfig,
    renew_before: Option<Dur>,
    min_interval: Option<Dur>,
}

/// Which address family outbound calls use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv4 only (the default): Deepvue whitelists IPv4 addresses, and the egress probes must
    /// see the same address family as the authorize call.
    #[default]
    Ipv4,
    /// Whatever the resolver and the host prefer.
    Any,
}

/// `[egress]`: the egress-IP probes and the whitelist they are compared with.
#[derive(Clone, Debug)]
pub struct EgressConfig {
    /// The IPs / CIDRs Deepvue whitelists for this account.
    pub expected: Vec<ipnet::IpNet>,
    /// "What is my IP" endpoints; each must answer the bare IP.
    pub probe_urls: Vec<Url>,
    /// Probing enabled (default true).
    pub probe: bool,
    /// Per-probe timeout (default 3 s).
    pub probe_timeout: Duration,
}

/// One `[[alerts]]` sink.
#[derive(Clone, Debug)]
pub enum SinkConfig {
    /// Generic JSON webhook, optionally signed per Standard Webhooks.
    Webhook {
        /// Display name.
        name: String,
        /// Target URL.
        url: UrlValue,
        /// `whsec_…` signing secret.
        secret: Option<SecretRef>,
    },
    /// Slack incoming webhook.
    Slack {
        /// Display name.
        name: String,
        /// The webhook URL (a secret; by reference only).
        url: SecretRef,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        /// Display name.
        name: String,
        /// Integration key (by reference only).
        routing_key: SecretRef,
        /// Events endpoint.
        url: Url,
    },
    /// AWS SNS Publish.
    Sns {
        /// Display name.
        name: String,
        /// Topic ARN (`.fifo` topics get a message group and dedup id).
        topic_arn: String,
        /// FIFO message group (default: the token name).
        message_group_id: Option<String>,
    },
}

impl SinkConfig {
    /// Display name.
    pub fn name(&self) -> &str {
        match self {
            SinkConfig::Webhook { name, .. }
            | SinkConfig::Slack { name, .. }
            | SinkConfig::PagerDuty { name, .. }
            | SinkConfig::Sns { name, .. } => name,
        }
    }
}

/// `[alerting]` plus the `[[alerts]]` sinks.
#[derive(Clone, Debug)]
pub struct AlertingConfig {
    /// Environment label in every alert (default `default`).
    pub environment: String,
    /// Severity turns critical when the stored token has less than this left (default 6 h).
    pub escalate_before: Duration,
    /// The same condition alerts again after this long (default 4 h).
    pub repeat_every: Duration,
    /// Extra trust anchor for sink endpoints.
    pub ca_file: Option<PathBuf>,
    /// The sinks.
    pub sinks: Vec<SinkConfig>,
}

/// `[aws]`: used by AWS-backed parts (SNS alerts).
#[derive(Clone, Debug, Default)]
pub struct AwsConfig {
    /// Region (else the standard chain: AWS_REGION, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (else AWS_ENDPOINT_URL); plain http only for loopback emulators.
    pub endpoint_url: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// Extra trust anchor (PEM) for AWS endpoints, on top of the OS roots.
    pub ca_file: Option<PathBuf>,
}

/// Retry policy for the authorize call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (default 4).
    pub max_attempts: u32,
    /// Overall deadline across all attempts and waits (default 120 s).
    pub deadline: Duration,
    /// First backoff ceiling; doubles per attempt (default 1 s).
    pub backoff_base: Duration,
    /// Largest backoff ceiling (default 30 s).
    pub backoff_max: Duration,
}

/// The Deepvue client settings.
#[derive(Clone, Debug)]
pub struct DeepvueConfig {
    /// `https://` base URL; `/v1/authorize` is appended.
    pub base_url: Url,
    /// Extra trust anchor (PEM), on top of the OS roots.
    pub ca_file: Option<PathBuf>,
    /// Form encoding of the authorize call.
    pub request_encoding: RequestEncoding,
    /// TCP + TLS connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Per-attempt total timeout (default 30 s).
    pub request_timeout: Duration,
    /// Address family for Deepvue calls and egress probes.
    pub ip_family: IpFamily,
    /// Retries.
    pub retry: RetryPolicy,
}

/// When a token is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DuePolicy {
    /// Rotate once the stored token has this little left (default 12 h).
    pub renew_before: Duration,
    /// Never mint twice within this interval while the stored token is valid (default 10 min).
    pub min_interval: Duration,
}

/// One `[[tokens]]` entry.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// Unique name (`[A-Za-z0-9._-]`, ≤ 64).
    pub name: String,
    /// Where the client credentials come from.
    pub credentials: CredentialsConfig,
    /// Where the token document goes.
    pub store: StoreConfig,
    /// When it is due.
    pub policy: DuePolicy,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it was read from (a path or an environment variable name).
    pub origin: String,
    /// `[deepvue]`.
    pub deepvue: DeepvueConfig,
    /// Tokens processed at once (default 8).
    pub concurrency: usize,
    /// How long to wait for another runner's rotation lock (default 60 s).
    pub lock_timeout: Duration,
    /// How often the job is scheduled, if stated (lets `check` judge `renew_before`).
    pub run_every: Option<Duration>,
    /// `[[tokens]]`.
    pub tokens: Vec<TokenConfig>,
    /// `[egress]`.
    pub egress: EgressConfig,
    /// `[alerting]` and `[[alerts]]`.
    pub alerting: AlertingConfig,
    /// `[aws]`.
    pub aws: AwsConfig,
}

/// Keys that hold secrets. With a plain value anywhere in the file they are refused; a
/// reference table (`{ env = "NAME" }` / `{ file = "/path" }`) is accepted.
const SECRET_KEYS: &[&str] = &[
    "client_id",
    "client_secret",
    "access_token",
    "token",
    "secret",
    "password",
    "api_key",
    "x_api_key",
    "routing_key",
    "private_key",
];

/// Find the config: `--config`, else `DEEPVUE_ROTATOR_CONFIG`, else `DEEPVUE_ROTATOR_CONFIG_TOML`.
pub fn load(cli_path: Option<&Path>) -> Result<Config, ConfigError> {
    if let Some(path) = cli_path {
        return load_file(path);
    }
    if let Some(path) = std::env::var_os(ENV_CONFIG_PATH).filter(|p| !p.is_empty()) {
        return load_file(Path::new(&path));
    }
    if let Ok(text) = std::env::var(ENV_CONFIG_TOML)
        && !text.trim().is_empty()
    {
        return parse(&text, ENV_CONFIG_TOML);
    }
    Err(ConfigError::new(
        "(none)",
        format!(
            "no configuration given: pass --config PATH, or set {ENV_CONFIG_PATH} to a path, \
             or {ENV_CONFIG_TOML} to the TOML itself"
        ),
    ))
}

fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&origin, format!("cannot read the file: {e}")))?;
    parse(&text, &origin)
}

/// Parse and validate TOML text. `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::new(origin, format!("invalid TOML: {}", e.message())))?;
    let mut path = Vec::new();
    reject_inline_secrets(&toml::Value::Table(table.clone()), &mut path)
        .map_err(|m| ConfigError::new(origin, m).with(ProblemCategory::InlineSecret))?;
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner().message().to_string();
            let msg = if at == "." || at.is_empty() {
                inner
            } else {
                format!("at `{at}`: {inner}")
            };
            ConfigError::new(origin, msg)
        })?;
    Config::validate(raw, origin)
}

fn reject_inline_secrets(value: &toml::Value, path: &mut Vec<String>) -> Result<(), String> {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                path.push(k.clone());
                let looks_secret = SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str());
                if looks_secret && !v.is_table() {
                    return Err(format!(
                        "`{}` holds a secret inline; secrets never belong in the config file. \
                         Keep Deepvue credentials in environment variables \
                         (credentials = {{ backend = \"env\" }}), a file readable only by the \
                         rotator (credentials = {{ backend = \"file\", path = \"…\" }}) or a secret \
                         manager; give other secret values by reference: {{ env = \"NAME\" }} or \
                         {{ file = \"/path\" }}",
                        display_path(path)
                    ));
                }
                reject_inline_secrets(v, path)?;
                path.pop();
            }
        }
        toml::Value::Array(items) => {
            let Some(base) = path.last().cloned() else {
                return Ok(());
            };
            for (i, item) in items.iter().enumerate() {
                if let Some(last) = path.last_mut() {
                    *last = format!("{base}[{i}]");
                }
                reject_inline_secrets(item, path)?;
            }
            if let Some(last) = path.last_mut() {
                *last = base;
            }
        }
        _ => {}
    }
    Ok(())
}

fn display_path(path: &[String]) -> String {
    path.join(".")
}

impl Config {
    fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        let d = raw.deepvue;
        let base = d.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let base_url =
            Url::parse(base).map_err(|e| err(format!("deepvue.base_url is not a URL ({e})")))?;
        let base = shown(base);
        if base_url.scheme() != "https" {
            return Err(err(format!(
                "deepvue.base_url must use https:// (got `{base}`); credentials are never sent \
                 over plain HTTP"
            ))
            .with(ProblemCategory::InsecureEndpoint));
        }
        if base_url.host_str().is_none_or(str::is_empty) {
            return Err(err(format!("deepvue.base_url `{base}` has no host")));
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(err(
                "deepvue.base_url must not carry user info; credentials come from the \
                 credentials backend"
                    .into(),
            ));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(err(format!(
                "deepvue.base_url `{base}` must not have a query or fragment"
            )));
        }
        if let Some(ca) = &d.ca_file
            && !ca.is_file()
        {
            return Err(err(format!(
                "deepvue.ca_file `{}` does not exist or is not a file",
                ca.display()
            )));
        }
        let max_attempts = d.max_attempts.unwrap_or(4);
        if !(1..=20).contains(&max_attempts) {
            return Err(err(format!(
                "deepvue.max_attempts must be between 1 and 20 (got {max_attempts})"
            )));
        }
        let positive =
            |name: &str, v: Option<Dur>, default: Duration| -> Result<Duration, ConfigError> {
                let v = v.map_or(default, |d| d.0);
                if v.is_zero() {
                    Err(ConfigError::new(
                        origin,
                        format!("{name} must be greater than zero"),
                    ))
                } else {
                    Ok(v)
                }
            };
        let deepvue = DeepvueConfig {
            base_url,
            ca_file: d.ca_file,
            request_encoding: d.request_encoding.unwrap_or_default(),
            connect_timeout: positive(
                "deepvue.connect_timeout",
                d.connect_timeout,
                Duration::from_secs(10),
            )?,
            request_timeout: positive(
                "deepvue.request_timeout",
                d.request_timeout,
                Duration::from_secs(30),
            )?,
            ip_family: d.ip_family.unwrap_or_default(),
            retry: RetryPolicy {
                max_attempts,
                deadline: positive(
                    "deepvue.retry_deadline",
                    d.retry_deadline,
                    Duration::from_secs(120),
                )?,
                backoff_base: positive(
                    "deepvue.backoff_base",
                    d.backoff_base,
                    Duration::from_secs(1),
                )?,
                backoff_max: positive(
                    "deepvue.backoff_max",
                    d.backoff_max,
                    Duration::from_secs(30),
                )?,
            },
        };

        let r = raw.rotation;
        let default_policy = DuePolicy {
            renew_before: r
                .renew_before
                .map_or(Duration::from_secs(12 * 3600), |d| d.0),
            min_interval: r.min_interval.map_or(Duration::from_secs(600), |d| d.0),
        };
        check_policy("rotation", default_policy).map_err(err)?;
        let concurrency = r.concurrency.unwrap_or(8);
        if !(1..=1024).contains(&concurrency) {
            return Err(err(format!(
                "rotation.concurrency must be between 1 and 1024 (got {concurrency})"
            )));
        }
        // A runner may hold the rotation lock for a whole authorize retry budget; waiting less
        // than that would fail a run that should simply find the token fresh.
        let longest_hold = deepvue.retry.deadline + deepvue.request_timeout;
        let lock_timeout = positive(
            "rotation.lock_timeout",
            r.lock_timeout,
            longest_hold + Duration::from_secs(30),
        )?;
        if lock_timeout <= longest_hold {
            return Err(err(format!(
                "rotation.lock_timeout ({}) must be longer than deepvue.retry_deadline + \
                 deepvue.request_timeout ({}): another runner may hold the lock that long",
                humantime::format_duration(lock_timeout),
                humantime::format_duration(longest_hold)
            )));
        }

        if raw.tokens.is_empty() {
            return Err(err(
                "no [[tokens]] configured; add at least one with name, credentials and store"
                    .into(),
            ));
        }
        let mut names = HashSet::new();
        let mut stores = HashSet::new();
        let mut tokens = Vec::with_capacity(raw.tokens.len());
        for (i, t) in raw.tokens.into_iter().enumerate() {
            let at = format!("tokens[{i}]");
            let valid_name = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !valid_name {
                return Err(err(format!(
                    "{at}.name `{}` must be 1-64 characters of A-Z a-z 0-9 . _ -",
                    t.name
                )));
            }
            if !names.insert(t.name.clone()) {
                return Err(err(format!("{at}.name `{}` is used twice", t.name)));
            }
            match &t.credentials {
                CredentialsConfig::Env {
                    client_id_var,
                    client_secret_var,
                } => {
                    for (k, v) in [
                        ("client_id_var", client_id_var),
                        ("client_secret_var", client_secret_var),
                    ] {
                        if v.as_deref()
                            .is_some_and(|v| v.is_empty() || v.contains('='))
                        {
                            return Err(err(format!(
                                "{at}.credentials.{k} must be a variable name"
                            )));
                        }
                    }
                }
                CredentialsConfig::File { path } if path.as_os_str().is_empty() => {
                    return Err(err(format!("{at}.credentials.path is empty")));
                }
                CredentialsConfig::File { .. } => {}
                CredentialsConfig::Aws {
                    secret_id,
                    version_stage,
                    client_id_key,
                    client_secret_key,
                } => {
                    check_secret_id(&format!("{at}.credentials"), secret_id).map_err(err)?;
                    for (k, v) in [
                        ("version_stage", version_stage),
                        ("client_id_key", client_id_key),
                        ("client_secret_key", client_secret_key),
                    ] {
                        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                            return Err(err(format!("{at}.credentials.{k} is empty")));
                        }
                    }
                }
            }
            match &t.store {
                StoreConfig::File {
                    path,
                    keep_versions,
                } => {
                    if path.as_os_str().is_empty() {
                        return Err(err(format!("{at}.store.path is empty")));
                    }
                    if let Some(k) = keep_versions
                        && !(2..=1000).contains(k)
                    {
                        return Err(err(format!(
                            "{at}.store.keep_versions must be between 2 and 1000 (got {k}); the \
                             previous version is always kept"
                        )));
                    }
                }
                StoreConfig::Aws {
                    secret_id,
                    create_if_missing,
                    kms_key_id,
                    tags,
                } => {
                    check_secret_id(&format!("{at}.store"), secret_id).map_err(err)?;
                    if !create_if_missing && (kms_key_id.is_some() || !tags.is_empty()) {
                        return Err(err(format!(
                            "{at}.store: kms_key_id and tags apply only to a secret this tool \
                             creates; set create_if_missing = true or set them where the secret \
                             is provisioned"
                        )));
                    }
                    if kms_key_id.as_deref().is_some_and(|k| k.trim().is_empty()) {
                        return Err(err(format!("{at}.store.kms_key_id is empty")));
                    }
                    for (k, v) in tags {
                        if k.is_empty() || k.len() > 128 || v.len() > 256 {
                            return Err(err(format!(
                                "{at}.store.tags: key `{k}` must be 1-128 characters and its \
                                 value at most 256"
                            )));
                        }
                        if k.starts_with("aws:")
                            || k.starts_with(crate::store::aws::STATE_TAG_PREFIX)
                        {
                            return Err(err(format!(
                                "{at}.store.tags: the prefix of `{k}` is reserved"
                            )));
                        }
                    }
                }
            }
            if let (
                CredentialsConfig::Aws { secret_id: c, .. },
                StoreConfig::Aws { secret_id: st, .. },
            ) = (&t.credentials, &t.store)
                && crate::aws::secret_name(c) == crate::aws::secret_name(st)
            {
                return Err(err(format!(
                    "{at}: the credentials secret `{c}` is also the token store; the first \
                     rotation would overwrite the credentials. Use two secrets"
                )));
            }
            let store_key = t.store.describe();
            if !stores.insert(store_key.clone()) {
                return Err(err(format!(
                    "{at}.store: {} store `{}` is already used by another token",
                    store_key.0, store_key.1
                )));
            }
            let policy = DuePolicy {
                renew_before: t.renew_before.map_or(default_policy.renew_before, |d| d.0),
                min_interval: t.min_interval.map_or(default_policy.min_interval, |d| d.0),
            };
            check_policy(&at, policy).map_err(err)?;
            tokens.push(TokenConfig {
                name: t.name,
                credentials: t.credentials,
                store: t.store,
                policy,
            });
        }
        let run_every = r.run_every.map(|d| d.0);
        let egress = validate_egress(raw.egress, origin)?;
        let alerting = validate_alerting(raw.alerting, raw.alerts, origin)?;
        let aws = validate_aws(raw.aws, origin)?;
        Ok(Config {
            origin: origin.to_string(),
            deepvue,
            concurrency,
            lock_timeout,
            run_every,
            tokens,
            egress,
            alerting,
            aws,
        })
    }
}

/// A URL as it may appear in an error: scheme, host, port and path only (user info, query and
/// fragment can carry secrets).
fn shown(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "(unparseable URL)".into(),
    }
}

/// Default "what is my IP" endpoints.
pub const DEFAULT_PROBE_URLS: [&str; 2] =
    ["https://checkip.amazonaws.com", "https://api.ipify.org"];
/// PagerDuty's public Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

fn https_url(origin: &str, at: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value)
        .map_err(|e| ConfigError::new(origin, format!("{at} `{value}` is not a URL ({e})")))?;
    if url.scheme() != "https" {
        return Err(
            ConfigError::new(origin, format!("{at} must use https:// (got `{value}`)"))
                .with(ProblemCategory::InsecureEndpoint),
        );
    }
    Ok(url)
}

/// Parse an IP or a CIDR.
pub fn parse_ip_or_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn validate_egress(e: RawEgress, origin: &str) -> Result<EgressConfig, ConfigError> {
    let mut expected = Vec::new();
    for (i, ip) in e.expected_ips.unwrap_or_default().iter().enumerate() {
        expected.push(parse_ip_or_net(ip).ok_or_else(|| {
            ConfigError::new(
                origin,
                format!("egress.expected_ips[{i}] `{ip}` is not an IP address or CIDR"),
            )
        })?);
    }
    let urls: Vec<String> = e
        .probe_urls
        .unwrap_or_else(|| DEFAULT_PROBE_URLS.iter().map(|s| s.to_string()).collect());
    let mut probe_urls = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        probe_urls.push(https_url(origin, &format!("egress.probe_urls[{i}]"), u)?);
    }
    let probe = e.probe.unwrap_or(true);
    if probe && probe_urls.is_empty() {
        return Err(ConfigError::new(
            origin,
            "egress.probe_urls is empty; set egress.probe = false to disable probing",
        ));
    }
    let probe_timeout = e.probe_timeout.map_or(Duration::from_secs(3), |d| d.0);
    if probe_timeout.is_zero() || probe_timeout > Duration::from_secs(30) {
        return Err(ConfigError::new(
            origin,
            "egress.probe_timeout must be between 1ms and 30s",
        ));
    }
    Ok(EgressConfig {
        expected,
        probe_urls,
        probe,
        probe_timeout,
    })
}

fn validate_alerting(
    a: RawAlerting,
    alerts: Vec<RawAlert>,
    origin: &str,
) -> Result<AlertingConfig, ConfigError> {
    let err = |m: String| ConfigError::new(origin, m);
    let environment = a.environment.unwrap_or_else(|| "default".into());
    if environment.is_empty() || environment.len() > 64 || environment.contains(char::is_whitespace)
    {
        return Err(err(format!(
            "alerting.environment `{environment}` must be 1-64 characters without spaces"
        )));
    }
    if let Some(ca) = &a.ca_file
        && !ca.is_file()
    {
        return Err(err(format!(
            "alerting.ca_file `{}` does not exist or is not a file",
            ca.display()
        )));
    }
    let escalate_before = a
        .escalate_before
        .map_or(Duration::from_secs(6 * 3600), |d| d.0);
    let repeat_every = a
        .repeat_every
        .map_or(Duration::from_secs(4 * 3600), |d| d.0);
    if repeat_every.is_zero() {
        return Err(err("alerting.repeat_every must be greater than zero".into()));
    }
    let mut sinks = Vec::new();
    let mut names = HashSet::new();
    for (i, raw) in alerts.into_iter().enumerate() {
        let at = format!("alerts[{i}]");
        let sink = match raw {
            RawAlert::Webhook { name, url, secret } => {
                match &url {
                    UrlValue::Inline(u) => {
                        https_url(origin, &format!("{at}.url"), u)?;
                    }
                    UrlValue::Ref(r) => r.validate(&format!("{at}.url")).map_err(err)?,
                }
                if let Some(r) = &secret {
                    r.validate(&format!("{at}.secret")).map_err(err)?;
                }
                SinkConfig::Webhook {
                    name: name.unwrap_or_else(|| format!("webhook-{i}")),
                    url,
                    secret,
                }
            }
            RawAlert::Slack { name, url } => {
                let url = match url {
                    UrlValue::Ref(r) => {
                        r.validate(&format!("{at}.url")).map_err(err)?;
                        r
                    }
                    UrlValue::Inline(_) => {
                        return Err(err(format!(
                            "{at}.url: a Slack webhook URL is a secret; give it by reference: \
                             url = {{ env = \"SLACK_WEBHOOK_URL\" }} or {{ file = \"/path\" }}"
                        ))
                        .with(ProblemCategory::InlineSecret));
                    }
                };
                SinkConfig::Slack {
                    name: name.unwrap_or_else(|| format!("slack-{i}")),
                    url,
                }
            }
            RawAlert::Pagerduty {
                name,
                routing_key,
                url,
            } => {
                routing_key
                    .validate(&format!("{at}.routing_key"))
                    .map_err(err)?;
                let url = https_url(
                    origin,
                    &format!("{at}.url"),
                    url.as_deref().unwrap_or(PAGERDUTY_URL),
                )?;
                SinkConfig::PagerDuty {
                    name: name.unwrap_or_else(|| format!("pagerduty-{i}")),
                    routing_key,
                    url,
                }
            }
            RawAlert::Sns {
                name,
                topic_arn,
                message_group_id,
            } => {
                if !topic_arn.starts_with("arn:") || topic_arn.split(':').count() < 6 {
                    return Err(err(format!(
                        "{at}.topic_arn `{topic_arn}` is not an SNS topic ARN"
                    )));
                }
                if message_group_id
                    .as_deref()
                    .is_some_and(|g| g.is_empty() || g.len() > 128)
                {
                    return Err(err(format!(
                        "{at}.message_group_id must be 1-128 characters"
                    )));
                }
                SinkConfig::Sns {
                    name: name.unwrap_or_else(|| format!("sns-{i}")),
                    topic_arn,
                    message_group_id,
                }
            }
        };
        if !names.insert(sink.name().to_string()) {
            return Err(err(format!("{at}.name `{}` is used twice", sink.name())));
        }
        sinks.push(sink);
    }
    Ok(AlertingConfig {
        environment,
        escalate_before,
        repeat_every,
        ca_file: a.ca_file,
        sinks,
    })
}

/// A Secrets Manager secret id: a name or an ARN, 1-2048 characters.
fn check_secret_id(at: &str, id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err(format!("{at}.secret_id is empty"));
    }
    if id.len() > 2048 || id.trim() != id {
        return Err(format!(
            "{at}.secret_id `{id}` is not a secret name or ARN (at most 2048 characters, no \
             surrounding spaces)"
        ));
    }
    if id.starts_with("arn:") && id.split(':').count() < 7 {
        return Err(format!(
            "{at}.secret_id `{id}` looks like an ARN but is not one \
             (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
        ));
    }
    Ok(())
}

fn validate_aws(a: RawAws, origin: &str) -> Result<AwsConfig, ConfigError> {
    if let Some(ca) = &a.ca_file
        && !ca.is_file()
    {
        return Err(ConfigError::new(
            origin,
            format!(
                "aws.ca_file `{}` does not exist or is not a file",
                ca.display()
            ),
        ));
    }
    if let Some(e) = &a.endpoint_url {
        let url = Url::parse(e).map_err(|x| {
            ConfigError::new(origin, format!("aws.endpoint_url `{e}` is not a URL ({x})"))
        })?;
        if url.scheme() != "https" && !is_loopback(&url) {
            return Err(ConfigError::new(
                origin,
                format!("aws.endpoint_url must use https:// (plain http only for a loopback emulator; got `{e}`)"),
            )
            .with(ProblemCategory::InsecureEndpoint));
        }
    }
    Ok(AwsConfig {
        region: a.region,
        endpoint_url: a.endpoint_url,
        profile: a.profile,
        ca_file: a.ca_file,
    })
}

/// Whether a URL points at this machine (emulators in tests).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn check_policy(at: &str, p: DuePolicy) -> Result<(), String> {
    if p.renew_before.is_zero() || p.renew_before >= TOKEN_LIFETIME {
        return Err(format!(
            "{at}.renew_before must be more than 0 and less than 24h, the token lifetime (got {})",
            humantime::format_duration(p.renew_before)
        ));
    }
    if p.min_interval >= TOKEN_LIFETIME {
        return Err(format!(
            "{at}.min_interval must be less than 24h (got {})",
            humantime::format_duration(p.min_interval)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const README_EXAMPLE: &str = r#"
[deepvue]
base_url = "https://production.deepvue.tech"   # the default; https only
# ca_file = "/etc/ssl/private-ca.pem"          # optional extra trust anchor

[rotation]
renew_before = "12h"

[[tokens]]
name = "prod"
credentials = { backend = "env" }
store = { backend = "file", path = "/var/lib/deepvue-rotator/prod" }
"#;

    fn message(text: &str) -> String {
        parse(text, "test.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn the_issue_example_works_verbatim() {
        let c = parse(README_EXAMPLE, "test.toml");
        let c = c.as_ref().map(|c| {
            (
                c.tokens.len(),
                c.tokens[0].policy.renew_before,
                c.concurrency,
            )
        });
        assert_eq!(c.ok(), Some((1, Duration::from_secs(43200), 8)));
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let m = message(&README_EXAMPLE.replace("renew_before = \"12h\"", "renew_befor = \"12h\""));
        assert!(m.contains("rotation") && m.contains("renew_befor"), "{m}");
        let m = message(&README_EXAMPLE.replace("path = ", "pathx = "));
        assert!(m.contains("tokens[0].store") && m.contains("pathx"), "{m}");
        let m = message(&format!("{README_EXAMPLE}\n[extra]\nx = 1\n"));
        assert!(m.contains("extra"), "{m}");
    }

    #[test]
    fn inline_secrets_are_refused_with_where_they_belong() {
        let m = message(&README_EXAMPLE.replace(
            "credentials = { backend = \"env\" }",
            "credentials = { backend = \"env\", client_secret = \"s3cr3t-value\" }",
        ));
        assert!(m.contains("tokens[0].credentials.client_secret"), "{m}");
        assert!(m.contains("environment variables"), "{m}");
        assert!(!m.contains("s3cr3t-value"), "{m}");
        let m = message(&format!("access_token = \"abc\"\n{README_EXAMPLE}"));
        assert!(m.contains("`access_token`"), "{m}");
    }

    #[test]
    fn same_store_under_two_spellings_is_caught() {
        let two = format!(
            "{}\n[[tokens]]\nname = \"b\"\ncredentials = {{ backend = \"env\" }}\nstore = {{ backend = \"file\", path = \"/var/lib/deepvue-rotator/./x/../prod/\" }}\n",
            README_EXAMPLE
        );
        assert!(message(&two).contains("already used"), "{}", message(&two));
        let rel = "[[tokens]]\nname = \"a\"\ncredentials = { backend = \"env\" }\nstore = { backend = \"file\", path = \"st\" }\n\
                   [[tokens]]\nname = \"b\"\ncredentials = { backend = \"env\" }\nstore = { backend = \"file\", path = \"./st\" }\n";
        assert!(message(rel).contains("already used"), "{}", message(rel));
    }

    #[test]
    fn urls_in_errors_never_carry_user_info_or_query() {
        let m = message(&README_EXAMPLE.replace(
            "https://production.deepvue.tech\"",
            "http://user:SENTINELPW@production.deepvue.tech/?x-api-key=SENTINELKEY\"",
        ));
        assert!(m.contains("http://production.deepvue.tech/"), "{m}");
        assert!(!m.contains("SENTINEL"), "{m}");
        let m = message(&README_EXAMPLE.replace(
            "https://production.deepvue.tech\"",
            "https://production.deepvue.tech/?x-api-key=SENTINELKEY\"",
        ));
        assert!(m.contains("query") && !m.contains("SENTINEL"), "{m}");
    }

    #[test]
    fn http_base_url_is_a_config_error() {
        let m = message(&README_EXAMPLE.replace("https://production", "http://production"));
        assert!(m.contains("https://"), "{m}");
    }

    #[test]
    fn bad_values_are_named() {
        let m = message(&README_EXAMPLE.replace("\"12h\"", "\"soon\""));
        assert!(m.contains("renew_before") && m.contains("soon"), "{m}");
        let m = message(&README_EXAMPLE.replace("\"12h\"", "\"25h\""));
        assert!(m.contains("less than 24h"), "{m}");
        let m = message(&README_EXAMPLE.replace("\"prod\"", "\"bad name\""));
        assert!(m.contains("tokens[0].name"), "{m}");
        let dup = format!(
            "{README_EXAMPLE}\n[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"env\" }}\nstore = {{ backend = \"file\", path = \"/x\" }}\n"
        );
        assert!(message(&dup).contains("used twice"));
        let same_store = dup.replace("name = \"prod\"\ncredentials = { backend = \"env\" }\nstore = { backend = \"file\", path = \"/x\" }", "name = \"two\"\ncredentials = { backend = \"env\" }\nstore = { backend = \"file\", path = \"/var/lib/deepvue-rotator/prod\" }");
        assert!(
            message(&same_store).contains("already used"),
            "{}",
            message(&same_store)
        );
        assert!(message("[deepvue]\n").contains("no [[tokens]]"));
        assert!(message("[deepvue\n").contains("invalid TOML"));
        let m = message(&README_EXAMPLE.replace("backend = \"file\"", "backend = \"floppy\""));
        assert!(m.contains("tokens[0].store") && m.contains("floppy"), "{m}");
    }
}

#[cfg(test)]
mod aws_tests {
    use super::*;

    fn message(text: &str) -> String {
        parse(text, "t.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    const AWS: &str = "[[tokens]]\nname = \"a\"\ncredentials = { backend = \"aws\", secret_id = \"deepvue/creds\" }\nstore = { backend = \"aws\", secret_id = \"deepvue/token\" }\n";

    #[test]
    fn aws_backends_parse_and_validate() {
        assert_eq!(message(AWS), "");
        // One secret as name and as ARN is one store.
        let dup = format!(
            "{AWS}[[tokens]]\nname = \"b\"\ncredentials = {{ backend = \"env\" }}\nstore = {{ backend = \"aws\", secret_id = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:deepvue/token-AbC123\" }}\n"
        );
        assert!(
            message(&dup).contains("already used by another token"),
            "{}",
            message(&dup)
        );
        // The credentials secret cannot be the token store.
        let same = AWS.replace("deepvue/token", "deepvue/creds");
        assert!(
            message(&same).contains("also the token store"),
            "{}",
            message(&same)
        );
        // kms_key_id / tags only with create_if_missing.
        let kms = AWS.replace(
            "\"deepvue/token\" }",
            "\"deepvue/token\", kms_key_id = \"alias/x\" }",
        );
        assert!(
            message(&kms).contains("create_if_missing"),
            "{}",
            message(&kms)
        );
        let ok = AWS.replace(
            "\"deepvue/token\" }",
            "\"deepvue/token\", create_if_missing = true, kms_key_id = \"alias/x\", tags = { team = \"p\" } }",
        );
        assert_eq!(message(&ok), "");
        let bad_arn = AWS.replace("deepvue/token", "arn:aws:nope");
        assert!(
            message(&bad_arn).contains("not one"),
            "{}",
            message(&bad_arn)
        );
        let reserved = AWS.replace(
            "\"deepvue/token\" }",
            "\"deepvue/token\", create_if_missing = true, tags = { \"deepvue-rotator:state:0\" = \"x\" } }",
        );
        assert!(
            message(&reserved).contains("reserved"),
            "{}",
            message(&reserved)
        );
        let empty_key = AWS.replace(
            "\"deepvue/creds\" }",
            "\"deepvue/creds\", client_secret_key = \"\" }",
        );
        assert!(
            message(&empty_key).contains("client_secret_key is empty"),
            "{}",
            message(&empty_key)
        );
    }
}
