//! `[daemon]`: the long-running mode's schedule, listener and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::support::duration::{Dur, show};

/// The metrics / health listener when neither `listen` nor `PORT` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    listen: Option<String>,
    schedule: Option<bool>,
    jitter: Option<Dur>,
    poll_every: Option<Dur>,
    shutdown_timeout: Option<Dur>,
    retry_initial: Option<Dur>,
    retry_max: Option<Dur>,
    status_endpoints: Option<bool>,
    metrics_endpoint: Option<bool>,
    admin_socket: Option<PathBuf>,
    pubsub: Option<RawPubsub>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPubsub {
    audience: String,
    service_account: String,
    jwks_url: Option<String>,
    ca_file: Option<PathBuf>,
}

/// Google's OIDC signing keys (JWKS).
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// `[daemon.pubsub]`: the Pub/Sub push endpoint `POST /pubsub`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubsubConfig {
    /// The `aud` every push token must carry (the subscription's OIDC audience).
    pub audience: String,
    /// The push service account: the token's `email` (with `email_verified`).
    pub service_account: String,
    /// Where the signing keys are (default Google's JWKS).
    pub jwks_url: String,
    /// Extra trust anchor (PEM) for `jwks_url`, on top of the OS roots.
    pub ca_file: Option<PathBuf>,
}

/// `[daemon]`, validated.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Where `/healthz`, `/readyz`, `/status` and `/metrics` are served. Default
    /// `127.0.0.1:9464`, or `0.0.0.0:$PORT` when `PORT` is set (Cloud Run).
    pub listen: SocketAddr,
    /// Expiry-driven timers and polls (default true). `false`: only requests trigger
    /// rotations (a Cloud Run service fed by Pub/Sub).
    pub schedule: bool,
    /// Wake up to this much before `expiry − renew_before` (default 5m; at most a tenth of a
    /// token's `renew_before` is used).
    pub jitter: Duration,
    /// Re-read every store this often (default 5m), to notice other writers.
    pub poll_every: Duration,
    /// How long in-flight rotations may finish on SIGTERM (default 30s).
    pub shutdown_timeout: Duration,
    /// First retry delay after a failure (default 30s); doubles per failure.
    pub retry_initial: Duration,
    /// Largest retry delay (default 15m), shrunk near expiry.
    pub retry_max: Duration,
    /// Serve `/status` (secret ids, errors, egress IPs) and the error text of `/readyz`.
    /// Default: only when `listen` is a loopback address; a listener others reach (`PORT`
    /// set, `0.0.0.0`, a pod address) hides them unless this is set to `true`. `false`:
    /// `/status` answers 404 and `/readyz` tells only "ok" or which token is not ready.
    pub status_endpoints: bool,
    /// Serve `/metrics` (token names, counts and times; never a secret id or an error).
    /// Default true, for a Prometheus scrape of a pod address; `false` (or an explicit
    /// `status_endpoints = false` without this key, as before it existed) answers 404.
    pub metrics_endpoint: bool,
    /// `[daemon.pubsub]`: serve `POST /pubsub` (Secret Manager `SECRET_ROTATE` pushes).
    pub pubsub: Option<PubsubConfig>,
    /// A Unix socket (mode 0600: the daemon's user and root only) where `rotate --via-daemon`
    /// asks the running daemon to rotate now. Default none.
    pub admin_socket: Option<PathBuf>,
}

