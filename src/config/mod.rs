//! The configuration: one TOML file, validated up front.
//!
//! Parsing goes in three phases: [`secrets::reject_inline_secrets`] refuses any secret-looking
//! key with a plain value; `serde_path_to_error` deserialises the root schema (private `Raw*`
//! types with `deny_unknown_fields`, so errors name the key path) with the backend and sink
//! config types embedded as they are; then [`Config`] is validated — the root's own ranges
//! here, each backend's and sink's entries by their own `validate`, and the cross-token checks
//! (unique names, one store per token, credentials never the token's own store).
//!
//! **Dependency rule:** `config` composes backend, sink and engine config types; nothing below
//! it (`core`, `engine`, `backends`, `sinks`) imports it. Apart from the backends that read
//! credentials themselves, this is the only module that reads the environment for
//! configuration.

pub mod agent;
pub mod audit;
pub mod daemon;
mod secrets;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backends::{self, CredentialsConfig, Sections, StoreConfig};
use crate::core::alert::AlertPolicy;
use crate::core::decide::DuePolicy;
use crate::core::document::TOKEN_LIFETIME;
use crate::engine::deepvue::{DEFAULT_BASE_URL, DeepvueConfig, RequestEncoding, RetryPolicy};
use crate::engine::egress::{DEFAULT_PROBE_URLS, EgressConfig};
use crate::engine::hooks::{HookSignal, RotateHook};
use crate::engine::rotator::Settings;
use crate::sinks::SinkConfig;
use crate::support::duration::Dur;
use crate::support::net::{IpFamily, parse_ip_or_net};
pub use crate::support::problem::{Problem, ProblemCategory};
use crate::support::text::shown_url;

/// Path of the config file, when `--config` is not given.
pub const ENV_CONFIG_PATH: &str = "DEEPVUE_ROTATOR_CONFIG";
/// The whole config inline (serverless deployments).
pub const ENV_CONFIG_TOML: &str = "DEEPVUE_ROTATOR_CONFIG_TOML";

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

impl ConfigError {
    fn new(origin: &str, message: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.to_string(),
            message: message.into(),
            category: ProblemCategory::Invalid,
        }
    }

    fn with_category(mut self, category: ProblemCategory) -> Self {
        self.category = category;
        self
    }

    fn from_problem(origin: &str, p: Problem) -> Self {
        ConfigError {
            origin: origin.to_string(),
            message: p.message,
            category: p.category,
        }
    }
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
    alerts: Vec<SinkConfig>,
    #[serde(default)]
    daemon: daemon::RawDaemon,
    #[serde(default)]
    agent: agent::RawAgent,
    #[serde(default)]
    audit: audit::RawAudit,
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
    store: Option<StoreConfig>,
    /// Fan-out: the primary first, then the replicas (instead of `store`).
    stores: Option<Vec<StoreConfig>>,
    renew_before: Option<Dur>,
    min_interval: Option<Dur>,
    /// Publish the client secret beside the token (`x_api_key`).
    #[serde(default)]
    publish_api_key: bool,
    /// What to run after a write.
    on_rotate: Option<RawHook>,
}

/// `on_rotate = { command = [...], timeout = "30s", pid_file = "...", signal = "HUP" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    command: Option<Vec<String>>,
    timeout: Option<Dur>,
    pid_file: Option<PathBuf>,
    signal: Option<String>,
}

/// The longest an `on_rotate` hook may take.
const HOOK_TIMEOUT_MAX: Duration = Duration::from_secs(600);

impl RawHook {
    fn validate(self, at: &str) -> Result<RotateHook, String> {
        let at = format!("{at}.on_rotate");
        let given = self.command.is_some();
        let command = self.command.unwrap_or_default();
        if command.first().is_some_and(|p| p.trim().is_empty()) || (given && command.is_empty()) {
            return Err(format!(
                "{at}.command must be a non-empty argv list, e.g. [\"systemctl\", \"reload\", \"app\"] (no shell)"
            ));
        }
        if command.iter().any(|a| a.contains('\0')) {
            return Err(format!("{at}.command holds a NUL character"));
        }
        if self.signal.is_some() && self.pid_file.is_none() {
            return Err(format!(
                "{at}.signal needs `pid_file` (the process to signal)"
            ));
        }
        if command.is_empty() && self.pid_file.is_none() {
            return Err(format!(
                "{at}: give `command` (an argv list) and/or `pid_file` (a process to signal)"
            ));
        }
        if self.pid_file.as_ref().is_some_and(|p| !p.is_absolute()) {
            return Err(format!("{at}.pid_file must be an absolute path"));
        }
        let signal = match &self.signal {
            None => HookSignal::Hup,
            Some(s) => HookSignal::parse(s).ok_or_else(|| {
                format!("{at}.signal `{s}` is not one of HUP, USR1, USR2, TERM, INT")
            })?,
        };
        let timeout = self.timeout.map_or(Duration::from_secs(30), |d| d.0);
        if timeout.is_zero() || timeout > HOOK_TIMEOUT_MAX {
            return Err(format!("{at}.timeout must be more than 0 and at most 10m"));
        }
        Ok(RotateHook {
            command,
            timeout,
            pid_file: self.pid_file,
            signal,
        })
    }
}

