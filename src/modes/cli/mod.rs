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

use std::io::Write;
use std::path::Path;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::app::App;
use crate::config;
use crate::core::error::{EXIT_CONFIG, combine_exit_codes};
use crate::core::report::{TokenReport, describe_report, render_status};
use crate::engine::rotator::{self, RunOptions};

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
            eprintln!("error: {e}");
            Err(EXIT_CONFIG)
        }
    }
}

fn print_json<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// `rotate`: one pass over every due token.
pub async fn rotate(config: Option<&Path>, args: RotateArgs) -> u8 {
    let app = match load(config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let jobs = match app.select(&args.tokens) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let opts = RunOptions {
        force: args.force,
        dry_run: args.dry_run,
        ..RunOptions::default()
    };
    let reports = app.rotator.rotate_all(jobs, opts).await;
    if args.json {
        print_json(&reports);
    } else {
        let mut out = std::io::stdout().lock();
        for r in &reports {
            let _ = writeln!(out, "{}", describe_report(r));
        }
    }
    combine_exit_codes(reports.iter().map(TokenReport::exit_code))
}

/// `status`: every token's version, expiry and last outcome (never the token).
pub async fn status(config: Option<&Path>, json: bool) -> u8 {
    let app = match load(config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let rows = rotator::status(&app.jobs, app.config.concurrency).await;
    if json {
        print_json(&rows);
    } else {
        let _ = std::io::stdout()
            .lock()
            .write_all(render_status(&rows).as_bytes());
    }
    u8::from(rows.iter().any(|r| r.problem.is_some()))
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
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    match job.store.read_current().await {
        Ok(Some(stored)) => match stored.document {
            Ok(doc) => {
                let mut out = std::io::stdout().lock();
                // `read` exists to hand the token to a script: it must leave here.
                let _ = if args.json {
                    writeln!(out, "{}", doc.to_json().expose_secret())
                } else {
                    writeln!(out, "{}", doc.access_token.expose_secret())
                };
                0
            }
            Err(e) => {
                eprintln!(
                    "error: token `{name}`: {} store `{}` version {} is unusable: {e}",
                    job.store.backend(),
                    job.store.secret_id(),
                    stored.version
                );
                1
            }
        },
        Ok(None) => {
            eprintln!(
                "error: token `{name}`: {} store `{}` holds no token yet; run `deepvue-rotator rotate`",
                job.store.backend(),
                job.store.secret_id()
            );
            1
        }
        Err(e) => {
            eprintln!("error: token `{name}`: {e}");
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
