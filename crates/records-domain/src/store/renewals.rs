//! Renewal requests: a patient (or their attorney) asks the GP to renew a current or recently
//! ended prescription; a clinician renews it (a new prescription, linked to the request) or
//! declines with a reason. One open request per prescription.

use sqlx::AnyConnection;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::db::{IsoDate, Statement, Utc, UuidText};
use crate::model::{PatientId, Prescription, PrescriptionStatus};
use crate::store::prescriptions::{self, NewPrescription};
use crate::store::{require, Category, ReadPermit, RenewalPermit, WritePermit};
use crate::DomainError;

/// How long after a prescription ended its renewal may still be asked for.
pub const RECENTLY_ENDED: Duration = Duration::days(90);
const MAX_MESSAGE: usize = 1000;

const PRESCRIPTION_STATE: &str =
    "SELECT status, valid_until FROM prescriptions WHERE id = $1 AND patient_id = $2";
const OPEN_FOR_PRESCRIPTION: &str =
    "SELECT id FROM renewal_requests WHERE prescription_id = $1 AND status = 'open'";
const INSERT: &str = "INSERT INTO renewal_requests (id, patient_id, prescription_id, \
     requested_by, requested_by_name, message, status, requested_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 'open', $7)";
const FOR_PATIENT: &str = "SELECT r.id, r.prescription_id, p.medication_name, \
     r.requested_by_name, r.message, r.status, r.requested_at, r.answered_at, r.answered_by, \
     r.answer, r.renewal_id FROM renewal_requests r JOIN prescriptions p ON p.id = r.prescription_id \
     WHERE r.patient_id = $1 ORDER BY r.requested_at DESC, r.id";
const OPEN_FOR_CLINIC: &str = "SELECT r.id, r.patient_id, r.requested_at FROM renewal_requests r \
     JOIN patients p ON p.id = r.patient_id \
     WHERE r.status = 'open' AND p.gp_clinic_id = $1 ORDER BY r.requested_at, r.id LIMIT 200";
const OPEN_BY_ID: &str = "SELECT prescription_id FROM renewal_requests \
     WHERE id = $1 AND patient_id = $2 AND status = 'open'";
const EXISTS: &str = "SELECT id FROM renewal_requests WHERE id = $1 AND patient_id = $2";
const ANSWER: &str = "UPDATE renewal_requests SET status = $1, answered_at = $2, \
     answered_by = $3, answer = $4, renewal_id = $5 \
     WHERE id = $6 AND patient_id = $7 AND status = 'open'";

pub(crate) fn statements() -> Vec<Statement> {
    crate::statements!("renewals": PRESCRIPTION_STATE, OPEN_FOR_PRESCRIPTION, INSERT,
        FOR_PATIENT, OPEN_FOR_CLINIC, OPEN_BY_ID, EXISTS, ANSWER)
}

/// A request as the patient's and the clinician's pages show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RenewalRequest {
    pub id: UuidText,
    pub prescription_id: UuidText,
    pub medication_name: String,
    pub requested_by_name: String,
    pub message: String,
    /// open, renewed or declined
    pub status: String,
    pub requested_at: Utc,
    pub answered_at: Option<Utc>,
    pub answered_by: Option<String>,
    /// The reason given for declining.
    pub answer: Option<String>,
    pub renewal_id: Option<UuidText>,
}

impl RenewalRequest {
    pub fn is_open(&self) -> bool {
        self.status == "open"
    }
}

/// Whether a prescription in this state may still be asked to be renewed on `today`.
pub fn renewable(status: PrescriptionStatus, valid_until: Option<Date>, today: Date) -> bool {
    match status {
        PrescriptionStatus::Active => true,
        PrescriptionStatus::Completed | PrescriptionStatus::Stopped => {
            valid_until.is_some_and(|until| until >= today - RECENTLY_ENDED)
        }
        PrescriptionStatus::Cancelled => false,
    }
}

