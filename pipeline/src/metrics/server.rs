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
