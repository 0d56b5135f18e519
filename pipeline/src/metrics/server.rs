//! The HTTP endpoint on `metrics.listen` (axum):
//!
//! | path | answers |
//! |---|---|
//! | `/metrics` | the metrics; OpenMetrics text when the `Accept` header asks for it, else Prometheus text 0.0.4 |
//! | `/healthz` | readiness: `200 ok`, or `503` while commits fail against the object store |
//! | `/livez` | liveness: `200 ok`, or `503` when no partition made progress for `[health] stall_timeout` while records waited |

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::{info, warn};

use crate::runtime::Shared;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("metrics.listen {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Binds `addr` and serves until the returned task is aborted.
pub async fn serve(
    addr: &str,
    shared: Arc<Shared>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    info!(addr, "metrics and health endpoint listening");
    let app = router(shared);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "metrics endpoint stopped");
        }
    }))
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = shared.metrics.render(openmetrics);
    let content_type = if openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.metrics.store_healthy() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "object store failing\n")
    }
}

async fn livez(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    let timeout = shared.config.health.stall_timeout;
    match shared.metrics.partitions.stalled(Instant::now(), timeout) {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(s) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stalled: {} partitions have records waiting and none made progress for {}\n",
                s.waiting,
                humantime::format_duration(std::time::Duration::from_secs(s.since.as_secs()))
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::Config;

    /// `GET path` with extra header lines: (status, head, body).
    async fn get(port: u16, path: &str, headers: &str) -> (u16, String, String) {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}\r\n");
        sock.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        sock.read_to_string(&mut text).await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    #[tokio::test]
    async fn probes_and_negotiated_formats() {
        let config = Config::parse(
            "[kafka]\nbrokers = \"b:1\"\n[health]\nstall_timeout = \"10s\"\n[storage]\nurl = \"memory://\"\n",
        )
        .unwrap();
        let shared = Shared::for_tests(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(axum::serve(listener, router(shared.clone())).into_future());

        assert_eq!(get(port, "/healthz", "").await.0, 200);
        assert_eq!(get(port, "/livez", "").await.0, 200);
        assert_eq!(get(port, "/nope", "").await.0, 404);

        let (status, head, body) = get(port, "/metrics", "").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("# HELP weir_kafka_errors_total "), "{body}");
        assert!(!body.contains("# EOF"), "{body}");
        let accept = "accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n";
        let (_, head, body) = get(port, "/metrics", accept).await;
        assert!(
            head.contains("content-type: application/openmetrics-text"),
            "{head}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");

        // A partition with records consumed and nothing done since, for longer than
        // stall_timeout: not alive, still ready.
        let long_ago = Instant::now() - Duration::from_secs(20);
        let partitions = &shared.metrics.partitions;
        partitions.assigned("ds", "t", 0, 1, Some(0), true, long_ago);
        partitions.consumed("t", 0, long_ago);
        let (status, _, body) = get(port, "/livez", "").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("stalled"), "{body}");
        assert_eq!(get(port, "/healthz", "").await.0, 200);
        shared.metrics.set_store_healthy(false);
        assert_eq!(get(port, "/healthz", "").await.0, 503);
        server.abort();
    }
}
