//! Request handlers, one module per area. Each handler reads as the story of the request:
//! who is asking, the decision (via the gate), the read or write, the page.

pub mod admin;
pub mod audit;
mod banner;
pub mod checkpoints;
pub mod clinician;
pub mod health;
mod open;
pub mod patient;

/// A JSON document the browser saves as `filename` rather than shows.
pub(crate) fn json_download(
    filename: &str,
    body: &impl serde::Serialize,
) -> crate::error::AppResult<axum::response::Response> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let json = serde_json::to_vec_pretty(body).map_err(crate::error::AppError::internal)?;
    let disposition = format!("attachment; filename=\"{filename}\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        json,
    )
        .into_response())
}
