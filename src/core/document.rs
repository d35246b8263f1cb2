//! The token document: the JSON contract applications read from the store.
//!
//! ```json
//! {"access_token": "…", "token_type": "bearer", "expiry": "2026-11-29T15:50:18Z", "issued_at": "2026-11-28T15:50:18Z"}
//! ```
//!
//! Times are RFC 3339 in UTC with a `Z` suffix. Readers must ignore unknown fields, so later
//! versions can add some.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::support::text::format_duration;
pub use crate::support::time::{format_time, parse_time};

/// Deepvue tokens live 24 hours.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How far past `issued_at` + [`TOKEN_LIFETIME`] an expiry may lie (Deepvue's clock may run a
/// little ahead of ours); anything later is not believed.
pub const EXPIRY_SLACK: Duration = Duration::from_secs(5 * 60);
/// Longest access token accepted.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest `token_type` accepted.
pub const MAX_TOKEN_TYPE_LEN: usize = 32;

/// An access token is usable as an HTTP header value only if it is 1 to [`MAX_TOKEN_LEN`]
/// visible ASCII characters (`0x21`-`0x7E`). The error never shows the token.
pub fn check_access_token(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty access_token".into());
    }
    if t.len() > MAX_TOKEN_LEN {
        return Err(format!(
            "access_token is longer than {} KiB",
            MAX_TOKEN_LEN / 1024
        ));
    }
    if !t.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(
            "access_token is not a usable header value (only visible ASCII is accepted)".into(),
        );
    }
    Ok(())
}

/// A `token_type` is 1 to [`MAX_TOKEN_TYPE_LEN`] ASCII letters (`bearer`).
pub fn check_token_type(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > MAX_TOKEN_TYPE_LEN || !t.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "token_type is not 1-{MAX_TOKEN_TYPE_LEN} ASCII letters ({} bytes)",
            t.len()
        ));
    }
    Ok(())
}

/// A minted token with its validity window.
pub struct TokenDocument {
    /// The bearer token. Never logged; leaves the process only through a store write or `read`.
    pub access_token: SecretString,
    /// As Deepvue returned it, usually `bearer`.
    pub token_type: String,
    /// When Deepvue says the token stops working (UTC).
    pub expiry: DateTime<Utc>,
    /// When this rotator received it (UTC).
    pub issued_at: DateTime<Utc>,
    /// The client secret, published beside the token for applications (Deepvue's
    /// `x-api-key` header) when the token's `publish_api_key` is on; `None` otherwise.
    pub x_api_key: Option<SecretString>,
}

