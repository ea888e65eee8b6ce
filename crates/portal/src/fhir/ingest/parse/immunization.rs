//! Immunization: a vaccination given (or recorded as not given), with lot, site and who gave it.

use records_domain::model::{PatientId, Source, Vaccination, VaccinationStatus};
use serde_json::Value;
use uuid::Uuid;

use super::{coding, invalid, parse_instant, responsible, text, IngestError, ResolveReference};

/// `None` for a vaccination entered in error.
pub fn parse_immunization(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<Vaccination>, IngestError> {
    let status = match r["status"].as_str() {
        Some("completed") => VaccinationStatus::Completed,
        Some("not-done") => VaccinationStatus::NotDone,
        Some("entered-in-error") => return Ok(None),
        other => {
            return Err(invalid(
                location,
                format!("Immunization.status {other:?} is not a known status"),
            ))
        }
    };
    let (vaccine_system, vaccine_code, vaccine_name) = coding(&r["vaccineCode"])
        .ok_or_else(|| invalid(location, "Immunization needs a vaccineCode with a coding"))?;
    let occurred_at = parse_instant(&r["occurrenceDateTime"], location, "occurrenceDateTime")?
        .ok_or_else(|| invalid(location, "Immunization.occurrenceDateTime is required"))?;
    Ok(Some(Vaccination {
        id: Uuid::now_v7(),
        patient_id: patient,
        vaccine_system,
        vaccine_code,
        vaccine_name,
        status,
        occurred_at,
        lot_number: text(&r["lotNumber"]).map(str::to_string),
        site: coding(&r["site"])
            .map(|c| c.2)
            .or_else(|| text(&r["site"]["text"]).map(str::to_string)),
        performer: responsible(r, batch, &["performer"]).unwrap_or_else(|| "Unknown".into()),
        version: 1,
        source: source.clone(),
    }))
}
