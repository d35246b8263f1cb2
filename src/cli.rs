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
use crate::deepvue::DeepvueClient;
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
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { 0 });
        }
    };
    let default_level = match cli.command {
        Command::Demo => "warn",
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
        Command::Check { json } => match load() {
            Ok(c) => cmd_check(c, json).await,
            Err(code) => Err(code),
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
    Ok(config
        .tokens
        .iter()
        .filter(|t| only.is_empty() || only.contains(&t.name))
        .map(|t| Job::new(t, config))
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
    match r.outcome {
        Outcome::Rotated => format!(
            "{}: rotated -> version {} (previous {} kept); {exp} {at}",
            r.name,
            v(&r.version),
            v(&r.previous_version)
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

/// One line of `check`.
#[derive(Debug, Serialize)]
pub struct CheckItem {
    /// What was checked.
    pub check: String,
    /// `pass` or `fail`.
    pub status: &'static str,
    /// Details.
    pub detail: String,
}

async fn cmd_check(config: Config, json: bool) -> Result<u8, u8> {
    let mut items = vec![CheckItem {
        check: "config".into(),
        status: "pass",
        detail: format!(
            "{} parsed and validated; {} token(s)",
            config.origin,
            config.tokens.len()
        ),
    }];
    let jobs = jobs_for(&config, &[])?;
    for job in &jobs {
        let name = &job.config.name;
        items.push(match job.credentials.load().await {
            Ok(_) => CheckItem {
                check: format!("token `{name}` credentials"),
                status: "pass",
                detail: format!("read from {}", job.credentials.describe()),
            },
            Err(e) => CheckItem {
                check: format!("token `{name}` credentials"),
                status: "fail",
                detail: e.to_string(),
            },
        });
        items.push(match job.store.check().await {
            Ok(()) => CheckItem {
                check: format!("token `{name}` store"),
                status: "pass",
                detail: format!(
                    "{} store `{}` reachable and writable",
                    job.store.backend(),
                    job.store.secret_id()
                ),
            },
            Err(e) => CheckItem {
                check: format!("token `{name}` store"),
                status: "fail",
                detail: e.to_string(),
            },
        });
    }
    let host = config.deepvue.base_url.to_string();
    items.push(match DeepvueClient::new(&config.deepvue) {
        Ok(client) => match client.handshake().await {
            Ok(status) => CheckItem {
                check: "deepvue tls".into(),
                status: "pass",
                detail: format!(
                    "TLS handshake with {} verified (HTTP {} to GET /; nothing minted)",
                    client.host(),
                    status.as_u16()
                ),
            },
            Err(e) => CheckItem {
                check: "deepvue tls".into(),
                status: "fail",
                detail: format!("{host}: {e}"),
            },
        },
        Err(e) => CheckItem {
            check: "deepvue tls".into(),
            status: "fail",
            detail: e.to_string(),
        },
    });
    let failed = items.iter().filter(|i| i.status == "fail").count();
    if json {
        print_json(&items);
    } else {
        let mut out = std::io::stdout().lock();
        for i in &items {
            let _ = writeln!(out, "{:<4}  {}: {}", i.status, i.check, i.detail);
        }
        let _ = writeln!(out, "{} check(s), {failed} failed", items.len());
    }
    Ok(if failed > 0 { 1 } else { 0 })
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
        "[deepvue]\nbase_url = \"{}\"\nca_file = \"{}\"\n\n[rotation]\nrenew_before = \"12h\"\n\n\
         [[tokens]]\nname = \"demo\"\ncredentials = {{ backend = \"file\", path = \"{}\" }}\n\
         store = {{ backend = \"file\", path = \"{}\" }}\n",
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
        "== 1. rotate: nothing is stored yet, so a token is minted and written"
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
        "== 4. Deepvue now answers 403 (this host's egress IP is not whitelisted); rotate --force"
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
    let ca_out = args
        .ca_out
        .unwrap_or_else(|| std::env::temp_dir().join("deepvue-simulator-ca.pem"));
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
