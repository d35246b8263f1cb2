//! Run state: what a store keeps beside a token between runs (no secrets).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::alert::{AlertState, Condition};

/// Non-secret per-token state kept beside the token: the last outcome (for `status`) and the
/// open alert conditions (for dedup and resolve across runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// RFC 3339 time of the last run that changed something or failed.
    pub last_run_at: Option<String>,
    /// `rotated`, `rotated_by_another_runner` or `failed`.
    pub last_outcome: Option<String>,
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
}

impl RunState {
    /// Whether this state is worth keeping where keeping it costs API calls: a failure or an
    /// open alert. A success with nothing open is "no state".
    pub fn worth_keeping(&self) -> bool {
        !self.alerts.is_empty() || self.last_outcome.as_deref() == Some("failed")
    }
}

/// Run state as key/value metadata (AWS tags, Vault `custom_metadata`, GCP annotations):
/// base64 JSON in chunks `<prefix>0`, `<prefix>1`, … plus a header `<prefix>n` holding the
/// chunk count and a digest, so a torn update reads as "no state", never as garbage.
#[derive(Clone, Copy, Debug)]
pub struct StateChunks {
    /// Every key starts with this.
    pub prefix: &'static str,
    /// The longest value the metadata allows.
    pub chunk: usize,
    /// At most this many chunks (leave the rest of the metadata to its owner).
    pub max_chunks: usize,
    /// Lengths the two messages are cut to, in turn, until the state fits.
    pub cuts: &'static [usize],
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

    /// The state as key/value pairs, header last. Long messages are cut until it fits.
    pub fn encode(&self, state: &RunState) -> Result<Vec<(String, String)>, String> {
        let mut s = state.clone();
        for &limit in [usize::MAX].iter().chain(self.cuts).chain(&[0]) {
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
            let b64 = B64.encode(json);
            if b64.len() <= self.chunk.saturating_mul(self.max_chunks) {
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
                return Ok(out);
            }
        }
        Err("the run state does not fit in the metadata".into())
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

    /// The state from the metadata `get` reads; a torn or foreign state (count or digest
    /// mismatch) reads as none.
    pub fn decode<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Option<RunState> {
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
        let bytes = B64.decode(joined).ok()?;
        serde_json::from_slice(&bytes).ok()
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
        cuts: &[100],
    };

    #[test]
    fn chunks_round_trip_are_capped_and_torn_states_read_as_none() {
        let state = RunState {
            last_outcome: Some("failed".into()),
            last_error: Some("e".repeat(5000)),
            consecutive_failures: 2,
            ..RunState::default()
        };
        let pairs = C.encode(&state).unwrap_or_default();
        assert!(pairs.len() <= C.max_chunks + 1 && pairs.iter().all(|(_, v)| v.len() <= 32));
        let get = |pairs: &[(String, String)], k: &str| {
            pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let back = C.decode(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()));
        assert_eq!(back.map(|s| s.consecutive_failures), Some(2));
        let mut torn = pairs.clone();
        torn[0].1 = "AAAA".into();
        assert!(
            C.decode(|k| torn.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()))
                .is_none()
        );
        assert!(get(&pairs, "x:n").is_some() && C.owns("x:3") && !C.owns("team"));
    }
}
