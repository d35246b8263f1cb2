//! Run modes: thin adapters over the composition root ([`crate::app`]).
//!
//! - `cli`: the one-shot commands (`rotate`, `status`, `read`, `check`) and the tools (`demo`,
//!   `simulate`).
//! - `daemon`: long-running, expiry-driven, with health, metrics and systemd integration.
//! - `lambda`: the same binary as an AWS Lambda `bootstrap`.
//! - `agent`: a local token endpoint serving stored tokens to applications on the host, from a
//!   cache that follows each token's expiry (never mints unless told to).
//! - `exec`: run an application with the token in its environment or a file, and restart or
//!   signal it when a new version appears.
//!
//! **Dependency rule:** a mode depends on `app`, `config`, `engine`, `core` and `support`
//! (a mode for one platform may also use that platform's backend); modes never import each
//! other. Exit codes and report rendering live below them, in `core`.

#[cfg(feature = "agent")]
pub mod agent;
pub mod cli;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod exec;
#[cfg(feature = "lambda")]
pub mod lambda;
