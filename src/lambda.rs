//! AWS Lambda adapter: the same binary, run as `bootstrap` on `provided.al2023`.
//!
//! Detected by `AWS_LAMBDA_RUNTIME_API` with no command-line arguments. Config comes from
//! `DEEPVUE_ROTATOR_CONFIG` (a path) or `DEEPVUE_ROTATOR_CONFIG_TOML`; logs are JSON.
//! Each invocation is dispatched on its event:
//!
//! - **Secrets Manager rotation** (`Step` + `ClientRequestToken`, PascalCase or snake_case):
//!   the four-step protocol on the token secret, following AWS's template, every step safe to
//!   replay. See [`Rotation`].
//! - **Anything else** (EventBridge Scheduler or rule; `detail` may be the string `"{}"`): one
//!   rotation pass over the configured tokens, as `deepvue-rotator rotate` would do.
//!
//! A failing invocation returns a Lambda error whose `errorType` is the classification
//! (`Config`, `Forbidden`, `CredentialsRejected`, `Transient`, `Permanent`), so retries, alarms
//! and DLQs see it. A config that does not load fails every invocation with `Config` and the
//! reason, instead of crash-looping the sandbox.

use std::process::ExitCode;
use std::sync::Arc;

use aws_sdk_secretsmanager::error::SdkError;
use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::{Instrument, error, info, warn};

use crate::aws::{AwsClients, classify_sm_error, secret_name, sm_code};
use crate::config::{self, Config, StoreConfig};
use crate::error::ErrorKind;
use crate::logging::{self, LogFormat};
use crate::rotate::{Job, Outcome, ReportError, Rotator, RunOptions, TokenReport, token_span};
use crate::store::{Stored, Version};
use crate::token::{TokenDocument, format_time};

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

/// Whether this process was started by the Lambda runtime (and not given a command).
pub fn detected() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty())
        && std::env::args_os().len() <= 1
}

/// Run the Lambda event loop until the runtime stops us.
pub fn main() -> ExitCode {
    logging::init(Some(LogFormat::Json), "info");
    if let Err(why) = lambda_environment() {
        error!(
            "{why}: this is not a Lambda environment (run with a command, e.g. `deepvue-rotator rotate`)"
        );
        return ExitCode::from(crate::cli::EXIT_CONFIG);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
    if api.parse::<axum::http::Uri>().is_err() {
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
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
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

struct Loaded {
    config: Arc<Config>,
    jobs: Vec<Job>,
    aws: Arc<AwsClients>,
}

/// Config, jobs and AWS clients, built once per sandbox and reused by warm invocations.
pub struct Handler {
    loaded: Result<Loaded, String>,
}

impl Handler {
    /// Load the config from the environment (no network).
    pub fn load() -> Self {
        let loaded = config::load(None)
            .map(|c| {
                let aws = AwsClients::new(&c.aws);
                let jobs = c.tokens.iter().map(|t| Job::new(t, &c, &aws)).collect();
                Loaded {
                    config: Arc::new(c),
                    jobs,
                    aws,
                }
            })
            .map_err(|e| e.to_string());
        match &loaded {
            Ok(l) => info!(
                origin = %l.config.origin,
                tokens = l.jobs.len(),
                "deepvue-rotator Lambda ready"
            ),
            Err(e) => error!(error = %e, "config does not load; every invocation will fail"),
        }
        Handler { loaded }
    }

    /// One invocation.
    pub async fn handle(&self, event: Value) -> Result<Value, Failure> {
        let loaded = self
            .loaded
            .as_ref()
            .map_err(|e| Failure::new(ErrorKind::Config, format!("configuration error: {e}")))?;
        match RotationEvent::parse(&event) {
            Some(rotation) => {
                let rotation = rotation?;
                Rotation {
                    loaded,
                    rotator: Rotator::new(loaded.config.clone()),
                }
                .run(rotation)
                .await
            }
            None => scheduled(loaded).await,
        }
    }
}

/// One pass over every token; fails when any token failed.
async fn scheduled(loaded: &Loaded) -> Result<Value, Failure> {
    info!("scheduled run: one pass over the configured tokens");
    let rotator = Rotator::new(loaded.config.clone());
    let reports = rotator
        .rotate_all(&loaded.jobs, RunOptions::default())
        .await;
    let failed: Vec<&TokenReport> = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    if failed.is_empty() {
        return Ok(json!({ "tokens": reports }));
    }
    let code = crate::error::combine_exit_codes(reports.iter().map(TokenReport::exit_code));
    let kind = failed
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| e.kind))
        .find(|k| k.exit_code() == code)
        .unwrap_or(ErrorKind::Permanent);
    let lines: Vec<String> = failed
        .iter()
        .map(|r| crate::cli::describe_report(r))
        .collect();
    Err(Failure::new(
        kind,
        format!(
            "{} of {} token(s) failed: {}",
            failed.len(),
            reports.len(),
            lines.join(" | ")
        ),
    ))
}

/// A rotation step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Mint and put the AWSPENDING version.
    Create,
    /// Nothing to do: Deepvue issues the token itself.
    Set,
    /// Check the AWSPENDING document.
    Test,
    /// Move AWSCURRENT to the new version.
    Finish,
}

