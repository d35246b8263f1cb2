//! `simulate`: the Deepvue simulator as a standalone HTTPS server, for your own integration
//! tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::ExposeSecret;

use crate::core::error::EXIT_CONFIG;
use crate::simulator::{Behavior, Malformed, Reply, SimOptions, Simulator};
use crate::support::net::parse_ip_or_net;
use crate::support::output::{diag, stdout};
use crate::support::secret_ref::SecretRef;
use crate::support::signals::wait_for_shutdown;

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
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
    /// A new mint revokes every earlier token (`GET /v1/ping` answers 401 for them); without
    /// it earlier tokens stay valid until they expire.
    #[arg(long)]
    revoke_on_mint: bool,
}

/// `simulate`: serve until SIGINT / SIGTERM.
pub async fn run(args: SimulateArgs) -> u8 {
    let credentials = if args.require_credentials {
        let var = |name: &str| {
            SecretRef {
                env: Some(name.to_string()),
                ..SecretRef::default()
            }
            .resolve()
        };
        match (var("DEEPVUE_CLIENT_ID"), var("DEEPVUE_CLIENT_SECRET")) {
            (Ok(id), Ok(secret)) => Some((id.expose_secret().to_string(), secret)),
            (Err(e), _) | (_, Err(e)) => {
                diag(&format!("error: --require-credentials: {e}"));
                return EXIT_CONFIG;
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
        revoke_on_mint: args.revoke_on_mint,
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
        clock: None,
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            diag(&format!(
                "error: cannot start the simulator on {}: {e:#}",
                args.listen
            ));
            return 1;
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
                diag(&format!("error: cannot create a directory for the CA: {e}"));
                return 1;
            }
        },
    };
    if let Err(e) = std::fs::write(&ca_out, sim.ca_pem()) {
        diag(&format!(
            "error: cannot write the CA to {}: {e}",
            ca_out.display()
        ));
        return 1;
    }
    let banner = format!(
        "Deepvue simulator listening on {0}\nCA certificate: {1} (set deepvue.ca_file to it)\n\
         control: GET {0}/__simulator/stats, PUT {0}/__simulator/behavior\n",
        sim.base_url(),
        ca_out.display()
    );
    // Nobody can learn the address or the CA from a lost banner: stop rather than serve blind.
    if let Err(e) = stdout(banner.as_bytes()) {
        diag(&format!(
            "error: cannot write to stdout: {e}; stopping the simulator"
        ));
        return 1;
    }
    wait_for_shutdown().await;
    let bye = format!(
        "simulator stopped after {} authorize call(s)\n",
        sim.stats().authorize_calls
    );
    if let Err(e) = stdout(bye.as_bytes()) {
        diag(&format!("error: cannot write to stdout: {e}"));
        return 1;
    }
    0
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    parse_ip_or_net(s).ok_or_else(|| format!("`{s}` is not an IP address or CIDR"))
}
