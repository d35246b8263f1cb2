//! A hostile HTTPS peer on 127.0.0.1: answers whatever the test's handler says (echoed request
//! bodies, redirects, absurd expiries, broken tokens), and records what it received.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use deepvue_rotator::simulator::Pki;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

/// What the server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub uri: Uri,
    pub body: Vec<u8>,
}

/// What it answers.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Delay before answering.
    pub delay: Duration,
}

impl Answer {
    pub fn json(status: u16, value: serde_json::Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: value.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;
type Shared = Arc<(Mutex<Vec<Request>>, Handler)>;

pub struct Hostile {
    pub addr: std::net::SocketAddr,
    pub ca_pem: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    pub async fn start(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Hostile {
        let pki = Pki::generate().unwrap_or_else(|e| panic!("hostile PKI: {e}"));
        let tls = pki
            .server_config()
            .unwrap_or_else(|e| panic!("hostile TLS: {e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the hostile server must bind 127.0.0.1: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let state: Shared = Arc::new((Mutex::new(Vec::new()), Arc::new(handler)));
        let app = axum::Router::new()
            .fallback(answer)
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
        Hostile {
            addr,
            ca_pem: pki.ca_pem,
            state,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// Requests received on `path`.
    pub fn received(&self, path: &str) -> Vec<Request> {
        self.state
            .0
            .lock()
            .map(|v| v.iter().filter(|r| r.uri.path() == path).cloned().collect())
            .unwrap_or_default()
    }
}

async fn answer(
    axum::extract::State(s): axum::extract::State<Shared>,
    uri: Uri,
    body: Bytes,
) -> axum::response::Response {
    let req = Request {
        uri,
        body: body.to_vec(),
    };
    let a = (s.1)(&req);
    if let Ok(mut v) = s.0.lock() {
        v.push(req);
    }
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    let mut resp = axum::response::Response::new(axum::body::Body::from(a.body));
    *resp.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    for (k, v) in a.headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}
