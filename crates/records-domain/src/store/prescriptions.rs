use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::{IsoDate, Statement, Utc, UuidText};
use crate::model::{PatientId, Prescription, PrescriptionStatus, Source};
use crate::store::{
    imported_before, require, require_upsert, same_patient, Category, ReadPermit, Upserted,
    WritePermit, Written,
};
use crate::DomainError;

/// The columns `PrescriptionRow` reads, in a macro so that statements can `concat!` them.
macro_rules! columns {
    () => {
        "id, patient_id, medication_system, medication_code, medication_name, dosage_text, \
         status, authored_at, prescriber, valid_from, valid_until, stop_reason, version, \
         source_system, source_id"
    };
}

const BY_SOURCE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM prescriptions WHERE source_system = $1 AND source_id = $2"
);
const UPDATE: &str = "UPDATE prescriptions SET medication_system = $1, medication_code = $2, \
     medication_name = $3, dosage_text = $4, status = $5, authored_at = $6, prescriber = $7, \
     valid_from = $8, valid_until = $9, stop_reason = $10, version = version + 1 WHERE id = $11";
const INSERT: &str = "INSERT INTO prescriptions (medication_system, medication_code, \
     medication_name, dosage_text, status, authored_at, prescriber, valid_from, valid_until, \
     stop_reason, id, patient_id, version, source_system, source_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14)";
const FOR_PATIENT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM prescriptions WHERE patient_id = $1 \
     ORDER BY CASE WHEN status = 'active' THEN 0 ELSE 1 END, authored_at DESC, id"
);
const STOP: &str = "UPDATE prescriptions SET status = 'stopped', stop_reason = $1, valid_until = $2, \
     version = version + 1 WHERE id = $3 AND patient_id = $4 AND version = $5 AND status = 'active'";
const EXISTS: &str = "SELECT id FROM prescriptions WHERE id = $1 AND patient_id = $2";
const BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM prescriptions WHERE id = $1 AND patient_id = $2"
);
const PATIENT_OF: &str = "SELECT patient_id FROM prescriptions WHERE id = $1";

pub(crate) fn statements() -> Vec<Statement> {
    crate::statements!("prescriptions": BY_SOURCE, UPDATE, INSERT, FOR_PATIENT, STOP, EXISTS,
        BY_ID, PATIENT_OF)
}

