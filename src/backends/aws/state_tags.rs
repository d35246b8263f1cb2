//! Run state in tags on the token secret: base64 JSON in chunks `deepvue-rotator:state:N`
//! (tag values are at most 256 characters) plus a header `deepvue-rotator:state:n` holding the
//! chunk count and a digest, so a torn update reads as "no state", never as garbage.

use aws_sdk_secretsmanager::types::Tag;

use crate::core::state::{RunState, StateChunks};

/// Tag keys holding the run state start with this.
pub const STATE_TAG_PREFIX: &str = "deepvue-rotator:state:";
/// Tag values are at most 256 characters; AWS allows 50 tags per secret: leave room for the
/// user's.
const CHUNKS: StateChunks = StateChunks {
    prefix: STATE_TAG_PREFIX,
    chunk: 256,
    max_chunks: 10,
    cuts: &[600, 200],
};

/// The state as tags, header last.
pub(super) fn encode(state: &RunState) -> Result<Vec<(String, String)>, String> {
    CHUNKS
        .encode(state)
        .map_err(|_| "the run state does not fit in the secret's tags".to_string())
}

/// The state from tags, and every state tag key present.
pub(super) fn decode(tags: &[Tag]) -> (Vec<String>, Option<RunState>) {
    let keys = tags
        .iter()
        .filter_map(Tag::key)
        .filter(|k| CHUNKS.owns(k))
        .map(str::to_string)
        .collect();
    let state = CHUNKS.decode(|key| {
        tags.iter()
            .find(|t| t.key() == Some(key))
            .and_then(Tag::value)
    });
    (keys, state)
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
        assert!(pairs.len() >= 2 && pairs.len() <= CHUNKS.max_chunks + 1);
        assert!(pairs.iter().all(|(_, v)| v.len() <= CHUNKS.chunk));
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
