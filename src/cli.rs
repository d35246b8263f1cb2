//! The command line: `rotate`, `status`, `read`, `check`, `demo`, `simulate`.
//!
//! Exit codes: 0 every token fresh or rotated · 1 a rotation failed · 2 config or usage error,
//! nothing attempted · 3 Deepvue answered 403 · 4 Deepvue rejected the credentials. With several
//! tokens the first of 2, 3, 4, 1, 0 that occurs wins.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipnet::IpNet;
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::{self, Config};
use crate::credentials::{CredentialSource, EnvCredentials};
use crate::error::{ErrorKind, combine_exit_codes};
use crate::logging::{self, LogFormat};
use crate::rotate::{self, Job, Outcome, Rotator, RunOptions, StatusRow, TokenReport};
use crate::simulator::{Behavior, Malformed, Reply, SimOptions, Simulator};
use crate::token::{format_duration, truncate};

/// Exit code for config and usage errors.
pub const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "deepvue-rotator",
    version,
    about = "Keeps Deepvue API access tokens fresh in the secret stores applications read"
)]
struct Cli {
    /// Config file (else $DEEPVUE_ROTATOR_CONFIG, else the TOML in $DEEPVUE_ROTATOR_CONFIG_TOML).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format on stderr (default: text on a terminal, JSON otherwise). RUST_LOG sets levels.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One pass: rotate every due token.
    Rotate {
        /// Only this token (repeatable).
        #[arg(long = "token", value_name = "NAME")]
        tokens: Vec<String>,
        /// Rotate even if the stored token is fresh.
        #[arg(long)]
        force: bool,
        /// Decide and report; never mint or write.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON array of per-token reports.
        #[arg(long)]
        json: bool,
    },
    /// Show every token's version, expiry and last outcome (never the token).
    Status {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print the current access token (or with --json the whole document), for scripts.
    Read {
        /// Token name.
        name: String,
        /// Print the whole token document.
        #[arg(long)]
        json: bool,
    },
    /// Validate config, reach every credential source and store, and complete a TLS handshake
    /// with Deepvue's host, without minting.
    Check {
        /// Print a JSON array of checks.
        #[arg(long)]
        json: bool,
    },
    /// Offline tour: built-in simulator + temporary file store.
    Demo,
    /// Run the Deepvue simulator for your own integration tests.
    Simulate(SimulateArgs),
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Where to write the simulator's CA certificate (PEM); use it as deepvue.ca_file.
    #[arg(long, value_name = "PATH")]
    ca_out: Option<PathBuf>,
    /// Accept only the credentials in DEEPVUE_CLIENT_ID / DEEPVUE_CLIENT_SECRET (else any).
    #[arg(long)]
    require_credentials: bool,
    /// Answer this status (e.g. 401, 403, 429, 500) ...
    #[arg(long, value_name = "STATUS")]
    fail_status: Option<u16>,
    /// ... this many times, then succeed (default: always).
    #[arg(long, value_name = "N", requires = "fail_status")]
    fail_times: Option<usize>,
    /// Retry-After header value sent with --fail-status.
    #[arg(long, value_name = "VALUE", requires = "fail_status")]
    retry_after: Option<String>,
    /// Answer 200 with a malformed body.
    #[arg(long, value_enum, conflicts_with = "fail_status")]
    malformed: Option<Malformed>,
    /// Delay every authorize answer (e.g. 250ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// Lifetime of issued tokens.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    token_ttl: Duration,
    /// Answer 403 to client IPs outside these (IP or CIDR, repeatable): IP whitelisting.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    allow_ip: Vec<IpNet>,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not an IP address or CIDR"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    crate::tls::install_default_provider();
    if crate::lambda::detected() {
        return crate::lambda::main();
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { 0 });
        }
    };
    let default_level = match cli.command {
        // The demo prints everything an operator needs on stdout; RUST_LOG shows the logs too.
        Command::Demo => "off",
        _ => "info",
    };
    logging::init(cli.log_format, default_level);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    ExitCode::from(rt.block_on(run(cli)))
}

