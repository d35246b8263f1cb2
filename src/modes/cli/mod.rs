//! The command line's one-shot commands: `rotate`, `status`, `read`, `check`; and the tools,
//! `demo` and `simulate`. `main.rs` parses the arguments and calls one of these.
//!
//! Exit codes (`core::error`): 0 every token fresh or rotated · 1 a rotation failed · 2 config
//! or usage error, nothing attempted · 3 Deepvue answered 403 · 4 Deepvue rejected the
//! credentials. With several tokens the first of 2, 3, 4, 1, 0 that occurs wins.

mod check;
#[cfg(feature = "simulator")]
pub mod demo;
#[cfg(feature = "simulator")]
pub mod simulate;
pub mod suspend;

use std::path::Path;
use std::sync::Arc;

use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroizing;
use serde::Serialize;

use crate::app::App;
use crate::config::{self, Config};
use crate::core::decide::Force;
use crate::core::error::{EXIT_CONFIG, combine_exit_codes};
use crate::core::report::{TokenReport, describe_report, render_status};
use crate::core::result::RunResult;
use crate::engine::audit::Trigger;
use crate::engine::metrics::Metrics;
use crate::engine::metrics_export::Export;
use crate::engine::rotator::{Rotator, RunOptions};
use crate::support::output::{self, diag};

/// `rotate` arguments.
#[derive(clap::Args, Debug)]
pub struct RotateArgs {
    /// Only this token (repeatable).
    #[arg(long = "token", value_name = "NAME")]
    pub tokens: Vec<String>,
    /// Rotate even if the stored token is fresh.
    #[arg(long)]
    pub force: bool,
    /// Decide and report; never mint or write.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON array of per-token reports.
    #[arg(long)]
    pub json: bool,
    /// Write this run's metrics for node_exporter's textfile collector (a `.prom` file,
    /// replaced atomically).
    #[arg(long, value_name = "PATH", env = "DEEPVUE_ROTATOR_METRICS_FILE")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// Push this run's metrics to a Prometheus Pushgateway (`https://`, or `http://` to a
    /// loopback address), one group per token.
    #[arg(long, value_name = "URL", env = "DEEPVUE_ROTATOR_PUSH_GATEWAY")]
    pub push_gateway: Option<String>,
    /// The Pushgateway `job` label [default: deepvue_rotator].
    #[arg(long, value_name = "NAME", env = "DEEPVUE_ROTATOR_PUSH_JOB")]
    pub push_job: Option<String>,
    /// Ask the running daemon to rotate, over its admin socket ([daemon] admin_socket),
    /// instead of rotating in this process.
    #[arg(long, conflicts_with_all = ["dry_run", "metrics_file", "push_gateway"])]
    pub via_daemon: bool,
}

/// `read` arguments.
#[derive(clap::Args, Debug)]
pub struct ReadArgs {
    /// Token name.
    pub name: String,
    /// Print the whole token document.
    #[arg(long)]
    pub json: bool,
}

/// Load the config and build the app, or say why not (exit 2; with `json` also as a JSON
/// error object on stdout).
fn load(config: Option<&Path>, json: bool) -> Result<App, u8> {
    load_config(config, json).map(App::new)
}

/// A config or usage error, exit 2: `error: …` on stderr, and with `json` the object
/// `{"error": {"kind": "config", "message": …}}` on stdout, so a script reading stdout is not
/// left with nothing.
fn usage_error(message: impl std::fmt::Display, json: bool) -> u8 {
    diag(&format!("error: {message}"));
    if json {
        let body = serde_json::json!({
            "error": { "kind": "config", "message": message.to_string() }
        });
        emit(json_text(&body).as_bytes(), EXIT_CONFIG)
    } else {
        EXIT_CONFIG
    }
}

/// Pretty JSON and a newline.
fn json_text<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    text.push('\n');
    text
}

/// Write a command's output, then its exit code: output that did not reach stdout (a full
/// disk, a closed pipe or descriptor) is a failure of its own (1, unless the run already
/// failed), said on stderr.
fn emit(text: &[u8], code: u8) -> u8 {
    match output::stdout(text) {
        Ok(()) => code,
        Err(e) => {
            diag(&format!(
                "error: cannot write to stdout: {e}; the output is lost"
            ));
            if code == 0 { 1 } else { code }
        }
    }
}

/// `rotate`: one pass over every due token.
pub async fn rotate(config: Option<&Path>, args: RotateArgs) -> u8 {
    match load_config(config, args.json) {
        Ok(c) => rotate_loaded(c, args).await,
        Err(code) => code,
    }
}

