//! What a reader may hand out: the one rule the agent and `exec` share. A stored version is
//! usable while it is a readable document that has not expired; when the current one is not,
//! the previous one is, while it is valid (the reader says so: it is stale).

use chrono::{DateTime, Utc};

use crate::core::document::TokenDocument;
use crate::core::store::{StoreError, TokenStore, Version};
use crate::support::time::format_time;

/// The store's current version, judged at one instant.
pub enum Current {
    /// Valid: hand it out.
    Usable(Version, TokenDocument),
    /// Not usable (`version`: the current one, `None` when nothing is stored), and why — naming
    /// the token, the store and the version.
    Unusable {
        /// The current version, if one is stored.
        version: Option<Version>,
        /// Why it cannot be handed out.
        why: String,
    },
}

/// `token token: backend store secret-id`: how the reasons name where they looked.
pub fn place(token: &str, store: &dyn TokenStore) -> String {
    format!(
        "token `{token}`: {} store `{}`",
        store.backend(),
        store.secret_id()
    )
}

/// Read the current version and judge it at `now` (one store read).
pub async fn current(
    token: &str,
    store: &dyn TokenStore,
    now: DateTime<Utc>,
) -> Result<Current, StoreError> {
    let at = place(token, store);
    Ok(match store.read_current().await? {
        None => Current::Unusable {
            version: None,
            why: format!("{at} holds no token yet; run `deepvue-rotator rotate`"),
        },
        Some(s) => match s.document {
            Ok(d) if d.expiry > now => Current::Usable(s.version, d),
            Ok(d) => Current::Unusable {
                why: format!(
                    "{at} version {} expired at {}",
                    s.version,
                    format_time(d.expiry)
                ),
                version: Some(s.version),
            },
            Err(e) => Current::Unusable {
                why: format!("{at} version {} is unusable: {e}", s.version),
                version: Some(s.version),
            },
        },
    })
}

/// The version before `current`, if it is stored and valid at `now` (one store read).
pub async fn valid_previous(
    store: &dyn TokenStore,
    current: &Version,
    now: DateTime<Utc>,
) -> Result<Option<(Version, TokenDocument)>, StoreError> {
    Ok(store
        .read_previous(current)
        .await?
        .and_then(|p| match p.document {
            Ok(d) if d.expiry > now => Some((p.version, d)),
            _ => None,
        }))
}