async fn run(cli: Cli) -> u8 {
    let load = || match config::load(cli.config.as_deref()) {
        Ok(c) => Ok(c),
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_CONFIG)
        }
    };
    let result = match cli.command {
        Command::Rotate {
            ref tokens,
            force,
            dry_run,
            json,
        } => match load() {
            Ok(c) => cmd_rotate(c, tokens, RunOptions { force, dry_run }, json).await,
            Err(code) => Err(code),
        },
        Command::Status { json } => match load() {
            Ok(c) => cmd_status(c, json).await,
            Err(code) => Err(code),
        },
        Command::Read { ref name, json } => match load() {
            Ok(c) => cmd_read(c, name, json).await,
            Err(code) => Err(code),
        },
        Command::Check { json } => match config::load(cli.config.as_deref()) {
            Ok(c) => cmd_check(c, json).await,
            Err(e) => Ok(check_invalid_config(&e, json)),
        },
        Command::Demo => cmd_demo().await,
        Command::Simulate(args) => cmd_simulate(args).await,
    };
    result.unwrap_or_else(|code| code)
}

fn jobs_for(config: &Config, only: &[String]) -> Result<Vec<Job>, u8> {
    for name in only {
        if !config.tokens.iter().any(|t| &t.name == name) {
            let known: Vec<&str> = config.tokens.iter().map(|t| t.name.as_str()).collect();
            eprintln!(
                "error: no token named `{name}` in {} (known: {})",
                config.origin,
                known.join(", ")
            );
            return Err(EXIT_CONFIG);
        }
    }
    let aws = crate::aws::AwsClients::new(&config.aws);
    Ok(config
        .tokens
        .iter()
        .filter(|t| only.is_empty() || only.contains(&t.name))
        .map(|t| Job::new(t, config, &aws))
        .collect())
}

fn print_json<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

async fn cmd_rotate(
    config: Config,
    only: &[String],
    opts: RunOptions,
    json: bool,
) -> Result<u8, u8> {
    let jobs = jobs_for(&config, only)?;
    let rotator = Rotator::new(Arc::new(config));
    let reports = rotator.rotate_all(&jobs, opts).await;
    if json {
        print_json(&reports);
    } else {
        let mut out = std::io::stdout().lock();
        for r in &reports {
            let _ = writeln!(out, "{}", describe_report(r));
        }
    }
    Ok(combine_exit_codes(
        reports.iter().map(TokenReport::exit_code),
    ))
}

fn left(secs: Option<i64>) -> String {
    secs.map_or_else(
        || "?".into(),
        |s| format_duration(chrono::Duration::seconds(s)),
    )
}

/// One human line per token report.
pub fn describe_report(r: &TokenReport) -> String {
    let v = |v: &Option<crate::store::Version>| {
        v.as_ref().map_or_else(|| "none".into(), |v| v.0.clone())
    };
    let exp = format!(
        "expires {} (in {})",
        r.expiry.as_deref().unwrap_or("?"),
        left(r.expires_in_secs)
    );
    let at = format!("[{} {}]", r.backend, r.secret_id);
    let mut line = describe_outcome(r, &v, &exp, &at);
    if let Some(e) = &r.egress
        && r.outcome != Outcome::Failed
        && !e.outside_expected().is_empty()
    {
        line.push_str(&format!(
            "\n  WARNING egress drift: {}; Deepvue will answer 403 at the next rotation",
            e.summary()
        ));
    }
    for a in &r.alerts {
        let action = match a.action {
            crate::alert::Action::Trigger => {
                format!("alert {} ({:?})", a.condition.as_str(), a.severity).to_lowercase()
            }
            crate::alert::Action::Resolve => format!("resolved {}", a.condition.as_str()),
        };
        let delivered = if a.delivered.is_empty() {
            "log only".to_string()
        } else {
            a.delivered.join(", ")
        };
        line.push_str(&format!("\n  {action} -> {delivered}"));
        if !a.failed.is_empty() {
            line.push_str(&format!("; FAILED: {}", a.failed.join("; ")));
        }
    }
    line
}

