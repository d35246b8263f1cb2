//! Run state in tags on the token secret: base64 JSON in chunks `deepvue-rotator:state:N`
//! (tag values are at most 256 characters) plus a header `deepvue-rotator:state:n` holding the
//! chunk count and a digest, so a torn update reads as "no state", never as garbage.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::types::Tag;
use base64::Engine;

use crate::core::state::RunState;

/// Tag keys holding the run state start with this.
pub const STATE_TAG_PREFIX: &str = "deepvue-rotator:state:";
/// The header tag: `<chunks>.<digest>`.
const STATE_HEADER: &str = "deepvue-rotator:state:n";
/// At most this many state chunks (AWS allows 50 tags per secret; leave room for the user's).
const STATE_MAX_CHUNKS: usize = 10;
/// Tag values are at most 256 characters.
const STATE_CHUNK: usize = 256;

pub(super) fn encode(state: &RunState) -> Result<Vec<(String, String)>, String> {
    let mut s = state.clone();
    for limit in [usize::MAX, 600, 200, 0] {
        let cut = |v: &mut Option<String>| {
            if let Some(t) = v
                && t.len() > limit
            {
                *t = crate::support::text::truncate(t, limit);
            }
        };
        cut(&mut s.last_error);
        cut(&mut s.last_alert_error);
        let json = serde_json::to_vec(&s).map_err(|e| e.to_string())?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        if b64.len() <= STATE_CHUNK * STATE_MAX_CHUNKS {
            let mut tags: Vec<(String, String)> = b64
                .as_bytes()
                .chunks(STATE_CHUNK)
                .enumerate()
                .map(|(i, c)| {
                    (
                        format!("{STATE_TAG_PREFIX}{i}"),
                        String::from_utf8_lossy(c).into_owned(),
                    )
                })
                .collect();
            tags.push((
                STATE_HEADER.to_string(),
                format!("{}.{}", tags.len(), digest(&b64)),
            ));
            return Ok(tags);
        }
    }
    Err("the run state does not fit in the secret's tags".into())
}

/// The state from tags, and every state tag key present. A torn or foreign state (count or
/// digest mismatch) reads as none.
pub(super) fn decode(tags: &[Tag]) -> (Vec<String>, Option<RunState>) {
    let mut keys = Vec::new();
    let mut chunks: BTreeMap<usize, &str> = BTreeMap::new();
    let mut header = None;
    for t in tags {
        let (Some(k), Some(v)) = (t.key(), t.value()) else {
            continue;
        };
        let Some(rest) = k.strip_prefix(STATE_TAG_PREFIX) else {
            continue;
        };
        keys.push(k.to_string());
        if k == STATE_HEADER {
            header = Some(v);
        } else if let Ok(i) = rest.parse::<usize>() {
            chunks.insert(i, v);
        }
    }
    let state = header.and_then(|h| {
        let (count, sum) = h.split_once('.')?;
        let count: usize = count.parse().ok()?;
        let joined: String = (0..count)
            .map(|i| chunks.get(&i).copied())
            .collect::<Option<String>>()?;
        if digest(&joined) != sum {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    });
    (keys, state)
}

fn digest(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref()[..6].iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(String, String)]) -> Vec<Tag> {
        pairs
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    #[test]
    fn state_survives_chunking_is_capped_and_torn_states_read_as_none() {
        let state = RunState {
            last_run_at: Some("2026-11-28T12:00:00Z".into()),
            last_outcome: Some("failed".into()),
            last_error: Some("x".repeat(5000)),
            consecutive_failures: 3,
            ..RunState::default()
        };
        let pairs = encode(&state).unwrap_or_default();
        assert!(pairs.len() >= 2 && pairs.len() <= STATE_MAX_CHUNKS + 1);
        assert!(pairs.iter().all(|(_, v)| v.len() <= STATE_CHUNK));
        let (keys, back) = decode(&tags(&pairs));
        assert_eq!(keys.len(), pairs.len());
        let back = back.unwrap_or_default();
        assert_eq!(back.consecutive_failures, 3);
        assert!(back.last_error.map_or(0, |e| e.len()) <= 700);

        // A chunk from another write (torn update) fails the digest: no state, not garbage.
        let mut torn = pairs.clone();
        torn[0].1 = "AAAA".into();
        assert!(decode(&tags(&torn)).1.is_none());
        // A leftover chunk beyond the header's count is ignored.
        let mut extra = pairs.clone();
        extra.push((format!("{STATE_TAG_PREFIX}9"), "junk".into()));
        assert_eq!(
            decode(&tags(&extra)).1.map(|s| s.consecutive_failures),
            Some(3)
        );
        // The user's own tags are not state keys.
        let (keys, _) = decode(&tags(&[("team".into(), "x".into())]));
        assert!(keys.is_empty());
    }
}
