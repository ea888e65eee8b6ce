//! What anyone may fetch of the log: its public key, its checkpoints and the consistency
//! proofs between them. None of it says anything about an event beyond a hash; that is what
//! lets witnesses and patients check the log without an account. Cosignatures are taken from
//! anyone but kept only when they verify with a configured witness's key, so an anonymous
//! caller cannot grow the database.

use access_control::audit::log::{self, StoredCheckpoint};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use transparency_log::Hash;

use crate::app::AppState;
use crate::error::{AppError, AppResult};

/// Enough for a witness or a curious reader; older ones by `?size=`.
const LISTED: i64 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/transparency/key", get(key))
        .route("/transparency/checkpoint", get(latest))
        .route("/transparency/checkpoints", get(list))
        .route("/transparency/consistency", get(consistency))
        .route("/transparency/cosignature", post(cosign))
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The log's verifier key, to compare with the one published elsewhere.
async fn key(State(state): State<AppState>) -> Response {
    text(format!("{}\n", state.config.log.verifier()))
}

/// The newest signed checkpoint with its cosignatures, as a C2SP signed note.
async fn latest(State(state): State<AppState>) -> AppResult<Response> {
    let mut conn = state.db.pool().acquire().await?;
    let newest = log::checkpoints(&mut conn, 1).await?.pop();
    let checkpoint = newest.ok_or_else(AppError::not_found)?;
    Ok(text(checkpoint.note))
}

#[derive(Deserialize)]
struct SizeQuery {
    size: Option<u64>,
}

#[derive(Serialize)]
struct Listed {
    size: u64,
    root: Hash,
    signed_at: String,
    witnesses: Vec<String>,
    note: String,
}

impl From<StoredCheckpoint> for Listed {
    fn from(c: StoredCheckpoint) -> Self {
        Listed {
            size: c.size,
            root: c.root,
            signed_at: c.signed_at,
            witnesses: c.witnesses,
            note: c.note,
        }
    }
}

/// The newest checkpoints, newest first, or the one of `?size=`.
async fn list(
    State(state): State<AppState>,
    Query(query): Query<SizeQuery>,
) -> AppResult<Json<Vec<Listed>>> {
    let mut conn = state.db.pool().acquire().await?;
    let found = match query.size {
        Some(size) => log::checkpoint_at(&mut conn, size)
            .await?
            .into_iter()
            .collect(),
        None => log::checkpoints(&mut conn, LISTED).await?,
    };
    Ok(Json(found.into_iter().map(Listed::from).collect()))
}

#[derive(Deserialize)]
struct Sizes {
    old: u64,
    new: u64,
}

#[derive(Serialize)]
struct ConsistencyProof {
    old: u64,
    new: u64,
    proof: Vec<Hash>,
}

/// The RFC 9162 proof that the tree of `old` leaves is a prefix of the tree of `new`.
async fn consistency(
    State(state): State<AppState>,
    Query(sizes): Query<Sizes>,
) -> AppResult<Json<ConsistencyProof>> {
    let mut conn = state.db.pool().acquire().await?;
    let newest = log::checkpoints(&mut conn, 1).await?.pop();
    if newest.is_none_or(|c| sizes.new > c.size) {
        return Err(AppError::bad_request(
            "new is larger than the newest signed checkpoint",
        ));
    }
    let proof = log::consistency_proof(&mut conn, sizes.old, sizes.new).await?;
    Ok(Json(ConsistencyProof {
        old: sizes.old,
        new: sizes.new,
        proof,
    }))
}

/// A checkpoint note carrying a witness's cosignature line.
async fn cosign(State(state): State<AppState>, note: String) -> AppResult<Response> {
    let log = &state.config.log;
    let added = log::add_cosignatures(&state.db, &note, &log.verifier(), &log.witnesses).await?;
    Ok((StatusCode::OK, format!("{added} new cosignature(s) kept\n")).into_response())
}
