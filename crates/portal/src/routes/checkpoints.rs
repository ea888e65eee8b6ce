//! The auditor's view of the transparency log: the signed checkpoints with the witnesses that
//! cosigned them, and the proof that any one event is in the log (in the patient's download
//! format, so the same verifiers check it). Both are audited auditor actions.

use access_control::audit::log;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::Markup;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::AuditorUser;
use crate::error::{AppError, AppResult};
use crate::routes::audit::record_auditor_action;
use crate::views::audit as view;

/// A day of checkpoints at one every few seconds under steady traffic would be tens of
/// thousands; the page shows the newest, the public list serves any by size.
const SHOWN: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit/checkpoints", get(checkpoints))
        .route("/audit/events/{event}/proof", get(proof))
}

async fn checkpoints(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
) -> AppResult<Markup> {
    let mut conn = state.reader_for(&auditor).await.pool().acquire().await?;
    let shown = log::checkpoints(&mut conn, SHOWN).await?;
    drop(conn);
    record_auditor_action(
        &state,
        &auditor,
        "view log checkpoints",
        None,
        String::new(),
    )
    .await?;
    Ok(view::checkpoints(
        &auditor,
        &auditor.csrf().await?,
        &state.config.log.verifier().to_string(),
        &shown,
    ))
}

async fn proof(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
    Path(event): Path<Uuid>,
) -> AppResult<Response> {
    let download = crate::transparency::proofs::of_event(&state, event).await?;
    record_auditor_action(
        &state,
        &auditor,
        "download event proof",
        None,
        event.to_string(),
    )
    .await?;
    let download = download.ok_or_else(AppError::not_found)?;
    crate::routes::json_download("audit-event-proof.json", &download)
}
