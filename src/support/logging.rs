//! Logging setup: `tracing` to stderr, text on a terminal and JSON otherwise; `RUST_LOG`
//! honoured. Nothing logged anywhere in the crate carries a secret: tokens and credentials live
//! in `secrecy` types whose `Debug` redacts.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber. `default_directive` applies when `RUST_LOG` is unset.
pub fn init(format: Option<LogFormat>, default_directive: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directive));
    let stderr_tty = std::io::stderr().is_terminal();
    let format = format.unwrap_or(if stderr_tty {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(stderr_tty).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
