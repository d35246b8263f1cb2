//! The one redaction mechanism: remove every form a secret can take on the wire from text a
//! peer sent back (an error `detail`, a `Location`, an echoed body).
//!
//! Covered forms of each secret:
//! - raw;
//! - percent-encoded and form-urlencoded, matched byte by byte: each byte may appear as itself
//!   or as `%XX` in either case, and a space also as `+` (so `%2B`, `%2b`, `+`, `%20` and mixed
//!   spellings all match, and a secret's own `%` as `%` or `%25`);
//! - JSON-escaped, matched character by character: each character as itself, as `\uXXXX`
//!   (either case; a surrogate pair beyond the BMP), or as its short escape (`\"`, `\\`, `\/`,
//!   `\b`, `\f`, `\n`, `\r`, `\t`), whichever a serialiser chose;
//! - base64, standard and URL-safe, padded or not: the whole encoding, and the part of it that
//!   is the same at any alignment inside a longer base64 stream (e.g. `Basic id:secret`), which
//!   leaves at most two bytes of the secret at either end unredacted.
//!
//! The byte- and character-wise forms are one matcher: each unit of the secret has a few
//! spellings, and the text is searched for any sequence of them. A unit with two spellings
//! that start alike (a `%` as `%` or `%25`) is tried both ways; failed (position, unit) pairs
//! are remembered, so a search is linear in text × secret whatever the text.
//!
//! Secrets shorter than [`MIN_LEN`] are not redacted (they would match ordinary text).

use std::collections::HashSet;

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
        out = replace_spelled(&out, &percent_units(secret.as_bytes()));
        out = replace_spelled(&out, &json_units(secret));
        for form in base64_forms(secret) {
            if form.len() >= MIN_LEN && out.contains(form.as_str()) {
                out = out.replace(form.as_str(), MARK);
            }
        }
    }
    out
}

/// One byte of a spelling: a literal byte, or a hex digit of this value in either case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    Hex(u8),
}

/// The spellings of one unit of a secret.
type Unit = Vec<Vec<Tok>>;

fn lit(bytes: &[u8]) -> Vec<Tok> {
    bytes.iter().map(|&b| Tok::Byte(b)).collect()
}

/// `prefix` then the hex digits of `value` (`width` digits, most significant first).
fn hexed(prefix: &[u8], value: u32, width: u32) -> Vec<Tok> {
    let mut t = lit(prefix);
    t.extend(
        (0..width)
            .rev()
            .map(|i| Tok::Hex(((value >> (4 * i)) & 0xf) as u8)),
    );
    t
}

/// Byte by byte: itself, `%XX` (any case), and a space as `+`.
fn percent_units(secret: &[u8]) -> Vec<Unit> {
    secret
        .iter()
        .map(|&b| {
            let mut spellings = vec![lit(&[b]), hexed(b"%", u32::from(b), 2)];
            if b == b' ' {
                spellings.push(lit(b"+"));
            }
            spellings
        })
        .collect()
}

/// Character by character: itself, `\uXXXX` (surrogates beyond the BMP), or a short escape.
fn json_units(secret: &str) -> Vec<Unit> {
    secret
        .chars()
        .map(|c| {
            let mut buf = [0u8; 4];
            let mut spellings = vec![lit(c.encode_utf8(&mut buf).as_bytes())];
            let mut u16s = [0u16; 2];
            let mut escaped = Vec::new();
            for unit in c.encode_utf16(&mut u16s).iter() {
                escaped.extend(hexed(b"\\u", u32::from(*unit), 4));
            }
            spellings.push(escaped);
            let short = match c {
                '"' => Some(b"\\\"".as_slice()),
                '\\' => Some(b"\\\\".as_slice()),
                '/' => Some(b"\\/".as_slice()),
                '\u{8}' => Some(b"\\b".as_slice()),
                '\u{c}' => Some(b"\\f".as_slice()),
                '\n' => Some(b"\\n".as_slice()),
                '\r' => Some(b"\\r".as_slice()),
                '\t' => Some(b"\\t".as_slice()),
                _ => None,
            };
            spellings.extend(short.map(lit));
            spellings
        })
        .collect()
}

