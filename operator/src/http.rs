//! The two small HTTP servers: `/metrics` (Prometheus) on the metrics address,
//! `/healthz` and `/readyz` on the health address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Health {
    /// Leadership is known: this replica leads and its caches are synced, or
    /// it is a standby waiting for the lease.
    pub ready: AtomicBool,
}

/// Which server a request reached.
#[derive(Clone)]
pub enum Endpoints {
    /// `/metrics`.
    Metrics(Arc<Metrics>),
    /// `/healthz`, `/readyz`.
    Health(Arc<Health>),
}

/// The response to `path`: status, content type, body.
pub fn route(endpoints: &Endpoints, path: &str) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match (endpoints, path) {
        (Endpoints::Metrics(metrics), "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        (Endpoints::Health(_), "/healthz") => (StatusCode::OK, TEXT, "ok\n".to_owned()),
        (Endpoints::Health(health), "/readyz") => {
            if health.ready.load(Ordering::SeqCst) {
                (StatusCode::OK, TEXT, "ready\n".to_owned())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "not ready: caches not synced or leadership unknown\n".to_owned(),
                )
            }
        }
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".to_owned()),
    }
}

/// Serves `endpoints` on `addr` until `shutdown` is cancelled.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening");
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (status, content_type, body) = route(&endpoints, request.uri().path());
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
                    response
                        .headers_mut()
                        .insert(hyper::header::CONTENT_TYPE, value);
                }
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let health = Arc::new(Health::default());
        let endpoints = Endpoints::Health(health.clone());
        assert_eq!(route(&endpoints, "/healthz").0, StatusCode::OK);
        assert_eq!(
            route(&endpoints, "/readyz").0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.ready.store(true, Ordering::SeqCst);
        assert_eq!(route(&endpoints, "/readyz").0, StatusCode::OK);
        assert_eq!(route(&endpoints, "/metrics").0, StatusCode::NOT_FOUND);
        let metrics = Endpoints::Metrics(Arc::new(Metrics::default()));
        let (status, _, body) = route(&metrics, "/metrics");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("keeper_reconciles_total"), "{body}");
    }
}