fn describe_outcome(
    r: &TokenReport,
    v: &dyn Fn(&Option<crate::store::Version>) -> String,
    exp: &str,
    at: &str,
) -> String {
    match r.outcome {
        Outcome::Rotated => format!(
            "{}: rotated -> version {}{}; {exp} {at}",
            r.name,
            v(&r.version),
            r.previous_version
                .as_ref()
                .map(|p| format!(" (previous {p} kept)"))
                .unwrap_or_default()
        ),
        Outcome::RotatedByAnotherRunner => format!(
            "{}: rotated by another runner -> version {}; nothing written by this run; {exp} {at}",
            r.name,
            v(&r.version)
        ),
        Outcome::Fresh => format!("{}: fresh, version {}; {exp} {at}", r.name, v(&r.version)),
        Outcome::Throttled => format!(
            "{}: not rotated: {}; version {}; {exp} {at}",
            r.name,
            r.reason.as_deref().unwrap_or("throttled"),
            v(&r.version)
        ),
        Outcome::WouldRotate => format!(
            "{}: would rotate ({}); dry run, nothing minted or written {at}",
            r.name,
            r.reason.as_deref().unwrap_or("due")
        ),
        Outcome::Failed => {
            let (kind, msg) = r
                .error
                .as_ref()
                .map_or((ErrorKind::Permanent, String::new()), |e| {
                    (e.kind, e.message.clone())
                });
            let hint = match kind {
                ErrorKind::Forbidden => {
                    "\n  hint: Deepvue answers 403 to calls from IPs that are not on the account's whitelist; check this host's egress IP (NAT gateway / static IP) and ask Deepvue support to whitelist it"
                }
                ErrorKind::CredentialsRejected => {
                    "\n  hint: the client_id / client_secret are wrong, revoked or inactive; fix them in the credentials backend"
                }
                _ => "",
            };
            format!("{}: FAILED [{kind}] {msg} {at}{hint}", r.name)
        }
    }
}

async fn cmd_status(config: Config, json: bool) -> Result<u8, u8> {
    let jobs = jobs_for(&config, &[])?;
    let rows = rotate::status(&jobs, config.concurrency).await;
    if json {
        print_json(&rows);
    } else {
        print_status(&rows);
    }
    Ok(if rows.iter().any(|r| r.problem.is_some()) {
        1
    } else {
        0
    })
}

fn print_status(rows: &[StatusRow]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<16} {:<8} {:<22} {:<22} {:>9}  {:<4} LAST OUTCOME",
        "NAME", "VERSION", "ISSUED_AT", "EXPIRY", "LEFT", "DUE"
    );
    for r in rows {
        let last = match (&r.last_outcome, &r.last_run_at) {
            (Some(o), Some(at)) => format!("{o} at {at}"),
            (Some(o), None) => o.clone(),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:<22} {:<22} {:>9}  {:<4} {}",
            r.name,
            r.version.as_ref().map_or("-", |v| v.0.as_str()),
            r.issued_at.as_deref().unwrap_or("-"),
            r.expiry.as_deref().unwrap_or("-"),
            r.expires_in_secs.map_or_else(
                || "-".into(),
                |s| format_duration(chrono::Duration::seconds(s))
            ),
            if r.due { "yes" } else { "no" },
            last
        );
        if let Some(e) = &r.last_error {
            let _ = writeln!(out, "  last error: {}", truncate(e, 400));
        }
        if let Some(p) = &r.problem {
            let _ = writeln!(out, "  problem: {p}");
        }
        if !r.active_alerts.is_empty() {
            let _ = writeln!(out, "  open alerts: {}", r.active_alerts.join(", "));
        }
        if let Some(e) = &r.last_alert_error {
            let _ = writeln!(out, "  alert delivery failed: {}", truncate(e, 400));
        }
        if let Some(d) = r.due_reason.as_deref().filter(|_| r.due) {
            let _ = writeln!(out, "  due: {d}");
        }
    }
}