impl RawPubsub {
    fn validate(self, origin: &str) -> Result<PubsubConfig, ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        let audience = self.audience.trim().to_string();
        if audience.is_empty() {
            return Err(err(
                "daemon.pubsub.audience is empty: set the push subscription's OIDC audience \
                 (e.g. https://SERVICE-URL/pubsub)"
                    .into(),
            ));
        }
        let sa = self.service_account.trim().to_string();
        let at = sa.split_once('@');
        if at.is_none_or(|(user, domain)| user.is_empty() || !domain.contains('.')) {
            return Err(err(format!(
                "daemon.pubsub.service_account `{sa}` is not a service account email (e.g. \
                 push@my-project.iam.gserviceaccount.com)"
            )));
        }
        let jwks_url = crate::support::url::https_url(
            "daemon.pubsub.jwks_url",
            self.jwks_url.as_deref().unwrap_or(GOOGLE_JWKS_URL),
        )
        .map_err(|p| ConfigError::from_problem(origin, p))?
        .to_string();
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            return Err(err(format!(
                "daemon.pubsub.ca_file `{}` does not exist or is not a file",
                ca.display()
            )));
        }
        Ok(PubsubConfig {
            audience,
            service_account: sa,
            jwks_url,
            ca_file: self.ca_file,
        })
    }
}

impl RawDaemon {
    pub(super) fn validate(self, origin: &str) -> Result<DaemonConfig, ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        let listen = match self.listen {
            Some(l) => l.parse::<SocketAddr>().map_err(|_| {
                err(format!(
                    "daemon.listen `{l}` is not an address:port (e.g. \"127.0.0.1:9464\")"
                ))
            })?,
            None => match std::env::var("PORT") {
                Ok(p) => {
                    let port: u16 = p.trim().parse().map_err(|_| {
                        err(format!(
                            "PORT `{p}` is not a port number (daemon.listen default)"
                        ))
                    })?;
                    SocketAddr::from(([0, 0, 0, 0], port))
                }
                Err(_) => DEFAULT_LISTEN
                    .parse()
                    .map_err(|_| err("internal: bad default listen address".into()))?,
            },
        };
        let bounded =
            |name: &str, v: Option<Dur>, default: Duration, min: Duration, max: Duration| {
                let v = v.map_or(default, |d| d.0);
                if v < min || v > max {
                    Err(err(format!(
                        "daemon.{name} must be between {} and {} (got {})",
                        show(min),
                        show(max),
                        show(v)
                    )))
                } else {
                    Ok(v)
                }
            };
        let ms = Duration::from_millis;
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let retry_initial = bounded(
            "retry_initial",
            self.retry_initial,
            Duration::from_secs(30),
            ms(100),
            hours(1),
        )?;
        let retry_max = bounded(
            "retry_max",
            self.retry_max,
            Duration::from_secs(15 * 60),
            ms(100),
            hours(6),
        )?;
        if retry_max < retry_initial {
            return Err(err(format!(
                "daemon.retry_max ({}) must not be below daemon.retry_initial ({})",
                show(retry_max),
                show(retry_initial)
            )));
        }
        Ok(DaemonConfig {
            listen,
            schedule: self.schedule.unwrap_or(true),
            jitter: bounded(
                "jitter",
                self.jitter,
                Duration::from_secs(5 * 60),
                Duration::ZERO,
                hours(2),
            )?,
            poll_every: bounded(
                "poll_every",
                self.poll_every,
                Duration::from_secs(5 * 60),
                ms(100),
                hours(24),
            )?,
            shutdown_timeout: bounded(
                "shutdown_timeout",
                self.shutdown_timeout,
                Duration::from_secs(30),
                Duration::ZERO,
                Duration::from_secs(3600),
            )?,
            retry_initial,
            retry_max,
            status_endpoints: self
                .status_endpoints
                .unwrap_or_else(|| listen.ip().is_loopback()),
            metrics_endpoint: self
                .metrics_endpoint
                .unwrap_or(self.status_endpoints != Some(false)),
            pubsub: self.pubsub.map(|p| p.validate(origin)).transpose()?,
            admin_socket: match self.admin_socket {
                Some(p) if !p.is_absolute() => {
                    return Err(err(format!(
                        "daemon.admin_socket `{}` must be an absolute path",
                        p.display()
                    )));
                }
                p => p,
            },
        })
    }
}