/// `[alerting]` plus the `[[alerts]]` sinks.
#[derive(Clone, Debug)]
pub struct AlertingConfig {
    /// Wording, escalation and repetition.
    pub policy: AlertPolicy,
    /// Extra trust anchor for sink endpoints.
    pub ca_file: Option<PathBuf>,
    /// The sinks, with their (unique) names.
    pub sinks: Vec<(String, SinkConfig)>,
}

/// One `[[tokens]]` entry.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// Unique name (`[A-Za-z0-9._-]`, ≤ 64).
    pub name: String,
    /// Where the client credentials come from.
    pub credentials: CredentialsConfig,
    /// Where the token document goes: the primary store, which decisions and the mint are
    /// made from and conditional on.
    pub store: StoreConfig,
    /// Stores the primary's current token is copied to (`stores = [primary, replica, …]`).
    pub replicas: Vec<StoreConfig>,
    /// When it is due.
    pub policy: DuePolicy,
    /// Whether the stored document also carries the client secret as `x_api_key` (off by
    /// default: the token's readers could then mint).
    pub publish_api_key: bool,
    /// What to run after a write this runner made.
    pub on_rotate: Option<RotateHook>,
}

impl TokenConfig {
    /// The primary store, then the replicas.
    pub fn all_stores(&self) -> impl Iterator<Item = &StoreConfig> {
        std::iter::once(&self.store).chain(&self.replicas)
    }
}

/// At most this many stores per token (the primary included).
pub const MAX_STORES: usize = 8;

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it was read from (a path or an environment variable name).
    pub origin: String,
    /// `[deepvue]`.
    pub deepvue: DeepvueConfig,
    /// Tokens processed at once (default 8).
    pub concurrency: usize,
    /// How long to wait for another runner's rotation lock.
    pub lock_timeout: Duration,
    /// How often the job is scheduled, if stated (lets `check` judge `renew_before`).
    pub run_every: Option<Duration>,
    /// `[[tokens]]`.
    pub tokens: Vec<TokenConfig>,
    /// `[egress]`.
    pub egress: EgressConfig,
    /// `[alerting]` and `[[alerts]]`.
    pub alerting: AlertingConfig,
    /// The backends' own tables (`[aws]`).
    pub backends: Sections,
    /// `[daemon]`: used by the daemon mode only.
    pub daemon: daemon::DaemonConfig,
    /// `[agent]`: used by the agent mode only.
    pub agent: agent::AgentConfig,
    /// `[audit]`: the record of every rotation attempt.
    pub audit: audit::AuditConfig,
}

impl Config {
    /// Whether any token is written to more than one store.
    pub fn fans_out(&self) -> bool {
        self.tokens.iter().any(|t| !t.replicas.is_empty())
    }
}

impl Config {
    /// What the rotator needs.
    pub fn settings(&self) -> Settings {
        Settings {
            deepvue: self.deepvue.clone(),
            egress: self.egress.clone(),
            alerting: self.alerting.policy.clone(),
            concurrency: self.concurrency,
        }
    }
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
    let mut table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::new(origin, format!("invalid TOML: {}", e.message())))?;
    let mut path = Vec::new();
    secrets::reject_inline_secrets(&toml::Value::Table(table.clone()), &mut path)
        .map_err(|m| ConfigError::from_problem(origin, Problem::inline_secret(m)))?;
    // The backends' own tables go to the backend registry; the rest is the root schema.
    let mut sections = toml::Table::new();
    for name in backends::SECTION_NAMES {
        if let Some(v) = table.remove(*name) {
            if let Some(feature) = backends::missing_feature(name) {
                return Err(ConfigError::new(
                    origin,
                    format!(
                        "[{name}] needs the `{feature}` backend, which this binary was built \
                         without (build with --features {feature})"
                    ),
                ));
            }
            sections.insert((*name).to_string(), v);
        }
    }
    let sections: Sections = deserialize(toml::Value::Table(sections), origin)?;
    let raw: RawConfig = deserialize(toml::Value::Table(table), origin)?;
    Config::validate(raw, sections, origin)
}