async fn cmd_read(config: Config, name: &str, json: bool) -> Result<u8, u8> {
    let jobs = jobs_for(&config, &[name.to_string()])?;
    let Some(job) = jobs.first() else {
        return Err(EXIT_CONFIG);
    };
    match job.store.read_current().await {
        Ok(Some(stored)) => match stored.document {
            Ok(doc) => {
                let mut out = std::io::stdout().lock();
                // `read` exists to hand the token to a script: it must leave here.
                let _ = if json {
                    writeln!(out, "{}", doc.to_json().expose_secret())
                } else {
                    writeln!(out, "{}", doc.access_token.expose_secret())
                };
                Ok(0)
            }
            Err(e) => {
                eprintln!(
                    "error: token `{name}`: {} store `{}` version {} is unusable: {e}",
                    job.store.backend(),
                    job.store.secret_id(),
                    stored.version
                );
                Ok(1)
            }
        },
        Ok(None) => {
            eprintln!(
                "error: token `{name}`: {} store `{}` holds no token yet; run `deepvue-rotator rotate`",
                job.store.backend(),
                job.store.secret_id()
            );
            Ok(1)
        }
        Err(e) => {
            eprintln!("error: token `{name}`: {e}");
            Ok(e.kind.exit_code())
        }
    }
}

/// One line of `check`: an item of Deepvue's production checklist, evaluated.
#[derive(Debug, Serialize)]
pub struct CheckItem {
    /// Stable id of the checklist item.
    pub item: &'static str,
    /// What it checks, for humans.
    pub check: String,
    /// `pass`, `fail` or `unknown`.
    pub status: &'static str,
    /// Why.
    pub detail: String,
}

fn item(
    item: &'static str,
    check: impl Into<String>,
    status: &'static str,
    detail: impl Into<String>,
) -> CheckItem {
    CheckItem {
        item,
        check: check.into(),
        status,
        detail: detail.into(),
    }
}

const CHECK_HTTPS: &str = "every endpoint is HTTPS";
const CHECK_CREDS: &str = "credentials come from env or a secret manager";
const CHECK_INLINE: &str = "no credential in the config";
const CHECK_EGRESS: &str = "egress IP is in expected_ips";
const CHECK_REFRESH: &str = "tokens are cached and refreshed ahead";
const CHECK_ALERTS: &str = "alerting is configured and reachable";
const CHECK_STORES: &str = "stores are reachable and writable";
const CHECK_TLS: &str = "Deepvue TLS handshake";

fn print_checks(items: &[CheckItem], json: bool) -> u8 {
    let failed = items.iter().filter(|i| i.status == "fail").count();
    let unknown = items.iter().filter(|i| i.status == "unknown").count();
    if json {
        print_json(&items);
    } else {
        let mut out = std::io::stdout().lock();
        for i in items {
            let _ = writeln!(
                out,
                "{:<7}  {}: {}",
                i.status.to_uppercase(),
                i.check,
                i.detail
            );
        }
        let _ = writeln!(
            out,
            "{} check(s): {failed} failed, {unknown} unknown",
            items.len()
        );
    }
    u8::from(failed > 0)
}

