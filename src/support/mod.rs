//! Small shared helpers that know nothing about Deepvue, tokens, backends or run modes.
//!
//! **Dependency rule:** `support` imports nothing else from this crate.

pub mod atomic_file;
pub mod build;
pub mod duration;
pub mod exposition;
pub mod http;
#[cfg(any(feature = "daemon", feature = "agent"))]
pub mod http_server;
pub mod logging;
pub mod net;
pub mod output;
pub mod problem;
pub mod process;
pub mod redact;
pub mod secret_ref;
pub mod signals;
pub mod text;
pub mod time;
pub mod tls;
#[cfg(any(feature = "daemon", feature = "agent"))]
pub mod unix_socket;
pub mod url;
