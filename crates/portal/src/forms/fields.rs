//! Fields many forms share, parsed once with messages a person can act on.

use records_domain::db::parse_date;
use records_domain::DomainError;
use time::{Date, OffsetDateTime};

/// An optional date field (`2027-03-31`); empty means none.
pub fn optional_date(text: &str, field: &str) -> Result<Option<Date>, DomainError> {
    match text.trim() {
        "" => Ok(None),
        t => parse_date(t)
            .map(Some)
            .map_err(|_| DomainError::invalid(format!("{field} must be a date like 2027-03-31."))),
    }
}

/// A start date field; empty means today.
pub fn start_date(text: &str, field: &str) -> Result<Date, DomainError> {
    Ok(optional_date(text, field)?.unwrap_or_else(|| OffsetDateTime::now_utc().date()))
}
