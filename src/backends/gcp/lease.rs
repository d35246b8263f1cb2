//! The rotation lease: one annotation on the token secret, taken and replaced only with the
//! secret's etag (`UpdateSecret` fails with `FAILED_PRECONDITION` on a stale etag), so at most
//! one runner holds a live lease at a time.
//!
//! The value is JSON `{"holder": "<random id>", "base": <version>, "until": "<RFC 3339>"}`:
//! `base` is the version the holder decided to replace (0: nothing stored). A live lease
//! blocks a runner that decided from the same or an older version (it would write what the
//! holder is writing); a runner that has already seen a newer version than `base` knows the
//! lease is **spent** (its holder, or someone, wrote) and takes it over at once. So a lease is
//! never cleared after a write: that would cost a call per rotation. The holder id is also
//! written into the payload of the version added under it (`write_id`), so a retry after a
//! lost answer can find its own version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The annotation key of the lease.
pub const LEASE_ANNOTATION: &str = "deepvue-rotator.lease";

/// One lease as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Random id of the run holding it; also the `write_id` of the version it adds.
    pub holder: String,
    /// The version number the holder decided from (0: nothing stored).
    #[serde(default)]
    pub base: u64,
    /// When it expires (the holder's clock; leases are minutes long).
    pub until: String,
}

impl LeaseRecord {
    /// A new lease for a fresh holder id, from `base`, for `ttl` from `now`.
    pub fn new(now: DateTime<Utc>, base: u64, ttl: std::time::Duration) -> LeaseRecord {
        let id: [u8; 12] = rand::random();
        LeaseRecord {
            holder: id.iter().map(|b| format!("{b:02x}")).collect(),
            base,
            until: (now + chrono::Duration::from_std(ttl).unwrap_or_default())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    /// The lease in `annotations`, if a readable one is there.
    pub fn from_annotations<'a>(
        annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Option<LeaseRecord> {
        annotations
            .into_iter()
            .find(|(k, _)| k.as_str() == LEASE_ANNOTATION)
            .and_then(|(_, v)| serde_json::from_str(v).ok())
    }

    /// The annotation value.
    pub fn to_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// When it expires; an unreadable time counts as expired.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.until)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Still live at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires().is_some_and(|u| u > now)
    }

    /// Whether this lease stops a runner that decided from version `base`: it is live and
    /// its holder decided from the same or a newer version.
    pub fn blocks(&self, base: u64, now: DateTime<Utc>) -> bool {
        self.live(now) && self.base >= base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn lease_round_trip_and_expiry() {
        let now = Utc::now();
        let l = LeaseRecord::new(now, 7, std::time::Duration::from_secs(60));
        assert_eq!(l.holder.len(), 24);
        assert!(l.live(now));
        assert!(
            l.blocks(7, now) && l.blocks(6, now),
            "same or older base: blocked"
        );
        assert!(
            !l.blocks(8, now),
            "a newer version seen: the lease is spent"
        );
        assert!(!l.blocks(7, now + chrono::Duration::seconds(61)), "expired");
        assert!(!l.live(now + chrono::Duration::seconds(61)));
        let mut a = HashMap::new();
        a.insert("other".to_string(), "x".to_string());
        a.insert(LEASE_ANNOTATION.to_string(), l.to_value());
        assert_eq!(LeaseRecord::from_annotations(&a), Some(l));
        a.insert(LEASE_ANNOTATION.to_string(), "garbage".into());
        assert_eq!(LeaseRecord::from_annotations(&a), None);
        let odd = LeaseRecord {
            holder: "h".into(),
            base: 0,
            until: "soon".into(),
        };
        assert!(!odd.live(now));
    }
}
