//! The FHIR API's errors and the one place they become OperationOutcomes. What went wrong is
//! classified in `crate::problem`, as for the pages; this adds what only a bearer-token API has
//! (no or a bad token, the address throttle, a scope that does not reach the resource) and
//! says it the way the FHIR specification asks.
//!
//! Invalid input takes two statuses here, as the specification's RESTful API section says:
//! 400 for a request that cannot be read (not JSON, an unknown search parameter), 422 for a
//! resource that was read but breaks a rule (a missing element, a status the portal does not
//! know). A client library acts on the difference: a 400 is a bug in the client, a 422 is data
//! to correct.

use access_control::AccessError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use records_domain::DomainError;

use super::ingest::{ApplyError, IngestError};
use super::search::SearchError;
use super::{resources, FHIR_JSON};
use crate::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    #[error(transparent)]
    Problem(#[from] Problem),
    /// No bearer token, an unknown one, or one whose user is disabled.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Too many calls without a valid token from one address.
    #[error("throttled")]
    Throttled,
    /// Refused before the policy is asked: the token's scopes or the caller's role do not
    /// reach this resource. The refusal has been audited.
    #[error("{0}")]
    Forbidden(String),
    /// `If-Match` names another version than the one held (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// An interaction the portal does not offer, inside a Bundle.
    #[error("{0}")]
    NotSupported(String),
}

pub type FhirResult<T> = Result<T, FhirError>;

impl FhirError {
    pub fn not_found() -> Self {
        Problem::NotFound.into()
    }

    /// A request that cannot be read (400).
    pub fn malformed(diagnostics: impl Into<String>) -> Self {
        Problem::Malformed(diagnostics.into()).into()
    }

    /// A resource that was read but breaks a rule (422).
    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        Problem::Invalid(diagnostics.into()).into()
    }

    pub fn conflict(diagnostics: impl Into<String>) -> Self {
        Problem::Conflict(diagnostics.into()).into()
    }

    pub fn not_supported(diagnostics: impl Into<String>) -> Self {
        Self::NotSupported(diagnostics.into())
    }

    /// The status and OperationOutcome this error is answered with, for a batch entry.
    pub fn status_and_outcome(&self) -> (StatusCode, serde_json::Value) {
        let (status, code, diagnostics) = self.outcome();
        (
            status,
            resources::operation_outcome("error", code, &diagnostics),
        )
    }

    /// Status, issue code and diagnostics of the OperationOutcome.
    fn outcome(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Problem(p) => match p {
                Problem::NotFound => (
                    StatusCode::NOT_FOUND,
                    "not-found",
                    "no such resource, or not yours to see".into(),
                ),
                Problem::Denied(d) => (StatusCode::FORBIDDEN, "forbidden", d.describe().into()),
                Problem::Malformed(m) => (StatusCode::BAD_REQUEST, "invalid", m.clone()),
                Problem::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", m.clone()),
                Problem::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
                Problem::Duplicate(m) => (StatusCode::CONFLICT, "duplicate", m.clone()),
                Problem::Overloaded => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transient",
                    "busy, retry shortly".into(),
                ),
                Problem::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "internal error (logged)".into(),
                ),
            },
            Self::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, "login", (*m).into()),
            Self::Throttled => (
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "too many calls without a valid bearer token from this address; retry later".into(),
            ),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            Self::PreconditionFailed(m) => (StatusCode::PRECONDITION_FAILED, "conflict", m.clone()),
            Self::NotSupported(m) => (StatusCode::BAD_REQUEST, "not-supported", m.clone()),
        }
    }

    fn extra_header(&self) -> Option<(header::HeaderName, HeaderValue)> {
        match self {
            Self::Unauthenticated(_) => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fhir\""),
            )),
            Self::Problem(Problem::Overloaded) => {
                Some((header::RETRY_AFTER, HeaderValue::from_static("2")))
            }
            // The address throttle frees one call at least this often.
            Self::Throttled => Some((
                header::RETRY_AFTER,
                HeaderValue::from(crate::auth::throttle::REFILL_SECS.ceil() as u64),
            )),
            _ => None,
        }
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        if let Self::Problem(p) = &self {
            p.log();
        }
        let (status, code, diagnostics) = self.outcome();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, FHIR_JSON)],
            resources::operation_outcome("error", code, &diagnostics).to_string(),
        )
            .into_response();
        if let Some((name, value)) = self.extra_header() {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<DomainError> for FhirError {
    fn from(e: DomainError) -> Self {
        Problem::from(e).into()
    }
}

impl From<AccessError> for FhirError {
    fn from(e: AccessError) -> Self {
        Problem::from(e).into()
    }
}

impl From<sqlx::Error> for FhirError {
    fn from(e: sqlx::Error) -> Self {
        Problem::from(e).into()
    }
}

impl From<SearchError> for FhirError {
    fn from(e: SearchError) -> Self {
        Self::malformed(e.to_string())
    }
}

impl From<IngestError> for FhirError {
    fn from(e: IngestError) -> Self {
        Problem::Invalid(format!("{e}; nothing was written")).into()
    }
}

impl From<ApplyError> for FhirError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid(i) => i.into(),
            ApplyError::Storage(d) => d.into(),
            ApplyError::Access(a) => a.into(),
        }
    }
}
