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

fn parse(at: &str, value: &str) -> Result<Url, Problem> {
    Url::parse(value)
        .map_err(|e| Problem::invalid(format!("{at} `{}` is not a URL ({e})", shown_url(value))))
}
