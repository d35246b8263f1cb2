//! URL values from the config: parsed strictly, `https://` required, and shown in messages
//! only through [`crate::support::text::shown_url`].

use url::Url;

use super::net::is_loopback;
use super::problem::Problem;
use super::text::shown_url;

/// Parse `value` (at key `at`) as an `https://` URL.
pub fn https_url(at: &str, value: &str) -> Result<Url, Problem> {
    let url = parse(at, value)?;
    if url.scheme() != "https" {
        return Err(Problem::insecure(format!(
            "{at} must use https:// (got `{}`)",
            shown_url(value)
        )));
    }
    Ok(url)
}

/// Parse `value` as an `https://` URL, or plain `http://` to a loopback address (emulators and
/// dev servers).
pub fn https_or_loopback_url(at: &str, value: &str) -> Result<Url, Problem> {
    let url = parse(at, value)?;
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
        return Err(Problem::insecure(format!(
            "{at} must use https:// (plain http only for a loopback address; got `{}`)",
            shown_url(value)
        )));
    }
    Ok(url)
}

/// Parse strictly: a URL is refused, not "fixed", when it holds a space or a control character
/// (the `url` crate would percent-encode or drop them silently).
pub fn parse(at: &str, value: &str) -> Result<Url, Problem> {
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        let what = if c.is_control() {
            "a control character"
        } else {
            "a space"
        };
        return Err(Problem::invalid(format!(
            "{at} `{}` contains {what}; percent-encode it (a space is %20)",
            shown_url(value)
        )));
    }
    Url::parse(value)
        .map_err(|e| Problem::invalid(format!("{at} `{}` is not a URL ({e})", shown_url(value))))
}

/// [`parse`], then refuse user info, a query and a fragment (endpoints that take none: a secret
/// there would only end up in someone's log).
pub fn plain_endpoint(at: &str, value: &str) -> Result<Url, Problem> {
    let url = parse(at, value)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Problem::invalid(format!(
            "{at} `{}` must not carry user info",
            shown_url(value)
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Problem::invalid(format!(
            "{at} `{}` must not have a query or fragment",
            shown_url(value)
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_strictly() {
        for bad in [
            "https://h.example/a b",
            "https://h.example/a\tb",
            "https://h.example/\u{7}",
        ] {
            let e = https_url("x.url", bad)
                .err()
                .map(|p| p.message)
                .unwrap_or_default();
            assert!(e.contains("x.url") && e.contains("contains"), "{bad}: {e}");
        }
        assert!(https_url("x.url", "https://h.example/a%20b").is_ok());
        let e = plain_endpoint(
            "aws.endpoint_url",
            "https://u:SENTINEL@h.example/?q=SENTINEL",
        )
        .err()
        .map(|p| p.message)
        .unwrap_or_default();
        assert!(e.contains("user info") && !e.contains("SENTINEL"), "{e}");
    }
}