/// Load the configuration (no runtime needed), saying what is wrong with it on stderr (and
/// with `json` on stdout too); the exit code when it cannot be used.
pub fn load_config(config: Option<&Path>, json: bool) -> Result<Config, u8> {
    config::load(config).map_err(|e| usage_error(e, json))
}

/// `rotate` on a loaded configuration.
pub async fn rotate_loaded(config: Config, args: RotateArgs) -> u8 {
    if args.via_daemon {
        return via_daemon(&config, &args).await;
    }
    let export = match Export::new(
        args.metrics_file.clone(),
        args.push_gateway.as_deref(),
        args.push_job.clone(),
    ) {
        Ok(e) => e,
        Err(p) => return usage_error(p, args.json),
    };
    // A registry only when the run's metrics go somewhere.
    let metrics = export.wanted().then(|| Arc::new(Metrics::new()));
    let app = match &metrics {
        Some(m) => App::observed(config, m.clone()),
        None => App::new(config),
    };
    let jobs = match app.select(&args.tokens) {
        Ok(j) => j,
        Err(e) => return usage_error(e, args.json),
    };
    if let Some(m) = &metrics {
        for j in &jobs {
            m.configured(&j.name);
        }
    }
    let opts = RunOptions {
        force: if args.force { Force::Always } else { Force::No },
        dry_run: args.dry_run,
        trigger: if args.force {
            Trigger::Manual
        } else {
            Trigger::Schedule
        },
        ..RunOptions::default()
    };
    if args.json
        && let Some(audit) = app.rotator.audit()
    {
        audit.stdout_taken();
    }
    let renew_before: Vec<_> = jobs.iter().map(|j| j.policy.renew_before).collect();
    let results = app.rotator.rotate_all(jobs, opts).await;
    if let Some(m) = &metrics {
        let now = app.rotator.clock().now();
        for (r, renew_before) in results.iter().zip(renew_before) {
            m.one_shot(&r.token.name, r, renew_before, now);
        }
        for failure in export.send(m).await {
            diag(&format!("warning: metrics not exported: {failure}"));
        }
    }
    let reports = views(&app.rotator, results);
    let text = if args.json {
        json_text(&reports)
    } else {
        reports
            .iter()
            .map(|r| format!("{}\n", describe_report(r)))
            .collect()
    };
    emit(
        text.as_bytes(),
        combine_exit_codes(reports.iter().map(TokenReport::exit_code)),
    )
}

/// A client of the daemon's admin socket.
fn admin_client(
    path: &Path,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .unix_socket(path)
        .no_proxy()
        .timeout(timeout)
        .build()
}

/// The running daemon's schedule (token → RFC 3339), when `[daemon] admin_socket` is set and
/// a daemon answers there within a second; else nothing (`status` then says `expiry −
/// renew_before`).
async fn daemon_schedule(config: &Config) -> Option<serde_json::Map<String, serde_json::Value>> {
    let path = config.daemon.admin_socket.as_deref()?;
    let client = admin_client(path, std::time::Duration::from_secs(1)).ok()?;
    let body: serde_json::Value = client
        .get("http://daemon/v1/schedule")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body.get("next")?.as_object().cloned()
}

/// `rotate --via-daemon`: the running daemon's pass, over its admin socket.
async fn via_daemon(config: &Config, args: &RotateArgs) -> u8 {
    let Some(path) = &config.daemon.admin_socket else {
        return usage_error(
            format!(
                "rotate --via-daemon needs [daemon] admin_socket in {} (the daemon's admin \
                 socket)",
                config.origin
            ),
            args.json,
        );
    };
    let client = match admin_client(
        path,
        config.lock_timeout * 2 + std::time::Duration::from_secs(60),
    ) {
        Ok(c) => c,
        Err(e) => {
            diag(&format!("error: {e}"));
            return 1;
        }
    };
    let answer = client
        .post("http://daemon/v1/rotate")
        .json(&serde_json::json!({ "tokens": args.tokens, "force": args.force }))
        .send()
        .await;
    let shown = path.display();
    let body: serde_json::Value = match answer {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(v) => v,
            Err(e) => {
                diag(&format!("error: the daemon at {shown} answered: {e}"));
                return 1;
            }
        },
        Ok(r) => {
            let status = r.status();
            let why = r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_default();
            // 404: a token name the daemon's config lacks, a usage error like rotate's own.
            if status == reqwest::StatusCode::NOT_FOUND {
                return usage_error(format!("the daemon at {shown}: {why}"), args.json);
            }
            diag(&format!(
                "error: the daemon at {shown} answered {status}: {why}"
            ));
            return 1;
        }
        Err(e) => {
            diag(&format!(
                "error: cannot reach the daemon's admin socket {shown}: {} (is the daemon \
                 running with this config, as this user or root?)",
                crate::support::http::error_chain(&e)
            ));
            return 1;
        }
    };
    let code = body["exit_code"]
        .as_u64()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1);
    let text = if args.json {
        json_text(&body["reports"])
    } else {
        body["text"].as_str().unwrap_or_default().to_string()
    };
    emit(text.as_bytes(), code)
}

