//! Run state in the token path's KV v2 `custom_metadata`: base64 JSON in chunks
//! `deepvue-rotator.state.N` (values are at most 512 characters, at most 64 keys per path)
//! plus a header `deepvue-rotator.state.n` holding the chunk count and a digest, so a torn
//! update reads as "no state", never as garbage. Other keys in `custom_metadata` belong to the
//! operator and are kept as they are.

use std::collections::BTreeMap;

use base64::Engine;

use crate::core::state::RunState;

/// `custom_metadata` keys holding the run state start with this.
pub const STATE_KEY_PREFIX: &str = "deepvue-rotator.state.";
/// The header key: `<chunks>.<digest>`.
const STATE_HEADER: &str = "deepvue-rotator.state.n";
/// At most this many chunks (Vault allows 64 keys per path; leave most to the operator).
const MAX_CHUNKS: usize = 16;
/// Values are at most 512 characters.
const CHUNK: usize = 512;

/// The state as `custom_metadata` entries.
pub(super) fn encode(state: &RunState) -> Result<Vec<(String, String)>, String> {
    let mut s = state.clone();
    for limit in [usize::MAX, 1000, 300, 0] {
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
        if b64.len() <= CHUNK * MAX_CHUNKS {
            let mut out: Vec<(String, String)> = b64
                .as_bytes()
                .chunks(CHUNK)
                .enumerate()
                .map(|(i, c)| {
                    (
                        format!("{STATE_KEY_PREFIX}{i}"),
                        String::from_utf8_lossy(c).into_owned(),
                    )
                })
                .collect();
            out.push((
                STATE_HEADER.to_string(),
                format!("{}.{}", out.len(), digest(&b64)),
            ));
            return Ok(out);
        }
    }
    Err("the run state does not fit in the path's custom_metadata".into())
}

/// Whether `custom_metadata` marks kept state (the header key is there).
pub(super) fn marked(meta: &BTreeMap<String, String>) -> bool {
    meta.contains_key(STATE_HEADER)
}

/// The state from `custom_metadata`; a torn or foreign state (count or digest mismatch) reads
/// as none.
pub(super) fn decode(meta: &BTreeMap<String, String>) -> Option<RunState> {
    let (count, sum) = meta.get(STATE_HEADER)?.split_once('.')?;
    let count: usize = count.parse().ok()?;
    let joined: String = (0..count)
        .map(|i| {
            meta.get(&format!("{STATE_KEY_PREFIX}{i}"))
                .map(String::as_str)
        })
        .collect::<Option<String>>()?;
    if digest(&joined) != sum {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(joined)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `meta` with every state key replaced by `state_keys` (the operator's keys untouched).
pub(super) fn merged(
    meta: &BTreeMap<String, String>,
    state_keys: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = meta
        .iter()
        .filter(|(k, _)| !k.starts_with(STATE_KEY_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(state_keys.iter().cloned());
    out
}

fn digest(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref()[..6].iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_chunking_keeps_operator_keys_and_torn_states_read_as_none() {
        let state = RunState {
            last_run_at: Some("2026-11-28T12:00:00Z".into()),
            last_outcome: Some("failed".into()),
            last_error: Some("x".repeat(20_000)),
            consecutive_failures: 3,
            ..RunState::default()
        };
        let pairs = encode(&state).unwrap_or_default();
        assert!(pairs.len() >= 2 && pairs.len() <= MAX_CHUNKS + 1);
        assert!(
            pairs
                .iter()
                .all(|(k, v)| v.len() <= CHUNK && k.len() <= 128)
        );
        let mut meta = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        meta = merged(&meta, &pairs);
        assert!(marked(&meta));
        let back = decode(&meta).unwrap_or_default();
        assert_eq!(back.consecutive_failures, 3);
        assert!(back.last_error.map_or(0, |e| e.chars().count()) <= 1001);
        assert_eq!(meta.get("team").map(String::as_str), Some("payments"));

        let mut torn = meta.clone();
        torn.insert(format!("{STATE_KEY_PREFIX}0"), "AAAA".into());
        assert!(decode(&torn).is_none());

        let cleared = merged(&meta, &[]);
        assert!(!marked(&cleared));
        assert_eq!(cleared.len(), 1);
    }
}
