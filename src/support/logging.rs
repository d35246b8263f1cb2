//! Logging setup: `tracing` to stderr, text on a terminal and JSON otherwise, Cloud Logging's
//! structured JSON on Cloud Run; `RUST_LOG` honoured. Nothing logged anywhere in the crate
//! carries a secret: tokens and credentials live in `secrecy` types whose `Debug` redacts.
//!
//! **Cloud Run** (`CLOUD_RUN_JOB` or `K_SERVICE` set, or `--log-format gcp`): one JSON object
//! per line with `severity` and `message` (what Cloud Logging reads from a container's
//! stderr), the event's and its spans' fields, and the platform's execution identity in every
//! record: `CLOUD_RUN_EXECUTION` and `CLOUD_RUN_TASK_ATTEMPT` for a job (also
//! `CLOUD_RUN_TASK_INDEX`), `K_REVISION` for a service. These platform variables are read here
//! only to label log lines; they configure nothing.

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
    /// Cloud Logging structured JSON (`severity`, `message`; the default on Cloud Run).
    Gcp,
}

/// The platform labels every Cloud Logging record carries (those that are set).
const CLOUD_RUN_LABELS: &[&str] = &[
    "CLOUD_RUN_JOB",
    "CLOUD_RUN_EXECUTION",
    "CLOUD_RUN_TASK_INDEX",
    "CLOUD_RUN_TASK_ATTEMPT",
    "K_SERVICE",
    "K_REVISION",
];

/// Whether this process runs on Cloud Run (a job or a service).
pub fn on_cloud_run() -> bool {
    ["CLOUD_RUN_JOB", "K_SERVICE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Install the global subscriber. `default_directive` applies when `RUST_LOG` is unset.
pub fn init(format: Option<LogFormat>, default_directive: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directive));
    let stderr_tty = std::io::stderr().is_terminal();
    let format = format.unwrap_or(if on_cloud_run() {
        LogFormat::Gcp
    } else if stderr_tty {
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
        LogFormat::Gcp => builder
            .fmt_fields(JsonFields::new())
            .event_format(CloudLogging::from_env())
            .try_init(),
    };
}

/// Cloud Logging's structured JSON.
pub struct CloudLogging {
    labels: Vec<(&'static str, String)>,
}

impl CloudLogging {
    /// With the Cloud Run labels of this process's environment.
    pub fn from_env() -> Self {
        CloudLogging {
            labels: CLOUD_RUN_LABELS
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
                .collect(),
        }
    }
}

/// Cloud Logging's `severity` for a level.
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        // Span fields (token, backend, secret_id), innermost last so it wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(o)) = serde_json::from_str::<Value>(f)
                {
                    for (k, v) in o {
                        fields.entry(k).or_insert(v);
                    }
                }
            }
        }
        let mut out = Map::new();
        out.insert(
            "severity".into(),
            Value::from(severity(event.metadata().level())),
        );
        out.insert(
            "message".into(),
            fields.remove("message").unwrap_or_else(|| Value::from("")),
        );
        out.insert(
            "time".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        for (k, v) in &self.labels {
            out.insert((*k).into(), Value::from(v.as_str()));
        }
        for (k, v) in fields {
            out.entry(k).or_insert(v);
        }
        writeln!(writer, "{}", Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities() {
        assert_eq!(severity(&Level::WARN), "WARNING");
        assert_eq!(severity(&Level::TRACE), "DEBUG");
        assert_eq!(severity(&Level::ERROR), "ERROR");
    }
}
