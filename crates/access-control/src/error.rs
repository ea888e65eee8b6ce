use records_domain::DomainError;

use crate::policy::Denial;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Refused by the policy; the refusal itself has been audited.
    #[error("{}", .0.describe())]
    Denied(Denial),
    #[error("no such patient")]
    UnknownPatient,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The audit event could not be made durable, so nothing may be shown.
    #[error("the audit log could not be written: {0}")]
    AuditUnavailable(String),
    /// A note, key, checkpoint or proof of the transparency log is malformed or does not verify.
    #[error("transparency log: {0}")]
    Log(#[from] transparency_log::Error),
}

impl From<sqlx::Error> for AccessError {
    fn from(e: sqlx::Error) -> Self {
        Self::Domain(DomainError::from(e))
    }
}

impl AccessError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}