fn deserialize<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    origin: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner().message().to_string();
        let hint = not_compiled_hint(&inner);
        let msg = if at == "." || at.is_empty() {
            format!("{inner}{hint}")
        } else {
            format!("at `{at}`: {inner}{hint}")
        };
        ConfigError::new(origin, msg)
    })
}

/// "unknown variant `aws`" on a binary built without that backend: say which feature.
fn not_compiled_hint(message: &str) -> String {
    message
        .strip_prefix("unknown variant `")
        .and_then(|rest| rest.split('`').next())
        .and_then(backends::missing_feature)
        .map(|f| format!(" (the `{f}` backend is not in this binary; build with --features {f})"))
        .unwrap_or_default()
}

impl Config {
    /// The root's own defaults and ranges, each section's and entry's own `validate`, then the
    /// checks across tokens.
    fn validate(raw: RawConfig, sections: Sections, origin: &str) -> Result<Config, ConfigError> {
        let problem = |p: Problem| ConfigError::from_problem(origin, p);
        let deepvue = raw.deepvue.validate(origin)?;
        let rotation = raw.rotation.validate(origin, &deepvue)?;
        let tokens = validate_tokens(raw.tokens, rotation.policy, origin)?;
        let egress = validate_egress(raw.egress, origin)?;
        let alerting = validate_alerting(raw.alerting, raw.alerts, origin)?;
        sections.validate().map_err(problem)?;
        let daemon = raw.daemon.validate(origin)?;
        let agent = raw.agent.validate(origin)?;
        let audit = raw.audit.validate(origin)?;
        if let Some(names) = &agent.tokens {
            for n in names {
                if !tokens.iter().any(|t| &t.name == n) {
                    return Err(ConfigError::new(
                        origin,
                        format!("agent.tokens names `{n}`, which is no [[tokens]] name"),
                    ));
                }
            }
        }
        Ok(Config {
            origin: origin.to_string(),
            deepvue,
            concurrency: rotation.concurrency,
            lock_timeout: rotation.lock_timeout,
            run_every: rotation.run_every,
            tokens,
            egress,
            alerting,
            backends: sections,
            daemon,
            agent,
            audit,
        })
    }
}

/// `[rotation]`, validated.
struct Rotation {
    policy: DuePolicy,
    concurrency: usize,
    lock_timeout: Duration,
    run_every: Option<Duration>,
}

impl RawDeepvue {
    fn validate(self, origin: &str) -> Result<DeepvueConfig, ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        let problem = |p: Problem| ConfigError::from_problem(origin, p);
        let d = self;
        let base = d.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let base_url = crate::support::url::parse("deepvue.base_url", base).map_err(problem)?;
        let base = shown_url(base);
        if base_url.scheme() != "https" {
            return Err(err(format!(
                "deepvue.base_url must use https:// (got `{base}`); credentials are never sent \
                 over plain HTTP"
            ))
            .with_category(ProblemCategory::InsecureEndpoint));
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
        // Every duration is bounded here, so nothing downstream can overflow a clock.
        let positive = |name: &str, v: Option<Dur>, default: Duration, max: Duration| {
            bounded(origin, name, v, default, Duration::from_nanos(1), max)
        };
        Ok(DeepvueConfig {
            base_url,
            ca_file: d.ca_file,
            request_encoding: d.request_encoding.unwrap_or_default(),
            connect_timeout: positive(
                "deepvue.connect_timeout",
                d.connect_timeout,
                Duration::from_secs(10),
                MAX_CONNECT_TIMEOUT,
            )?,
            request_timeout: positive(
                "deepvue.request_timeout",
                d.request_timeout,
                Duration::from_secs(30),
                MAX_REQUEST_TIMEOUT,
            )?,
            ip_family: d.ip_family.unwrap_or_default(),
            retry: RetryPolicy {
                max_attempts,
                deadline: positive(
                    "deepvue.retry_deadline",
                    d.retry_deadline,
                    Duration::from_secs(120),
                    MAX_RETRY_DEADLINE,
                )?,
                backoff_base: positive(
                    "deepvue.backoff_base",
                    d.backoff_base,
                    Duration::from_secs(1),
                    MAX_BACKOFF,
                )?,
                backoff_max: positive(
                    "deepvue.backoff_max",
                    d.backoff_max,
                    Duration::from_secs(30),
                    MAX_BACKOFF,
                )?,
            },
        })
    }
}

