//! HTTP helpers shared by the outbound clients.

use std::time::Duration;

/// `User-Agent` on every outbound request.
pub const USER_AGENT: &str = concat!("deepvue-rotator/", env!("CARGO_PKG_VERSION"));

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An error and its sources, joined by `: `, without repeating a source already in the text.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// An answer's body, at most `max` bytes, in a buffer cleared on drop (it may hold a token);
/// an error names the transport failure or the cap, never the content.
pub async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<secrecy::zeroize::Zeroizing<Vec<u8>>, String> {
    let mut body = secrecy::zeroize::Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > max {
            return Err(format!("longer than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
        let got = parse_retry_after(&future).map(|d| d.as_secs());
        assert!(got.is_some_and(|s| (85..=90).contains(&s)), "{got:?}");
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
