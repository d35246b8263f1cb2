//! A local HTTPS receiver for alert sinks: records every request, answers a fixed status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use deepvue_rotator::simulator::Pki;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

type Shared = Arc<(Mutex<Vec<Recorded>>, HashMap<String, (u16, String)>)>;

pub struct Receiver {
    pub addr: SocketAddr,
    pub ca_pem: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Answers per path: `(status, body)`; unknown paths get 200 "ok".
    pub async fn start(routes: &[(&str, u16, &str)]) -> Receiver {
        let pki = Pki::generate().unwrap_or_else(|e| panic!("receiver PKI: {e}"));
        let tls = pki
            .server_config()
            .unwrap_or_else(|e| panic!("receiver TLS: {e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("receiver must bind 127.0.0.1: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let map = routes
            .iter()
            .map(|(p, s, b)| (p.to_string(), (*s, b.to_string())))
            .collect();
        let state: Shared = Arc::new((Mutex::new(Vec::new()), map));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| app.clone().oneshot(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            ca_pem: pki.ca_pem,
            state,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// POSTs received on `path`.
    pub fn posts(&self, path: &str) -> Vec<Recorded> {
        self.state
            .0
            .lock()
            .map(|v| v.iter().filter(|r| r.path == path).cloned().collect())
            .unwrap_or_default()
    }
}

async fn record(
    State(s): State<Shared>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if method == axum::http::Method::POST
        && let Ok(mut v) = s.0.lock()
    {
        v.push(Recorded {
            path: uri.path().to_string(),
            headers,
            body: body.to_vec(),
        });
    }
    let (status, body) = s.1.get(uri.path()).cloned().unwrap_or((200, "ok".into()));
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body)
}
