//! The pure core: the token document, the due decision, the typed run result and its views,
//! the error classes, the run state, the alert plan, the clock, and the contracts (traits) that
//! backends and sinks implement.
//!
//! **Dependency rule:** `core` depends only on `support`. It names no backend, SDK or run mode,
//! and does no I/O of its own. Inside it there is no import circle: the contracts
//! (`store` ← `lease`, `state`, `trigger` ← `parts`) come before the result (`result` ←
//! `alert::plan`, `report`).

pub mod alert;
pub mod clock;
pub mod credentials;
pub mod decide;
pub mod document;
pub mod egress;
pub mod error;
pub mod lease;
pub mod observe;
pub mod parts;
pub mod report;
pub mod result;
pub mod state;
pub mod store;
pub mod trigger;
