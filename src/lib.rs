//! deepvue-rotator keeps Deepvue API access tokens fresh in the secret stores applications
//! already read.
//!
//! Layers, each depending only on those above it in this list (see `ARCHITECTURE.md`):
//! - [`support`]: small helpers that know nothing of tokens (TLS, secret references, text).
//! - [`core`]: the pure core — token document, due decision, report, error classes, run state,
//!   alert plan — and the traits backends and sinks implement.
//! - [`engine`]: the Deepvue client, egress probes, alert delivery and the rotator.
//! - [`backends`]: one folder per credentials/store backend, and the registry that lists them.
//! - [`sinks`]: alert sinks and their registry.
//! - [`config`]: the TOML schema and its validation.
//! - [`app`]: the composition root, `Config` → clients, sinks, jobs.
//! - [`modes`]: the run modes (command line, Lambda), thin over `app`.
//! - [`simulator`]: the HTTPS Deepvue simulator (feature `simulator`).

pub mod app;
pub mod backends;
pub mod config;
pub mod core;
pub mod engine;
pub mod modes;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod sinks;
pub mod support;
