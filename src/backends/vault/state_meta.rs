//! Run state in the token path's KV v2 `custom_metadata`: base64 JSON in chunks
//! `deepvue-rotator.state.N` (values are at most 512 characters, at most 64 keys per path)
//! plus a header `deepvue-rotator.state.n` holding the chunk count and a digest, so a torn
//! update reads as "no state", never as garbage. Other keys in `custom_metadata` belong to the
//! operator and are kept as they are.

use std::collections::BTreeMap;

use crate::core::state::{RunState, StateChunks};

/// `custom_metadata` keys holding the run state start with this.
pub const STATE_KEY_PREFIX: &str = "deepvue-rotator.state.";
/// Values are at most 512 characters; Vault allows 64 keys per path: leave most to the
/// operator.
const CHUNKS: StateChunks = StateChunks {
    prefix: STATE_KEY_PREFIX,
    chunk: 512,
    max_chunks: 16,
    cuts: &[1000, 300],
};

/// The state as `custom_metadata` entries.
pub(super) fn encode(state: &RunState) -> Result<Vec<(String, String)>, String> {
    CHUNKS
        .encode(state)
        .map_err(|_| "the run state does not fit in the path's custom_metadata".to_string())
}

/// Whether `custom_metadata` marks kept state (the header key is there).
pub(super) fn marked(meta: &BTreeMap<String, String>) -> bool {
    meta.contains_key(&CHUNKS.header())
}

/// The state from `custom_metadata`; a torn or foreign state (count or digest mismatch) reads
/// as none.
pub(super) fn decode(meta: &BTreeMap<String, String>) -> Option<RunState> {
    CHUNKS.decode(|k| meta.get(k).map(String::as_str))
}

/// `meta` with every state key replaced by `state_keys` (the operator's keys untouched).
pub(super) fn merged(
    meta: &BTreeMap<String, String>,
    state_keys: &[(String, String)],
) -> BTreeMap<String, String> {
    CHUNKS.replaced(meta, state_keys)
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
        assert!(pairs.len() >= 2 && pairs.len() <= CHUNKS.max_chunks + 1);
        assert!(
            pairs
                .iter()
                .all(|(k, v)| v.len() <= CHUNKS.chunk && k.len() <= 128)
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
