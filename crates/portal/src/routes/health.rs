//! Liveness, readiness and the static assets (compiled in, so the binary runs from anywhere).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use crate::app::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers; a load balancer stops sending traffic otherwise.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.db.is_ready().await && state.replica.is_ready().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../../web/portal.css"),
    )
}

pub async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../../../web/favicon.svg"),
    )
}
