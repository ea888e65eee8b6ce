//! The pages' error type, and the one place where it becomes an HTML response. What went wrong
//! is classified in `crate::problem`; this adds what only pages have (sign-in redirects, the
//! override offer, CSRF) and renders it. Internal details go to the log; the page says what the
//! user can do about it.

use access_control::{AccessError, Denial};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use records_domain::model::PatientId;
use records_domain::DomainError;

use crate::problem::Problem;
use crate::views;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error("sign in first")]
    LoginRequired,
    #[error("your role cannot open this page")]
    WrongRole,
    /// A clinician refused who may break the glass for this patient: the page offers it.
    #[error("{}", .denial.describe())]
    OverrideOffered { denial: Denial, patient: PatientId },
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
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn not_found() -> Self {
        Problem::NotFound.into()
    }

    /// A form value the user can correct.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Problem::Invalid(message.into()).into()
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Problem::Conflict(message.into()).into()
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Problem::internal(error).into()
    }

    /// A page answers 400 both for what it cannot read and for what breaks a rule: a person
    /// reads the page, not the status, and the page says what to correct. (The FHIR API tells
    /// the two apart, as its clients act on the status: see `fhir::error`.)
    fn status(&self) -> StatusCode {
        match self {
            Self::Problem(p) => match p {
                Problem::NotFound => StatusCode::NOT_FOUND,
                Problem::Denied(_) => StatusCode::FORBIDDEN,
                Problem::Malformed(_) | Problem::Invalid(_) => StatusCode::BAD_REQUEST,
                Problem::Conflict(_) | Problem::Duplicate(_) => StatusCode::CONFLICT,
                Problem::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
                Problem::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::LoginRequired | Self::MustChangePassword | Self::ProxyEnded => {
                StatusCode::SEE_OTHER
            }
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::WrongRole | Self::OverrideOffered { .. } | Self::CsrfMismatch => {
                StatusCode::FORBIDDEN
            }
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// What the person reading the page is told.
    pub fn public_message(&self) -> String {
        match self {
            Self::Problem(p) => match p {
                Problem::NotFound => "There is nothing here, or it is not yours to see.".into(),
                Problem::Denied(d) => d.describe().into(),
                Problem::Malformed(m)
                | Problem::Invalid(m)
                | Problem::Conflict(m)
                | Problem::Duplicate(m) => m.clone(),
                Problem::Overloaded => "The portal is busy right now. Please try again in a moment.".into(),
                Problem::Internal(_) => "Something went wrong on our side. It has been logged; please try again.".into(),
            },
            Self::LoginRequired => "Please sign in.".into(),
            Self::WrongRole => "Your role cannot open this page.".into(),
            Self::OverrideOffered { denial, .. } => denial.describe().into(),
            Self::TooManyRequests { retry_after_secs } => format!("Too many attempts. Try again in {retry_after_secs} seconds."),
            Self::MustChangePassword => "Please choose a new password.".into(),
            Self::ProxyEnded => "Your access to that record has ended.".into(),
            Self::PayloadTooLarge => "What you sent is too large.".into(),
            Self::CsrfMismatch => "The form has expired or was not sent from this portal. Go back, reload the page and try again.".into(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Problem(Problem::Overloaded) => Some(2),
            Self::TooManyRequests { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        Problem::from(e).into()
    }
}

impl From<AccessError> for AppError {
    fn from(e: AccessError) -> Self {
        Problem::from(e).into()
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        Problem::from(e).into()
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(e: tower_sessions::session::Error) -> Self {
        Self::internal(anyhow::Error::new(e).context("session store"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            Self::LoginRequired => return Redirect::to("/login").into_response(),
            Self::MustChangePassword => return Redirect::to("/account/password").into_response(),
            Self::ProxyEnded => return Redirect::to("/me/proxies").into_response(),
            Self::Problem(p) => p.log(),
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
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}