impl RawRotation {
    fn validate(self, origin: &str, deepvue: &DeepvueConfig) -> Result<Rotation, ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        let positive = |name: &str, v: Option<Dur>, default: Duration, max: Duration| {
            bounded(origin, name, v, default, Duration::from_nanos(1), max)
        };
        let r = self;
        let policy = DuePolicy {
            renew_before: r
                .renew_before
                .map_or(Duration::from_secs(12 * 3600), |d| d.0),
            min_interval: r.min_interval.map_or(Duration::from_secs(600), |d| d.0),
        };
        check_policy("rotation", policy).map_err(err)?;
        let concurrency = r.concurrency.unwrap_or(8);
        if !(1..=1024).contains(&concurrency) {
            return Err(err(format!(
                "rotation.concurrency must be between 1 and 1024 (got {concurrency})"
            )));
        }
        // A runner may hold the rotation lock for a whole authorize retry budget, then deliver
        // its alerts (a sink may take ~50 s: 3 attempts of 10 s plus waits) still holding it;
        // waiting less than that would fail a run that should simply find the token fresh.
        let longest_hold = deepvue
            .retry
            .deadline
            .saturating_add(deepvue.request_timeout);
        let lock_timeout = positive(
            "rotation.lock_timeout",
            r.lock_timeout,
            longest_hold.saturating_add(Duration::from_secs(90)),
            MAX_LOCK_TIMEOUT,
        )?;
        if lock_timeout <= longest_hold {
            return Err(err(format!(
                "rotation.lock_timeout ({}) must be longer than deepvue.retry_deadline + \
                 deepvue.request_timeout ({}): another runner may hold the lock that long",
                humantime::format_duration(lock_timeout),
                humantime::format_duration(longest_hold)
            )));
        }
        let run_every = match r.run_every {
            Some(d) => Some(positive("rotation.run_every", Some(d), d.0, MAX_RUN_EVERY)?),
            None => None,
        };
        Ok(Rotation {
            policy,
            concurrency,
            lock_timeout,
            run_every,
        })
    }
}

impl RawToken {
    /// One `[[tokens]]` entry at `at`; `default` is `[rotation]`'s policy.
    fn validate(
        self,
        at: &str,
        default: DuePolicy,
        origin: &str,
    ) -> Result<TokenConfig, ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        let problem = |p: Problem| ConfigError::from_problem(origin, p);
        let t = self;
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
        t.credentials
            .validate(&format!("{at}.credentials"))
            .map_err(problem)?;
        let (store, replicas) = match (t.store, t.stores) {
            (Some(store), None) => {
                store.validate(&format!("{at}.store")).map_err(problem)?;
                (store, Vec::new())
            }
            (None, Some(stores)) => {
                if stores.is_empty() || stores.len() > MAX_STORES {
                    return Err(err(format!(
                        "{at}.stores must list 1 to {MAX_STORES} stores (the primary first), \
                         not {}",
                        stores.len()
                    )));
                }
                for (i, s) in stores.iter().enumerate() {
                    s.validate(&format!("{at}.stores[{i}]")).map_err(problem)?;
                }
                let mut stores = stores.into_iter();
                let Some(primary) = stores.next() else {
                    return Err(err(format!("{at}.stores is empty")));
                };
                (primary, stores.collect())
            }
            (Some(_), Some(_)) => {
                return Err(err(format!(
                    "{at}: give either `store` (one store) or `stores` (the primary first, then \
                     replicas), not both"
                )));
            }
            (None, None) => {
                return Err(err(format!(
                    "{at}: missing `store` (or `stores = [primary, replica, …]`)"
                )));
            }
        };
        let policy = DuePolicy {
            renew_before: t.renew_before.map_or(default.renew_before, |d| d.0),
            min_interval: t.min_interval.map_or(default.min_interval, |d| d.0),
        };
        check_policy(at, policy).map_err(err)?;
        let on_rotate = match t.on_rotate {
            Some(h) => Some(h.validate(at).map_err(err)?),
            None => None,
        };
        Ok(TokenConfig {
            name: t.name,
            credentials: t.credentials,
            store,
            replicas,
            policy,
            publish_api_key: t.publish_api_key,
            on_rotate,
        })
    }
}

