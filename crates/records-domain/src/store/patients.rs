//! Patient demographics. Finding a patient is not reading their record: callers use these to
//! resolve who a request is about, and the access decision comes after.

use sqlx::AnyConnection;
use time::Date;
use uuid::Uuid;

use crate::cpr::Cpr;
use crate::db::{Flag, IsoDate, Statement, Utc, UuidText};
use crate::model::{Patient, PatientId, Sex, Source};
use crate::store::{RegisterPermit, Upserted, Written};
use crate::DomainError;

/// A name search's clause ($1 is the lower-case prefix pattern).
macro_rules! name_matches {
    () => {
        "(LOWER(given_name) LIKE $1 ESCAPE '\\' OR LOWER(family_name) LIKE $1 ESCAPE '\\' \
         OR LOWER(given_name || ' ' || family_name) LIKE $1 ESCAPE '\\')"
    };
}

/// The columns `PatientRow` reads, in a macro so that statements can `concat!` them.
macro_rules! columns {
    () => {
        "id, national_id, given_name, family_name, birth_date, sex, gp_clinic_id, \
         original_identifier, version"
    };
}

const EXISTING: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM patients WHERE (source_system = $1 AND source_id = $2) OR ($4 = 1 AND national_id = $3)"
);
const UPDATE_DEMOGRAPHICS: &str = "UPDATE patients SET given_name = $1, family_name = $2, \
     birth_date = $3, sex = $4, version = version + 1 WHERE id = $5";
const INSERT: &str = "INSERT INTO patients (id, national_id, given_name, family_name, birth_date, \
     sex, gp_clinic_id, source_system, source_id, original_identifier, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const BY_ID: &str = concat!("SELECT ", columns!(), " FROM patients WHERE id = $1");
const BY_CPR: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM patients WHERE national_id = $1"
);
/// Two statements rather than `($2 = '' OR birth_date = $2)`: only a plain equality lets the
/// planner look the birth date up in its index, which keeps a GP's lookup by name and birth
/// date flat however many patients there are.
const BY_NAME_AND_BIRTH_DATE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM patients WHERE birth_date = $2 AND ",
    name_matches!(),
    " ORDER BY family_name, given_name, birth_date LIMIT $3"
);
const BY_NAME: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM patients WHERE ",
    name_matches!(),
    " ORDER BY family_name, given_name, birth_date LIMIT $2"
);
const LISTED_WITH: &str = "SELECT COUNT(*) FROM patients WHERE gp_clinic_id = $1";
const SET_GP_CLINIC: &str = "UPDATE patients SET gp_clinic_id = $1 WHERE id = $2";
const COUNT: &str = "SELECT COUNT(*) FROM patients";
const BY_SOURCE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM patients WHERE source_system = $1 AND source_id = $2"
);

pub(crate) fn statements() -> Vec<Statement> {
    crate::statements!("patients": EXISTING, UPDATE_DEMOGRAPHICS, INSERT, BY_ID, BY_CPR,
        BY_NAME_AND_BIRTH_DATE, BY_NAME, LISTED_WITH, SET_GP_CLINIC, COUNT, BY_SOURCE)
}

#[derive(sqlx::FromRow)]
struct PatientRow {
    id: PatientId,
    national_id: String,
    given_name: String,
    family_name: String,
    birth_date: IsoDate,
    sex: Sex,
    gp_clinic_id: Option<UuidText>,
    original_identifier: Option<String>,
    version: i64,
}

impl TryFrom<PatientRow> for Patient {
    type Error = DomainError;

    fn try_from(row: PatientRow) -> Result<Self, DomainError> {
        Ok(Patient {
            id: row.id,
            cpr: Cpr::parse(&row.national_id)?,
            given_name: row.given_name,
            family_name: row.family_name,
            birth_date: row.birth_date.0,
            sex: row.sex,
            gp_clinic_id: row.gp_clinic_id.map(Uuid::from),
            original_identifier: row.original_identifier,
            version: row.version,
        })
    }
}