/// `check` on a config that does not load: the broken item fails, the rest are unknown.
fn check_invalid_config(e: &config::ConfigError, json: bool) -> u8 {
    use config::ProblemCategory::*;
    let (failing, name) = match e.category {
        InlineSecret => ("no-inline-secrets", CHECK_INLINE),
        InsecureEndpoint => ("https", CHECK_HTTPS),
        Invalid => ("config", "config is valid"),
    };
    let mut items = vec![item(failing, name, "fail", e.to_string())];
    for (id, name) in [
        ("config", "config is valid"),
        ("https", CHECK_HTTPS),
        ("credentials", CHECK_CREDS),
        ("no-inline-secrets", CHECK_INLINE),
        ("egress", CHECK_EGRESS),
        ("refresh-ahead", CHECK_REFRESH),
        ("alerting", CHECK_ALERTS),
        ("stores", CHECK_STORES),
        ("deepvue-tls", CHECK_TLS),
    ] {
        if id != failing {
            items.push(item(
                id,
                name,
                "unknown",
                "not evaluated: the config does not load",
            ));
        }
    }
    print_checks(&items, json);
    EXIT_CONFIG
}

async fn cmd_check(config: Config, json: bool) -> Result<u8, u8> {
    let config = Arc::new(config);
    let jobs = jobs_for(&config, &[])?;
    let rotator = Rotator::new(config.clone());
    let mut items = vec![item(
        "config",
        "config is valid",
        "pass",
        format!(
            "{} parsed and validated; {} token(s)",
            config.origin,
            config.tokens.len()
        ),
    )];

    // HTTPS everywhere. Inline URLs were validated at load; referenced ones are resolved now.
    let mut insecure = Vec::new();
    let mut notes = vec![format!("deepvue {}", config.deepvue.base_url)];
    for s in &config.alerting.sinks {
        if let config::SinkConfig::Webhook {
            url: config::UrlValue::Ref(r),
            name,
            ..
        }
        | config::SinkConfig::Slack { url: r, name } = s
        {
            match r.resolve() {
                Ok(u) if u.expose_secret().starts_with("https://") => {
                    notes.push(format!("{name} (from {})", r.describe()))
                }
                Ok(_) => insecure.push(format!(
                    "alert sink {name}: the URL in {} is not https://",
                    r.describe()
                )),
                Err(e) => insecure.push(format!("alert sink {name}: {e}")),
            }
        }
    }
    if let Some(e) = &config.aws.endpoint_url {
        notes.push(format!(
            "aws {e}{}",
            if e.starts_with("http://") {
                " (loopback emulator)"
            } else {
                ""
            }
        ));
    }
    items.push(if insecure.is_empty() {
        item(
            "https",
            CHECK_HTTPS,
            "pass",
            format!(
                "HTTPS with verified certificates, TLS >= 1.2: {}",
                notes.join(", ")
            ),
        )
    } else {
        item("https", CHECK_HTTPS, "fail", insecure.join("; "))
    });

    // Credentials: where from, and readable now.
    for job in &jobs {
        let name = &job.config.name;
        let source = job.credentials.describe();
        let loose = matches!(
            job.config.credentials,
            config::CredentialsConfig::File { .. }
        );
        let readable = job.credentials.load().await;
        items.push(match (loose, readable) {
            (_, Err(e)) => item("credentials", format!("{CHECK_CREDS} (token `{name}`)"), "fail", e.to_string()),
            (true, Ok(_)) => item(
                "credentials",
                format!("{CHECK_CREDS} (token `{name}`)"),
                "fail",
                format!("read from a loose file ({source}); keep them in environment variables or a secret manager"),
            ),
            (false, Ok(_)) => item("credentials", format!("{CHECK_CREDS} (token `{name}`)"), "pass", format!("read from {source}")),
        });
    }
    items.push(item(
        "no-inline-secrets",
        CHECK_INLINE,
        "pass",
        "no secret-looking key holds a value in the config",
    ));

    // Egress.
    let e = &config.egress;
    items.push(if e.expected.is_empty() {
        item(
            "egress",
            CHECK_EGRESS,
            "fail",
            "egress.expected_ips is not set: drift cannot be seen before Deepvue answers 403",
        )
    } else if !e.probe {
        item("egress", CHECK_EGRESS, "unknown", "egress.probe = false")
    } else {
        match rotator.egress().await {
            Some(r) if r.observed.is_empty() => {
                item("egress", CHECK_EGRESS, "unknown", r.summary())
            }
            Some(r) if !r.outside_expected().is_empty() => {
                item("egress", CHECK_EGRESS, "fail", r.summary())
            }
            Some(r) => item("egress", CHECK_EGRESS, "pass", r.summary()),
            None => item(
                "egress",
                CHECK_EGRESS,
                "unknown",
                "the Deepvue HTTP client could not be built",
            ),
        }
    });

    // Refresh ahead of expiry.
    for t in &config.tokens {
        let rb = t.policy.renew_before;
        let check = format!("{CHECK_REFRESH} (token `{}`)", t.name);
        let rb_h = humantime::format_duration(rb);
        items.push(if rb < Duration::from_secs(3600) {
            item("refresh-ahead", check, "fail", format!("renew_before = {rb_h} leaves under an hour for retries and alerts"))
        } else {
            match config.run_every {
                Some(every) if rb < every * 2 => item(
                    "refresh-ahead",
                    check,
                    "fail",
                    format!("renew_before = {rb_h} but the job runs every {}: at least two runs must fall inside the renewal window", humantime::format_duration(every)),
                ),
                Some(every) => item(
                    "refresh-ahead",
                    check,
                    "pass",
                    format!("tokens are reused until {rb_h} before expiry; runs every {} give {} chances to renew", humantime::format_duration(every), rb.as_secs() / every.as_secs().max(1)),
                ),
                None => item(
                    "refresh-ahead",
                    check,
                    "unknown",
                    format!("renew_before = {rb_h} is sane against the 24h lifetime; set rotation.run_every to the schedule so it can be checked against it"),
                ),
            }
        });
    }

    // Alerting.
    if !rotator.alerter().has_sinks() {
        items.push(item(
            "alerting",
            CHECK_ALERTS,
            "fail",
            "no [[alerts]] sink configured: a 403 or a failing rotation would only reach the logs",
        ));
    }
    for (name, r) in rotator.alerter().check().await {
        items.push(match r {
            Ok(d) => item(
                "alerting",
                format!("{CHECK_ALERTS} (sink {name})"),
                "pass",
                d,
            ),
            Err(e) => item(
                "alerting",
                format!("{CHECK_ALERTS} (sink {name})"),
                "fail",
                e,
            ),
        });
    }

    // Stores.
    for job in &jobs {
        let check = format!("{CHECK_STORES} (token `{}`)", job.config.name);
        items.push(match job.store.check().await {
            Ok(()) => item(
                "stores",
                check,
                "pass",
                format!(
                    "{} store `{}` reachable and writable",
                    job.store.backend(),
                    job.store.secret_id()
                ),
            ),
            Err(e) => item("stores", check, "fail", e.to_string()),
        });
    }

    // Deepvue TLS.
    items.push(match rotator.client().await {
        Ok(client) => match client.handshake().await {
            Ok(status) => item(
                "deepvue-tls",
                CHECK_TLS,
                "pass",
                format!(
                    "TLS handshake with {} verified (HTTP {} to GET /; nothing minted)",
                    client.host(),
                    status.as_u16()
                ),
            ),
            Err(e) => item(
                "deepvue-tls",
                CHECK_TLS,
                "fail",
                format!("{}: {e}", config.deepvue.base_url),
            ),
        },
        Err(e) => item("deepvue-tls", CHECK_TLS, "fail", e.to_string()),
    });
    Ok(print_checks(&items, json))
}

