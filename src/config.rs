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
}

impl ConfigError {
    fn new(origin: &str, message: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.to_string(),
            message: message.into(),
        }
    }
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
}

impl StoreConfig {
    /// Backend name and secret id, for messages.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            StoreConfig::File { path, .. } => ("file", path.display().to_string()),
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
    /// `[[tokens]]`.
    pub tokens: Vec<TokenConfig>,
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
        .map_err(|m| ConfigError::new(origin, m))?;
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
        let base_url = Url::parse(base)
            .map_err(|e| err(format!("deepvue.base_url `{base}` is not a URL ({e})")))?;
        if base_url.scheme() != "https" {
            return Err(err(format!(
                "deepvue.base_url must use https:// (got `{base}`); credentials are never sent \
                 over plain HTTP"
            )));
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
        let lock_timeout = positive(
            "rotation.lock_timeout",
            r.lock_timeout,
            Duration::from_secs(60),
        )?;

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
        Ok(Config {
            origin: origin.to_string(),
            deepvue,
            concurrency,
            lock_timeout,
            tokens,
        })
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