#[derive(sqlx::FromRow)]
struct PrescriptionRow {
    id: UuidText,
    patient_id: PatientId,
    medication_system: String,
    medication_code: String,
    medication_name: String,
    dosage_text: String,
    status: PrescriptionStatus,
    authored_at: Utc,
    prescriber: String,
    valid_from: IsoDate,
    valid_until: Option<IsoDate>,
    stop_reason: Option<String>,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<PrescriptionRow> for Prescription {
    fn from(row: PrescriptionRow) -> Self {
        Prescription {
            id: row.id.0,
            patient_id: row.patient_id,
            medication_system: row.medication_system,
            medication_code: row.medication_code,
            medication_name: row.medication_name,
            dosage_text: row.dosage_text,
            status: row.status,
            authored_at: row.authored_at.0,
            prescriber: row.prescriber,
            valid_from: row.valid_from.0,
            valid_until: row.valid_until.map(Date::from),
            stop_reason: row.stop_reason,
            version: row.version,
            source: row.source,
        }
    }
}

pub async fn upsert(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    p: &Prescription,
) -> Result<Written, DomainError> {
    require_upsert(permit, Category::Prescriptions, p.patient_id, &p.source)?;
    let existing: Option<PrescriptionRow> =
        imported_before(&mut *conn, BY_SOURCE, &p.source).await?;
    if let Some(current) = existing.map(Prescription::from) {
        same_patient(current.patient_id, p.patient_id)?;
        if same_content(&current, p) {
            return Ok(Written::new(
                Upserted::Unchanged,
                current.id,
                current.version,
            ));
        }
        bind_content(sqlx::query(UPDATE), p)
            .bind(UuidText(current.id))
            .execute(conn)
            .await?;
        return Ok(Written::new(
            Upserted::Updated,
            current.id,
            current.version + 1,
        ));
    }
    insert_row(conn, p).await?;
    Ok(Written::new(Upserted::Inserted, p.id, 1))
}

async fn insert_row(conn: &mut AnyConnection, p: &Prescription) -> Result<(), DomainError> {
    bind_content(sqlx::query(INSERT), p)
        .bind(UuidText(p.id))
        .bind(p.patient_id)
        .bind(&p.source.system)
        .bind(&p.source.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Binds the columns that `UPDATE` sets and `INSERT` starts with, in their order.
fn bind_content<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    p: &'q Prescription,
) -> Query<'q, Any, AnyArguments<'q>> {
    query
        .bind(&p.medication_system)
        .bind(&p.medication_code)
        .bind(&p.medication_name)
        .bind(&p.dosage_text)
        .bind(p.status)
        .bind(Utc(p.authored_at))
        .bind(&p.prescriber)
        .bind(IsoDate(p.valid_from))
        .bind(p.valid_until.map(IsoDate))
        .bind(p.stop_reason.as_deref())
}

fn same_content(a: &Prescription, b: &Prescription) -> bool {
    a.patient_id == b.patient_id
        && a.medication_system == b.medication_system
        && a.medication_code == b.medication_code
        && a.medication_name == b.medication_name
        && a.dosage_text == b.dosage_text
        && a.status == b.status
        && a.authored_at == b.authored_at
        && a.prescriber == b.prescriber
        && a.valid_from == b.valid_from
        && a.valid_until == b.valid_until
        && a.stop_reason == b.stop_reason
}

/// Active first, then the rest, newest first within each.
pub async fn for_patient(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
) -> Result<Vec<Prescription>, DomainError> {
    require(permit, Category::Prescriptions)?;
    let rows: Vec<PrescriptionRow> = sqlx::query_as(FOR_PATIENT)
        .bind(permit.patient_id())
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(Prescription::from).collect())
}

/// What a prescriber enters; the rest (status, author, times) the portal fills in.
#[derive(Debug, Clone)]
pub struct NewPrescription {
    pub medication_code: String,
    pub medication_name: String,
    pub dosage_text: String,
    pub valid_from: Date,
    pub valid_until: Option<Date>,
}

impl NewPrescription {
    /// ATC codes: a letter, two digits, two letters, two digits (e.g. C10AA05); shorter
    /// prefixes name groups, not medicines, so only the full seven characters are accepted.
    pub fn validate(&self) -> Result<(), DomainError> {
        let code = self.medication_code.trim();
        let b = code.as_bytes();
        let atc = b.len() == 7
            && b[0].is_ascii_uppercase()
            && b[1..3].iter().all(u8::is_ascii_digit)
            && b[3..5].iter().all(u8::is_ascii_uppercase)
            && b[5..7].iter().all(u8::is_ascii_digit);
        if !atc {
            return Err(DomainError::invalid(
                "The ATC code must have 7 characters, like C10AA05.",
            ));
        }
        if self.medication_name.trim().is_empty() || self.medication_name.len() > 200 {
            return Err(DomainError::invalid(
                "Give the medication's name (at most 200 characters).",
            ));
        }
        if self.dosage_text.trim().len() < 3 || self.dosage_text.len() > 500 {
            return Err(DomainError::invalid(
                "Give the dosage (3 to 500 characters).",
            ));
        }
        if matches!(self.valid_until, Some(until) if until < self.valid_from) {
            return Err(DomainError::invalid(
                "The prescription cannot end before it starts.",
            ));
        }
        Ok(())
    }
}

/// `id` is chosen by the caller so that the access decision's audit event can name it.
pub async fn prescribe(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    id: Uuid,
    new: &NewPrescription,
) -> Result<Prescription, DomainError> {
    require(permit, Category::Prescriptions)?;
    new.validate()?;
    let prescription = Prescription {
        id,
        patient_id: permit.patient_id(),
        medication_system: "http://www.whocc.no/atc".into(),
        medication_code: new.medication_code.trim().to_string(),
        medication_name: new.medication_name.trim().to_string(),
        dosage_text: new.dosage_text.trim().to_string(),
        status: PrescriptionStatus::Active,
        authored_at: OffsetDateTime::now_utc(),
        prescriber: permit.author_name().to_string(),
        valid_from: new.valid_from,
        valid_until: new.valid_until,
        stop_reason: None,
        version: 1,
        source: Source::portal(id),
    };
    insert_row(conn, &prescription).await?;
    Ok(prescription)
}

/// Stop an active prescription. `expected_version` is the version the prescriber saw.
pub async fn stop(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    id: Uuid,
    expected_version: i64,
    reason: &str,
) -> Result<(), DomainError> {
    require(permit, Category::Prescriptions)?;
    if reason.trim().len() < 3 {
        return Err(DomainError::invalid("Say why the prescription is stopped."));
    }
    let done = sqlx::query(STOP)
        .bind(reason.trim())
        .bind(IsoDate(OffsetDateTime::now_utc().date()))
        .bind(UuidText(id))
        .bind(permit.patient_id())
        .bind(expected_version)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let exists = sqlx::query(EXISTS)
        .bind(UuidText(id))
        .bind(permit.patient_id())
        .fetch_optional(conn)
        .await?;
    Err(if exists.is_some() {
        DomainError::Conflict
    } else {
        DomainError::NotFound
    })
}

pub async fn by_id_for(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    id: Uuid,
) -> Result<Prescription, DomainError> {
    require(permit, Category::Prescriptions)?;
    let row: PrescriptionRow = sqlx::query_as(BY_ID)
        .bind(UuidText(id))
        .bind(permit.patient_id())
        .fetch_optional(conn)
        .await?
        .ok_or(DomainError::NotFound)?;
    Ok(row.into())
}

/// The patient a prescription belongs to: needed to decide on access before reading it.
pub async fn patient_of(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<PatientId>, DomainError> {
    Ok(sqlx::query_scalar(PATIENT_OF)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?)
}
