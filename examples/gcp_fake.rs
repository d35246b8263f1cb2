//! The Secret Manager REST fake of the test suite (`tests/it/gcp_fake.rs`) as a standalone
//! server, for `bench/gcp.py`: `gcp_fake [ADDR]` prints its endpoint on stdout and serves until
//! killed. Calls per RPC: `GET /__fake/calls`.

#[allow(dead_code)]
#[path = "../tests/it/gcp_fake.rs"]
mod gcp_fake;

use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    deepvue_rotator::support::tls::install_default_provider();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gcp_fake: cannot bind {addr}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Ok(local) = listener.local_addr() else {
        return std::process::ExitCode::from(2);
    };
    let fake = gcp_fake::GcpFake::serve(listener, local);
    println!("{}", fake.endpoint);
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
