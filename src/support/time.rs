//! Timestamps: RFC 3339, normalised to UTC with a `Z`, whole seconds.

use chrono::{DateTime, SecondsFormat, Utc};

use super::text::truncate;

/// Parse an RFC 3339 timestamp with any offset (`Z`, `+05:30`) and optional fractional
/// seconds, normalised to UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{}` is not an RFC 3339 timestamp ({e})", truncate(s, 64)))
}

/// Format as RFC 3339 UTC with `Z`, whole seconds. Fractions are truncated, which can only
/// make an expiry look (sub-second) earlier: the safe direction.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_z_offsets_and_fractions() {
        let want = Utc.with_ymd_and_hms(2026, 3, 8, 0, 0, 0).single();
        assert_eq!(parse_time("2026-03-08T00:00:00Z").ok(), want);
        assert_eq!(parse_time("2026-03-08T05:30:00+05:30").ok(), want);
        assert_eq!(parse_time(" 2026-03-07T19:00:00-05:00 ").ok(), want);
        let frac = parse_time("2026-03-08T00:00:00.123456Z").ok();
        assert_eq!(frac.map(|t| t.timestamp_subsec_micros()), Some(123456));
        assert_eq!(
            frac.map(format_time).as_deref(),
            Some("2026-03-08T00:00:00Z")
        );
        assert_eq!(
            want.map(format_time).as_deref(),
            Some("2026-03-08T00:00:00Z")
        );
    }

    #[test]
    fn rejects_garbage_times() {
        for bad in [
            "",
            "tomorrow",
            "2026-03-08",
            "2026-03-08 00:00:00",
            "1700000000",
            "2026-13-08T00:00:00Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