/// Base64 forms, longest first (so a full encoding goes before its core).
fn base64_forms(secret: &str) -> Vec<String> {
    let mut forms = Vec::new();
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

/// Replace every run of `text` that spells the secret unit by unit.
fn replace_spelled(text: &str, units: &[Unit]) -> String {
    let t = text.as_bytes();
    let mut failed = HashSet::new();
    let mut out: Vec<u8> = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        match match_from(t, i, units, 0, &mut failed) {
            Some(end) if end > i => {
                out.extend_from_slice(MARK.as_bytes());
                i = end;
            }
            _ => {
                out.push(t[i]);
                i += 1;
            }
        }
    }
    // Only whole spellings of valid UTF-8 secrets are replaced by ASCII, so the result is
    // UTF-8; fall back to the input rather than panic if that ever did not hold.
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// Where a spelling of `units[k..]` starting at `t[i]` ends. `failed` remembers (i, k) pairs
/// that lead nowhere, whichever start reached them, so the search stays linear.
fn match_from(
    t: &[u8],
    i: usize,
    units: &[Unit],
    k: usize,
    failed: &mut HashSet<(usize, usize)>,
) -> Option<usize> {
    // An explicit stack instead of recursion: a long secret must not exhaust the thread's.
    let mut stack: Vec<(usize, usize, usize)> = vec![(i, k, 0)];
    while let Some(&(pos, unit, alt)) = stack.last() {
        if unit == units.len() {
            return Some(pos);
        }
        let spellings = &units[unit];
        if alt == spellings.len() || failed.contains(&(pos, unit)) {
            failed.insert((pos, unit));
            stack.pop();
            if let Some(top) = stack.last_mut() {
                top.2 += 1;
            }
            continue;
        }
        match spelled_at(t, pos, &spellings[alt]) {
            Some(next) => stack.push((next, unit + 1, 0)),
            None => {
                if let Some(top) = stack.last_mut() {
                    top.2 += 1;
                }
            }
        }
    }
    None
}

/// Where `spelling` ends if `t` has it at `pos`.
fn spelled_at(t: &[u8], pos: usize, spelling: &[Tok]) -> Option<usize> {
    let window = t.get(pos..pos.checked_add(spelling.len())?)?;
    let all = window.iter().zip(spelling).all(|(&c, tok)| match *tok {
        Tok::Byte(b) => c == b,
        Tok::Hex(v) => (c as char).to_digit(16) == Some(u32::from(v)),
    });
    all.then_some(pos + spelling.len())
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
            "SEKRET+s3cr\\/3t=XYZ q".into(),
            "\\u0053EKRET\\u002bs3cr/3t=XYZ\\u0020q".into(),
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
    fn a_percent_in_the_secret_is_redacted_however_it_is_spelled() {
        let s = "Secret%Value123";
        for form in [
            "Secret%Value123",
            "Secret%25Value123",
            "%53ecret%25Value123",
            "%53%65cret%25%56alue123",
            "Secret\\u0025Value123",
        ] {
            let r = redact(&format!("client_secret={form}&x=1"), &[s]);
            assert_eq!(r, format!("client_secret={MARK}&x=1"), "{form}");
        }
        // Many `%` and a text full of near misses: no blow-up, and the real one still goes.
        let s = "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%x";
        let text = format!("{}{}", "%25".repeat(5000), "%25".repeat(32) + "x");
        let r = redact(&text, &[s]);
        assert!(r.ends_with(MARK), "{}", &r[r.len().saturating_sub(40)..]);
    }

    /// Every encoding of a secret drawn from the whole printable ASCII range (and some
    /// non-ASCII), written by the test itself, is gone from the text it sits in.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn percent(s: &str, space_plus: bool, upper: bool) -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    b' ' if space_plus => "+".into(),
                    _ if upper => format!("%{b:02X}"),
                    _ => format!("%{b:02x}"),
                })
                .collect()
        }

        /// JSON as a serialiser that escapes everything beyond ASCII writes it.
        fn json_ascii(s: &str) -> String {
            let mut out = String::new();
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '/' => out.push_str("\\/"),
                    c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
                    c => {
                        let mut u = [0u16; 2];
                        for x in c.encode_utf16(&mut u).iter() {
                            out.push_str(&format!("\\u{x:04X}"));
                        }
                    }
                }
            }
            out
        }

        fn secret() -> impl Strategy<Value = String> {
            let printable = proptest::char::range(' ', '~');
            let other = proptest::sample::select(vec!['é', 'ß', '€', '中', '😀', '\u{7f}']);
            proptest::collection::vec(prop_oneof![9 => printable, 1 => other], MIN_LEN..40)
                .prop_map(|v| v.into_iter().collect())
        }

        proptest! {
            #[test]
            fn no_encoding_of_the_secret_survives(s in secret(), pad in 0usize..3) {
                let b64 = |e: &base64::engine::GeneralPurpose, b: &[u8]| e.encode(b);
                let json = serde_json::to_string(&s).unwrap_or_default();
                let full = [
                    s.clone(),
                    percent(&s, true, true),
                    percent(&s, true, false),
                    percent(&s, false, true),
                    json[1..json.len() - 1].to_string(),
                    json_ascii(&s),
                    b64(&STANDARD, s.as_bytes()),
                    b64(&URL_SAFE_NO_PAD, s.as_bytes()),
                ];
                for form in full {
                    let text = format!("<< {form} >>");
                    let r = redact(&text, &[&s]);
                    prop_assert!(!r.contains(&form), "{:?} survives in {:?}", form, r);
                    prop_assert!(r.contains(MARK), "{:?} -> {:?}", form, r);
                }
                // Inside a longer base64 stream at any alignment: the middle is gone (at most
                // two bytes at either end can survive).
                let mut stream = b"client-id:".to_vec();
                stream.extend(std::iter::repeat_n(b'x', pad));
                stream.extend(s.as_bytes());
                stream.extend(b":tail");
                let encoded = b64(&STANDARD, &stream);
                let r = redact(&format!("Basic {encoded}"), &[&s]);
                // The groups of the stream that lie wholly inside the secret.
                let offset = 10 + pad;
                let j = (3 - offset % 3) % 3;
                let whole = s.len().saturating_sub(j) / 3 * 3;
                if whole >= 3 {
                    let from = (offset + j) / 3 * 4;
                    let to = (offset + j + whole) / 3 * 4;
                    let core = &encoded[from..to];
                    prop_assert!(!r.contains(core), "{:?} survives in {:?}", core, r);
                }
            }
        }
    }

    #[test]
    fn text_without_secrets_is_unchanged_and_short_secrets_are_skipped() {
        assert_eq!(redact("Inactive client_id é", &[S]), "Inactive client_id é");
        assert_eq!(redact("abc abc", &["abc"]), "abc abc");
        assert_eq!(redact("%", &[S]), "%");
        assert_eq!(redact("%4", &["SEKRET"]), "%4");
        assert_eq!(redact("\\u00", &["SEKRET"]), "\\u00");
    }
}
