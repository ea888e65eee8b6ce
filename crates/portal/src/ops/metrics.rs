//! Prometheus metrics, served only on a listener of their own (PORTAL_METRICS_BIND): request
//! counts and latencies per route template (never the raw path, whose identifiers would make
//! a label set per patient), the pools' connections, and the audit writer's batches.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use records_domain::Db;

/// The process-wide recorder; `None` when another one was installed first.
fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .as_ref()
}

/// Any other method is one label, so that made-up methods cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// Middleware: counts and times every request under its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("portal_http_request_duration_seconds", "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("portal_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

#[derive(Clone)]
struct Pools {
    primary: Db,
    replica: Db,
}

async fn scrape(State(pools): State<Pools>) -> String {
    for (name, db) in [("primary", &pools.primary), ("replica", &pools.replica)] {
        let pool = db.pool();
        metrics::gauge!("portal_db_pool_connections", "pool" => name).set(f64::from(pool.size()));
        metrics::gauge!("portal_db_pool_idle", "pool" => name).set(pool.num_idle() as f64);
    }
    recorder().map(PrometheusHandle::render).unwrap_or_default()
}

/// Install the recorder and serve `/metrics` on `bind` until the process ends.
pub async fn serve(bind: SocketAddr, primary: Db, replica: Db) -> std::io::Result<SocketAddr> {
    recorder();
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Pools { primary, replica });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(addr)
}
