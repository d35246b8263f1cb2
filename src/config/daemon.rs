//! `[daemon]`: the long-running mode's schedule, listener and shutdown.

use std::net::SocketAddr;
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
        })
    }
}
