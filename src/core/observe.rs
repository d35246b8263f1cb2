//! What metrics count: authorize answers and store calls (with their latency), alert
//! deliveries. The engine reports through [`Observer`]; a mode that exposes metrics supplies an
//! implementation, every other mode the no-op [`Unobserved`].

use std::time::Duration;

use super::alert::{Action, Condition};

/// How one authorize attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthorizeClass {
    /// A valid token.
    Ok,
    /// 403.
    Forbidden,
    /// 400 / 401 / 422.
    CredentialsRejected,
    /// 429.
    RateLimited,
    /// 5xx, timeouts, connection errors, malformed answers, anything else.
    Transient,
}

impl AuthorizeClass {
    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizeClass::Ok => "ok",
            AuthorizeClass::Forbidden => "forbidden",
            AuthorizeClass::CredentialsRejected => "credentials_rejected",
            AuthorizeClass::RateLimited => "rate_limited",
            AuthorizeClass::Transient => "transient",
        }
    }
}

/// Receives counts. Every method has a no-op default.
pub trait Observer: Send + Sync {
    /// One authorize attempt (each retry counts) and how long it took.
    fn authorize(&self, _class: AuthorizeClass, _elapsed: Duration) {}
    /// One store operation (`read_current`, `write`, …), its result (`ok` or an error
    /// class) and how long it took.
    fn store_call(
        &self,
        _backend: &'static str,
        _operation: &'static str,
        _result: &'static str,
        _elapsed: Duration,
    ) {
    }
    /// One alert handed to one sink.
    fn alert(&self, _sink: &str, _condition: Condition, _action: Action, _delivered: bool) {}
}

/// Counts nothing.
pub struct Unobserved;

impl Observer for Unobserved {}
