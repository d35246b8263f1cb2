//! The due decision, pure: given what is stored, the time and the policy, rotate or not.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::document::{EXPIRY_SLACK, TOKEN_LIFETIME, TokenDocument};
use super::store::Stored;
use crate::support::text::format_duration;
use crate::support::time::format_time;

/// When a token is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DuePolicy {
    /// Rotate once the stored token has this little left (default 12 h).
    pub renew_before: Duration,
    /// Never mint twice within this interval while the stored token is valid (default 10 min).
    pub min_interval: Duration,
}

/// Why a token is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DueReason {
    /// Nothing stored yet.
    Missing,
    /// The stored document cannot be used.
    Unusable(String),
    /// Within `renew_before` of expiry (or past it).
    Expiring(chrono::Duration),
    /// `--force`.
    Forced,
    /// A platform asked for it (its own rotation protocol, a push).
    Requested(String),
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DueReason::Missing => f.write_str("no token stored yet"),
            DueReason::Unusable(why) => write!(f, "stored document unusable: {why}"),
            DueReason::Expiring(left) if left.num_seconds() <= 0 => {
                write!(f, "stored token expired {} ago", format_duration(-*left))
            }
            DueReason::Expiring(left) => {
                write!(f, "stored token expires in {}", format_duration(*left))
            }
            DueReason::Forced => f.write_str("forced"),
            DueReason::Requested(by) => f.write_str(by),
        }
    }
}

/// How much a run overrides the schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Force {
    /// Rotate only a due token.
    #[default]
    No,
    /// Someone asks for a rotation (a platform's push, an operator): rotate a fresh token too,
    /// but never one minted less than `min_interval` ago, so requests, however many, mint at
    /// most once per window.
    Requested(&'static str),
    /// `--force`: rotate whatever is stored.
    Always,
}

/// The pure decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Stored token is good for longer than `renew_before`.
    Fresh,
    /// Mint now.
    Due(DueReason),
    /// Would be due, but it was minted less than `min_interval` ago and is still valid.
    Throttled,
}

/// How far in the future a stored `issued_at` may lie (clock skew between hosts sharing a
/// store) and still count as "just minted"; later than that, the document is not believed.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Decide whether a token is due. `now` is passed in so this stays pure.
///
/// A document whose times cannot be right is unusable (due): `issued_at` more than
/// [`CLOCK_SKEW`] in the future (a clock stepped back, a foreign writer), `issued_at` after
/// `expiry`, or `expiry` beyond `issued_at` + the token lifetime + slack. `min_interval`
/// throttles only while `0 <= now - issued_at < min_interval` (a future `issued_at` within
/// the skew counts as 0).
pub fn decide(
    stored: Option<&Stored>,
    now: DateTime<Utc>,
    policy: &DuePolicy,
    force: Force,
) -> Decision {
    let doc = match stored {
        None => return Decision::Due(DueReason::Missing),
        Some(Stored {
            document: Err(e), ..
        }) => return Decision::Due(DueReason::Unusable(e.0.clone())),
        Some(Stored {
            document: Ok(doc), ..
        }) => doc,
    };
    if force == Force::Always {
        return Decision::Due(DueReason::Forced);
    }
    if let Some(why) = implausible(doc, now) {
        return Decision::Due(DueReason::Unusable(why));
    }
    let left = doc.expiry - now;
    let renew_before = delta(policy.renew_before);
    let min_interval = delta(policy.min_interval);
    let age = (now - doc.issued_at).max(chrono::Duration::zero());
    if left > renew_before {
        return match force {
            Force::Requested(_) if age < min_interval => Decision::Throttled,
            Force::Requested(by) => Decision::Due(DueReason::Requested(by.into())),
            _ => Decision::Fresh,
        };
    }
    if age < min_interval && left > min_interval {
        return Decision::Throttled;
    }
    Decision::Due(DueReason::Expiring(left))
}

