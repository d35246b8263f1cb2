//! The AWS SDK's HTTP client, on the process's own reqwest + rustls stack: one trust store
//! (the OS roots parsed once, plus `[aws] ca_file`) shared with every other client, instead of
//! a second TLS stack that parses the roots again.
//!
//! The SDK asks for a connector per attempt with its timeouts; one reqwest client (and
//! connection pool) is kept per timeout pair. Retries, redirects and proxies are the SDK's
//! business (as with its own client): reqwest retries nothing, follows no redirect and uses no
//! proxy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// (connect timeout, read timeout).
type Timeouts = (Option<Duration>, Option<Duration>);

/// An `HttpClient` for the AWS SDK over reqwest with a shared rustls config.
#[derive(Debug)]
pub struct ReqwestHttpClient {
    tls: Arc<rustls::ClientConfig>,
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl ReqwestHttpClient {
    /// Connect with this TLS config.
    pub fn new(tls: rustls::ClientConfig) -> Self {
        ReqwestHttpClient {
            tls: Arc::new(tls),
            connectors: Mutex::new(HashMap::new()),
        }
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let build = || {
            // A clone of the config is shallow: roots and verifier are shared behind Arcs.
            let mut b = reqwest::Client::builder()
                .tls_backend_preconfigured((*self.tls).clone())
                .redirect(reqwest::redirect::Policy::none())
                .retry(reqwest::retry::never())
                .no_proxy();
            if let Some(t) = key.0 {
                b = b.connect_timeout(t);
            }
            SharedHttpConnector::new(Connector {
                client: b.build().map_err(|e| e.to_string()),
                read_timeout: key.1,
            })
        };
        let mut map = self
            .connectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key).or_insert_with(build).clone()
    }
}

#[derive(Debug)]
struct Connector {
    client: Result<reqwest::Client, String>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (client, request) = match (&self.client, to_reqwest(request)) {
            (Ok(c), Ok(r)) => (c.clone(), r),
            (Err(e), _) => {
                return HttpConnectorFuture::ready(Err(ConnectorError::user(e.clone().into())));
            }
            (_, Err(e)) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e))),
        };
        // As the SDK's own client: the read timeout runs until the response head arrives.
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(t) => tokio::time::timeout(t, client.execute(request))
                    .await
                    .map_err(|_| {
                        ConnectorError::timeout(
                            format!("HTTP read timeout occurred after {t:?}").into(),
                        )
                    })?,
                None => client.execute(request).await,
            };
            let response = http::Response::from(response.map_err(classify)?);
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, BoxError> {
    let (parts, body) = request.try_into_http1x()?.into_parts();
    // In-memory bodies (every Secrets Manager and SNS call) keep the signed content-length.
    let body = match body.bytes() {
        Some(b) => reqwest::Body::from(bytes::Bytes::copy_from_slice(b)),
        None => reqwest::Body::wrap(body),
    };
    Ok(reqwest::Request::try_from(http::Request::from_parts(
        parts, body,
    ))?)
}

/// The SDK retries `timeout` and `io`; `user` and `other(None)` are final.
fn classify(e: reqwest::Error) -> ConnectorError {
    match e {
        // Before is_connect: a connect timeout is both.
        e if e.is_timeout() => ConnectorError::timeout(e.into()),
        e if e.is_builder() => ConnectorError::user(e.into()),
        // DNS / TCP / TLS failures; a connection closed before the response head.
        e if e.is_connect() || e.is_request() || e.is_body() => ConnectorError::io(e.into()),
        e => ConnectorError::other(e.into(), None),
    }
}
