//! Patient demographics. Finding a patient is not reading their record: callers use these to
//! resolve who a request is about, and the access decision comes after.

use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::cpr::Cpr;
use crate::db::{date_text, ts, RowExt};
use crate::model::{Patient, PatientId, Sex, Source};
use crate::store::{RegisterPermit, Upserted};
use crate::DomainError;

/// How a source's patient is recognised as one the portal already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameAs {
    /// The source sent a real CPR number: the same number is the same person, whichever
    /// system sent it.
    SourceKeyOrCpr,
    /// The CPR number was assigned here: only the source's own key identifies the person. A
    /// clash on the number is an error (the transaction fails), never a merge of two people.
    SourceKeyOnly,
}

/// The patient the portal already holds for this source's patient, if any.
pub async fn existing(
    conn: &mut AnyConnection,
    patient: &Patient,
    source: &Source,
    same_as: SameAs,
) -> Result<Option<Patient>, DomainError> {
    let row = sqlx::query(
        "SELECT * FROM patients WHERE (source_system = $1 AND source_id = $2) OR ($4 = 1 AND national_id = $3)",
    )
    .bind(&source.system)
    .bind(&source.id)
    .bind(patient.cpr.digits())
    .bind(i64::from(same_as == SameAs::SourceKeyOrCpr))
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Whether storing `patient` over `current` would change who they are.
pub fn same_demographics(current: &Patient, patient: &Patient) -> bool {
    current.given_name == patient.given_name
        && current.family_name == patient.family_name
        && current.birth_date == patient.birth_date
        && current.sex == patient.sex
}

/// Register the patient the permit names, or update the demographics of `current` (which
/// `existing` found and the permit must name).
pub async fn upsert(
    conn: &mut AnyConnection,
    permit: &impl RegisterPermit,
    patient: &Patient,
    current: Option<&Patient>,
    source: &Source,
) -> Result<(PatientId, Upserted), DomainError> {
    if source.system != permit.source_system() {
        return Err(DomainError::NotPermitted);
    }
    if let Some(current) = current {
        if current.id != permit.patient_id() {
            return Err(DomainError::NotPermitted);
        }
        if same_demographics(current, patient) {
            return Ok((current.id, Upserted::Unchanged));
        }
        sqlx::query(
            "UPDATE patients SET given_name = $1, family_name = $2, birth_date = $3, sex = $4 WHERE id = $5",
        )
        .bind(&patient.given_name)
        .bind(&patient.family_name)
        .bind(date_text(patient.birth_date))
        .bind(patient.sex.as_str())
        .bind(current.id.0.to_string())
        .execute(&mut *conn)
        .await?;
        return Ok((current.id, Upserted::Updated));
    }
    let id = permit.patient_id();
    sqlx::query(
        "INSERT INTO patients (id, national_id, given_name, family_name, birth_date, sex, gp_clinic_id, \
         source_system, source_id, original_identifier, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.0.to_string())
    .bind(patient.cpr.digits())
    .bind(&patient.given_name)
    .bind(&patient.family_name)
    .bind(date_text(patient.birth_date))
    .bind(patient.sex.as_str())
    .bind(patient.gp_clinic_id.map(|c| c.to_string()))
    .bind(&source.system)
    .bind(&source.id)
    .bind(patient.original_identifier.as_deref())
    .bind(ts(OffsetDateTime::now_utc()))
    .execute(conn)
    .await?;
    Ok((id, Upserted::Inserted))
}

pub async fn by_id(
    conn: &mut AnyConnection,
    id: PatientId,
) -> Result<Option<Patient>, DomainError> {
    let row = sqlx::query("SELECT * FROM patients WHERE id = $1")
        .bind(id.0.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_cpr(conn: &mut AnyConnection, cpr: &Cpr) -> Result<Option<Patient>, DomainError> {
    let row = sqlx::query("SELECT * FROM patients WHERE national_id = $1")
        .bind(cpr.digits())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Case-insensitive match on given or family name (prefix), optionally on the birth date.
pub async fn search_by_name(
    conn: &mut AnyConnection,
    name: &str,
    birth_date: Option<Date>,
    limit: i64,
) -> Result<Vec<Patient>, DomainError> {
    let pattern = format!("{}%", escape_like(&name.trim().to_lowercase()));
    // Two statements rather than `($2 = '' OR birth_date = $2)`: only a plain equality lets
    // the planner look the birth date up in its index, which keeps a GP's lookup by name and
    // birth date flat however many patients there are.
    const NAME_MATCHES: &str =
        "(LOWER(given_name) LIKE $1 ESCAPE '\\' OR LOWER(family_name) LIKE $1 ESCAPE '\\' \
         OR LOWER(given_name || ' ' || family_name) LIKE $1 ESCAPE '\\')";
    let rows = match birth_date {
        Some(born) => {
            sqlx::query(&format!(
                "SELECT * FROM patients WHERE birth_date = $2 AND {NAME_MATCHES} \
                 ORDER BY family_name, given_name, birth_date LIMIT $3"
            ))
            .bind(pattern)
            .bind(date_text(born))
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT * FROM patients WHERE {NAME_MATCHES} \
                 ORDER BY family_name, given_name, birth_date LIMIT $2"
            ))
            .bind(pattern)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
    };
    rows.iter().map(from_row).collect()
}

pub async fn listed_with(conn: &mut AnyConnection, clinic: Uuid) -> Result<i64, DomainError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM patients WHERE gp_clinic_id = $1")
        .bind(clinic.to_string())
        .fetch_one(conn)
        .await?;
    row.int("n")
}

pub async fn set_gp_clinic(
    conn: &mut AnyConnection,
    patient: PatientId,
    clinic: Option<Uuid>,
) -> Result<(), DomainError> {
    let done = sqlx::query("UPDATE patients SET gp_clinic_id = $1 WHERE id = $2")
        .bind(clinic.map(|c| c.to_string()))
        .bind(patient.0.to_string())
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DomainError::NotFound);
    }
    Ok(())
}

pub async fn count(conn: &mut AnyConnection) -> Result<i64, DomainError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM patients")
        .fetch_one(conn)
        .await?;
    row.int("n")
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn from_row(row: &AnyRow) -> Result<Patient, DomainError> {
    Ok(Patient {
        id: PatientId(row.uuid("id")?),
        cpr: Cpr::parse(&row.text("national_id")?)?,
        given_name: row.text("given_name")?,
        family_name: row.text("family_name")?,
        birth_date: row.date("birth_date")?,
        sex: Sex::parse(&row.text("sex")?)?,
        gp_clinic_id: row.opt_uuid("gp_clinic_id")?,
        original_identifier: row.opt_text("original_identifier")?,
    })
}

/// The patient an earlier import of the same source created.
pub async fn by_source(
    conn: &mut AnyConnection,
    source: &Source,
) -> Result<Option<Patient>, DomainError> {
    let row = sqlx::query("SELECT * FROM patients WHERE source_system = $1 AND source_id = $2")
        .bind(&source.system)
        .bind(&source.id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}
