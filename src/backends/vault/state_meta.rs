//! Run state in the token path's KV v2 `custom_metadata`: the engine's bytes, base64 in chunks
//! `deepvue-rotator.state.N` (values are at most 512 characters, at most 64 keys per path)
//! plus a header `deepvue-rotator.state.n` holding the chunk count and a digest, so a torn
//! update reads as "no state", never as garbage. Other keys in `custom_metadata` belong to the
//! operator and are kept as they are.

use std::collections::BTreeMap;

use crate::core::state::StateChunks;

/// `custom_metadata` keys holding the run state start with this.
pub const STATE_KEY_PREFIX: &str = "deepvue-rotator.state.";
/// Values are at most 512 characters; Vault allows 64 keys per path: leave most to the
/// operator.
const CHUNKS: StateChunks = StateChunks {
    prefix: STATE_KEY_PREFIX,
    chunk: 512,
    max_chunks: 16,
};
/// The most state bytes the metadata keeps.
pub(super) const CAPACITY: usize = CHUNKS.capacity();

/// The state as `custom_metadata` entries.
pub(super) fn encode(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    CHUNKS
        .encode(bytes)
        .map_err(|_| "the run state does not fit in the path's custom_metadata".to_string())
}

/// Whether `custom_metadata` marks kept state (the header key is there).
pub(super) fn marked(meta: &BTreeMap<String, String>) -> bool {
    meta.contains_key(&CHUNKS.header())
}

/// The state from `custom_metadata`, and whether state keys are there that do not decode.
pub(super) fn decode(meta: &BTreeMap<String, String>) -> (Option<Vec<u8>>, bool) {
    CHUNKS.read(|k| meta.get(k).map(String::as_str))
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
        let bytes = vec![b'x'; CAPACITY];
        let pairs = encode(&bytes).unwrap_or_default();
        assert!(pairs.len() >= 2 && pairs.len() <= CHUNKS.max_chunks + 1);
        assert!(
            pairs
                .iter()
                .all(|(k, v)| v.len() <= CHUNKS.chunk && k.len() <= 128)
        );
        let mut meta = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        meta = merged(&meta, &pairs);
        assert!(marked(&meta));
        assert_eq!(decode(&meta), (Some(bytes), false));
        assert_eq!(meta.get("team").map(String::as_str), Some("payments"));

        let mut torn = meta.clone();
        torn.insert(format!("{STATE_KEY_PREFIX}0"), "AAAA".into());
        assert_eq!(decode(&torn), (None, true));

        let cleared = merged(&meta, &[]);
        assert!(!marked(&cleared));
        assert_eq!(cleared.len(), 1);
    }
}
