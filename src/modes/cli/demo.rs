//! `demo`: an offline tour — the built-in HTTPS Deepvue simulator, a temporary file store, and
//! the real rotation code between them.

use std::io::Write;

use super::views;
use crate::app::App;
use crate::config;
use crate::core::decide::Force;
use crate::core::error::combine_exit_codes;
use crate::core::report::{TokenReport, describe_report, render_status};
use crate::engine::rotator::RunOptions;
use crate::simulator::{Behavior, SimOptions, Simulator};

/// `demo`: run the tour; any setup failure exits 1 with the reason.
pub async fn run() -> u8 {
    match demo().await {
        Ok(code) => code,
        Err(e) => {
            crate::support::output::diag(&format!("error: demo: {e:#}"));
            1
        }
    }
}

async fn demo() -> anyhow::Result<u8> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::Builder::new()
        .prefix("deepvue-rotator-demo-")
        .tempdir()?;
    let dir = tmp.path();
    let (client_id, client_secret) = (
        "demo-client",
        format!("demo-secret-{:016x}", rand::random::<u64>()),
    );
    let sim = Simulator::start(SimOptions {
        credentials: Some((client_id.into(), client_secret.clone().into())),
        ..SimOptions::default()
    })
    .await
    .context("starting the built-in Deepvue simulator")?;
    let ca = dir.join("simulator-ca.pem");
    std::fs::write(&ca, sim.ca_pem())?;
    let creds = dir.join("credentials.json");
    std::fs::write(
        &creds,
        serde_json::json!({"client_id": client_id, "client_secret": client_secret}).to_string(),
    )?;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600))?;
    let store = dir.join("store/demo");
    let toml = format!(
        "[deepvue]\nbase_url = \"{0}\"\nca_file = \"{1}\"\n\n[rotation]\nrenew_before = \"12h\"\n\n\
         [egress]\n# Deepvue whitelists 203.0.113.10 for this account; the probe is the simulator's /ip.\n\
         expected_ips = [\"203.0.113.10\"]\nprobe_urls = [\"{0}/ip\"]\n\n\
         [[tokens]]\nname = \"demo\"\ncredentials = {{ backend = \"file\", path = \"{2}\" }}\n\
         store = {{ backend = \"file\", path = \"{3}\" }}\n",
        sim.base_url(),
        ca.display(),
        creds.display(),
        store.display()
    );
    let app = App::new(config::parse(&toml, "demo config")?);
    let (rotator, jobs) = (&app.rotator, &app.jobs);
    let mut out = std::io::stdout().lock();

    writeln!(
        out,
        "deepvue-rotator demo: built-in Deepvue simulator at {} (HTTPS, generated test CA), file store in {}\n",
        sim.base_url(),
        dir.display()
    )?;
    writeln!(out, "config:\n{}", indent(&toml))?;

    writeln!(
        out,
        "== 1. rotate: nothing is stored yet, so a token is minted and written.\n      This host's egress IP (127.0.0.1) is not in expected_ips: a drift warning, though Deepvue still accepts it today."
    )?;
    let r = views(
        rotator,
        rotator.rotate_all(jobs, RunOptions::default()).await,
    );
    report_lines(&mut out, &r)?;
    writeln!(
        out,
        "   authorize calls so far: {}\n",
        sim.stats().authorize_calls
    )?;

    writeln!(
        out,
        "== 2. rotate again: the token is fresh, so nothing happens (no authorize call)"
    )?;
    let r = views(
        rotator,
        rotator.rotate_all(jobs, RunOptions::default()).await,
    );
    report_lines(&mut out, &r)?;
    writeln!(
        out,
        "   authorize calls so far: {}\n",
        sim.stats().authorize_calls
    )?;

    writeln!(out, "== 3. status")?;
    drop(out);
    let table = render_status(&rotator.status(jobs).await);
    let mut out = std::io::stdout().lock();
    write!(out, "{table}")?;
    writeln!(
        out,
        "\n   applications read {}/current.json:\n   {{\"access_token\": \"…\", \"token_type\": \"bearer\", \"expiry\": \"…Z\", \"issued_at\": \"…Z\"}}\n",
        store.display()
    )?;

    writeln!(
        out,
        "== 4. Deepvue now enforces its whitelist and answers 403; rotate --force.\n      The operator is told which IP was used and how long the stored token still lives:"
    )?;
    sim.set_behavior(Behavior {
        allowed_ips: Some(vec!["203.0.113.0/24".parse()?]),
        ..Behavior::default()
    });
    let forced = RunOptions {
        force: Force::Always,
        ..RunOptions::default()
    };
    let r = views(rotator, rotator.rotate_all(jobs, forced).await);
    report_lines(&mut out, &r)?;
    let code = combine_exit_codes(r.iter().map(TokenReport::exit_code));
    writeln!(
        out,
        "   exit code: {code} (3 = Deepvue answered 403); the stored token was left untouched:"
    )?;
    drop(out);
    let table = render_status(&rotator.status(jobs).await);
    let mut out = std::io::stdout().lock();
    write!(out, "{table}")?;
    writeln!(
        out,
        "\ndemo finished: the temporary store and simulator are removed. Next: README.md, `deepvue-rotator simulate --help`."
    )?;
    Ok(0)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("   {l}\n")).collect()
}

fn report_lines(out: &mut impl Write, reports: &[TokenReport]) -> std::io::Result<()> {
    for r in reports {
        writeln!(out, "   {}", describe_report(r).replace('\n', "\n   "))?;
    }
    Ok(())
}
