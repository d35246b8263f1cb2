//! Text for messages: truncation, durations, and the one safe way to show a URL.

/// At most `max` characters, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Human-friendly signed duration, e.g. `23h59m`, `-5m`.
pub fn format_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    let (sign, secs) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{sign}{h}h{m:02}m")
    } else if m > 0 {
        format!("{sign}{m}m{s:02}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// A URL as it may appear in any message: scheme, host, port and path only (user info, query
/// and fragment can carry secrets).
pub fn shown_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => shown(&u),
        Err(_) => "(unparseable URL)".into(),
    }
}

/// [`shown_url`] for a parsed URL.
pub fn shown(u: &url::Url) -> String {
    format!(
        "{}://{}{}{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.port().map(|p| format!(":{p}")).unwrap_or_default(),
        u.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(chrono::Duration::seconds(86_399)), "23h59m");
        assert_eq!(format_duration(chrono::Duration::seconds(-300)), "-5m00s");
        assert_eq!(format_duration(chrono::Duration::seconds(7)), "7s");
    }

    #[test]
    fn urls_lose_user_info_and_query() {
        assert_eq!(
            shown_url("https://u:p@h.example:8443/x?sig=1#f"),
            "https://h.example:8443/x"
        );
        assert_eq!(shown_url("not a url"), "(unparseable URL)");
    }
}
