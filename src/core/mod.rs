//! The pure core: the token document, the due decision, the report, the error classes, the run
//! state, the alert plan, and the contracts (traits) that backends and sinks implement.
//!
//! **Dependency rule:** `core` depends only on `support`. It names no backend, SDK or run mode,
//! and does no I/O of its own.

pub mod alert;
pub mod credentials;
pub mod decide;
pub mod document;
pub mod egress;
pub mod error;
pub mod observe;
pub mod report;
pub mod state;
pub mod store;
