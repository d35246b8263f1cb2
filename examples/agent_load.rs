//! A small HTTP load generator for bench/agent.py:
//! `agent_load [--unix SOCKET] URL CONCURRENCY SECONDS [NAME: VALUE]...` runs CONCURRENCY
//! clients, each sending `GET URL` back to back over its own keep-alive connection for SECONDS
//! (over the Unix socket SOCKET instead of TCP when given: the URL then gives the path and the
//! Host), and prints one JSON line: requests, errors (any status but 200), requests per second,
//! and the p50 / p99 / max latency in milliseconds.
//!
//! It is a bare HTTP/1.1 client on one thread: the request is written once per round trip from
//! bytes made at start, the answer read until its `Content-Length` is in. A load generator
//! that costs little per request leaves the machine to the server it measures.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn usage() -> ! {
    eprintln!("usage: agent_load [--unix SOCKET] URL CONCURRENCY SECONDS [NAME: VALUE]...");
    std::process::exit(2)
}

fn fail(why: &str) -> ! {
    eprintln!("agent_load: {why}");
    std::process::exit(1)
}

/// Where the connections go.
#[derive(Clone)]
enum Target {
    Tcp(String),
    Unix(String),
}

impl Target {
    async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(match self {
            Target::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Target::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        })
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The status and the length of one whole answer at the front of `buf`, once it is all there.
fn answer(buf: &[u8]) -> Result<Option<(u16, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no status line")?;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked answers are not read by this client".into());
        }
    }
    let length = length.ok_or("answer without Content-Length")?;
    let whole = end + 4 + length;
    Ok((buf.len() >= whole).then_some((status, whole)))
}

/// One client: GET back to back until `until`; the latencies and the count of errors.
async fn client(target: Target, request: Vec<u8>, until: Instant) -> (Vec<Duration>, u64) {
    let mut times = Vec::new();
    let mut errors = 0u64;
    let Ok(mut conn) = target.connect().await else {
        return (times, 1);
    };
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    while Instant::now() < until {
        let t = Instant::now();
        if conn.write_all(&request).await.is_err() {
            return (times, errors + 1);
        }
        buf.clear();
        let status = loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return (times, errors + 1),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            match answer(&buf) {
                Ok(Some((status, whole))) if whole == buf.len() => break status,
                Ok(Some(_)) => fail("more bytes than one answer (no pipelining here)"),
                Ok(None) => {}
                Err(e) => fail(&e),
            }
        };
        times.push(t.elapsed());
        if status != 200 {
            errors += 1;
        }
    }
    (times, errors)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let unix = match args.first().map(String::as_str) {
        Some("--unix") if args.len() > 1 => {
            let path = args.remove(1);
            args.remove(0);
            Some(path)
        }
        _ => None,
    };
    let (Some(url), Some(c), Some(secs)) = (args.first(), args.get(1), args.get(2)) else {
        usage()
    };
    let (Ok(concurrency), Ok(secs)) = (c.parse::<usize>(), secs.parse::<f64>()) else {
        usage()
    };
    let Some(rest) = url.strip_prefix("http://") else {
        fail("the URL must be http://HOST[:PORT]/PATH")
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let target = match unix {
        Some(p) => Target::Unix(p),
        None if host.contains(':') => Target::Tcp(host.to_string()),
        None => Target::Tcp(format!("{host}:80")),
    };
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for h in &args[3..] {
        let Some((k, v)) = h.split_once(':') else {
            usage()
        };
        request.push_str(&format!("{}: {}\r\n", k.trim(), v.trim()));
    }
    request.push_str("\r\n");
    let request = request.into_bytes();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(client(target.clone(), request.clone(), until)))
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((times, e)) = t.await {
            all.extend(times);
            errors += e;
        }
    }
    if all.is_empty() {
        fail("no request completed");
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"requests\":{},\"errors\":{errors},\"rps\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}
