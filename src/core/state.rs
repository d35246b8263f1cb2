//! Run state: what is kept beside a token between runs (no secrets), and the contract of the
//! place it is kept ([`StateStore`]).
//!
//! The store keeps **bytes** and an opaque etag; what the bytes say ([`RunState`]) and when
//! they are worth keeping are the engine's business (`engine::record`), so no backend knows
//! the alerting rules.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::alert::{AlertState, Condition};
use super::result::OutcomeKind;
use super::store::StoreError;

/// Non-secret per-token state kept beside the token: the last outcome (for `status`) and the
/// open alert conditions (for dedup and resolve across runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// RFC 3339 time of the last run that changed something or failed.
    pub last_run_at: Option<String>,
    /// What that run did (an outcome this release does not know reads as none, so the rest
    /// of the state, open alerts included, is kept).
    #[serde(default, deserialize_with = "lenient_outcome")]
    pub last_outcome: Option<OutcomeKind>,
    /// The error class and message when the last outcome was a failure.
    pub last_error: Option<String>,
    /// Failures in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Open alert conditions, for dedup and resolve across runs.
    #[serde(default)]
    pub alerts: BTreeMap<Condition, AlertState>,
    /// The last alert delivery failure, if the last alert did not reach every sink.
    #[serde(default)]
    pub last_alert_error: Option<String>,
    /// Set by `deepvue-rotator suspend`: no runner mints this token until `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<Suspension>,
}

/// An operator's suspension of a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// When (RFC 3339).
    pub at: String,
    /// Who: `user@host`.
    pub by: String,
    /// Why, as given.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Suspension {
    /// One line: `since T by U: reason`.
    pub fn describe(&self) -> String {
        format!(
            "since {} by {}{}",
            self.at,
            self.by,
            self.reason
                .as_deref()
                .map(|r| format!(": {}", crate::support::text::escape_control(r)))
                .unwrap_or_default()
        )
    }
}

fn lenient_outcome<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<OutcomeKind>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
}

/// Lengths the two free-text messages are cut to, in turn, until a state fits its store.
const CUTS: &[usize] = &[usize::MAX, 1000, 600, 300, 200, 0];

impl RunState {
    /// The state as kept bytes (JSON), its messages cut until it fits in `capacity` bytes.
    pub fn to_bytes(&self, capacity: usize) -> Result<Vec<u8>, String> {
        let mut s = self.clone();
        for &limit in CUTS {
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
            if json.len() <= capacity {
                return Ok(json);
            }
        }
        Err(format!(
            "the run state does not fit in the {capacity} bytes its store keeps"
        ))
    }

    /// The state from kept bytes; anything unreadable is no state.
    pub fn from_bytes(bytes: &[u8]) -> Option<RunState> {
        serde_json::from_slice(bytes).ok()
    }
}

/// How a backend keeps run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatePolicy {
    /// Beside the token, cheap to read and write (a local file): every run's outcome is kept,
    /// for `status`.
    EveryRun,
    /// In metadata that costs API calls (tags, annotations): kept only while alerting needs it
    /// (an open alert, a failure), and read only when the run failed or rotated, egress
    /// drifted, or the token read hinted that state is kept, so a healthy no-op stays one
    /// read.
    AlertsOnly,
}

/// What a conditional state write needs from the read it follows (the metadata's etag, the
/// keys it holds). Its content is its backend's own encoding, opaque to everyone else; a
/// write given an etag it cannot use reads afresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateEtag(pub String);

impl StateEtag {
    /// A backend's own value as an etag.
    pub fn of<T: Serialize>(value: &T) -> Self {
        StateEtag(serde_json::to_string(value).unwrap_or_default())
    }

    /// The backend's value back; `None` for an etag of another shape (then it reads afresh).
    pub fn value<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.0).ok()
    }
}

/// Kept run state as read.
#[derive(Clone, Debug, Default)]
pub struct StateRead {
    /// The kept bytes, if any.
    pub bytes: Option<Vec<u8>>,
    /// For the write that follows this read.
    pub etag: Option<StateEtag>,
    /// Something is kept that must be rewritten even if the state is unchanged (a marker
    /// without state, a torn write).
    pub needs_write: bool,
}

/// Where a token's run state lives.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// How this backend keeps run state.
    fn policy(&self) -> StatePolicy;
    /// The largest state, in bytes, it keeps.
    fn capacity(&self) -> usize;
    /// The kept state.
    async fn read_state(&self) -> Result<StateRead, StoreError>;
    /// Replace the kept state with `bytes` (`None`: keep none), conditional on `etag` (from
    /// the `read_state` of this run; `None`: the backend reads what it needs). A stale etag
    /// reads again and replaces only the state's own keys.
    async fn write_state(
        &self,
        bytes: Option<&[u8]>,
        etag: Option<&StateEtag>,
    ) -> Result<(), StoreError>;
}

/// Kept bytes as key/value metadata (AWS tags, Vault `custom_metadata`, GCP annotations):
/// base64 in chunks `<prefix>0`, `<prefix>1`, … plus a header `<prefix>n` holding the chunk
/// count and a digest, so a torn update reads as "nothing kept", never as garbage.
#[derive(Clone, Copy, Debug)]
pub struct StateChunks {
    /// Every key starts with this.
    pub prefix: &'static str,
    /// The longest value the metadata allows.
    pub chunk: usize,
    /// At most this many chunks (leave the rest of the metadata to its owner).
    pub max_chunks: usize,
}

