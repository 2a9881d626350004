//! `strata ingest --metrics-addr`: the engine's metrics registry in Prometheus text format
//! over HTTP (`GET /metrics`), for the length of the run.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use strata_engine::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running metrics endpoint; stops serving when dropped.
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port) and serves `registry` at `/metrics`.
    pub(crate) async fn start(addr: SocketAddr, registry: Registry) -> Result<Self, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of descriptors and the like: say so, do not spin.
                        eprintln!("strata: metrics endpoint: cannot accept a connection: {error}");
                        SystemClock
                            .sleep(std::time::Duration::from_millis(50))
                            .await;
                        continue;
                    }
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let response = respond(&registry, request.uri().path());
                        async move { Ok::<_, Infallible>(response) }
                    });
                    // A client that hangs up mid-request is its own business.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `/metrics`: every metric family of `registry` as Prometheus text; anything else 404.
fn respond(registry: &Registry, path: &str) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: String| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        response
    };
    if path != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "metrics are at /metrics\n".into());
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            if let Ok(value) = encoder.format_type().parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            response
        }
        Err(error) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {error}\n"),
        ),
    }
}
