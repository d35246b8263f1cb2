//! A small HTTP load generator for bench/agent.py: `agent_load URL CONCURRENCY SECONDS
//! [NAME: VALUE]...` runs CONCURRENCY clients, each sending GET URL back to back over its own
//! keep-alive connection for SECONDS, and prints one JSON line: requests, errors (any status
//! but 200), requests per second, and the p50 / p99 / max latency in milliseconds.

use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: agent_load URL CONCURRENCY SECONDS [NAME: VALUE]...");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(c), Some(secs)) = (args.first(), args.get(1), args.get(2)) else {
        usage()
    };
    let (Ok(concurrency), Ok(secs)) = (c.parse::<usize>(), secs.parse::<f64>()) else {
        usage()
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for h in &args[3..] {
        let Some((k, v)) = h.split_once(':') else {
            usage()
        };
        let (Ok(k), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()),
            reqwest::header::HeaderValue::from_str(v.trim()),
        ) else {
            usage()
        };
        headers.insert(k, v);
    }
    // reqwest here is built without a default TLS provider: the crate's (ring).
    deepvue_rotator::support::tls::install_default_provider();
    let duration = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (url, headers) = (url.clone(), headers.clone());
            tokio::spawn(async move {
                // One client each: one keep-alive connection per worker, as an app's pool.
                let Ok(client) = reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(1)
                    .build()
                else {
                    return (Vec::new(), 1u64);
                };
                let mut times = Vec::new();
                let mut errors = 0u64;
                while started.elapsed() < duration {
                    let t = Instant::now();
                    let ok = match client.get(&url).headers(headers.clone()).send().await {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    times.push(t.elapsed());
                    if !ok {
                        errors += 1;
                    }
                }
                (times, errors)
            })
        })
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
        eprintln!("agent_load: no request completed");
        std::process::exit(1);
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
