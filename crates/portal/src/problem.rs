//! What went wrong, decided once from the domain and access errors. The pages
//! (`crate::error::AppError`) and the FHIR API (`crate::fhir::error::FhirError`) render a
//! `Problem` each in their own way, so a refusal, a conflict or a fault means the same thing on
//! both interfaces and only the wording of the answer differs.

use access_control::{AccessError, Denial};
use records_domain::DomainError;

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// Absent, or not the caller's to see: the two are not told apart.
    #[error("not found")]
    NotFound,
    /// Refused by the access policy; the refusal has been audited.
    #[error("{}", .0.describe())]
    Denied(Denial),
    /// The request cannot be read at all (not JSON, a malformed query, a broken form field).
    #[error("{0}")]
    Malformed(String),
    /// The request was read, but what it asks for breaks a rule (a date in the past, a CPR
    /// number that is not one, a resource that misses a required element).
    #[error("{0}")]
    Invalid(String),
    /// Someone else changed the record since the caller read it.
    #[error("{0}")]
    Conflict(String),
    /// What was to be created exists already (also a unique violation in a race).
    #[error("{0}")]
    Duplicate(String),
    /// No database connection came free in time: the caller should retry shortly.
    #[error("busy")]
    Overloaded,
    /// A fault of the system. The source is kept for the log, whole cause chain and all, and
    /// never shown to the caller.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl Problem {
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    /// Log what the renderers do not show: faults with their causes, overload as a warning.
    pub fn log(&self) {
        match self {
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "request failed"),
            Self::Overloaded => tracing::warn!("database pool exhausted; answering 503"),
            _ => {}
        }
    }
}

impl From<DomainError> for Problem {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NotFound | DomainError::NotPermitted => Self::NotFound,
            DomainError::Conflict => Self::Conflict(e.to_string()),
            DomainError::Duplicate(m) => Self::Duplicate(m),
            DomainError::Invalid(m) => Self::Invalid(m),
            DomainError::Cpr(c) => Self::Invalid(c.to_string()),
            e if e.is_overloaded() => Self::Overloaded,
            other => Self::internal(other),
        }
    }
}

impl From<AccessError> for Problem {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Denied(d) => Self::Denied(d),
            AccessError::UnknownPatient => Self::NotFound,
            AccessError::Invalid(m) => Self::Invalid(m),
            // A note, key or proof someone sent that does not parse or verify.
            AccessError::Log(e) => Self::Invalid(e.to_string()),
            AccessError::Domain(d) => d.into(),
            // Hashing and the audit writer failing are faults of the system alike: nothing may
            // be shown without its audit event, and the caller can do nothing about either.
            e @ (AccessError::Hashing(_) | AccessError::AuditUnavailable(_)) => Self::internal(e),
        }
    }
}

impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        DomainError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_is_one_kind_whichever_crate_found_it() {
        assert!(matches!(
            Problem::from(DomainError::invalid("x")),
            Problem::Invalid(_)
        ));
        assert!(matches!(
            Problem::from(AccessError::invalid("x")),
            Problem::Invalid(_)
        ));
    }

    #[test]
    fn an_internal_fault_keeps_its_cause() {
        let problem = Problem::from(DomainError::Corrupt("bad time".into()));
        let Problem::Internal(e) = problem else {
            panic!("a corrupt value is a fault of the system");
        };
        assert!(e.downcast_ref::<DomainError>().is_some());
        assert!(format!("{e:#}").contains("bad time"));
    }
}
