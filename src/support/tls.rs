//! TLS settings shared by every outbound HTTPS client and by the simulator.
//!
//! One crypto provider (ring) for the whole process; TLS 1.2 and 1.3 only; certificates are
//! always verified against the OS roots (honouring `SSL_CERT_FILE` / `SSL_CERT_DIR`) plus an
//! optional extra CA file. The OS roots are parsed **once per process** and shared by every
//! client; there is deliberately no switch to turn verification off.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::net::IpFamily;

/// Why a TLS client could not be set up. Names files, never content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The extra CA file could not be read or parsed.
    #[error("CA file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate in the CA file is not a valid trust anchor.
    #[error("CA file {}: {source}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Why rustls refused it.
        #[source]
        source: rustls::Error,
    },
    /// The CA file holds no certificate.
    #[error("CA file {} holds no PEM certificate", path.display())]
    EmptyCaFile {
        /// The file.
        path: PathBuf,
    },
    /// No trust anchor at all.
    #[error(
        "no trust anchors: the OS trust store is empty or unreadable (check SSL_CERT_FILE / \
         SSL_CERT_DIR) and no ca_file is configured"
    )]
    NoRoots,
    /// The protocol versions or provider were refused.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The process-wide crypto provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Install ring as the process default (first thing `main` does): with several TLS users in one
/// process, rustls refuses to guess and `ClientConfig::builder()` would panic.
pub fn install_default_provider() {
    // Err only means a default is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The OS roots, parsed on first use and shared by every client of the process.
fn native_roots() -> Arc<RootCertStore> {
    static NATIVE: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    NATIVE
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A malformed OS root is skipped rather than failing every connection.
                let _ = roots.add(cert);
            }
            Arc::new(roots)
        })
        .clone()
}

/// The trust anchors for one client: the shared OS roots, plus `extra_ca` (PEM, any number of
/// certificates) when given.
pub fn roots(extra_ca: Option<&Path>) -> Result<Arc<RootCertStore>, TlsError> {
    let native = native_roots();
    let Some(path) = extra_ca else {
        if native.is_empty() {
            return Err(TlsError::NoRoots);
        }
        return Ok(native);
    };
    let mut roots = (*native).clone();
    let certs = CertificateDer::pem_file_iter(path).map_err(|source| TlsError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|source| TlsError::CaFile {
            path: path.to_path_buf(),
            source,
        })?;
        roots.add(cert).map_err(|source| TlsError::BadCertificate {
            path: path.to_path_buf(),
            source,
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(TlsError::EmptyCaFile {
            path: path.to_path_buf(),
        });
    }
    Ok(Arc::new(roots))
}

/// A verifying client config: OS roots plus `extra_ca`, TLS 1.2/1.3, ring.
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots(extra_ca)?)
        .with_no_client_auth())
}

/// A verifying client config trusting exactly `roots` (e.g. a Kubernetes cluster's own CA,
/// not the OS store), TLS 1.2/1.3, ring; with a client certificate when given.
pub fn client_config_trusting(
    roots: Arc<RootCertStore>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots);
    Ok(match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    })
}

/// How an HTTPS client is built.
#[derive(Clone, Debug)]
pub struct HttpsSettings<'a> {
    /// Extra trust anchor (PEM), on top of the OS roots.
    pub extra_ca: Option<&'a Path>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Outbound address family (IPv4 only by default, like the egress probes).
    pub family: IpFamily,
    /// `User-Agent` header.
    pub user_agent: &'a str,
}

/// An HTTPS-only client: verifying TLS (OS roots + `extra_ca`), no redirects, the given
/// User-Agent, and IPv4-only when asked (so egress probes see the same address family as
/// Deepvue calls).
pub fn https_client(s: &HttpsSettings<'_>) -> Result<reqwest::Client, TlsError> {
    client_builder(s, true)?.build().map_err(TlsError::Client)
}

/// The builder behind [`https_client`]; `https_only = false` lets a caller reach a loopback
/// `http://` dev server (Vault, emulators) with the same trust and settings.
pub fn client_builder(
    s: &HttpsSettings<'_>,
    https_only: bool,
) -> Result<reqwest::ClientBuilder, TlsError> {
    Ok(client_builder_from(
        client_config(s.extra_ca)?,
        s,
        https_only,
    ))
}

/// The same builder on a TLS config of the caller's (`s.extra_ca` is not read).
pub fn client_builder_from(
    tls: rustls::ClientConfig,
    s: &HttpsSettings<'_>,
    https_only: bool,
) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(https_only)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(s.connect_timeout)
        .user_agent(s.user_agent);
    if s.family == IpFamily::Ipv4 {
        builder = builder.local_address(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    }
    // Our own proxy rule instead of reqwest's reading of the environment.
    builder = builder.no_proxy();
    if let Some(proxy) = env_proxy() {
        builder = builder.proxy(proxy);
    }
    builder
}

/// The proxy for **HTTPS** targets, from `HTTPS_PROXY` / `https_proxy` / `ALL_PROXY` /
/// `all_proxy` (as curl reads them), skipping `NO_PROXY` / `no_proxy` and, whatever those
/// say, loopback (`localhost`, `127.0.0.0/8`, `::1`). A plain-http target (a loopback dev
/// server) is never proxied: a proxy would see its tokens and secret ids in clear; so
/// `HTTP_PROXY` is never used.
fn env_proxy() -> Option<reqwest::Proxy> {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
    };
    let url = var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])?;
    let skip = var(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
    let skip = format!("{skip},localhost,127.0.0.0/8,::1");
    reqwest::Proxy::https(url.trim())
        .ok()
        .map(|p| p.no_proxy(reqwest::NoProxy::from_string(&skip)))
}

/// Build a server config from DER material (used by the simulator and test servers).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Find a rustls error in an error's source chain and describe it. `io::Error` hides its inner
/// error from `source()` (and TLS stacks nest them), so look inside each one too.
pub fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        let mut io = e.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(std::io::Error::get_ref) {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t.to_string());
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cur = e.source();
    }
    None
}
