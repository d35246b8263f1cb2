//! `suspend` / `resume`: an operator's hold on one token, kept in its run state in the store,
//! where every runner (cron, daemon replicas, Lambda, pushes, the agent) reads it before it
//! would mint. A fresh pass never reads it, so a suspension costs nothing until the token is
//! due; then the pass mints nothing and raises a critical `suspended` alert.

use std::path::Path;

use crate::core::state::{RunState, Suspension};
use crate::support::output::diag;
use crate::support::time::format_time;

/// `suspend` arguments.
#[derive(clap::Args, Debug)]
pub struct SuspendArgs {
    /// The token.
    #[arg(long = "token", value_name = "NAME")]
    pub token: String,
    /// Why (shown by `status` and in the alert; at most 200 characters).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `resume` arguments.
#[derive(clap::Args, Debug)]
pub struct ResumeArgs {
    /// The token.
    #[arg(long = "token", value_name = "NAME")]
    pub token: String,
}

/// Who is asking: `user@host`.
fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()));
    format!("{user}@{}", crate::support::process::host_name())
}

/// Set (`Some`) or lift (`None`) the suspension of one token; exit 0 when it holds.
pub async fn set(config: Option<&Path>, token: &str, hold: Option<Option<String>>) -> u8 {
    let app = match super::load(config, false) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let job = match app.select(&[token.to_string()]) {
        Ok(j) => match j.first() {
            Some(j) => *j,
            None => return crate::core::error::EXIT_CONFIG,
        },
        Err(e) => {
            diag(&format!("error: {e}"));
            return crate::core::error::EXIT_CONFIG;
        }
    };
    if let Some(Some(why)) = &hold
        && (why.chars().count() > 200 || why.chars().any(char::is_control))
    {
        diag("error: --reason must be at most 200 characters, on one line");
        return crate::core::error::EXIT_CONFIG;
    }
    let store = &job.store.state;
    let at = format!(
        "token `{token}` ({} {})",
        job.store.tokens.backend(),
        job.store.tokens.secret_id()
    );
    let wanted = hold.map(|reason| Suspension {
        at: format_time(app.rotator.clock().now()),
        by: operator(),
        reason,
    });
    // A runner may record its own state between our read and write: try again until the
    // state we read back holds what we wrote.
    for _ in 0..5 {
        let read = match store.read_state().await {
            Ok(r) => r,
            Err(e) => {
                diag(&format!("error: {at}: cannot read its run state: {e}"));
                return e.kind.exit_code().max(1);
            }
        };
        let mut state = read
            .bytes
            .as_deref()
            .and_then(RunState::from_bytes)
            .unwrap_or_default();
        if state.suspended.is_some() == wanted.is_some() {
            let text = match &state.suspended {
                Some(s) => format!("{at} is suspended {}\n", s.describe()),
                None => format!("{at} is not suspended\n"),
            };
            return super::emit(text.as_bytes(), 0);
        }
        state.suspended.clone_from(&wanted);
        let bytes = match state.to_bytes(store.capacity()) {
            Ok(b) => b,
            Err(e) => {
                diag(&format!("error: {at}: {e}"));
                return 1;
            }
        };
        if let Err(e) = store.write_state(Some(&bytes), read.etag.as_ref()).await {
            diag(&format!("error: {at}: cannot write its run state: {e}"));
            return e.kind.exit_code().max(1);
        }
    }
    diag(&format!(
        "error: {at}: its run state kept changing under us; try again"
    ));
    1
}