pub async fn request(
    conn: &mut AnyConnection,
    permit: &impl RenewalPermit,
    prescription: Uuid,
    message: &str,
) -> Result<Uuid, DomainError> {
    let message = message.trim();
    if message.chars().count() > MAX_MESSAGE {
        return Err(DomainError::invalid(format!(
            "The message can be at most {MAX_MESSAGE} characters."
        )));
    }
    let state: Option<(PrescriptionStatus, Option<IsoDate>)> = sqlx::query_as(PRESCRIPTION_STATE)
        .bind(UuidText(prescription))
        .bind(permit.patient_id())
        .fetch_optional(&mut *conn)
        .await?;
    let (status, until) = state.ok_or(DomainError::NotFound)?;
    let now = OffsetDateTime::now_utc();
    if !renewable(status, until.map(Date::from), now.date()) {
        return Err(DomainError::invalid(
            "Only current prescriptions, or ones that ended in the last 90 days, can be renewed.",
        ));
    }
    let open: Option<UuidText> = sqlx::query_scalar(OPEN_FOR_PRESCRIPTION)
        .bind(UuidText(prescription))
        .fetch_optional(&mut *conn)
        .await?;
    if open.is_some() {
        return Err(already_asked());
    }
    let id = Uuid::now_v7();
    let (requester, name) = permit.requester();
    sqlx::query(INSERT)
        .bind(UuidText(id))
        .bind(permit.patient_id())
        .bind(UuidText(prescription))
        .bind(UuidText(requester))
        .bind(name)
        .bind(message)
        .bind(Utc(now))
        .execute(conn)
        .await
        .map_err(|e| match DomainError::from(e) {
            DomainError::Duplicate(_) => already_asked(),
            other => other,
        })?;
    Ok(id)
}

fn already_asked() -> DomainError {
    DomainError::duplicate(
        "A renewal of this medicine has already been asked for and is waiting for an answer.",
    )
}

pub async fn for_patient(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
) -> Result<Vec<RenewalRequest>, DomainError> {
    require(permit, Category::Prescriptions)?;
    Ok(sqlx::query_as(FOR_PATIENT)
        .bind(permit.patient_id())
        .fetch_all(conn)
        .await?)
}

/// The open requests of the patients listed with a clinic, oldest first: ids and times only,
/// so that each patient's record is opened through the gate before anything of it is shown.
pub async fn open_for_clinic(
    conn: &mut AnyConnection,
    clinic: Uuid,
) -> Result<Vec<(UuidText, PatientId, Utc)>, DomainError> {
    Ok(sqlx::query_as(OPEN_FOR_CLINIC)
        .bind(UuidText(clinic))
        .fetch_all(conn)
        .await?)
}

/// Renew: the request is answered and a new prescription of the same medicine and dosage,
/// valid from today, is written in the same transaction.
pub async fn renew(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    request: Uuid,
    new_id: Uuid,
    valid_until: Option<Date>,
) -> Result<Prescription, DomainError> {
    require(permit, Category::Prescriptions)?;
    let original: Option<UuidText> = sqlx::query_scalar(OPEN_BY_ID)
        .bind(UuidText(request))
        .bind(permit.patient_id())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(original) = original else {
        return Err(answered_or_missing(conn, permit.patient_id(), request).await);
    };
    let old = prescriptions::by_id_for(&mut *conn, permit, original.0).await?;
    let new = NewPrescription {
        medication_code: old.medication_code,
        medication_name: old.medication_name,
        dosage_text: old.dosage_text,
        valid_from: OffsetDateTime::now_utc().date(),
        valid_until,
    };
    // The new prescription first: the request points at it. Both are in the caller's
    // transaction, so a request answered meanwhile leaves no prescription behind.
    let renewed = prescriptions::prescribe(&mut *conn, permit, new_id, &new).await?;
    answer(conn, permit, request, "renewed", None, Some(new_id)).await?;
    Ok(renewed)
}

pub async fn decline(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    request: Uuid,
    reason: &str,
) -> Result<(), DomainError> {
    require(permit, Category::Prescriptions)?;
    let reason = reason.trim();
    if reason.chars().count() < 3 || reason.chars().count() > MAX_MESSAGE {
        return Err(DomainError::invalid(
            "Tell the patient why the renewal is declined (3 to 1000 characters).",
        ));
    }
    answer(conn, permit, request, "declined", Some(reason), None).await
}

async fn answer(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    request: Uuid,
    status: &str,
    reason: Option<&str>,
    renewal: Option<Uuid>,
) -> Result<(), DomainError> {
    let done = sqlx::query(ANSWER)
        .bind(status)
        .bind(Utc(OffsetDateTime::now_utc()))
        .bind(permit.author_name())
        .bind(reason)
        .bind(renewal.map(UuidText))
        .bind(UuidText(request))
        .bind(permit.patient_id())
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(answered_or_missing(conn, permit.patient_id(), request).await)
    }
}

/// Why an answer found no open request: someone answered it first, or it is not this patient's.
async fn answered_or_missing(
    conn: &mut AnyConnection,
    patient: PatientId,
    request: Uuid,
) -> DomainError {
    let exists: Result<Option<UuidText>, _> = sqlx::query_scalar(EXISTS)
        .bind(UuidText(request))
        .bind(patient)
        .fetch_optional(conn)
        .await;
    match exists {
        Ok(Some(_)) => DomainError::Conflict,
        Ok(None) => DomainError::NotFound,
        Err(e) => e.into(),
    }
}
