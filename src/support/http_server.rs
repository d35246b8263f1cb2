//! The HTTP server of the daemon and the agent: hyper under the axum router, on a TCP or a Unix
//! socket ([`Listener`]), with the limits `axum::serve` does not have, so no client — slow,
//! idle or many — can starve `/healthz`, a push or a token request:
//!
//! - **idle timeout**: a connection with no request in progress for [`Limits::idle`] (one that
//!   never sends a byte, sends half a header, or keeps alive between requests) is closed;
//! - **request timeout**: a request (body and handler) that takes longer than
//!   [`Limits::request`] is answered 503 and its connection closed;
//! - **connection cap**: at most [`Limits::max_connections`] at once (also kept below the
//!   process's descriptor limit); a new connection beyond it evicts the oldest idle one, and
//!   when none is idle it is refused (closed at once) instead of queueing;
//! - a full descriptor table (`EMFILE`) evicts an idle connection too, instead of spinning.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::warn;

/// The server's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a connection may sit without a request in progress.
    pub idle: Duration,
    /// How long one request (its body and its handler) may take.
    pub request: Duration,
}

impl Limits {
    /// The defaults, kept within the process's descriptor limit (`soft_limit`): half of it,
    /// less a reserve for stores, sinks and Deepvue, at least 8.
    pub fn for_descriptors(soft_limit: u64, request: Duration) -> Limits {
        let room = soft_limit.saturating_sub(64) / 2;
        Limits {
            max_connections: room.clamp(8, 1024) as usize,
            idle: Duration::from_secs(10),
            request,
        }
    }
}

/// Raise the soft descriptor limit to the hard one (a small soft limit is a default, not a
/// decision); the limit to plan with.
pub fn descriptor_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (l.current, l.maximum)
        && cur < max
    {
        l.current = Some(max.min(1 << 20));
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(1 << 20)
}

/// Where connections come from.
pub enum Listener {
    /// A TCP address.
    Tcp(TcpListener),
    /// A Unix socket.
    Unix(UnixListener),
}

/// An accepted connection.
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (tcp, _) = l.accept().await?;
                // Answers go out at once (no Nagle wait for the scraper's delayed ACK).
                let _ = tcp.set_nodelay(true);
                Ok(Stream::Tcp(tcp))
            }
            Listener::Unix(l) => Ok(Stream::Unix(l.accept().await?.0)),
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

/// One connection, as the accept loop sees it.
struct Conn {
    /// A request is being served on it.
    busy: Arc<AtomicBool>,
    /// Closes it.
    close: CancellationToken,
}

type Conns = Arc<Mutex<BTreeMap<u64, Conn>>>;

fn lock(conns: &Conns) -> std::sync::MutexGuard<'_, BTreeMap<u64, Conn>> {
    conns
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Close the oldest connection with no request in progress; whether there was one. It leaves
/// the table at once: its task may close it only later (this is one thread), and a second
/// eviction must pick another connection, not the same one again.
fn evict_idle(conns: &Conns) -> bool {
    let mut map = lock(conns);
    let oldest = map
        .iter()
        .find(|(_, c)| !c.busy.load(Ordering::Relaxed))
        .map(|(id, _)| *id);
    match oldest.and_then(|id| map.remove(&id)) {
        Some(c) => {
            c.close.cancel();
            true
        }
        None => false,
    }
}

/// Serve `router` on `listener` until `stop`; then stop accepting, let requests in progress
/// finish for up to `drain`, and close what is left.
pub async fn serve(
    listener: Listener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
    drain: Duration,
) {
    let conns: Conns = Arc::new(Mutex::new(BTreeMap::new()));
    let next_id = AtomicU64::new(0);
    let mut tasks = JoinSet::new();
    let mut warned_at: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors (or a transient accept error): make room, never spin.
                if warned_at.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    warn!(error = %e, "cannot accept a connection; closing an idle one");
                    warned_at = Some(Instant::now());
                }
                if evict_idle(&conns) {
                    // Let the evicted connection's task run and give its descriptor back.
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let full = lock(&conns).len() >= limits.max_connections;
        if full && !evict_idle(&conns) {
            drop(stream); // every connection is serving a request: refuse rather than queue
            continue;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            busy: Arc::new(AtomicBool::new(false)),
            close: stop.child_token(),
        };
        let (busy, close) = (conn.busy.clone(), conn.close.clone());
        lock(&conns).insert(id, conn);
        let (router, conns) = (router.clone(), conns.clone());
        tasks.spawn(async move {
            match stream {
                Stream::Tcp(s) => serve_connection(s, router, limits, busy, close).await,
                Stream::Unix(s) => serve_connection(s, router, limits, busy, close).await,
            }
            lock(&conns).remove(&id);
        });
    }
    // Stop: connections finish the request they serve, for at most `drain`.
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    router: Router,
    limits: Limits,
    busy: Arc<AtomicBool>,
    close: CancellationToken,
) {
    // When the last request ended (or the connection began): the idle clock.
    let last = Arc::new(Mutex::new(Instant::now()));
    let service = {
        let (busy, last) = (busy.clone(), last.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (router, busy, last) = (router.clone(), busy.clone(), last.clone());
            async move {
                busy.store(true, Ordering::Relaxed);
                let answer =
                    tokio::time::timeout(limits.request, router.oneshot(req.map(Body::new))).await;
                *last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                busy.store(false, Ordering::Relaxed);
                Ok::<_, Infallible>(match answer {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        let mut r = Response::new(Body::from("request timed out\n"));
                        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        r.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                        r
                    }
                })
            }
        })
    };
    // No header read timeout of hyper's (a timer per request): the idle clock below already
    // closes a connection whose request head does not arrive within `idle`.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    loop {
        let idle_since = *last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // While a request is served, look again an idle period later.
        let deadline = if busy.load(Ordering::Relaxed) {
            Instant::now() + limits.idle
        } else {
            idle_since + limits.idle
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            () = close.cancelled() => break,
            () = tokio::time::sleep_until(deadline) => {
                let idle = !busy.load(Ordering::Relaxed);
                let still = *last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) == idle_since;
                if idle && still {
                    break;
                }
            }
        }
    }
    // Closing. No request of ours in progress (idle, or a request head still arriving, which a
    // graceful shutdown would wait on until the header timeout): close it now. Otherwise the
    // request in progress finishes (bounded by the request timeout), then out.
    if !busy.load(Ordering::Relaxed) {
        return;
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.request, conn).await;
}
