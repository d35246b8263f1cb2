//! The `deepvue-rotator` binary: picks the run mode (Lambda when started by the Lambda runtime,
//! else the command line) and hands over to it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deepvue_rotator::app;
use deepvue_rotator::core::error::EXIT_CONFIG;
use deepvue_rotator::modes::cli;
use deepvue_rotator::support::logging::{self, LogFormat};

/// `--version`: version, git commit and enabled features.
static VERSION: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(deepvue_rotator::support::build::long_version);

#[derive(Parser, Debug)]
#[command(
    name = "deepvue-rotator",
    version = VERSION.as_str(),
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
    /// Serve the stored tokens to applications on this host (HTTP on loopback or a Unix
    /// socket, caller token required), from a cache that follows each token's expiry.
    #[cfg(feature = "agent")]
    Agent(deepvue_rotator::modes::agent::AgentArgs),
    /// One pass: rotate every due token.
    Rotate(cli::RotateArgs),
    /// Show every token's version, expiry and last outcome (never the token).
    Status(cli::StatusArgs),
    /// Hold one token: no runner mints it until `resume` (a due suspended token alerts,
    /// critical).
    Suspend(cli::suspend::SuspendArgs),
    /// Lift `suspend`.
    Resume(cli::suspend::ResumeArgs),
    /// Print the current access token (or with --json the whole document), for scripts.
    Read(cli::ReadArgs),
    /// Validate config, reach every credential source and store, and complete a TLS handshake
    /// with Deepvue's host, without minting.
    Check {
        /// Print a JSON array of checks.
        #[arg(long)]
        json: bool,
    },
    /// Run until SIGTERM: rotate every token before it expires, serve health, status and
    /// Prometheus metrics, talk to systemd.
    #[cfg(feature = "daemon")]
    Daemon(deepvue_rotator::modes::daemon::DaemonArgs),
    /// Offline tour: built-in simulator + temporary file store.
    #[cfg(feature = "simulator")]
    Demo,
    /// Run a command with the token in its environment and/or a file; restart or signal it
    /// when a new version appears (never mints).
    Exec(deepvue_rotator::modes::exec::ExecArgs),
    /// Run the Deepvue simulator for your own integration tests.
    #[cfg(feature = "simulator")]
    Simulate(cli::simulate::SimulateArgs),
    /// Print a shell completion script (e.g. `deepvue-rotator completions bash >
    /// /etc/bash_completion.d/deepvue-rotator`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `deepvue-rotator man > deepvue-rotator.1`), or with
    /// a command its own page (`deepvue-rotator man rotate > deepvue-rotator-rotate.1`).
    Man {
        /// A command.
        command: Option<String>,
    },
}

/// `completions SHELL`: the script for the whole command line.
fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "deepvue-rotator", &mut out);
    print_out(&out)
}

/// `man [COMMAND]`: the manual page of the program, or of one command
/// (`deepvue-rotator-COMMAND`).
fn man(command: Option<&str>) -> u8 {
    let cmd = <Cli as clap::CommandFactory>::command();
    let page = match command {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => sub.clone().name(format!("deepvue-rotator-{name}")),
            None => {
                deepvue_rotator::support::output::diag(&format!(
                    "error: no command `{name}` (see deepvue-rotator --help)"
                ));
                return EXIT_CONFIG;
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
        deepvue_rotator::support::output::diag(&format!("error: {e}"));
        return 1;
    }
    print_out(&out)
}

/// Write generated output to stdout (a closed pipe is an error, exit 1).
fn print_out(out: &[u8]) -> u8 {
    match deepvue_rotator::support::output::stdout(out) {
        Ok(()) => 0,
        Err(e) => {
            deepvue_rotator::support::output::diag(&format!("error: cannot write to stdout: {e}"));
            1
        }
    }
}

fn main() -> ExitCode {
    // Before anything secret is in memory: a crash must not write it to disk.
    let not_hardened = deepvue_rotator::support::process::disable_core_dumps();
    deepvue_rotator::support::tls::install_default_provider();
    #[cfg(feature = "lambda")]
    if deepvue_rotator::modes::lambda::detected() {
        return deepvue_rotator::modes::lambda::main();
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
        #[cfg(feature = "simulator")]
        Command::Demo => "off",
        _ => "info",
    };
    logging::init(cli.log_format, default_level);
    for why in not_hardened {
        tracing::debug!(error = %why, "core dumps could not be turned off");
    }
    deepvue_rotator::engine::audit::set_mode(match &cli.command {
        #[cfg(feature = "daemon")]
        Command::Daemon(_) if std::env::var_os("K_SERVICE").is_some() => "cloud_run_service",
        #[cfg(feature = "daemon")]
        Command::Daemon(_) => "daemon",
        #[cfg(feature = "agent")]
        Command::Agent(_) => "agent",
        _ if std::env::var_os("CLOUD_RUN_JOB").is_some() => "cloud_run_job",
        _ => "cli",
    });
    let config = cli.config.as_deref();
    // A `rotate` loads its configuration first: one that fans out gets two worker threads.
    let mut loaded = match &cli.command {
        Command::Rotate(a) => Some(cli::load_config(config, a.json)),
        _ => None,
    };
    // The agent answers requests while it reads stores: two worker threads too.
    #[cfg(feature = "agent")]
    let serves = matches!(cli.command, Command::Agent(_));
    #[cfg(not(feature = "agent"))]
    let serves = false;
    let runtime = if serves || matches!(&loaded, Some(Ok(c)) if c.fans_out()) {
        app::rotate_runtime()
    } else {
        app::runtime()
    };
    let rt = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            deepvue_rotator::support::output::diag(&format!(
                "error: cannot start the async runtime: {e}"
            ));
            return ExitCode::from(1);
        }
    };
    ExitCode::from(rt.block_on(async {
        match cli.command {
            Command::Rotate(args) => match loaded.take() {
                Some(Ok(c)) => cli::rotate_loaded(c, args).await,
                Some(Err(code)) => code,
                None => cli::rotate(config, args).await,
            },
            Command::Status(args) => cli::status(config, args).await,
            Command::Read(args) => cli::read(config, args).await,
            Command::Suspend(a) => cli::suspend::set(config, &a.token, Some(a.reason)).await,
            Command::Resume(a) => cli::suspend::set(config, &a.token, None).await,
            Command::Check { json } => cli::check(config, json).await,
            #[cfg(feature = "daemon")]
            Command::Daemon(args) => deepvue_rotator::modes::daemon::run(config, args).await,
            #[cfg(feature = "agent")]
            Command::Agent(args) => deepvue_rotator::modes::agent::run(config, args).await,
            Command::Exec(args) => deepvue_rotator::modes::exec::run(config, args).await,
            #[cfg(feature = "simulator")]
            Command::Demo => cli::demo::run().await,
            #[cfg(feature = "simulator")]
            Command::Simulate(args) => cli::simulate::run(args).await,
            Command::Completions { shell } => completions(shell),
            Command::Man { command } => man(command.as_deref()),
        }
    }))
}