fn delta(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Why a document's times cannot be right, if they cannot.
fn implausible(doc: &TokenDocument, now: DateTime<Utc>) -> Option<String> {
    let skew = delta(CLOCK_SKEW);
    if doc.issued_at - now > skew {
        return Some(format!(
            "issued_at {} is in the future (now {}); the clock was stepped back or another \
             writer's clock is ahead",
            format_time(doc.issued_at),
            format_time(now)
        ));
    }
    if doc.issued_at > doc.expiry {
        return Some(format!(
            "issued_at {} is after its expiry {}",
            format_time(doc.issued_at),
            format_time(doc.expiry)
        ));
    }
    if doc.expiry - doc.issued_at > delta(TOKEN_LIFETIME) + delta(EXPIRY_SLACK) {
        return Some(format!(
            "expiry {} is more than 24h after issued_at {}; a Deepvue token lives 24h",
            format_time(doc.expiry),
            format_time(doc.issued_at)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::document::DocumentError;
    use crate::core::store::Version;
    use chrono::TimeZone;
    use secrecy::SecretString;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn stored(issued_ago_h: i64, expires_in_h: i64) -> Stored {
        Stored::new(
            Version("1".into()),
            Ok(TokenDocument {
                access_token: SecretString::from("t"),
                token_type: "bearer".into(),
                issued_at: now() - chrono::Duration::hours(issued_ago_h),
                expiry: now() + chrono::Duration::hours(expires_in_h),
                x_api_key: None,
            }),
        )
    }

    const POLICY: DuePolicy = DuePolicy {
        renew_before: Duration::from_secs(12 * 3600),
        min_interval: Duration::from_secs(600),
    };

    #[track_caller]
    fn check(stored: Option<&Stored>, force: bool, expect: &str) {
        let force = if force { Force::Always } else { Force::No };
        check_with(stored, force, expect);
    }

    #[track_caller]
    fn check_with(stored: Option<&Stored>, force: Force, expect: &str) {
        let got = match decide(stored, now(), &POLICY, force) {
            Decision::Fresh => "fresh".to_string(),
            Decision::Throttled => "throttled".to_string(),
            Decision::Due(r) => format!("due: {r}"),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn due_policy() {
        check(None, false, "due: no token stored yet");
        let broken = Stored::new(
            Version("3".into()),
            Err(DocumentError("token document has no expiry".into())),
        );
        check(
            Some(&broken),
            false,
            "due: stored document unusable: token document has no expiry",
        );
        check(Some(&stored(1, 23)), false, "fresh");
        check(Some(&stored(11, 13)), false, "fresh");
        check(
            Some(&stored(12, 12)),
            false,
            "due: stored token expires in 12h00m",
        );
        check(
            Some(&stored(20, 4)),
            false,
            "due: stored token expires in 4h00m",
        );
        check(
            Some(&stored(30, -6)),
            false,
            "due: stored token expired 6h00m ago",
        );
        check(Some(&stored(1, 23)), true, "due: forced");
    }

    #[test]
    fn a_requested_rotation_renews_a_fresh_token_but_never_within_min_interval() {
        let push = Force::Requested("a Pub/Sub SECRET_ROTATE push");
        check_with(None, push, "due: no token stored yet");
        check_with(
            Some(&stored(1, 23)),
            push,
            "due: a Pub/Sub SECRET_ROTATE push",
        );
        let mut just_minted = stored(0, 23);
        if let Ok(d) = &mut just_minted.document {
            d.issued_at = now() - chrono::Duration::minutes(9);
        }
        check_with(Some(&just_minted), push, "throttled");
        check_with(Some(&just_minted), Force::Always, "due: forced");
        // A due token follows the usual rules.
        check_with(
            Some(&stored(20, 4)),
            push,
            "due: stored token expires in 4h00m",
        );
    }

    #[test]
    fn min_interval_guards_tight_loops_but_not_expiry() {
        // Deepvue handed out a 2h token: due at once, but not re-minted within 10 minutes.
        let mut s = stored(0, 2);
        if let Ok(d) = &mut s.document {
            d.issued_at = now() - chrono::Duration::minutes(5);
        }
        check(Some(&s), false, "throttled");
        if let Ok(d) = &mut s.document {
            d.issued_at = now() - chrono::Duration::minutes(11);
        }
        check(Some(&s), false, "due: stored token expires in 2h00m");
        // About to expire: never throttled.
        let mut s = stored(0, 0);
        if let Ok(d) = &mut s.document {
            d.issued_at = now() - chrono::Duration::minutes(1);
            d.expiry = now() + chrono::Duration::minutes(5);
        }
        check(Some(&s), false, "due: stored token expires in 5m00s");
    }

    #[track_caller]
    fn check_prefix(stored: &Stored, expect: &str) {
        let got = match decide(Some(stored), now(), &POLICY, Force::No) {
            Decision::Fresh => "fresh".to_string(),
            Decision::Throttled => "throttled".to_string(),
            Decision::Due(r) => format!("due: {r}"),
        };
        assert!(got.starts_with(expect), "{got}");
    }

    #[test]
    fn a_clock_stepped_back_never_holds_renewal_off() {
        let at = |issued: chrono::Duration, expiry: chrono::Duration| {
            let mut s = stored(0, 0);
            if let Ok(d) = &mut s.document {
                d.issued_at = now() + issued;
                d.expiry = now() + expiry;
            }
            s
        };
        let h = chrono::Duration::hours;
        let m = chrono::Duration::minutes;
        // Issued two hours "in the future", three hours left: due now, not throttled.
        check_prefix(&at(h(2), h(3)), "due: stored document unusable: issued_at");
        // Issued after it expires.
        check_prefix(
            &at(-h(1), -h(2)),
            "due: stored document unusable: issued_at",
        );
        check_prefix(
            &at(h(30), h(20)),
            "due: stored document unusable: issued_at",
        );
        // Within the clock-skew tolerance it counts as just minted.
        check_prefix(&at(m(1), h(2)), "throttled");
        // Throttled only while 0 <= now - issued_at < min_interval.
        check_prefix(&at(-m(5), h(2)), "throttled");
        check_prefix(&at(-m(10), h(2)), "due: stored token expires in 2h00m");
        // Valid for longer than a token lives: not believed.
        check_prefix(&at(-h(1), h(9000)), "due: stored document unusable: expiry");
        check_prefix(&at(-h(1), h(23)), "fresh");
    }
}
