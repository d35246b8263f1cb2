//! The Kubernetes API fake of the test suite (`tests/it/kube_fake.rs`) as a standalone HTTPS
//! server, for `bench/kubernetes.py`: `kube_fake CA_OUT` writes its CA certificate to CA_OUT,
//! prints `URL ADMIN_TOKEN` on stdout and serves until killed. Calls per verb:
//! `GET /__fake/calls`.

#[allow(dead_code)]
#[path = "../tests/it/kube_fake.rs"]
mod kube_fake;

use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    deepvue_rotator::support::tls::install_default_provider();
    let Some(ca_out) = std::env::args().nth(1) else {
        eprintln!("usage: kube_fake CA_OUT");
        return std::process::ExitCode::from(2);
    };
    let fake = kube_fake::KubeFake::start().await;
    if let Err(e) = std::fs::write(&ca_out, &fake.ca_pem) {
        eprintln!("kube_fake: cannot write {ca_out}: {e}");
        return std::process::ExitCode::from(2);
    }
    println!("{} {}", fake.url, fake.admin_token);
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
