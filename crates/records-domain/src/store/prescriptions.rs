use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::{date_text, ts, RowExt};
use crate::model::{PatientId, Prescription, PrescriptionStatus, Source};
use crate::store::{
    require, require_upsert, same_patient, Category, ReadPermit, Upserted, WritePermit,
};
use crate::DomainError;

pub async fn upsert(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    p: &Prescription,
) -> Result<Upserted, DomainError> {
    require_upsert(permit, Category::Prescriptions, p.patient_id, &p.source)?;
    let existing =
        sqlx::query("SELECT * FROM prescriptions WHERE source_system = $1 AND source_id = $2")
            .bind(&p.source.system)
            .bind(&p.source.id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(row) = existing {
        let current = from_row(&row)?;
        same_patient(current.patient_id, p.patient_id)?;
        if same_content(&current, p) {
            return Ok(Upserted::Unchanged);
        }
        sqlx::query(
            "UPDATE prescriptions SET medication_system = $1, medication_code = $2, medication_name = $3, \
             dosage_text = $4, status = $5, authored_at = $6, prescriber = $7, valid_from = $8, \
             valid_until = $9, stop_reason = $10, version = version + 1 WHERE id = $11",
        )
        .bind(&p.medication_system)
        .bind(&p.medication_code)
        .bind(&p.medication_name)
        .bind(&p.dosage_text)
        .bind(p.status.as_str())
        .bind(ts(p.authored_at))
        .bind(&p.prescriber)
        .bind(date_text(p.valid_from))
        .bind(p.valid_until.map(date_text))
        .bind(p.stop_reason.as_deref())
        .bind(current.id.to_string())
        .execute(conn)
        .await?;
        return Ok(Upserted::Updated);
    }
    insert_row(conn, p).await?;
    Ok(Upserted::Inserted)
}

async fn insert_row(conn: &mut AnyConnection, p: &Prescription) -> Result<(), DomainError> {
    sqlx::query(
        "INSERT INTO prescriptions (id, patient_id, medication_system, medication_code, medication_name, \
         dosage_text, status, authored_at, prescriber, valid_from, valid_until, stop_reason, version, \
         source_system, source_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14)",
    )
    .bind(p.id.to_string())
    .bind(p.patient_id.0.to_string())
    .bind(&p.medication_system)
    .bind(&p.medication_code)
    .bind(&p.medication_name)
    .bind(&p.dosage_text)
    .bind(p.status.as_str())
    .bind(ts(p.authored_at))
    .bind(&p.prescriber)
    .bind(date_text(p.valid_from))
    .bind(p.valid_until.map(date_text))
    .bind(p.stop_reason.as_deref())
    .bind(&p.source.system)
    .bind(&p.source.id)
    .execute(conn)
    .await?;
    Ok(())
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
    let rows = sqlx::query(
        "SELECT * FROM prescriptions WHERE patient_id = $1 \
         ORDER BY CASE WHEN status = 'active' THEN 0 ELSE 1 END, authored_at DESC, id",
    )
    .bind(permit.patient_id().0.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
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
    let done = sqlx::query(
        "UPDATE prescriptions SET status = 'stopped', stop_reason = $1, valid_until = $2, version = version + 1 \
         WHERE id = $3 AND patient_id = $4 AND version = $5 AND status = 'active'",
    )
    .bind(reason.trim())
    .bind(date_text(OffsetDateTime::now_utc().date()))
    .bind(id.to_string())
    .bind(permit.patient_id().0.to_string())
    .bind(expected_version)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let exists = sqlx::query("SELECT id FROM prescriptions WHERE id = $1 AND patient_id = $2")
        .bind(id.to_string())
        .bind(permit.patient_id().0.to_string())
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
    let row = sqlx::query("SELECT * FROM prescriptions WHERE id = $1 AND patient_id = $2")
        .bind(id.to_string())
        .bind(permit.patient_id().0.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or(DomainError::NotFound)?;
    from_row(&row)
}

fn from_row(row: &AnyRow) -> Result<Prescription, DomainError> {
    Ok(Prescription {
        id: row.uuid("id")?,
        patient_id: PatientId(row.uuid("patient_id")?),
        medication_system: row.text("medication_system")?,
        medication_code: row.text("medication_code")?,
        medication_name: row.text("medication_name")?,
        dosage_text: row.text("dosage_text")?,
        status: PrescriptionStatus::parse(&row.text("status")?)?,
        authored_at: row.time("authored_at")?,
        prescriber: row.text("prescriber")?,
        valid_from: row.date("valid_from")?,
        valid_until: row
            .opt_text("valid_until")?
            .as_deref()
            .map(crate::db::parse_date)
            .transpose()?,
        stop_reason: row.opt_text("stop_reason")?,
        version: row.int("version")?,
        source: Source {
            system: row.text("source_system")?,
            id: row.text("source_id")?,
        },
    })
}

/// The patient a prescription belongs to: needed to decide on access before reading it.
pub async fn patient_of(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<PatientId>, DomainError> {
    let row = sqlx::query("SELECT patient_id FROM prescriptions WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.uuid("patient_id").map(PatientId)).transpose()
}
