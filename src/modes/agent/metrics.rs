//! The agent's Prometheus metrics (OpenMetrics text): cache hits and misses, store reads,
//! refreshes, stale answers, refused callers, and each served token's age and expiry. Never a
//! secret id, a version's content or a caller's header.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TokenLabel {
    token: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    token: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every metric the agent exposes.
pub struct AgentMetrics {
    registry: Registry,
    hits: Family<TokenLabel, Counter>,
    misses: Family<TokenLabel, Counter>,
    store_reads: Family<ResultLabels, Counter>,
    refreshes: Family<ResultLabels, Counter>,
    stale_served: Family<TokenLabel, Counter>,
    unavailable: Family<TokenLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    stale: Family<TokenLabel, Gauge>,
    age: Family<TokenLabel, Gauge<f64, AtomicU64>>,
    expiry: Family<TokenLabel, Gauge<f64, AtomicU64>>,
}

fn label(token: &str) -> TokenLabel {
    TokenLabel {
        token: token.to_string(),
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let m = AgentMetrics {
            registry: Registry::default(),
            hits: Family::default(),
            misses: Family::default(),
            store_reads: Family::default(),
            refreshes: Family::default(),
            stale_served: Family::default(),
            unavailable: Family::default(),
            refused: Family::default(),
            stale: Family::default(),
            age: Family::default(),
            expiry: Family::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "deepvue_rotator_agent_cache_hits",
            "Token requests answered from memory, without a store read",
            m.hits.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_cache_misses",
            "Token requests that found nothing usable in memory and waited for a store read",
            m.misses.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_store_reads",
            "Store reads by result (ok, error)",
            m.store_reads.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_refreshes",
            "Refresh requests by result (read: the store was read; coalesced: answered by a read \
             made within refresh_interval)",
            m.refreshes.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_stale_served",
            "Answers that carried the previous version because the current one is unusable",
            m.stale_served.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_unavailable",
            "Token requests answered 503: no usable version",
            m.unavailable.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_refused",
            "Requests refused before any token was looked at, by reason",
            m.refused.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_stale",
            "1 while the token served is the previous version (the current one is unusable)",
            m.stale.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_token_age_seconds",
            "Seconds since the served token was issued",
            m.age.clone(),
        );
        registry.register(
            "deepvue_rotator_agent_token_expiry_timestamp_seconds",
            "When the served token expires (Unix seconds)",
            m.expiry.clone(),
        );
        AgentMetrics { registry, ..m }
    }
}

impl AgentMetrics {
    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// `token`'s cache-hit counter (a handle: increments go to the family's series).
    pub fn hits(&self, token: &str) -> Counter {
        self.hits.get_or_create(&label(token)).clone()
    }

    /// `token`'s cache-miss counter.
    pub fn misses(&self, token: &str) -> Counter {
        self.misses.get_or_create(&label(token)).clone()
    }

    pub fn store_read(&self, token: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.store_reads
            .get_or_create(&ResultLabels {
                token: token.to_string(),
                result,
            })
            .inc();
    }

    pub fn refresh(&self, token: &str, read: bool) {
        let result = if read { "read" } else { "coalesced" };
        self.refreshes
            .get_or_create(&ResultLabels {
                token: token.to_string(),
                result,
            })
            .inc();
    }

    /// `token`'s stale-answer counter.
    pub fn stale_served(&self, token: &str) -> Counter {
        self.stale_served.get_or_create(&label(token)).clone()
    }

    /// `token`'s 503 counter.
    pub fn unavailable(&self, token: &str) -> Counter {
        self.unavailable.get_or_create(&label(token)).clone()
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// What is served for `token` now: its age, expiry and whether it is the previous version
    /// (`None`: nothing is served; the series go).
    pub fn served(&self, token: &str, served: Option<(f64, f64, bool)>) {
        let l = label(token);
        match served {
            Some((age, expiry, stale)) => {
                self.age.get_or_create(&l).set(age);
                self.expiry.get_or_create(&l).set(expiry);
                self.stale.get_or_create(&l).set(i64::from(stale));
            }
            None => {
                self.age.remove(&l);
                self.expiry.remove(&l);
                self.stale.remove(&l);
            }
        }
    }
}