impl StateChunks {
    /// The header key.
    pub fn header(&self) -> String {
        format!("{}n", self.prefix)
    }

    /// Whether `key` is one of ours.
    pub fn owns(&self, key: &str) -> bool {
        key.starts_with(self.prefix)
    }

    /// The most bytes the chunks hold (base64 takes 4 characters per 3 bytes).
    pub const fn capacity(&self) -> usize {
        self.chunk * self.max_chunks / 4 * 3
    }

    /// `bytes` as key/value pairs, header last.
    pub fn encode(&self, bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
        let b64 = B64.encode(bytes);
        if b64.len() > self.chunk.saturating_mul(self.max_chunks) {
            return Err("the run state does not fit in the metadata".into());
        }
        let mut out: Vec<(String, String)> = b64
            .as_bytes()
            .chunks(self.chunk.max(1))
            .enumerate()
            .map(|(i, c)| {
                (
                    format!("{}{i}", self.prefix),
                    String::from_utf8_lossy(c).into_owned(),
                )
            })
            .collect();
        out.push((self.header(), format!("{}.{}", out.len(), digest(&b64))));
        Ok(out)
    }

    /// `meta` with every key of ours replaced by `pairs` (none: the state removed); the
    /// owner's keys are kept as they are.
    pub fn replaced<'a, M>(
        &self,
        meta: impl IntoIterator<Item = (&'a String, &'a String)>,
        pairs: &[(String, String)],
    ) -> M
    where
        M: FromIterator<(String, String)>,
    {
        meta.into_iter()
            .filter(|(k, _)| !self.owns(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(pairs.iter().cloned())
            .collect()
    }

    /// The bytes from the metadata `get` reads; a torn or foreign state (count or digest
    /// mismatch) reads as none.
    pub fn decode<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Option<Vec<u8>> {
        let header = get(&self.header())?;
        let (count, sum) = header.split_once('.')?;
        let count: usize = count.parse().ok()?;
        if count > self.max_chunks {
            return None;
        }
        let joined: String = (0..count)
            .map(|i| get(&format!("{}{i}", self.prefix)))
            .collect::<Option<String>>()?;
        if digest(&joined) != sum {
            return None;
        }
        B64.decode(joined).ok()
    }

    /// A read of metadata: the kept bytes, and whether something of ours is there that does
    /// not decode (a torn write, keys edited by hand), which the next write must clear.
    pub fn read<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> (Option<Vec<u8>>, bool) {
        let marked = get(&self.header()).is_some();
        let bytes = self.decode(get);
        let torn = marked && bytes.is_none();
        (bytes, torn)
    }
}

fn digest(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref()[..6].iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: StateChunks = StateChunks {
        prefix: "x:",
        chunk: 32,
        max_chunks: 8,
    };

    fn get<'a>(pairs: &'a [(String, String)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn chunks_round_trip_are_capped_and_torn_states_read_as_none() {
        let state = RunState {
            last_outcome: Some(OutcomeKind::Failed),
            last_error: Some("e".repeat(5000)),
            consecutive_failures: 2,
            ..RunState::default()
        };
        let bytes = state.to_bytes(C.capacity()).unwrap_or_default();
        assert!(bytes.len() <= C.capacity());
        let pairs = C.encode(&bytes).unwrap_or_default();
        assert!(pairs.len() <= C.max_chunks + 1 && pairs.iter().all(|(_, v)| v.len() <= 32));
        let back = C.decode(get(&pairs)).and_then(|b| RunState::from_bytes(&b));
        assert_eq!(back.map(|s| s.consecutive_failures), Some(2));
        let mut torn = pairs.clone();
        torn[0].1 = "AAAA".into();
        assert!(C.decode(get(&torn)).is_none());
        assert_eq!(C.read(get(&torn)), (None, true), "torn: must be rewritten");
        assert_eq!(C.read(get(&[])), (None, false));
        assert!(C.owns("x:3") && !C.owns("team"));
        assert!(C.encode(&[0u8; 1000]).is_err(), "too large for the chunks");
    }

    #[test]
    fn long_messages_are_cut_until_the_state_fits() {
        let state = RunState {
            last_outcome: Some(OutcomeKind::Failed),
            last_error: Some("x".repeat(20_000)),
            last_alert_error: Some("y".repeat(20_000)),
            ..RunState::default()
        };
        for capacity in [300, 1000, 5000] {
            let bytes = state.to_bytes(capacity).unwrap_or_default();
            assert!(!bytes.is_empty() && bytes.len() <= capacity, "{capacity}");
        }
        assert!(state.to_bytes(10).is_err());
        let old = br#"{"last_run_at":"2026-11-28T12:00:00Z","last_outcome":"rotated_by_another_runner","last_error":null}"#;
        assert_eq!(
            RunState::from_bytes(old).and_then(|s| s.last_outcome),
            Some(OutcomeKind::RotatedByAnotherRunner),
            "state files of earlier releases still read"
        );
        let newer = br#"{"last_outcome":"held_by_a_later_release","consecutive_failures":3,"alerts":{"ip-403":{"dedup_key":"k","since":"2026-11-28T12:00:00Z","last_sent":null,"severity":"warning"}}}"#;
        let read = RunState::from_bytes(newer).unwrap_or_default();
        assert_eq!(read.last_outcome, None, "an unknown outcome reads as none");
        assert_eq!(
            (read.consecutive_failures, read.alerts.len()),
            (3, 1),
            "and the rest of the state is kept"
        );
    }
}
