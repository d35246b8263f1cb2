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

use std::path::Path;

use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroizing;
use serde::Serialize;

use crate::app::App;
use crate::config::{self, Config};
use crate::core::decide::Force;
use crate::core::error::{EXIT_CONFIG, combine_exit_codes};
use crate::core::report::{TokenReport, describe_report, render_status};
use crate::core::result::RunResult;
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

/// Load the config and build the app, or say why not (exit 2).
fn load(config: Option<&Path>) -> Result<App, u8> {
    match config::load(config) {
        Ok(c) => Ok(App::new(c)),
        Err(e) => {
            diag(&format!("error: {e}"));
            Err(EXIT_CONFIG)
        }
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
    match load_config(config) {
        Ok(c) => rotate_loaded(c, args).await,
        Err(code) => code,
    }
}

/// Load the configuration (no runtime needed), saying what is wrong with it on stderr; the
/// exit code when it cannot be used.
pub fn load_config(config: Option<&Path>) -> Result<Config, u8> {
    config::load(config).map_err(|e| {
        diag(&format!("error: {e}"));
        EXIT_CONFIG
    })
}

/// `rotate` on a loaded configuration.
pub async fn rotate_loaded(config: Config, args: RotateArgs) -> u8 {
    let app = App::new(config);
    let jobs = match app.select(&args.tokens) {
        Ok(j) => j,
        Err(e) => {
            diag(&format!("error: {e}"));
            return EXIT_CONFIG;
        }
    };
    let opts = RunOptions {
        force: if args.force { Force::Always } else { Force::No },
        dry_run: args.dry_run,
        ..RunOptions::default()
    };
    let reports = views(&app.rotator, app.rotator.rotate_all(jobs, opts).await);
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

/// The serialized views of a pass's results, time left counted from the rotator's clock.
pub(super) fn views(rotator: &Rotator, results: Vec<RunResult>) -> Vec<TokenReport> {
    TokenReport::all(&results, rotator.clock().now())
}

/// `status`: every token's version, expiry and last outcome (never the token).
pub async fn status(config: Option<&Path>, json: bool) -> u8 {
    let app = match load(config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let rows = app.rotator.status(&app.jobs).await;
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
    let app = match load(config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let name = &args.name;
    let job = match app.select(std::slice::from_ref(name)) {
        Ok(j) => match j.first() {
            Some(j) => *j,
            None => return EXIT_CONFIG,
        },
        Err(e) => {
            diag(&format!("error: {e}"));
            return EXIT_CONFIG;
        }
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