/// A Secrets Manager rotation event.
#[derive(Debug)]
pub struct RotationEvent {
    step: Step,
    secret_id: String,
    token: String,
    rotation_token: Option<String>,
}

fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| v.get(n).and_then(Value::as_str))
}

impl RotationEvent {
    /// `None` when the event is not a rotation (it has no `Step` and `ClientRequestToken`).
    pub fn parse(v: &Value) -> Option<Result<RotationEvent, Failure>> {
        v.get("Step").or_else(|| v.get("step"))?;
        // From here on it claims to be a rotation: malformed is an error, never a scheduled
        // pass by accident.
        let Some(step) = field(v, &["Step", "step"]) else {
            return Some(Err(Failure::new(
                ErrorKind::Config,
                "rotation event whose Step is not a string",
            )));
        };
        let Some(token) = field(v, &["ClientRequestToken", "client_request_token"]) else {
            return Some(Err(Failure::new(
                ErrorKind::Config,
                "rotation event without a string ClientRequestToken",
            )));
        };
        let step = match step {
            "createSecret" | "create_secret" => Step::Create,
            "setSecret" | "set_secret" => Step::Set,
            "testSecret" | "test_secret" => Step::Test,
            "finishSecret" | "finish_secret" => Step::Finish,
            other => {
                return Some(Err(Failure::new(
                    ErrorKind::Config,
                    format!("unknown rotation step `{other}`"),
                )));
            }
        };
        let Some(secret_id) = field(v, &["SecretId", "secret_id"]) else {
            return Some(Err(Failure::new(
                ErrorKind::Config,
                "rotation event without SecretId",
            )));
        };
        Some(Ok(RotationEvent {
            step,
            secret_id: secret_id.to_string(),
            token: token.to_string(),
            rotation_token: field(v, &["RotationToken", "rotation_token"]).map(str::to_string),
        }))
    }
}

/// Take AWSPENDING off the event's version.
async fn release_pending(
    sm: &aws_sdk_secretsmanager::Client,
    ev: &RotationEvent,
    step: &str,
    fail: &dyn Fn(&str, (ErrorKind, String)) -> Failure,
) -> Result<(), Failure> {
    sm.update_secret_version_stage()
        .secret_id(&ev.secret_id)
        .version_stage(PENDING)
        .remove_from_version_id(&ev.token)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            fail(
                step,
                classify_sm_error(&e, "UpdateSecretVersionStage", false),
            )
        })
}

/// The rotation protocol on the token secret.
struct Rotation<'a> {
    loaded: &'a Loaded,
    /// One per invocation: the Deepvue client and the egress probe are shared by minting,
    /// diagnosis and alerting.
    rotator: Rotator,
}

