//! AWS Lambda mode: the same binary, run as `bootstrap` on `provided.al2023`.
//!
//! Detected by `AWS_LAMBDA_RUNTIME_API` with no command-line arguments. Config comes from
//! `DEEPVUE_ROTATOR_CONFIG` (a path) or `DEEPVUE_ROTATOR_CONFIG_TOML`; logs are JSON. The
//! config is loaded and the [`App`] built once per sandbox; each invocation is dispatched on
//! its event:
//!
//! - **Secrets Manager rotation** (`Step` + `ClientRequestToken`, PascalCase or snake_case):
//!   routed to the token whose store is that secret, whose backend runs the four-step
//!   protocol (`backends/aws/rotation.rs`), every step safe to replay.
//! - **Anything else** (EventBridge Scheduler or rule; `detail` may be the string `"{}"`): one
//!   rotation pass over the configured tokens (`scheduled.rs`), as `deepvue-rotator rotate`.
//!
//! A failing invocation returns a Lambda error whose `errorType` is the classification
//! (`Config`, `Forbidden`, `CredentialsRejected`, `Transient`, `Permanent`), so retries, alarms
//! and DLQs see it. A config that does not load fails every invocation with `Config` and the
//! reason, instead of crash-looping the sandbox.

mod events;
mod scheduled;

use std::process::ExitCode;
use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::{error, info};

use crate::app::{self, App};
use crate::config;
use crate::core::error::{EXIT_CONFIG, ErrorKind};
use crate::engine::metrics::Metrics;
use crate::engine::metrics_export::Export;
use crate::support::logging::{self, LogFormat};

pub use events::RotationEvent;

/// Whether this process was started by the Lambda runtime (and not given a command).
pub fn detected() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty())
        && std::env::args_os().len() <= 1
}

/// Run the Lambda event loop until the runtime stops us.
pub fn main() -> ExitCode {
    logging::init(Some(LogFormat::Json), "info");
    crate::engine::audit::set_mode("lambda");
    if let Err(why) = lambda_environment() {
        error!(
            "{why}: this is not a Lambda environment (run with a command, e.g. `deepvue-rotator rotate`)"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let rt = match app::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let handler = Arc::new(Handler::load());
        let result = lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
            let handler = handler.clone();
            async move { handler.handle(event.payload).await }
        }))
        .await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("Lambda runtime stopped: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// The variables `lambda_runtime` reads (and would panic on): present and well-formed.
fn lambda_environment() -> Result<(), String> {
    for var in ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION"] {
        if std::env::var_os(var).is_none() {
            return Err(format!("{var} is not set"));
        }
    }
    let memory = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .map_err(|_| "AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not set".to_string())?;
    if memory.parse::<i32>().is_err() {
        return Err(format!(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE `{memory}` is not a number"
        ));
    }
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
    if api.parse::<http::Uri>().is_err() {
        return Err(format!(
            "AWS_LAMBDA_RUNTIME_API `{api}` is not host:port or a URL"
        ));
    }
    Ok(())
}

/// A classified invocation failure.
pub struct Failure {
    /// The class; becomes the Lambda `errorType`.
    pub kind: ErrorKind,
    /// What went wrong, naming token, backend and secret; never a secret.
    pub message: String,
}

impl std::fmt::Debug for Failure {
    // The runtime logs the error with `{:?}`: keep it one readable line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", error_type(self.kind), self.message)
    }
}

impl Failure {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// The Lambda `errorType` of a class.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "Config",
        ErrorKind::Forbidden => "Forbidden",
        ErrorKind::CredentialsRejected => "CredentialsRejected",
        ErrorKind::Permanent => "Permanent",
        ErrorKind::Transient => "Transient",
        ErrorKind::Conflict => "Conflict",
    }
}

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: error_type(f.kind).into(),
            error_message: f.message,
        }
    }
}

/// The app, built once per sandbox and reused by warm invocations.
pub struct Handler {
    app: Result<App, String>,
    /// Scheduled passes push their metrics here (`DEEPVUE_ROTATOR_PUSH_GATEWAY`); counters
    /// count since the sandbox started.
    metrics: Option<(Arc<Metrics>, Export)>,
}

impl Handler {
    /// Load the config from the environment (no network).
    pub fn load() -> Self {
        let gateway = std::env::var("DEEPVUE_ROTATOR_PUSH_GATEWAY")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let export = gateway.map(|g| {
            Export::new(
                None,
                Some(&g),
                std::env::var("DEEPVUE_ROTATOR_PUSH_JOB").ok(),
            )
        });
        let (metrics, export_problem) = match export {
            Some(Ok(e)) => (Some((Arc::new(Metrics::new()), e)), None),
            Some(Err(p)) => (None, Some(p.to_string())),
            None => (None, None),
        };
        let app = match (export_problem, &metrics) {
            (Some(p), _) => Err(p),
            (None, Some((m, _))) => config::load(None)
                .map(|c| App::observed(c, m.clone()))
                .map_err(|e| e.to_string()),
            (None, None) => config::load(None).map(App::new).map_err(|e| e.to_string()),
        };
        if let (Ok(a), Some((m, _))) = (&app, &metrics) {
            for j in &a.jobs {
                m.configured(&j.name);
            }
        }
        match &app {
            Ok(a) => info!(
                origin = %a.config.origin,
                tokens = a.jobs.len(),
                "deepvue-rotator Lambda ready"
            ),
            Err(e) => error!(error = %e, "config does not load; every invocation will fail"),
        }
        Handler { app, metrics }
    }

    /// One invocation.
    pub async fn handle(&self, event: Value) -> Result<Value, Failure> {
        let app = self
            .app
            .as_ref()
            .map_err(|e| Failure::new(ErrorKind::Config, format!("configuration error: {e}")))?;
        match events::parse(&event) {
            Some(step) => rotation(app, step?).await,
            None => scheduled::run(app, self.metrics.as_ref()).await,
        }
    }
}

/// Route a rotation step to the token whose store is that secret.
async fn rotation(app: &App, step: RotationEvent) -> Result<Value, Failure> {
    let job = app
        .jobs
        .iter()
        .find(|j| j.store.native.is_some() && j.store.tokens.is_named(&step.secret_id))
        .ok_or_else(|| {
            Failure::new(
                ErrorKind::Config,
                format!(
                    "no [[tokens]] entry stores into secret `{0}`: add one with store = {{ \
                     backend = \"aws\", secret_id = \"{0}\" }} and its credentials",
                    step.secret_id
                ),
            )
        })?;
    let result = app
        .rotator
        .pass()
        .native_step(job, &step, "Secrets Manager rotation")
        .await
        .map_err(|f| Failure::new(f.kind, f.message))?;
    Ok(serde_json::json!({ "step": format!("{:?}", step.step), "result": result }))
}
