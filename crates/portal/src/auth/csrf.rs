//! CSRF protection: a random token per session, sent back in every POST form and compared in
//! constant time. `CsrfForm<T>` is the only form extractor handlers use, so a state-changing
//! form without the check does not compile into a route.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use base64::Engine;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::app::AppState;
use crate::error::AppError;

const CSRF_KEY: &str = "csrf";

/// The session's token, created on first use.
pub async fn token(session: &Session) -> Result<String, AppError> {
    if let Some(existing) = session.get::<String>(CSRF_KEY).await? {
        return Ok(existing);
    }
    let fresh = new_token();
    session.insert(CSRF_KEY, &fresh).await?;
    Ok(fresh)
}

/// A new token after sign-in, so one seen before sign-in is worthless after it.
pub async fn rotate(session: &Session) -> Result<String, AppError> {
    let fresh = new_token();
    session.insert(CSRF_KEY, &fresh).await?;
    Ok(fresh)
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A URL-encoded form whose `csrf` field matched the session's token.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(|(_, m)| AppError::internal(m))?;
        let req = Request::from_parts(parts, body);
        let bytes =
            Bytes::from_request(req, state)
                .await
                .map_err(|e| match e.status().as_u16() {
                    413 => AppError::PayloadTooLarge,
                    _ => AppError::bad_request("The form could not be read."),
                })?;
        let sent: CsrfField =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| AppError::CsrfMismatch)?;
        let expected = session
            .get::<String>(CSRF_KEY)
            .await?
            .ok_or(AppError::CsrfMismatch)?;
        if sent.csrf.is_empty() || !bool::from(sent.csrf.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(AppError::CsrfMismatch);
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            AppError::bad_request(format!("The form is incomplete or malformed: {e}."))
        })?;
        Ok(Self(form))
    }
}
