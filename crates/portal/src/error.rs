//! The portal's one error type, and the one place where errors become HTTP responses.
//! Internal details go to the log; the page says what the user can do about it.

use access_control::{AccessError, Denial};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use records_domain::model::PatientId;
use records_domain::DomainError;

use crate::views;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("sign in first")]
    LoginRequired,
    #[error("your role cannot open this page")]
    WrongRole,
    #[error("{}", .0.describe())]
    Denied(Denial),
    /// A clinician refused who may break the glass for this patient: the page offers it.
    #[error("{}", .denial.describe())]
    OverrideOffered { denial: Denial, patient: PatientId },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("the form has expired")]
    CsrfMismatch,
    #[error("the password must be changed first")]
    MustChangePassword,
    /// The proxy the user was viewing through ended (revoked, expired, the child turned 15).
    #[error("the proxy has ended")]
    ProxyEnded,
    #[error("the request is too large")]
    PayloadTooLarge,
    #[error("busy")]
    Overloaded,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::LoginRequired | Self::MustChangePassword | Self::ProxyEnded => {
                StatusCode::SEE_OTHER
            }
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::WrongRole
            | Self::Denied(_)
            | Self::OverrideOffered { .. }
            | Self::CsrfMismatch => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the person reading the page is told.
    pub fn public_message(&self) -> String {
        match self {
            Self::NotFound => "There is nothing here, or it is not yours to see.".into(),
            Self::LoginRequired => "Please sign in.".into(),
            Self::WrongRole => "Your role cannot open this page.".into(),
            Self::Denied(d) | Self::OverrideOffered { denial: d, .. } => d.describe().into(),
            Self::BadRequest(m) | Self::Conflict(m) => m.clone(),
            Self::TooManyRequests { retry_after_secs } => format!("Too many attempts. Try again in {retry_after_secs} seconds."),
            Self::MustChangePassword => "Please choose a new password.".into(),
            Self::ProxyEnded => "Your access to that record has ended.".into(),
            Self::PayloadTooLarge => "What you sent is too large.".into(),
            Self::CsrfMismatch => "The form has expired or was not sent from this portal. Go back, reload the page and try again.".into(),
            Self::Overloaded => "The portal is busy right now. Please try again in a moment.".into(),
            Self::Internal(_) => "Something went wrong on our side. It has been logged; please try again.".into(),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NotFound | DomainError::NotPermitted => Self::NotFound,
            DomainError::Conflict => Self::Conflict(e.to_string()),
            DomainError::Duplicate(m) => Self::Conflict(m),
            DomainError::Invalid(m) => Self::BadRequest(m),
            DomainError::Cpr(c) => Self::BadRequest(c.to_string()),
            e if e.is_overloaded() => Self::Overloaded,
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AccessError> for AppError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Denied(d) => Self::Denied(d),
            AccessError::UnknownPatient => Self::NotFound,
            AccessError::Invalid(m) => Self::BadRequest(m),
            AccessError::Domain(d) => d.into(),
            AccessError::Hashing(m) => Self::Internal(m),
            AccessError::AuditUnavailable(m) => Self::Internal(m),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        DomainError::from(e).into()
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(e: tower_sessions::session::Error) -> Self {
        Self::Internal(format!("session store: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            Self::LoginRequired => return Redirect::to("/login").into_response(),
            Self::MustChangePassword => return Redirect::to("/account/password").into_response(),
            Self::ProxyEnded => return Redirect::to("/me/proxies").into_response(),
            Self::Internal(detail) => tracing::error!(error = %detail, "request failed"),
            Self::Overloaded => tracing::warn!("database pool exhausted; answering 503"),
            _ => {}
        }
        let status = self.status();
        let page = match &self {
            Self::OverrideOffered { patient, .. } => {
                views::clinician::override_offer(&self.public_message(), *patient)
            }
            _ => views::layout::error_page(status, &self.public_message()),
        };
        let mut response = (status, page).into_response();
        match self {
            Self::Overloaded => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
            }
            Self::TooManyRequests { retry_after_secs } => {
                if let Ok(v) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}
