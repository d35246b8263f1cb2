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

/// `s` on one line: newlines, tabs and every other control character written as escapes
/// (`\n`, `\r`, `\t`, `\u{1b}`), so text from a peer cannot forge lines or drive a terminal.
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible_format(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Unicode format characters that reorder or hide text (bidi overrides, zero-width).
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
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

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_control("a\nb\r\tc\u{1b}[31m\u{7}\u{202e}é"),
            "a\\nb\\r\\tc\\u{1b}[31m\\u{7}\\u{202e}é"
        );
    }
}
