use crate::cpr::CprError;

/// Everything that can go wrong in the records domain and its storage.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
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
    /// What was to be created exists already: found by a check, or refused by a unique
    /// constraint when two requests created the same thing at the same moment.
    #[error("{0}")]
    Duplicate(String),
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

/// The one place where database errors are classified. A unique violation is not a fault of the
/// system but a conflict with what exists (a race the check before the insert cannot close on
/// PostgreSQL, where two transactions both find the name free): callers answer 409, not 500.
impl From<sqlx::Error> for DomainError {
    fn from(e: sqlx::Error) -> Self {
        match e.as_database_error() {
            Some(db) if db.is_unique_violation() => Self::Duplicate(
                "This already exists: it was created by someone else at the same moment. \
                 Reload the page to see it."
                    .into(),
            ),
            _ => Self::Database(e),
        }
    }
}

impl DomainError {
    /// The pool had no free connection within its acquire timeout: the caller should retry.
    pub fn is_overloaded(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::PoolTimedOut))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub fn duplicate(message: impl Into<String>) -> Self {
        Self::Duplicate(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[tokio::test]
    async fn a_unique_violation_is_a_duplicate_not_a_database_fault() {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (name TEXT UNIQUE)")
            .execute(&mut conn)
            .await
            .unwrap();
        let insert = "INSERT INTO t (name) VALUES ('anne')";
        sqlx::query(insert).execute(&mut conn).await.unwrap();
        let second = sqlx::query(insert).execute(&mut conn).await.unwrap_err();
        assert!(matches!(
            DomainError::from(second),
            DomainError::Duplicate(_)
        ));
        let broken = sqlx::query("SELECT nothing FROM nowhere")
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(matches!(
            DomainError::from(broken),
            DomainError::Database(_)
        ));
    }
}