/// Every `[[tokens]]` entry, then what holds across them: unique names, one store per token
/// (by identity, however it is spelled), a credentials secret never its token's store.
fn validate_tokens(
    raw: Vec<RawToken>,
    default: DuePolicy,
    origin: &str,
) -> Result<Vec<TokenConfig>, ConfigError> {
    let err = |m: String| ConfigError::new(origin, m);
    if raw.is_empty() {
        return Err(err(
            "no [[tokens]] configured; add at least one with name, credentials and store".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut stores = HashSet::new();
    let mut loosely: std::collections::HashMap<(&'static str, String), bool> =
        std::collections::HashMap::new();
    let mut tokens = Vec::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        let at = format!("tokens[{i}]");
        let t = t.validate(&at, default, origin)?;
        if !names.insert(t.name.clone()) {
            return Err(err(format!("{at}.name `{}` is used twice", t.name)));
        }
        for (k, store) in t.all_stores().enumerate() {
            let key_at = if t.replicas.is_empty() {
                format!("{at}.store")
            } else {
                format!("{at}.stores[{k}]")
            };
            let store_key = store.identity();
            let loose = store.loose_identity();
            if t.credentials.identity().as_ref() == Some(&loose) {
                return Err(err(format!(
                    "{at}: the credentials secret `{}` is also the token store (or may be: \
                     the same name); the first rotation would overwrite the credentials. Use \
                     two secrets",
                    store_key.1
                )));
            }
            // One store however spelled; a store whose identity is partly known only at run
            // time (a plain AWS name, a Kubernetes entry without a namespace) collides with
            // every store of the same loose identity.
            let unqualified = store_key == loose;
            let clash = stores.contains(&store_key)
                || loosely
                    .get(&loose)
                    .is_some_and(|any_unqualified: &bool| unqualified || *any_unqualified);
            if clash {
                return Err(err(format!(
                    "{key_at}: {} store `{}` is already used by another token (or listed \
                     twice in this one's stores)",
                    store_key.0, store_key.1
                )));
            }
            stores.insert(store_key.clone());
            let e = loosely.entry(loose).or_insert(false);
            *e |= unqualified;
        }
        tokens.push(t);
    }
    Ok(tokens)
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
        probe_urls.push(
            crate::support::url::https_url(&format!("egress.probe_urls[{i}]"), u)
                .map_err(|p| ConfigError::from_problem(origin, p))?,
        );
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
    alerts: Vec<SinkConfig>,
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
    let escalate_before = bounded(
        origin,
        "alerting.escalate_before",
        a.escalate_before,
        Duration::from_secs(6 * 3600),
        Duration::ZERO,
        TOKEN_LIFETIME,
    )?;
    let repeat_every = bounded(
        origin,
        "alerting.repeat_every",
        a.repeat_every,
        Duration::from_secs(4 * 3600),
        Duration::from_nanos(1),
        MAX_REPEAT_EVERY,
    )?;
    let mut sinks = Vec::new();
    let mut names = HashSet::new();
    for (i, sink) in alerts.into_iter().enumerate() {
        let at = format!("alerts[{i}]");
        sink.validate(&at)
            .map_err(|p| ConfigError::from_problem(origin, p))?;
        let name = sink.name(i);
        if !names.insert(name.clone()) {
            return Err(err(format!("{at}.name `{name}` is used twice")));
        }
        sinks.push((name, sink));
    }
    Ok(AlertingConfig {
        policy: AlertPolicy {
            environment,
            escalate_before,
            repeat_every,
        },
        ca_file: a.ca_file,
        sinks,
    })
}

/// Largest `deepvue.connect_timeout`.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Largest `deepvue.request_timeout`.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Largest `deepvue.retry_deadline`.
pub const MAX_RETRY_DEADLINE: Duration = Duration::from_secs(3600);
/// Largest `deepvue.backoff_base` / `deepvue.backoff_max`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Largest `rotation.lock_timeout`.
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Largest `rotation.run_every` (a token lives 24h).
pub const MAX_RUN_EVERY: Duration = TOKEN_LIFETIME;
/// Largest `alerting.repeat_every`.
pub const MAX_REPEAT_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

/// `name`'s value (or `default`) within `[min, max]`, or an error naming the key and limits.
fn bounded(
    origin: &str,
    name: &str,
    v: Option<Dur>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let v = v.map_or(default, |d| d.0);
    if v < min || v > max {
        let low = if min.is_zero() {
            "at least 0".to_string()
        } else {
            "greater than zero".to_string()
        };
        return Err(ConfigError::new(
            origin,
            format!(
                "{name} must be {low} and at most {} (got {})",
                humantime::format_duration(max),
                humantime::format_duration(v)
            ),
        ));
    }
    Ok(v)
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
    fn every_duration_is_bounded_and_the_message_names_key_and_limit() {
        for (section, key, limit) in [
            ("deepvue", "connect_timeout", "5m"),
            ("deepvue", "request_timeout", "10m"),
            ("deepvue", "retry_deadline", "1h"),
            ("deepvue", "backoff_base", "1h"),
            ("deepvue", "backoff_max", "1h"),
            ("rotation", "lock_timeout", "6h"),
            ("rotation", "run_every", "1day"),
            ("alerting", "escalate_before", "1day"),
            ("alerting", "repeat_every", "7days"),
        ] {
            let text = format!(
                "[{section}]\n{key} = \"300000000000y\"\n\n[[tokens]]\nname = \"prod\"\n\
                 credentials = {{ backend = \"env\" }}\nstore = {{ backend = \"file\", path = \"/x\" }}\n"
            );
            let m = message(&text);
            assert!(
                m.contains(&format!("{section}.{key} must be"))
                    && m.contains(&format!("at most {limit}")),
                "{section}.{key}: {m}"
            );
        }
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

/// No config text, and no value for any key, can panic the loader (issue: absurd durations
/// overflowed `Instant`/`Duration` arithmetic).
#[cfg(test)]
mod no_panic {
    use super::*;
    use proptest::prelude::*;

    const KEYS: &[(&str, &str)] = &[
        ("deepvue", "base_url"),
        ("deepvue", "ca_file"),
        ("deepvue", "request_encoding"),
        ("deepvue", "connect_timeout"),
        ("deepvue", "request_timeout"),
        ("deepvue", "max_attempts"),
        ("deepvue", "ip_family"),
        ("deepvue", "retry_deadline"),
        ("deepvue", "backoff_base"),
        ("deepvue", "backoff_max"),
        ("rotation", "renew_before"),
        ("rotation", "min_interval"),
        ("rotation", "concurrency"),
        ("rotation", "lock_timeout"),
        ("rotation", "run_every"),
        ("egress", "probe"),
        ("egress", "probe_timeout"),
        ("egress", "expected_ips"),
        ("egress", "probe_urls"),
        ("alerting", "environment"),
        ("alerting", "escalate_before"),
        ("alerting", "repeat_every"),
        ("alerting", "ca_file"),
        ("token", "renew_before"),
        ("token", "min_interval"),
        ("token", "name"),
        ("store", "path"),
        ("store", "keep_versions"),
        ("webhook", "url"),
        ("pagerduty", "url"),
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            // Every magnitude equally often (so values near each unit's overflow edge occur).
            (
                (0u32..=63).prop_flat_map(|bits| 0u64..=(1u64 << bits)),
                prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "M", "y"])
            )
                .prop_map(|(n, u)| format!("\"{n}{u}\"")),
            "\\PC{0,40}".prop_map(|s| toml::Value::String(s).to_string()),
            "(https?|ftp)://[ -~]{0,40}".prop_map(|s| toml::Value::String(s).to_string()),
            prop::collection::vec("[ -~]{0,20}", 0..3).prop_map(|v| toml::Value::Array(
                v.into_iter().map(toml::Value::String).collect()
            )
            .to_string()),
        ]
    }

    fn config_with(section: &str, key: &str, v: &str) -> String {
        let mut deepvue = String::new();
        let mut rest = String::new();
        let mut token = "name = \"prod\"\ncredentials = { backend = \"env\" }\n".to_string();
        let mut store = "backend = \"file\", path = \"/var/lib/deepvue-rotator/prod\"".to_string();
        let mut sink = String::new();
        match section {
            "deepvue" => deepvue = format!("{key} = {v}\n"),
            "token" => token = format!("{token}{key} = {v}\n"),
            "store" => store = format!("backend = \"file\", {key} = {v}"),
            "webhook" => sink = format!("[[alerts]]\nkind = \"webhook\"\n{key} = {v}\n"),
            "pagerduty" => {
                sink = format!(
                    "[[alerts]]\nkind = \"pagerduty\"\nrouting_key = {{ env = \"K\" }}\n{key} = {v}\n"
                )
            }
            other => rest = format!("[{other}]\n{key} = {v}\n"),
        }
        format!("[deepvue]\n{deepvue}\n{rest}\n{sink}\n[[tokens]]\n{token}store = {{ {store} }}\n")
    }

    #[test]
    fn stores_lists_the_primary_first_then_replicas() {
        let msg = |text: &str| {
            parse(text, "t.toml")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let token = "[[tokens]]\nname = \"a\"\ncredentials = { backend = \"env\" }\n";
        let file = |p: &str| format!("{{ backend = \"file\", path = \"/var/lib/d/{p}\" }}");
        let ok = format!("{token}stores = [{}, {}]\n", file("one"), file("two"));
        let c = parse(&ok, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tokens[0].replicas.len(), 1);
        assert_eq!(c.tokens[0].all_stores().count(), 2);
        let both = format!(
            "{token}store = {}\nstores = [{}]\n",
            file("one"),
            file("two")
        );
        assert!(msg(&both).contains("not both"), "{}", msg(&both));
        assert!(msg(token).contains("missing `store`"), "{}", msg(token));
        let empty = format!("{token}stores = []\n");
        assert!(msg(&empty).contains("1 to 8 stores"), "{}", msg(&empty));
        let twice = format!("{token}stores = [{}, {}]\n", file("one"), file("one"));
        assert!(msg(&twice).contains("already used"), "{}", msg(&twice));
        let bad = format!(
            "{token}stores = [{}, {{ backend = \"file\" }}]\n",
            file("one")
        );
        assert!(msg(&bad).contains("stores[1]"), "{}", msg(&bad));
    }

    proptest! {
        #[test]
        fn no_config_text_panics(text in "\\PC{0,300}") {
            let _ = parse(&text, "p.toml");
        }

        #[test]
        fn no_value_of_any_key_panics(k in prop::sample::select(KEYS), v in value()) {
            let _ = parse(&config_with(k.0, k.1, &v), "p.toml");
        }
    }
}

#[cfg(all(test, feature = "aws"))]
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
        // One secret as a full ARN and as a partial one (no suffix) is one store.
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:deepvue/token";
        let dup = format!(
            "[[tokens]]\nname = \"b\"\ncredentials = {{ backend = \"env\" }}\nstores = [{{ backend = \"aws\", secret_id = \"{arn}-AbC123\" }}, {{ backend = \"aws\", secret_id = \"{arn}\" }}]\n"
        );
        assert!(
            message(&dup).contains(
                "tokens[0].stores[1]: aws store `us-east-1/deepvue/token` is already used"
            ),
            "{}",
            message(&dup)
        );
        // A plain name may be in any region: it collides with an ARN of the same name.
        let plain_and_arn = format!(
            "{AWS}[[tokens]]\nname = \"b\"\ncredentials = {{ backend = \"env\" }}\nstore = {{ backend = \"aws\", secret_id = \"{arn}\" }}\n"
        );
        assert!(
            message(&plain_and_arn).contains("already used by another token"),
            "{}",
            message(&plain_and_arn)
        );
        // And credentials named plainly are never the token store written by ARN.
        let creds_arn = AWS.replace(
            "secret_id = \"deepvue/token\"",
            "secret_id = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:deepvue/creds\"",
        );
        assert!(
            message(&creds_arn).contains("also the token store"),
            "{}",
            message(&creds_arn)
        );
        // The same name in two regions is two stores (a fan-out across regions).
        let regions = format!(
            "[[tokens]]\nname = \"b\"\ncredentials = {{ backend = \"env\" }}\nstores = [{{ backend = \"aws\", secret_id = \"{arn}\" }}, {{ backend = \"aws\", secret_id = \"{}\" }}]\n",
            arn.replace("us-east-1", "eu-west-1")
        );
        assert_eq!(message(&regions), "");
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