impl std::fmt::Debug for TokenDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDocument")
            .field("access_token", &"[REDACTED]")
            .field("token_type", &self.token_type)
            .field("expiry", &format_time(self.expiry))
            .field("issued_at", &format_time(self.issued_at))
            .field("x_api_key", &self.x_api_key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Why a stored document could not be used. Never contains document content.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DocumentError(pub String);

#[derive(Deserialize)]
struct RawDocument {
    access_token: Option<SecretString>,
    token_type: Option<String>,
    expiry: Option<String>,
    issued_at: Option<String>,
    x_api_key: Option<SecretString>,
}

impl TokenDocument {
    /// Whether `other` carries the same access token (compared in constant time; the token
    /// never leaves this function).
    pub fn same_token(&self, other: &TokenDocument) -> bool {
        let (a, b) = (
            self.access_token.expose_secret().as_bytes(),
            other.access_token.expose_secret().as_bytes(),
        );
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Serialize for a store write. The result is itself secret (it holds the token); it is
    /// written into a zeroising buffer sized up front (no reallocation leaves a copy behind).
    pub fn to_json(&self) -> SecretString {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            access_token: &'a str,
            token_type: &'a str,
            expiry: String,
            issued_at: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            x_api_key: Option<&'a str>,
        }
        let token = self.access_token.expose_secret();
        let key = self.x_api_key.as_ref().map(ExposeSecret::expose_secret);
        let out = Out {
            access_token: token,
            token_type: &self.token_type,
            expiry: format_time(self.expiry),
            issued_at: format_time(self.issued_at),
            x_api_key: key,
        };
        // JSON escaping grows a visible-ASCII value by at most 2x (`\"`, `\\`); `\u` escapes
        // of control characters (refused in a token) could grow more: then the buffer grows.
        let cap = 2 * token.len() + 2 * key.map_or(0, str::len) + self.token_type.len() * 6 + 256;
        let mut buf = secrecy::zeroize::Zeroizing::new(Vec::with_capacity(cap));
        let _ = serde_json::to_writer(&mut *buf, &out);
        SecretString::from(String::from_utf8_lossy(&buf).as_ref())
    }

    /// [`Self::to_json`] plus a `write_id` field: a store without idempotency keys (GCP Secret
    /// Manager) marks its write with it, so a retry after a lost answer can recognise its own
    /// version. Readers ignore the extra field.
    pub fn to_json_with_write_id(&self, write_id: &str) -> SecretString {
        let mut value = serde_json::json!({
            "access_token": self.access_token.expose_secret(),
            "token_type": self.token_type,
            "expiry": format_time(self.expiry),
            "issued_at": format_time(self.issued_at),
            "write_id": write_id,
        });
        if let Some(k) = &self.x_api_key {
            value["x_api_key"] = serde_json::Value::String(k.expose_secret().to_string());
        }
        SecretString::from(value.to_string())
    }

    /// Parse a stored document. Unknown fields are ignored; errors never echo content.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DocumentError> {
        let raw: RawDocument = serde_json::from_slice(bytes).map_err(|e| {
            DocumentError(format!(
                "not a valid token document ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let access_token = raw
            .access_token
            .ok_or_else(|| DocumentError("token document has no access_token".into()))?;
        if access_token.expose_secret().trim().is_empty() {
            return Err(DocumentError(
                "token document has an empty access_token".into(),
            ));
        }
        check_access_token(access_token.expose_secret())
            .map_err(|e| DocumentError(format!("token document: {e}")))?;
        let expiry = raw
            .expiry
            .ok_or_else(|| DocumentError("token document has no expiry".into()))
            .and_then(|s| parse_time(&s).map_err(|e| DocumentError(format!("expiry: {e}"))))?;
        let issued_at = raw
            .issued_at
            .ok_or_else(|| DocumentError("token document has no issued_at".into()))
            .and_then(|s| parse_time(&s).map_err(|e| DocumentError(format!("issued_at: {e}"))))?;
        let token_type = raw.token_type.unwrap_or_else(|| "bearer".into());
        check_token_type(&token_type).map_err(|e| DocumentError(format!("token document: {e}")))?;
        let x_api_key = raw
            .x_api_key
            .filter(|k| !k.expose_secret().trim().is_empty());
        Ok(TokenDocument {
            access_token,
            token_type,
            expiry,
            issued_at,
            x_api_key,
        })
    }

    /// Time left until expiry (negative when expired).
    pub fn expires_in(&self, now: DateTime<Utc>) -> chrono::Duration {
        self.expiry - now
    }
}

/// How long the stored token has left, for messages and alerts: "the stored token expires in
/// 5h00m", "… expired 10m00s ago", or "no usable token is stored".
pub fn describe_left(expires_in_secs: Option<i64>) -> String {
    match expires_in_secs {
        None => "no usable token is stored".into(),
        Some(s) if s > 0 => format!(
            "the stored token expires in {}",
            format_duration(chrono::Duration::seconds(s))
        ),
        Some(s) => format!(
            "the stored token expired {} ago",
            format_duration(chrono::Duration::seconds(-s))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn document_round_trip_and_unknown_fields() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .unwrap_or_default();
        let doc = TokenDocument {
            access_token: SecretString::from("tok-123"),
            token_type: "bearer".into(),
            expiry: now + chrono::Duration::hours(24),
            issued_at: now,
            x_api_key: None,
        };
        let json = doc.to_json();
        let mut v: serde_json::Value =
            serde_json::from_str(json.expose_secret()).unwrap_or_default();
        assert_eq!(v["expiry"], "2026-11-29T12:00:00Z");
        assert_eq!(v["issued_at"], "2026-11-28T12:00:00Z");
        v["future_field"] = serde_json::json!({"x": 1});
        let back = TokenDocument::from_json(v.to_string().as_bytes());
        let back = back
            .as_ref()
            .map(|d| (d.access_token.expose_secret().to_string(), d.expiry));
        assert_eq!(back, Ok(("tok-123".to_string(), doc.expiry)));
    }

    #[test]
    fn write_id_is_one_extra_field_readers_ignore() {
        let doc = TokenDocument {
            access_token: SecretString::from("tok-123"),
            token_type: "bearer".into(),
            expiry: Utc::now(),
            issued_at: Utc::now(),
            x_api_key: None,
        };
        let json = doc.to_json_with_write_id("w-1");
        let v: serde_json::Value = serde_json::from_str(json.expose_secret()).unwrap_or_default();
        assert_eq!(v["write_id"], "w-1");
        let back = TokenDocument::from_json(json.expose_secret().as_bytes());
        assert!(back.is_ok());
    }

    #[test]
    fn document_errors_never_echo_content() {
        let cases: [&[u8]; 5] = [
            b"{\"access_token\": \"SENTINEL-tok\", \"expiry\": 5}",
            b"{\"access_token\": \"SENTINEL-tok\"",
            b"{\"access_token\": \"\", \"expiry\": \"2026-01-01T00:00:00Z\", \"issued_at\": \"2026-01-01T00:00:00Z\"}",
            b"{\"access_token\": \"SENTINEL-tok\", \"expiry\": \"garbage\", \"issued_at\": \"2026-01-01T00:00:00Z\"}",
            b"not json SENTINEL-tok",
        ];
        for case in cases {
            let err = TokenDocument::from_json(case).err().map(|e| e.to_string());
            assert!(err.is_some());
            assert!(!err.unwrap_or_default().contains("SENTINEL"));
        }
    }

    #[test]
    fn debug_redacts_token() {
        let doc = TokenDocument {
            access_token: SecretString::from("SENTINEL-tok"),
            token_type: "bearer".into(),
            expiry: Utc::now(),
            issued_at: Utc::now(),
            x_api_key: None,
        };
        assert!(!format!("{doc:?}").contains("SENTINEL"));
    }
}
