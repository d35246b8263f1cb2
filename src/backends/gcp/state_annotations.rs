//! Run state in annotations on the token secret: the engine's bytes, base64 in chunks
//! `deepvue-rotator.state.N` plus a header `deepvue-rotator.state.n` holding the chunk count
//! and a digest, so a torn or hand-edited state reads as "no state", never as garbage.
//!
//! Annotations (keys plus values) must stay under 16 KiB per secret, shared with the user's
//! own annotations and the lease: the state takes at most [`CAPACITY`] bytes (6 KiB of base64),
//! and [`fits`] checks the whole map before a write.

use std::collections::HashMap;

use crate::core::state::StateChunks;

/// Annotation keys holding the run state start with this.
pub const STATE_ANNOTATION_PREFIX: &str = "deepvue-rotator.state.";
/// Annotation values have no own limit, but the map does: chunks keep each value modest, and
/// at most 6 KiB of state leaves room for the user's annotations and the lease.
const CHUNKS: StateChunks = StateChunks {
    prefix: STATE_ANNOTATION_PREFIX,
    chunk: 2048,
    max_chunks: 3,
};
/// The most state bytes the annotations keep.
pub(super) const CAPACITY: usize = CHUNKS.capacity();
/// Secret Manager's limit on all annotation keys plus values of one secret.
pub const ANNOTATIONS_MAX_BYTES: usize = 16 * 1024;

/// Whether annotations fit Secret Manager's limit (keys plus values under 16 KiB).
pub fn fits(annotations: &HashMap<String, String>) -> bool {
    annotations
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        < ANNOTATIONS_MAX_BYTES
}

/// The state as annotation pairs (header included).
pub(super) fn encode(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    CHUNKS
        .encode(bytes)
        .map_err(|_| "the run state does not fit in the secret's annotations".to_string())
}

/// The state from annotations, and whether state keys are there that do not decode.
pub(super) fn decode(annotations: &HashMap<String, String>) -> (Option<Vec<u8>>, bool) {
    CHUNKS.read(|k| annotations.get(k).map(String::as_str))
}

/// `annotations` with the state replaced by `pairs` (none: removed); everything else kept.
pub(super) fn replace(
    annotations: &HashMap<String, String>,
    pairs: &[(String, String)],
) -> HashMap<String, String> {
    CHUNKS.replaced(annotations, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_chunking_is_capped_and_torn_states_read_as_none() {
        let bytes = vec![b'x'; CAPACITY];
        let pairs = encode(&bytes).unwrap_or_default();
        assert!(pairs.len() >= 2);
        let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total < CHUNKS.chunk * CHUNKS.max_chunks + 400, "{total}");
        let mut ann = HashMap::new();
        ann.insert("team".to_string(), "payments".to_string());
        let with = replace(&ann, &pairs);
        assert!(fits(&with));
        assert_eq!(decode(&with), (Some(bytes), false));
        // Torn: a chunk from another write.
        let mut torn = with.clone();
        torn.insert(format!("{STATE_ANNOTATION_PREFIX}0"), "AAAA".into());
        assert_eq!(decode(&torn), (None, true));
        // Removing keeps the user's annotation.
        let gone = replace(&with, &[]);
        assert_eq!(gone.len(), 1);
        assert_eq!(decode(&gone), (None, false));
        let mut big = HashMap::new();
        big.insert("k".to_string(), "v".repeat(16 * 1024));
        assert!(!fits(&big));
    }
}