/// The serialized views of a pass's results, time left counted from the rotator's clock.
pub(super) fn views(rotator: &Rotator, results: Vec<RunResult>) -> Vec<TokenReport> {
    TokenReport::all(&results, rotator.clock().now())
}

/// `status` arguments.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show each token's last N rotation attempts from the audit file instead ([audit] file).
    #[arg(long, value_name = "N")]
    pub history: Option<usize>,
    /// Only this token (repeatable; with --history).
    #[arg(long = "token", value_name = "NAME", requires = "history")]
    pub tokens: Vec<String>,
}

/// `status`: every token's version, expiry and last outcome (never the token); or with
/// `--history N` the last attempts from the audit trail.
pub async fn status(config: Option<&Path>, args: StatusArgs) -> u8 {
    let json = args.json;
    let app = match load(config, json) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Some(n) = args.history {
        if let Err(e) = app.select(&args.tokens) {
            return usage_error(e, json);
        }
        let records = match crate::engine::audit::history(&app.config.audit, &args.tokens, n) {
            Ok(r) => r,
            Err(e) => return usage_error(e, json),
        };
        let text = if json {
            json_text(&records)
        } else {
            crate::engine::audit::render(&records)
        };
        return emit(text.as_bytes(), 0);
    }
    let mut rows = app.rotator.status(&app.jobs).await;
    if let Some(next) = daemon_schedule(&app.config).await {
        for row in &mut rows {
            if let Some(at) = next.get(&row.name).and_then(|v| v.as_str()) {
                row.renews_at = Some(at.to_string());
            }
        }
    }
    let text = if json {
        json_text(&rows)
    } else {
        render_status(&rows)
    };
    emit(
        text.as_bytes(),
        u8::from(rows.iter().any(|r| r.problem.is_some())),
    )
}

/// `read`: print the current access token (or the whole document), for scripts.
pub async fn read(config: Option<&Path>, args: ReadArgs) -> u8 {
    let app = match load(config, args.json) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let name = &args.name;
    let job = match app.select(std::slice::from_ref(name)) {
        Ok(j) => match j.first() {
            Some(j) => *j,
            None => return EXIT_CONFIG,
        },
        Err(e) => return usage_error(e, args.json),
    };
    match job.store.tokens.read_current().await {
        Ok(Some(stored)) => match stored.document {
            Ok(doc) => {
                // `read` exists to hand the token to a script: it must leave here, from a
                // zeroising buffer.
                let json;
                let secret = if args.json {
                    json = doc.to_json();
                    json.expose_secret()
                } else {
                    doc.access_token.expose_secret()
                };
                let mut line = Zeroizing::new(Vec::with_capacity(secret.len() + 1));
                line.extend_from_slice(secret.as_bytes());
                line.push(b'\n');
                emit(&line, 0)
            }
            Err(e) => {
                diag(&format!(
                    "error: token `{name}`: {} store `{}` version {} is unusable: {e}",
                    job.store.tokens.backend(),
                    job.store.tokens.secret_id(),
                    stored.version
                ));
                1
            }
        },
        Ok(None) => {
            diag(&format!(
                "error: token `{name}`: {} store `{}` holds no token yet; run `deepvue-rotator rotate`",
                job.store.tokens.backend(),
                job.store.tokens.secret_id()
            ));
            1
        }
        Err(e) => {
            diag(&format!("error: token `{name}`: {e}"));
            e.kind.exit_code()
        }
    }
}

/// `check`: the production checklist.
pub async fn check(config: Option<&Path>, json: bool) -> u8 {
    match config::load(config) {
        Ok(c) => check::run(App::new(c), json).await,
        Err(e) => check::invalid_config(&e, json),
    }
}
