//! The one redaction mechanism: remove every form a secret can take on the wire from text a
//! peer sent back (an error `detail`, a `Location`, an echoed body).
//!
//! Covered forms of each secret:
//! - raw, and JSON-escaped (a detail that was re-serialised);
//! - percent-encoded and form-urlencoded, matched byte by byte: each byte may appear as itself
//!   or as `%XX` in either case, and a space also as `+` (so `%2B`, `%2b`, `+`, `%20` and mixed
//!   spellings all match);
//! - base64, standard and URL-safe, padded or not: the whole encoding, and the part of it that
//!   is the same at any alignment inside a longer base64 stream (e.g. `Basic id:secret`), which
//!   leaves at most two bytes of the secret at either end unredacted.
//!
//! Secrets shorter than [`MIN_LEN`] are not redacted (they would match ordinary text).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// What replaces a secret.
pub const MARK: &str = "[REDACTED]";
/// Shorter secrets are left alone.
pub const MIN_LEN: usize = 4;

/// Redact every listed secret, in every covered form, from `text`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_LEN) {
        out = redact_url_forms(&out, secret.as_bytes());
        for form in literal_forms(secret) {
            if form.len() >= MIN_LEN && out.contains(form.as_str()) {
                out = out.replace(form.as_str(), MARK);
            }
        }
    }
    out
}

/// JSON-escaped and base64 forms, longest first (so a full encoding goes before its core).
fn literal_forms(secret: &str) -> Vec<String> {
    let mut forms = Vec::new();
    let escaped = serde_json::to_string(secret).unwrap_or_default();
    forms.push(escaped.trim_matches('"').to_string());
    let bytes = secret.as_bytes();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(bytes));
    }
    // At alignment j, the whole groups of 3 bytes from j on encode the same whatever precedes.
    for j in 0..3 {
        let rest = bytes.get(j..).unwrap_or_default();
        let whole = rest.len() / 3 * 3;
        if whole >= 3 {
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                forms.push(engine.encode(&rest[..whole]));
            }
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

/// Replace every run of `text` that spells `secret` byte by byte, each byte literal or `%XX`
/// (any case), a space also as `+`.
fn redact_url_forms(text: &str, secret: &[u8]) -> String {
    let t = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        match match_at(t, i, secret) {
            Some(end) => {
                out.extend_from_slice(MARK.as_bytes());
                i = end;
            }
            None => {
                out.push(t[i]);
                i += 1;
            }
        }
    }
    // Only whole matches of valid UTF-8 secrets are replaced by ASCII, so the result is UTF-8;
    // fall back to the input rather than panic if that ever did not hold.
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

fn match_at(t: &[u8], start: usize, secret: &[u8]) -> Option<usize> {
    let mut i = start;
    for &b in secret {
        let c = *t.get(i)?;
        if c == b || (b == b' ' && c == b'+') {
            i += 1;
        } else if c == b'%' && hex_pair(t.get(i + 1..i + 3)?) == Some(b) {
            i += 3;
        } else {
            return None;
        }
    }
    Some(i)
}

fn hex_pair(p: &[u8]) -> Option<u8> {
    let h = |c: u8| (c as char).to_digit(16);
    Some((h(p[0])? * 16 + h(p[1])?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "SEKRET+s3cr/3t=XYZ q";

    #[test]
    fn every_wire_form_is_redacted() {
        let b64 = |e: &base64::engine::GeneralPurpose, s: &str| e.encode(s);
        let forms = [
            S.to_string(),
            "SEKRET%2Bs3cr%2F3t%3DXYZ+q".into(),
            "SEKRET%2bs3cr%2f3t%3dXYZ%20q".into(),
            "%53EKRET%2Bs3cr%2f3t%3DXYZ+q".into(),
            b64(&STANDARD, S),
            b64(&URL_SAFE_NO_PAD, S),
            b64(&STANDARD, &format!("client-1:{S}")),
            b64(&STANDARD, &format!("x{S}y")),
            b64(&URL_SAFE, &format!("xy{S}")),
        ];
        for f in forms {
            let text = format!("before {f} after");
            let r = redact(&text, &[S]);
            assert!(r.contains(MARK), "{f} -> {r}");
            assert!(!r.contains(&f), "{f} -> {r}");
            assert!(!r.contains("s3cr"), "{f} -> {r}");
        }
        let escaped = serde_json::to_string("se\"cr\\et-ABC").unwrap_or_default();
        let r = redact(&format!("x {escaped} y"), &["se\"cr\\et-ABC"]);
        assert!(!r.contains("cr\\\\et"), "{r}");
    }

    #[test]
    fn text_without_secrets_is_unchanged_and_short_secrets_are_skipped() {
        assert_eq!(redact("Inactive client_id é", &[S]), "Inactive client_id é");
        assert_eq!(redact("abc abc", &["abc"]), "abc abc");
        assert_eq!(redact("%", &[S]), "%");
        assert_eq!(redact("%4", &["SEKRET"]), "%4");
    }
}
