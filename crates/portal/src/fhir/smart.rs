//! SMART on FHIR for system clients (SMART App Launch 2.0, client-confidential-symmetric):
//! the discovery document at `/fhir/r4/.well-known/smart-configuration`, and the
//! client-credentials grant at `/oauth/token`, where a lab or registry trades its long-lived
//! token (created with `portal token add`) for a five-minute access token holding only the
//! scopes it asks for. The long-lived secret then travels once per five minutes, not with
//! every call. There is no authorization endpoint: people use the portal's pages, and their
//! tokens are made by an operator with `--user`.
//!
//! The token endpoint speaks OAuth 2.0 (RFC 6749): form-encoded requests, JSON answers with an
//! `error` code. That is why it lives outside `/fhir/r4`, where every answer is FHIR.

use access_control::audit::{NewEvent, Outcome};
use access_control::tokens::{self, ApiToken, GrantRefusal};
use access_control::{Actor, Reach};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::base::origin;
use super::ingest::CLINICAL_TYPES;
use super::{anonymous, FhirError};
use crate::app::AppState;
use crate::auth::client_context;

pub const TOKEN_PATH: &str = "/oauth/token";
const ACCESS_LIFETIME: time::Duration = time::Duration::minutes(5);

/// Where a client gets an access token: the CapabilityStatement names the same address.
pub fn token_endpoint(headers: &HeaderMap, state: &AppState) -> String {
    format!("{}{TOKEN_PATH}", origin(headers, state))
}

pub(super) async fn configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    Json(discovery(&token_endpoint(&headers, &state))).into_response()
}

fn discovery(token_endpoint: &str) -> Value {
    let mut scopes = vec![
        "patient/*.read".to_string(),
        "user/*.read".to_string(),
        "system/Patient.read".to_string(),
        "system/Patient.write".to_string(),
    ];
    scopes.extend(CLINICAL_TYPES.iter().flat_map(|(kind, _)| {
        [
            format!("system/{kind}.read"),
            format!("system/{kind}.write"),
        ]
    }));
    json!({
        "token_endpoint": token_endpoint,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "capabilities": ["client-confidential-symmetric", "permission-v1", "permission-v2"],
    })
}

#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// An OAuth error answer (RFC 6749 section 5.2).
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"portal\""),
            );
        }
        response
    }
}

impl From<FhirError> for OAuthError {
    fn from(e: FhirError) -> Self {
        let status = e.into_response().status();
        let error = if status == StatusCode::TOO_MANY_REQUESTS {
            "slow_down"
        } else if status == StatusCode::UNAUTHORIZED {
            "invalid_client"
        } else {
            "server_error"
        };
        Self::new(status, error, "the request could not be answered")
    }
}

/// The request's context, taken before the form body is read.
pub struct Caller(access_control::RequestContext);

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_context(parts, state)))
    }
}

pub async fn token(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    match grant(&state, &ctx, &headers, request).await {
        Ok(answer) => ([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn grant(
    state: &AppState,
    ctx: &access_control::RequestContext,
    headers: &HeaderMap,
    request: TokenRequest,
) -> Result<Value, OAuthError> {
    if request.grant_type.as_deref() != Some("client_credentials") {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "this server grants client_credentials only",
        ));
    }
    let (client_id, secret) = credentials(headers, &request).ok_or_else(|| {
        OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "authenticate with HTTP Basic (client id and secret) or client_id and client_secret",
        )
    })?;
    let client = authenticate(state, ctx, &client_id, &secret).await?;
    let actor = Actor::system(
        client.id,
        format!("system client {}", client.name),
        Reach::WholeRole,
    );
    let mut conn = state.db.begin_write().await.map_err(FhirError::from)?;
    let issued = tokens::issue_access(
        &mut conn,
        &client,
        request.scope.as_deref(),
        ACCESS_LIFETIME,
    )
    .await
    .map_err(FhirError::from)?;
    let (outcome, reason) = match &issued {
        Ok(grant) => (
            Outcome::Success,
            format!("access token for {}", grant.scopes),
        ),
        Err(refusal) => (Outcome::Denied, refusal.to_string()),
    };
    access_control::audit::append(
        &mut conn,
        NewEvent::by(&actor, ctx, "fhir token", outcome).reason(reason),
    )
    .await
    .map_err(FhirError::from)?;
    conn.commit().await.map_err(FhirError::from)?;
    match issued {
        Ok(grant) => Ok(json!({
            "access_token": grant.secret,
            "token_type": "bearer",
            "expires_in": ACCESS_LIFETIME.whole_seconds(),
            "scope": grant.scopes,
        })),
        Err(GrantRefusal::NotASystemClient) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            GrantRefusal::NotASystemClient.to_string(),
        )),
        Err(GrantRefusal::InvalidScope(why)) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            why,
        )),
    }
}

/// client_secret_basic, else client_secret_post.
fn credentials(headers: &HeaderMap, request: &TokenRequest) -> Option<(String, String)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((id.to_string(), secret.to_string()))
        });
    basic.or_else(|| Some((request.client_id.clone()?, request.client_secret.clone()?)))
}

/// The client whose name and secret these are. A wrong pair is answered as an unknown FHIR
/// token is: throttled per address and audited once a minute, so guessing costs the guesser
/// and cannot fill the audit log.
async fn authenticate(
    state: &AppState,
    ctx: &access_control::RequestContext,
    client_id: &str,
    secret: &str,
) -> Result<ApiToken, OAuthError> {
    let mut conn = state.db.pool().acquire().await.map_err(FhirError::from)?;
    let found = tokens::find(&mut conn, secret)
        .await
        .map_err(FhirError::from)?;
    drop(conn);
    match found {
        Some(token) if token.name == client_id => Ok(token),
        _ => {
            let refused = anonymous::refuse(state, ctx).await;
            let mut error = OAuthError::from(refused);
            error.description = "unknown client or wrong secret".into();
            Err(error)
        }
    }
}

/// The CapabilityStatement's statement of the same: SMART's oauth-uris extension.
pub fn security(token_endpoint: &str) -> Value {
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{ "url": "token", "valueUri": token_endpoint }],
        }],
        "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }] }],
        "description": "SMART scopes (patient/*.read, user/*.read, system/Observation.write, ...). System clients trade the token an operator made with `portal token add` for a five-minute access token at the token endpoint (client credentials, client_secret_basic); tokens of people are made with `portal token add --user`. Every access passes the portal's access policy and is written to the audit log.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_offers_a_scope_for_every_type_that_can_be_written() {
        let config = discovery("http://x/oauth/token");
        let scopes: Vec<&str> = config["scopes_supported"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (kind, _) in CLINICAL_TYPES {
            assert!(
                scopes.contains(&format!("system/{kind}.write").as_str()),
                "{kind}"
            );
        }
    }
}
