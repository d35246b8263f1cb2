//! Client credentials: the redacting type that holds them, the source contract every
//! credentials backend implements, and the one parser of the `{client_id, client_secret}` JSON.

use async_trait::async_trait;
use secrecy::SecretString;

use super::error::ErrorKind;

/// A Deepvue client id and secret. `Debug` prints neither.
pub struct Credentials {
    /// The client id (treated as a secret too: it identifies the paying account).
    pub client_id: SecretString,
    /// The client secret; Deepvue also uses it as the `x-api-key` header value.
    pub client_secret: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([REDACTED])")
    }
}

/// Reading credentials failed. Names the backend and source, never a value.
#[derive(Debug, thiserror::Error)]
#[error("{backend} credentials `{source_id}`: {message}")]
pub struct CredentialsError {
    /// Backend name (`env`, `file`, …).
    pub backend: &'static str,
    /// Which variable(s), file or secret.
    pub source_id: String,
    /// What is wrong.
    pub message: String,
    /// Its class.
    pub kind: ErrorKind,
    /// The underlying failure, when there is one.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl CredentialsError {
    /// An error without an underlying cause.
    pub fn new(
        backend: &'static str,
        source_id: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        CredentialsError {
            backend,
            source_id: source_id.into(),
            message: message.into(),
            kind,
            source: None,
        }
    }

    /// Keep `source` in the chain.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// Where credentials are kept, for the production checklist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Custody {
    /// Environment variables set by the service manager.
    Environment,
    /// A secret manager (Secrets Manager, Vault, Secret Manager, systemd credentials).
    SecretManager,
    /// A plain file on disk.
    LooseFile,
}

/// A source of client credentials.
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// Backend name and source id, for messages (`env:DEEPVUE_CLIENT_ID`, …).
    fn describe(&self) -> String;
    /// Where the credentials are kept (the production checklist prefers a secret manager).
    fn custody(&self) -> Custody;
    /// Read the credentials now.
    async fn load(&self) -> Result<Credentials, CredentialsError>;
}

/// The JSON keys holding the two values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialKeys {
    /// Key of the client id (default `client_id`).
    pub client_id: String,
    /// Key of the client secret (default `client_secret`).
    pub client_secret: String,
}

impl Default for CredentialKeys {
    fn default() -> Self {
        CredentialKeys {
            client_id: "client_id".into(),
            client_secret: "client_secret".into(),
        }
    }
}

impl CredentialKeys {
    /// The defaults, with a config's `client_id_key` / `client_secret_key` where given.
    pub fn named(client_id: Option<&str>, client_secret: Option<&str>) -> Self {
        let defaults = CredentialKeys::default();
        CredentialKeys {
            client_id: client_id.map_or(defaults.client_id, str::to_string),
            client_secret: client_secret.map_or(defaults.client_secret, str::to_string),
        }
    }
}

/// Parse `{"client_id": "…", "client_secret": "…"}` (key names per `keys`; other keys are
/// ignored). The two values move straight into `SecretString`s. Errors name the field, never a
/// value.
pub fn parse_credentials_json(bytes: &[u8], keys: &CredentialKeys) -> Result<Credentials, String> {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|e| {
            format!(
                "not a JSON object with `{}` and `{}` ({:?} error at line {} column {})",
                keys.client_id,
                keys.client_secret,
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
    let mut field = |name: &str| -> Result<SecretString, String> {
        match map.remove(name) {
            Some(serde_json::Value::String(v)) if !v.trim().is_empty() => Ok(SecretString::from(v)),
            Some(serde_json::Value::String(_)) => Err(format!("field `{name}` is empty")),
            Some(_) => Err(format!("field `{name}` is not a string")),
            None => Err(format!("field `{name}` is missing")),
        }
    };
    Ok(Credentials {
        client_id: field(&keys.client_id)?,
        client_secret: field(&keys.client_secret)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[track_caller]
    fn check(json: &str, expect: &str) {
        let got = match parse_credentials_json(json.as_bytes(), &CredentialKeys::default()) {
            Ok(c) => format!("ok {}", c.client_secret.expose_secret()),
            Err(e) => e,
        };
        assert!(got.contains(expect), "{got}");
        assert!(
            !got.contains("SENTINEL") || expect.contains("SENTINEL"),
            "{got}"
        );
    }

    #[test]
    fn one_parser_names_fields_never_values() {
        check(
            r#"{"client_id":"id-1","client_secret":"SENTINEL-s"}"#,
            "ok SENTINEL-s",
        );
        check(
            r#"{"client_id":"id-1","client_secret":""}"#,
            "field `client_secret` is empty",
        );
        check(
            r#"{"client_secret":"SENTINEL-s"}"#,
            "field `client_id` is missing",
        );
        check(
            r#"{"client_id":5,"client_secret":"SENTINEL-s"}"#,
            "field `client_id` is not a string",
        );
        check(r#"client_secret=SENTINEL-s"#, "not a JSON object");
        assert_eq!(
            format!(
                "{:?}",
                Credentials {
                    client_id: "a".into(),
                    client_secret: "SENTINEL".into()
                }
            ),
            "Credentials([REDACTED])"
        );
    }
}
