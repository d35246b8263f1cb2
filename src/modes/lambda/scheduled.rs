//! A scheduled invocation: one pass over every token, as `deepvue-rotator rotate`.

use serde_json::{Value, json};
use tracing::info;

use super::Failure;
use crate::app::App;
use crate::core::error::{ErrorKind, combine_exit_codes};
use crate::core::report::{TokenReport, describe_report};
use crate::engine::rotator::RunOptions;

/// One pass over every token; fails when any token failed (its own store or a replica).
pub(super) async fn run(app: &App) -> Result<Value, Failure> {
    info!("scheduled run: one pass over the configured tokens");
    let results = app
        .rotator
        .rotate_all(&app.jobs, RunOptions::default())
        .await;
    let reports = TokenReport::all(&results, app.rotator.clock().now());
    let failed: Vec<&TokenReport> = reports.iter().filter(|r| r.exit_code() != 0).collect();
    if failed.is_empty() {
        return Ok(json!({ "tokens": reports }));
    }
    let code = combine_exit_codes(reports.iter().map(TokenReport::exit_code));
    let kind = failed
        .iter()
        .flat_map(|r| {
            r.error
                .iter()
                .chain(r.replicas.iter().filter_map(|x| x.error.as_ref()))
                .map(|e| e.kind)
        })
        .find(|k| k.exit_code() == code)
        .unwrap_or(ErrorKind::Permanent);
    let lines: Vec<String> = failed.iter().map(|r| describe_report(r)).collect();
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