async fn cmd_demo() -> Result<u8, u8> {
    let fail = |e: anyhow::Error| {
        eprintln!("error: demo: {e:#}");
        1u8
    };
    demo().await.map_err(fail)
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
    let config = Arc::new(config::parse(&toml, "demo config")?);
    let jobs = jobs_for(&config, &[]).map_err(|_| anyhow::anyhow!("demo config has no tokens"))?;
    let rotator = Rotator::new(config.clone());
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
    let r = rotator.rotate_all(&jobs, RunOptions::default()).await;
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
    let r = rotator.rotate_all(&jobs, RunOptions::default()).await;
    report_lines(&mut out, &r)?;
    writeln!(
        out,
        "   authorize calls so far: {}\n",
        sim.stats().authorize_calls
    )?;

    writeln!(out, "== 3. status")?;
    drop(out);
    print_status(&rotate::status(&jobs, 1).await);
    let mut out = std::io::stdout().lock();
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
    let r = rotator
        .rotate_all(
            &jobs,
            RunOptions {
                force: true,
                dry_run: false,
            },
        )
        .await;
    report_lines(&mut out, &r)?;
    let code = combine_exit_codes(r.iter().map(TokenReport::exit_code));
    writeln!(
        out,
        "   exit code: {code} (3 = Deepvue answered 403); the stored token was left untouched:"
    )?;
    drop(out);
    print_status(&rotate::status(&jobs, 1).await);
    let mut out = std::io::stdout().lock();
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

async fn cmd_simulate(args: SimulateArgs) -> Result<u8, u8> {
    let credentials = if args.require_credentials {
        let src = EnvCredentials::new(
            crate::credentials::DEFAULT_ID_VAR.into(),
            crate::credentials::DEFAULT_SECRET_VAR.into(),
        );
        match src.load().await {
            Ok(c) => Some((c.client_id.expose_secret().to_string(), c.client_secret)),
            Err(e) => {
                eprintln!("error: --require-credentials: {e}");
                return Err(EXIT_CONFIG);
            }
        }
    } else {
        None
    };
    let failure = match (args.fail_status, args.malformed) {
        (Some(status), _) => Some(Reply::Status {
            status,
            detail: None,
            retry_after: args.retry_after.clone(),
        }),
        (None, Some(what)) => Some(Reply::Malformed { what }),
        (None, None) => None,
    };
    let mut behavior = Behavior {
        latency_ms: args.latency.map_or(0, |d| d.as_millis() as u64),
        token_ttl_secs: args.token_ttl.as_secs().max(1),
        allowed_ips: (!args.allow_ip.is_empty()).then_some(args.allow_ip.clone()),
        ..Behavior::default()
    };
    match (failure, args.fail_times) {
        (Some(f), Some(n)) => behavior.script = vec![f; n],
        (Some(f), None) => behavior.default = f,
        (None, _) => {}
    }
    let sim = match Simulator::start(SimOptions {
        listen: Some(args.listen),
        credentials,
        behavior,
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot start the simulator on {}: {e:#}",
                args.listen
            );
            return Ok(1);
        }
    };
    let ca_out = match args.ca_out {
        Some(p) => p,
        None => match tempfile::Builder::new()
            .prefix("deepvue-simulator-")
            .tempdir()
        {
            Ok(d) => d.keep().join("ca.pem"),
            Err(e) => {
                eprintln!("error: cannot create a directory for the CA: {e}");
                return Ok(1);
            }
        },
    };
    if let Err(e) = std::fs::write(&ca_out, sim.ca_pem()) {
        eprintln!("error: cannot write the CA to {}: {e}", ca_out.display());
        return Ok(1);
    }
    println!("Deepvue simulator listening on {}", sim.base_url());
    println!(
        "CA certificate: {} (set deepvue.ca_file to it)",
        ca_out.display()
    );
    println!(
        "control: GET {0}/__simulator/stats, PUT {0}/__simulator/behavior",
        sim.base_url()
    );
    wait_for_shutdown().await;
    println!(
        "simulator stopped after {} authorize call(s)",
        sim.stats().authorize_calls
    );
    Ok(0)
}

async fn wait_for_shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
