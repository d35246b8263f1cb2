//! A scheduled invocation: one pass over every token, as `deepvue-rotator rotate`.

use std::sync::Arc;

use serde_json::{Value, json};
use tracing::{info, warn};

use super::Failure;
use crate::app::App;
use crate::core::error::{ErrorKind, combine_exit_codes};
use crate::core::report::{TokenReport, describe_report};
use crate::engine::metrics::Metrics;
use crate::engine::metrics_export::Export;
use crate::engine::rotator::RunOptions;

/// One pass over every token; fails when any token failed (its own store or a replica).
/// With a Pushgateway, the pass's metrics are pushed (a push that fails is logged, never the
/// invocation's outcome).
pub(super) async fn run(
    app: &App,
    metrics: Option<&(Arc<Metrics>, Export)>,
) -> Result<Value, Failure> {
    info!("scheduled run: one pass over the configured tokens");
    let results = app
        .rotator
        .rotate_all(&app.jobs, RunOptions::default())
        .await;
    if let Some((m, export)) = metrics {
        let now = app.rotator.clock().now();
        for (r, job) in results.iter().zip(&app.jobs) {
            m.one_shot(&job.name, r, job.policy.renew_before, now);
        }
        for failure in export.send(m).await {
            warn!(error = %failure, "metrics not exported");
        }
    }
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
