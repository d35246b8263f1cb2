//! Run state in tags on the token secret: the engine's bytes, base64 in chunks
//! `deepvue-rotator:state:N` (tag values are at most 256 characters) plus a header
//! `deepvue-rotator:state:n` holding the chunk count and a digest, so a torn update reads as
//! "no state", never as garbage.

use aws_sdk_secretsmanager::types::Tag;

use crate::core::state::StateChunks;

/// Tag keys holding the run state start with this.
pub const STATE_TAG_PREFIX: &str = "deepvue-rotator:state:";
/// Tag values are at most 256 characters; AWS allows 50 tags per secret: leave room for the
/// user's.
const CHUNKS: StateChunks = StateChunks {
    prefix: STATE_TAG_PREFIX,
    chunk: 256,
    max_chunks: 10,
};
/// The most state bytes the tags keep.
pub(super) const CAPACITY: usize = CHUNKS.capacity();

/// The state as tags, header last.
pub(super) fn encode(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    CHUNKS
        .encode(bytes)
        .map_err(|_| "the run state does not fit in the secret's tags".to_string())
}

/// Every state tag key present, the state, and whether state tags are there that do not
/// decode (torn).
pub(super) fn decode(tags: &[Tag]) -> (Vec<String>, Option<Vec<u8>>, bool) {
    let keys = tags
        .iter()
        .filter_map(Tag::key)
        .filter(|k| CHUNKS.owns(k))
        .map(str::to_string)
        .collect();
    let (bytes, torn) = CHUNKS.read(|key| {
        tags.iter()
            .find(|t| t.key() == Some(key))
            .and_then(Tag::value)
    });
    (keys, bytes, torn)
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
        let bytes: Vec<u8> = (0..CAPACITY).map(|i| (i % 251) as u8).collect();
        let pairs = encode(&bytes).unwrap_or_default();
        assert!(pairs.len() >= 2 && pairs.len() <= CHUNKS.max_chunks + 1);
        assert!(pairs.iter().all(|(_, v)| v.len() <= CHUNKS.chunk));
        let (keys, back, torn) = decode(&tags(&pairs));
        assert_eq!(keys.len(), pairs.len());
        assert_eq!(back.as_deref(), Some(bytes.as_slice()));
        assert!(!torn);
        assert!(encode(&[0; CAPACITY + 1]).is_err(), "beyond the capacity");

        // A chunk from another write (torn update) fails the digest: no state, not garbage.
        let mut torn = pairs.clone();
        torn[0].1 = "AAAA".into();
        assert_eq!(decode(&tags(&torn)).1, None);
        assert!(decode(&tags(&torn)).2);
        // A leftover chunk beyond the header's count is ignored.
        let mut extra = pairs.clone();
        extra.push((format!("{STATE_TAG_PREFIX}9"), "junk".into()));
        assert_eq!(decode(&tags(&extra)).1.as_deref(), Some(bytes.as_slice()));
    }
}
