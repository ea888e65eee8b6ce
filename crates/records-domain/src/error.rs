use crate::cpr::CprError;

/// Everything that can go wrong in the records domain and its storage.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL: use sqlite:... or postgres://...")]
    UnsupportedDatabaseUrl,
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("not found")]
    NotFound,
    #[error("the record was changed by someone else since you opened it")]
    Conflict,
    #[error("the access decision does not cover this part of the record")]
    NotPermitted,
    /// An update named a patient other than the one the stored record belongs to.
    #[error("the record belongs to another patient")]
    BelongsToAnotherPatient(crate::model::PatientId),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Cpr(#[from] CprError),
}

impl DomainError {
    /// The pool had no free connection within its acquire timeout: the caller should retry.
    pub fn is_overloaded(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::PoolTimedOut))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}
