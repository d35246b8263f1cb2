//! When to wake for each token: from its expiry (minus `renew_before`, minus a random jitter),
//! and after a failure from a backoff that never outlives the token. Pure: the clock and the
//! random numbers are passed in.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::core::error::ErrorKind;

/// Transient failures may be retried after 5 s at the earliest…
pub const TRANSIENT_FLOOR: Duration = Duration::from_secs(5);
/// …403 / rejected credentials (and other failures retrying will not fix) after 30 s.
pub const HARD_FLOOR: Duration = Duration::from_secs(30);
/// Below this much time left, the retry cap shrinks to a quarter of it.
pub const NEAR_EXPIRY: Duration = Duration::from_secs(3600);

/// The jitter actually used for a token: at most a tenth of its `renew_before`.
pub fn jitter_cap(configured: Duration, renew_before: Duration) -> Duration {
    configured.min(renew_before / 10)
}

/// The next rotation of a token expiring at `expiry`: `expiry − renew_before − jitter`.
pub fn next_rotation(
    expiry: DateTime<Utc>,
    renew_before: Duration,
    jitter: Duration,
) -> DateTime<Utc> {
    let ahead = chrono::Duration::from_std(renew_before.saturating_add(jitter))
        .unwrap_or(chrono::Duration::MAX);
    expiry
        .checked_sub_signed(ahead)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How long to wait after the `failures`-th failure in a row (1-based) of class `kind`, with
/// `left` the stored token's time left (`None`: no usable token), `initial`/`max` the
/// configured backoff and `unit` a random number in `[0, 1)`.
///
/// Exponential from `initial` (doubling, "equal jitter": uniform in the upper half) to `max`;
/// while the token has less than an hour left the cap is a quarter of the time left, so an
/// expiring token is retried often; never below [`TRANSIENT_FLOOR`] for transient failures and
/// [`HARD_FLOOR`] for the rest, so Deepvue is never flooded.
pub fn retry_delay(
    failures: u32,
    kind: ErrorKind,
    left: Option<chrono::Duration>,
    initial: Duration,
    max: Duration,
    unit: f64,
) -> Duration {
    let exp = initial
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(30)))
        .min(max);
    let jittered =
        Duration::try_from_secs_f64(exp.as_secs_f64() * (0.5 + 0.5 * unit.clamp(0.0, 1.0)))
            .unwrap_or(exp);
    let left = left.and_then(|l| l.to_std().ok()).unwrap_or(Duration::ZERO);
    let capped = if left < NEAR_EXPIRY {
        jittered.min(left / 4)
    } else {
        jittered
    };
    let floor = match kind {
        ErrorKind::Transient => TRANSIENT_FLOOR,
        _ => HARD_FLOOR,
    };
    capped.max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 60;

    #[track_caller]
    fn check(failures: u32, kind: ErrorKind, left_s: Option<i64>, unit: f64, expect_s: u64) {
        let got = retry_delay(
            failures,
            kind,
            left_s.map(chrono::Duration::seconds),
            Duration::from_secs(30),
            Duration::from_secs(15 * M),
            unit,
        );
        assert_eq!(
            got.as_secs(),
            expect_s,
            "{failures} {kind:?} {left_s:?} {unit}"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_never_outlives_the_token() {
        let day = Some(20 * 3600);
        // Exponential with equal jitter: [15, 30], [30, 60], … up to 15 minutes.
        check(1, ErrorKind::Transient, day, 0.999_999, 29);
        check(1, ErrorKind::Transient, day, 0.0, 15);
        check(2, ErrorKind::Transient, day, 0.999_999, 59);
        check(6, ErrorKind::Transient, day, 0.999_999, 15 * M - 1);
        check(60, ErrorKind::Transient, day, 0.999_999, 15 * M - 1);
        // Less than an hour left: at most a quarter of it.
        check(
            10,
            ErrorKind::Transient,
            Some(40 * M as i64),
            0.999_999,
            10 * M,
        );
        check(10, ErrorKind::Transient, Some(2 * M as i64), 0.999_999, 30);
        // …but never below the floors.
        check(10, ErrorKind::Transient, Some(8), 0.5, 5);
        check(10, ErrorKind::Transient, None, 0.5, 5);
        check(10, ErrorKind::Forbidden, None, 0.5, 30);
        check(1, ErrorKind::CredentialsRejected, day, 0.0, 30);
        check(1, ErrorKind::Forbidden, day, 0.999_999, 30);
    }

    #[test]
    fn wake_ups_come_before_renew_before_by_the_jitter() {
        let expiry = DateTime::<Utc>::from_timestamp(100_000, 0).unwrap_or_default();
        let at = next_rotation(
            expiry,
            Duration::from_secs(12 * 3600),
            Duration::from_secs(60),
        );
        assert_eq!((expiry - at).num_seconds(), 12 * 3600 + 60);
        assert_eq!(
            jitter_cap(Duration::from_secs(300), Duration::from_secs(20)),
            Duration::from_secs(2)
        );
        assert_eq!(
            jitter_cap(Duration::from_secs(300), Duration::from_secs(12 * 3600)),
            Duration::from_secs(300)
        );
        // Absurd inputs never panic.
        let _ = next_rotation(DateTime::<Utc>::MIN_UTC, Duration::MAX, Duration::MAX);
        let _ = retry_delay(
            u32::MAX,
            ErrorKind::Transient,
            None,
            Duration::MAX,
            Duration::MAX,
            2.0,
        );
    }
}