async fn fetch_one_patient<'q>(
    query: sqlx::query::QueryAs<'q, sqlx::Any, PatientRow, sqlx::any::AnyArguments<'q>>,
    conn: &mut AnyConnection,
) -> Result<Option<Patient>, DomainError> {
    query
        .fetch_optional(conn)
        .await?
        .map(Patient::try_from)
        .transpose()
}

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
    let query = sqlx::query_as(EXISTING)
        .bind(&source.system)
        .bind(&source.id)
        .bind(patient.cpr.digits())
        .bind(Flag(same_as == SameAs::SourceKeyOrCpr));
    fetch_one_patient(query, conn).await
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
) -> Result<Written, DomainError> {
    if source.system != permit.source_system() {
        return Err(DomainError::NotPermitted);
    }
    if let Some(current) = current {
        if current.id != permit.patient_id() {
            return Err(DomainError::NotPermitted);
        }
        if same_demographics(current, patient) {
            return Ok(Written::new(
                Upserted::Unchanged,
                current.id.0,
                current.version,
            ));
        }
        sqlx::query(UPDATE_DEMOGRAPHICS)
            .bind(&patient.given_name)
            .bind(&patient.family_name)
            .bind(IsoDate(patient.birth_date))
            .bind(patient.sex)
            .bind(current.id)
            .execute(&mut *conn)
            .await?;
        return Ok(Written::new(
            Upserted::Updated,
            current.id.0,
            current.version + 1,
        ));
    }
    let id = permit.patient_id();
    sqlx::query(INSERT)
        .bind(id)
        .bind(patient.cpr.digits())
        .bind(&patient.given_name)
        .bind(&patient.family_name)
        .bind(IsoDate(patient.birth_date))
        .bind(patient.sex)
        .bind(patient.gp_clinic_id.map(UuidText))
        .bind(&source.system)
        .bind(&source.id)
        .bind(patient.original_identifier.as_deref())
        .bind(Utc::now())
        .execute(conn)
        .await?;
    Ok(Written::new(Upserted::Inserted, id.0, 1))
}

pub async fn by_id(
    conn: &mut AnyConnection,
    id: PatientId,
) -> Result<Option<Patient>, DomainError> {
    fetch_one_patient(sqlx::query_as(BY_ID).bind(id), conn).await
}

pub async fn by_cpr(conn: &mut AnyConnection, cpr: &Cpr) -> Result<Option<Patient>, DomainError> {
    fetch_one_patient(sqlx::query_as(BY_CPR).bind(cpr.digits()), conn).await
}

/// Case-insensitive match on given or family name (prefix), optionally on the birth date.
pub async fn search_by_name(
    conn: &mut AnyConnection,
    name: &str,
    birth_date: Option<Date>,
    limit: i64,
) -> Result<Vec<Patient>, DomainError> {
    let pattern = format!("{}%", escape_like(&name.trim().to_lowercase()));
    let rows: Vec<PatientRow> = match birth_date {
        Some(born) => {
            sqlx::query_as(BY_NAME_AND_BIRTH_DATE)
                .bind(pattern)
                .bind(IsoDate(born))
                .bind(limit)
                .fetch_all(conn)
                .await?
        }
        None => {
            sqlx::query_as(BY_NAME)
                .bind(pattern)
                .bind(limit)
                .fetch_all(conn)
                .await?
        }
    };
    rows.into_iter().map(Patient::try_from).collect()
}

pub async fn listed_with(conn: &mut AnyConnection, clinic: Uuid) -> Result<i64, DomainError> {
    Ok(sqlx::query_scalar(LISTED_WITH)
        .bind(UuidText(clinic))
        .fetch_one(conn)
        .await?)
}

pub async fn set_gp_clinic(
    conn: &mut AnyConnection,
    patient: PatientId,
    clinic: Option<Uuid>,
) -> Result<(), DomainError> {
    let done = sqlx::query(SET_GP_CLINIC)
        .bind(clinic.map(UuidText))
        .bind(patient)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DomainError::NotFound);
    }
    Ok(())
}

pub async fn count(conn: &mut AnyConnection) -> Result<i64, DomainError> {
    Ok(sqlx::query_scalar(COUNT).fetch_one(conn).await?)
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The patient an earlier import of the same source created.
pub async fn by_source(
    conn: &mut AnyConnection,
    source: &Source,
) -> Result<Option<Patient>, DomainError> {
    let query = sqlx::query_as(BY_SOURCE)
        .bind(&source.system)
        .bind(&source.id);
    fetch_one_patient(query, conn).await
}
