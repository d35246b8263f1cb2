//! The engine: the Deepvue authorize client, the egress probes, alert delivery, and the rotator
//! that sequences one rotation per token.
//!
//! **Dependency rule:** `engine` depends on `core` and `support` only. It reaches backends and
//! sinks through the `core` traits (`TokenStore`, `Leases`, `StateStore`, `NativeRotation`,
//! `CredentialSource`, `Sink`) and never names one.

pub mod alerter;
pub mod audit;
pub mod deepvue;
pub mod egress;
pub mod fanout;
pub mod hooks;
pub mod metrics;
pub mod metrics_export;
pub mod observed;
pub mod record;
pub mod rotator;
pub mod trigger;
pub mod usable;