impl Rotation<'_> {
    async fn run(&self, ev: RotationEvent) -> Result<Value, Failure> {
        let job = self.job_for(&ev.secret_id)?;
        info!(step = ?ev.step, secret_id = %ev.secret_id, version = %ev.token, token = %job.config.name, "rotation step");
        let sm = self
            .loaded
            .aws
            .secrets_manager()
            .await
            .map_err(|e| Failure::new(ErrorKind::Config, e))?;
        let fail = |what: &str, e: (ErrorKind, String)| {
            Failure::new(
                e.0,
                format!(
                    "token `{}`: aws secret `{}`: {what}: {}",
                    job.config.name, ev.secret_id, e.1
                ),
            )
        };

        // The template's preamble.
        let d = sm
            .describe_secret()
            .secret_id(&ev.secret_id)
            .send()
            .await
            .map_err(|e| {
                fail(
                    "DescribeSecret",
                    classify_sm_error(&e, "DescribeSecret", false),
                )
            })?;
        if d.rotation_enabled() != Some(true) {
            return Err(fail(
                "preamble",
                (
                    ErrorKind::Config,
                    "rotation is not enabled on this secret".into(),
                ),
            ));
        }
        let stages = d.version_ids_to_stages();
        let Some(mine) = stages.and_then(|s| s.get(&ev.token)) else {
            return Err(fail(
                "preamble",
                (
                    ErrorKind::Permanent,
                    format!("version {} is not a version of this secret", ev.token),
                ),
            ));
        };
        if mine.iter().any(|s| s == CURRENT) {
            if ev.step == Step::Finish && mine.iter().any(|s| s == PENDING) {
                // A finishSecret that moved AWSCURRENT but failed to drop AWSPENDING.
                release_pending(sm, &ev, "finishSecret", &fail).await?;
            }
            info!(version = %ev.token, "already AWSCURRENT: nothing to do");
            if ev.step == Step::Finish {
                // Resolve alerts an interrupted finishSecret may have left open.
                self.conclude_success(job, &ev, None).await;
            }
            return Ok(json!({ "step": format!("{:?}", ev.step), "result": "already_current" }));
        }
        if !mine.iter().any(|s| s == PENDING) {
            return Err(fail(
                "preamble",
                (
                    ErrorKind::Permanent,
                    format!(
                        "version {} is not AWSPENDING; another rotation moved on",
                        ev.token
                    ),
                ),
            ));
        }
        let current = stages.and_then(|s| {
            s.iter()
                .find(|(_, v)| v.iter().any(|x| x == CURRENT))
                .map(|(k, _)| k.clone())
        });

        let result = match ev.step {
            Step::Create => match self.create(sm, &ev, job, &fail).await {
                Ok(r) => r,
                // Alert like a scheduled run would (egress diagnosis on 403, dedup via the
                // token secret's state); the invocation still fails.
                Err(f) => return Err(self.conclude_failure(job, f).await),
            },
            Step::Set => "nothing to set: Deepvue issues the token itself",
            Step::Test => {
                let doc = self.pending(sm, &ev, &fail).await?.ok_or_else(|| {
                    fail(
                        "testSecret",
                        (
                            ErrorKind::Permanent,
                            format!(
                                "version {} has no value; createSecret did not run",
                                ev.token
                            ),
                        ),
                    )
                })?;
                let doc = doc.map_err(|e| {
                    fail(
                        "testSecret",
                        (
                            ErrorKind::Permanent,
                            format!("AWSPENDING is not a usable token document: {e}"),
                        ),
                    )
                })?;
                if doc.expires_in(Utc::now()) <= chrono::Duration::zero() {
                    return Err(fail(
                        "testSecret",
                        (
                            ErrorKind::Permanent,
                            format!("AWSPENDING token expired at {}", format_time(doc.expiry)),
                        ),
                    ));
                }
                "AWSPENDING holds a valid token document"
            }
            Step::Finish => {
                let mut req = sm
                    .update_secret_version_stage()
                    .secret_id(&ev.secret_id)
                    .version_stage(CURRENT)
                    .move_to_version_id(&ev.token);
                if let Some(c) = &current {
                    req = req.remove_from_version_id(c);
                }
                req.send().await.map_err(|e| {
                    let (kind, msg) = classify_sm_error(&e, "UpdateSecretVersionStage", false);
                    // AWSCURRENT moved since the preamble read it: a race, worth retrying.
                    let kind = if sm_code(&e) == Some("InvalidParameterException") {
                        ErrorKind::Transient
                    } else {
                        kind
                    };
                    fail("finishSecret", (kind, msg))
                })?;
                release_pending(sm, &ev, "finishSecret", &fail).await?;
                info!(version = %ev.token, previous = current.as_deref().unwrap_or("none"), "AWSCURRENT moved");
                self.conclude_success(job, &ev, current).await;
                "AWSCURRENT moved to the new version"
            }
        };
        Ok(json!({ "step": format!("{:?}", ev.step), "result": result }))
    }

    /// Report a failed createSecret through the rotator's diagnosis and alerting.
    async fn conclude_failure(&self, job: &Job, f: Failure) -> Failure {
        let mut report = TokenReport::new(job);
        if let Ok(Some(Stored {
            version,
            document: Ok(doc),
        })) = job.store.read_current().await
        {
            report.version = Some(version);
            report.show(&doc, Utc::now());
        }
        report.error = Some(ReportError {
            kind: f.kind,
            message: f.message,
            deepvue_detail: None,
        });
        let report = self
            .rotator
            .conclude(job, report, false)
            .instrument(token_span(job))
            .await;
        let message = report
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "createSecret failed".into());
        Failure::new(f.kind, message)
    }

    /// A finished rotation: resolve open alerts and record the outcome.
    async fn conclude_success(&self, job: &Job, ev: &RotationEvent, previous: Option<String>) {
        let mut report = TokenReport::new(job);
        report.outcome = Outcome::Rotated;
        report.reason = Some("Secrets Manager rotation".into());
        report.version = Some(Version(ev.token.clone()));
        report.previous_version = previous.map(Version);
        if let Ok(Some(Stored {
            document: Ok(doc), ..
        })) = job.store.read_version(&Version(ev.token.clone())).await
        {
            report.show(&doc, Utc::now());
        }
        self.rotator
            .conclude(job, report, false)
            .instrument(token_span(job))
            .await;
    }

    fn job_for(&self, secret_id: &str) -> Result<&Job, Failure> {
        let wanted = secret_name(secret_id);
        self.loaded
            .jobs
            .iter()
            .find(|j| match &j.config.store {
                StoreConfig::Aws { secret_id: s, .. } => s == secret_id || secret_name(s) == wanted,
                _ => false,
            })
            .ok_or_else(|| {
                Failure::new(
                    ErrorKind::Config,
                    format!(
                        "no [[tokens]] entry stores into secret `{secret_id}`: add one with \
                         store = {{ backend = \"aws\", secret_id = \"{wanted}\" }} and its credentials"
                    ),
                )
            })
    }

    /// The AWSPENDING value of this version: `None` when it has none yet.
    async fn pending(
        &self,
        sm: &aws_sdk_secretsmanager::Client,
        ev: &RotationEvent,
        fail: &dyn Fn(&str, (ErrorKind, String)) -> Failure,
    ) -> Result<Option<Result<TokenDocument, crate::token::DocumentError>>, Failure> {
        match sm
            .get_secret_value()
            .secret_id(&ev.secret_id)
            .version_id(&ev.token)
            .version_stage(PENDING)
            .send()
            .await
        {
            Ok(out) => Ok(Some(match out.secret_string() {
                Some(s) => TokenDocument::from_json(s.as_bytes()),
                None => Err(crate::token::DocumentError("binary value".into())),
            })),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(fail(
                "GetSecretValue",
                classify_sm_error(&e, "GetSecretValue", false),
            )),
        }
    }

    async fn create(
        &self,
        sm: &aws_sdk_secretsmanager::Client,
        ev: &RotationEvent,
        job: &Job,
        fail: &dyn Fn(&str, (ErrorKind, String)) -> Failure,
    ) -> Result<&'static str, Failure> {
        match self.pending(sm, ev, fail).await? {
            Some(Ok(doc)) if doc.expires_in(Utc::now()) > chrono::Duration::zero() => {
                return Ok("AWSPENDING already holds a token (replay): nothing minted");
            }
            Some(Ok(doc)) => {
                // A stalled rotation retried after its token expired: versions are immutable,
                // so testSecret would fail forever. Release the label; Secrets Manager's next
                // rotation starts a fresh version.
                release_pending(sm, ev, "createSecret", fail).await?;
                return Err(fail(
                    "createSecret",
                    (
                        ErrorKind::Permanent,
                        format!(
                            "version {} holds a token that expired at {} (a stalled rotation); \
                             AWSPENDING was removed from it, the next rotation mints afresh",
                            ev.token,
                            format_time(doc.expiry)
                        ),
                    ),
                ));
            }
            Some(Err(e)) => {
                return Err(fail(
                    "createSecret",
                    (
                        ErrorKind::Permanent,
                        format!(
                            "version {} already holds an unusable value ({e}); versions are \
                             immutable: cancel this rotation and start a new one",
                            ev.token
                        ),
                    ),
                ));
            }
            None => {}
        }
        let creds = job
            .credentials
            .load()
            .await
            .map_err(|e| fail("createSecret", (e.kind, e.to_string())))?;
        let client = self
            .rotator
            .client()
            .await
            .map_err(|e| fail("createSecret", (e.kind(), e.to_string())))?;
        let doc = client
            .authorize(&creds)
            .await
            .map_err(|e| fail("createSecret", (e.kind(), e.to_string())))?;
        drop(creds);
        let json = doc.to_json();
        let mut req = sm
            .put_secret_value()
            .secret_id(&ev.secret_id)
            .client_request_token(&ev.token)
            .secret_string(json.expose_secret())
            .version_stages(PENDING);
        if let Some(t) = &ev.rotation_token {
            req = req.rotation_token(t);
        }
        match req.send().await {
            Ok(_) => {
                info!(version = %ev.token, expiry = %format_time(doc.expiry), "minted; AWSPENDING written");
                Ok("minted; AWSPENDING written")
            }
            // A concurrent createSecret for the same version won: its value stands.
            Err(SdkError::ServiceError(se)) if se.err().is_resource_exists_exception() => {
                warn!(version = %ev.token, "AWSPENDING was written concurrently; keeping that value");
                Ok("AWSPENDING written by a concurrent invocation")
            }
            Err(e) => Err(fail(
                "PutSecretValue",
                classify_sm_error(&e, "PutSecretValue", false),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_dispatch() {
        let sched = json!({"version":"0","detail-type":"Scheduled Event","source":"aws.scheduler","detail":"{}"});
        assert!(RotationEvent::parse(&sched).is_none());
        let rot = json!({"Step":"createSecret","SecretId":"arn:aws:secretsmanager:us-east-1:1:secret:app/tok-AbC123","ClientRequestToken":"t"});
        assert!(matches!(
            RotationEvent::parse(&rot),
            Some(Ok(RotationEvent {
                step: Step::Create,
                ..
            }))
        ));
        let snake = json!({"step":"finish_secret","secret_id":"x","client_request_token":"t"});
        assert!(matches!(
            RotationEvent::parse(&snake),
            Some(Ok(RotationEvent {
                step: Step::Finish,
                ..
            }))
        ));
        let bad = json!({"Step":"dance","SecretId":"x","ClientRequestToken":"t"});
        assert!(matches!(RotationEvent::parse(&bad), Some(Err(_))));
        let no_token = json!({"Step":"createSecret","SecretId":"x","ClientRequestToken":5});
        assert!(matches!(RotationEvent::parse(&no_token), Some(Err(_))));
    }

    #[test]
    fn secret_names_from_arns() {
        assert_eq!(
            secret_name(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:deepvue/token-AbC123"
            ),
            "deepvue/token"
        );
        assert_eq!(secret_name("deepvue/token"), "deepvue/token");
        assert_eq!(
            secret_name("arn:aws:secretsmanager:us-east-1:1:secret:x"),
            "x"
        );
    }
}
