//! CSRF protection. Signed-in users: a random token per session, sent back in every POST form
//! and compared in constant time. `CsrfForm<T>` is the only form extractor their handlers use,
//! so a state-changing form without the check does not compile into a route.
//!
//! The sign-in form comes before any session, and nothing anonymous may be stored (a session
//! row per visit to /login would let anyone fill the database). Its token is stateless: a
//! random nonce in a cookie of its own, and in the form `expiry.mac` with
//! `mac = HMAC-SHA256(server key, nonce, expiry)` (OWASP's signed double-submit cookie). A
//! cross-site form cannot read the cookie or the page, and a cookie planted from elsewhere
//! cannot be paired with a token without the key. `LoginCsrfForm<T>` checks it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tower_sessions::Session;

use crate::app::AppState;
use crate::error::AppError;

const CSRF_KEY: &str = "csrf";
/// How long a sign-in form stays good: long enough to type, short enough that a token
/// copied from a page is soon worthless.
pub const LOGIN_TOKEN_LIFETIME: time::Duration = time::Duration::minutes(30);
/// The name under which the server keeps the sign-in form's key (`server_keys`).
pub const LOGIN_KEY_NAME: &str = "login_csrf";

/// The session's token, created on first use.
pub async fn token(session: &Session) -> Result<String, AppError> {
    if let Some(existing) = session.get::<String>(CSRF_KEY).await? {
        return Ok(existing);
    }
    let fresh = random_text();
    session.insert(CSRF_KEY, &fresh).await?;
    Ok(fresh)
}

/// A new token after sign-in, so one seen before sign-in is worthless after it.
pub async fn rotate(session: &Session) -> Result<String, AppError> {
    let fresh = random_text();
    session.insert(CSRF_KEY, &fresh).await?;
    Ok(fresh)
}

/// 32 random bytes, URL-safe base64 (43 characters).
fn random_text() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The key of the sign-in form's tokens, shared by every instance of the portal.
#[derive(Clone)]
pub struct LoginKey(Arc<Hmac<Sha256>>);

impl LoginKey {
    /// A new random key, as hex, for the first instance to store.
    pub fn generate_hex() -> String {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    pub fn from_hex(text: &str) -> Result<Self, AppError> {
        let bytes = hex::decode(text.trim()).map_err(|_| {
            AppError::internal(anyhow::anyhow!("stored sign-in form key is not hex"))
        })?;
        if bytes.len() < 32 {
            return Err(AppError::internal(anyhow::anyhow!(
                "stored sign-in form key is too short"
            )));
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&bytes).map_err(AppError::internal)?;
        Ok(Self(Arc::new(mac)))
    }

    /// The token for the cookie's `nonce`, good until `expires_at` (Unix seconds).
    pub fn token(&self, nonce: &str, expires_at: i64) -> String {
        format!("{expires_at}.{}", self.mac(nonce, expires_at))
    }

    fn mac(&self, nonce: &str, expires_at: i64) -> String {
        let mut mac = (*self.0).clone();
        mac.update(b"portal login form\n");
        mac.update(nonce.as_bytes());
        mac.update(b"\n");
        mac.update(expires_at.to_string().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn verify(&self, nonce: &str, token: &str, now: OffsetDateTime) -> bool {
        let Some((expires_at, mac)) = token.split_once('.') else {
            return false;
        };
        let Ok(expires_at) = expires_at.parse::<i64>() else {
            return false;
        };
        let expected = self.mac(nonce, expires_at);
        now.unix_timestamp() < expires_at && bool::from(expected.as_bytes().ct_eq(mac.as_bytes()))
    }
}

fn login_cookie_name(state: &AppState) -> &'static str {
    if state.config.secure_cookies {
        "__Host-portal-login"
    } else {
        "portal-login"
    }
}

fn nonce_of(state: &AppState, jar: &CookieJar) -> Option<String> {
    jar.get(login_cookie_name(state))
        .map(|c| c.value().to_string())
        .filter(|n| n.len() == 43)
}

/// A token for the sign-in form and the jar that sets (or refreshes) its nonce cookie. The
/// nonce already in the browser is kept, so two open sign-in tabs both work.
pub fn login_token(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    let nonce = nonce_of(state, &jar).unwrap_or_else(random_text);
    let expires_at = (OffsetDateTime::now_utc() + LOGIN_TOKEN_LIFETIME).unix_timestamp();
    let token = state.login_key.token(&nonce, expires_at);
    let cookie = Cookie::build((login_cookie_name(state), nonce))
        .http_only(true)
        .secure(state.config.secure_cookies)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(LOGIN_TOKEN_LIFETIME);
    (jar.add(cookie), token)
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// The body of a URL-encoded form and the token it sent.
async fn read_form(
    parts: Parts,
    body: axum::body::Body,
    state: &AppState,
) -> Result<(Bytes, String), AppError> {
    let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(|e| match e.status().as_u16() {
            413 => AppError::PayloadTooLarge,
            _ => AppError::bad_request("The form could not be read."),
        })?;
    let sent: CsrfField =
        serde_urlencoded::from_bytes(&bytes).map_err(|_| AppError::CsrfMismatch)?;
    if sent.csrf.is_empty() {
        return Err(AppError::CsrfMismatch);
    }
    Ok((bytes, sent.csrf))
}

fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, AppError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|e| AppError::bad_request(format!("The form is incomplete or malformed: {e}.")))
}

/// A URL-encoded form whose `csrf` field matched the session's token.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(|(_, m)| AppError::internal(anyhow::anyhow!(m)))?;
        let (bytes, sent) = read_form(parts, body, state).await?;
        let expected = session
            .get::<String>(CSRF_KEY)
            .await?
            .ok_or(AppError::CsrfMismatch)?;
        if !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(AppError::CsrfMismatch);
        }
        Ok(Self(parse(&bytes)?))
    }
}

/// The sign-in form: its `csrf` field is a live token signed for the nonce in the browser's
/// sign-in cookie.
pub struct LoginCsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for LoginCsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let (parts, body) = req.into_parts();
        let nonce = nonce_of(state, &CookieJar::from_headers(&parts.headers));
        let (bytes, sent) = read_form(parts, body, state).await?;
        let nonce = nonce.ok_or(AppError::CsrfMismatch)?;
        if !state
            .login_key
            .verify(&nonce, &sent, OffsetDateTime::now_utc())
        {
            return Err(AppError::CsrfMismatch);
        }
        Ok(Self(parse(&bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_token_holds_for_its_nonce_until_it_expires() {
        let key = LoginKey::from_hex(&LoginKey::generate_hex()).unwrap();
        let now = OffsetDateTime::now_utc();
        let later = (now + LOGIN_TOKEN_LIFETIME).unix_timestamp();
        let nonce = random_text();
        let token = key.token(&nonce, later);
        assert!(key.verify(&nonce, &token, now));
        assert!(!key.verify(&random_text(), &token, now), "another nonce");
        assert!(
            !key.verify(&nonce, &token, now + LOGIN_TOKEN_LIFETIME),
            "expired"
        );
        let stretched = format!("{}.{}", later + 3600, token.split_once('.').unwrap().1);
        assert!(!key.verify(&nonce, &stretched, now), "expiry is signed");
        let other = LoginKey::from_hex(&LoginKey::generate_hex()).unwrap();
        assert!(!other.verify(&nonce, &token, now), "another key");
        assert!(!key.verify(&nonce, "garbage", now));
    }
}
