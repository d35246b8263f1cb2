//! The systemd notify protocol (sd_notify(3)): one datagram of `KEY=VALUE` lines to
//! `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace), and the watchdog interval
//! from `$WATCHDOG_USEC` when `$WATCHDOG_PID` is unset or ours. Written here rather than taken
//! from a crate because the common one does not speak the abstract-namespace form.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::debug;

/// Sends notifications, or nothing when not started by systemd.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = match path.strip_prefix('@') {
                Some(name) => abstract_addr(name.as_bytes()),
                None => SocketAddr::from_pathname(&path).ok(),
            }?;
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Notifier { target }
    }

    /// Send one notification (lines like `READY=1`). Best effort: a failure is logged at
    /// debug level and otherwise ignored, as sd_notify's callers do.
    pub fn send(&self, lines: &[&str]) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        let msg: String = lines.iter().map(|l| format!("{l}\n")).collect();
        if let Err(e) = socket.send_to_addr(msg.as_bytes(), addr) {
            debug!(error = %e, "systemd notification failed");
        }
    }

    /// `STATUS=…`, one line.
    pub fn status(&self, text: &str) {
        let line: String = text.chars().filter(|c| !c.is_control()).collect();
        self.send(&[&format!("STATUS={line}")]);
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> Option<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name).ok()
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_: &[u8]) -> Option<SocketAddr> {
    None
}

/// The watchdog interval systemd expects pings within, if it asked for them.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.trim().parse::<u32>().ok() != Some(std::process::id()) => None,
        _ if usec == 0 => None,
        _ => Some(Duration::from_micros(usec)),
    }
}
