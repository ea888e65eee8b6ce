//! Condition: a diagnosis, with who recorded it found in the Bundle.

use records_domain::model::{ClinicalStatus, Diagnosis, PatientId, Source};
use serde_json::Value;
use uuid::Uuid;

use super::{coding, invalid, parse_instant, responsible, IngestError, ResolveReference};

/// `None` for a diagnosis entered in error: there is nothing to show.
pub fn parse_condition(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<Diagnosis>, IngestError> {
    if entered_in_error(r) {
        return Ok(None);
    }
    let (code_system, code, display) = coding(&r["code"])
        .ok_or_else(|| invalid(location, "Condition needs a code with a coding"))?;
    let clinical_status = clinical_status(r, location, "Condition")?;
    let onset = parse_instant(&r["onsetDateTime"], location, "onsetDateTime")?.or(parse_instant(
        &r["onsetPeriod"]["start"],
        location,
        "onsetPeriod.start",
    )?);
    let abated =
        parse_instant(&r["abatementDateTime"], location, "abatementDateTime")?.or(parse_instant(
            &r["abatementPeriod"]["end"],
            location,
            "abatementPeriod.end",
        )?);
    Ok(Some(Diagnosis {
        id: Uuid::now_v7(),
        patient_id: patient,
        code_system,
        code,
        display,
        clinical_status,
        onset_at: onset,
        abated_at: abated,
        recorded_at: parse_instant(&r["recordedDate"], location, "recordedDate")?,
        recorder: responsible(r, batch, &["recorder", "asserter"])
            .unwrap_or_else(|| "Unknown clinician".into()),
        version: 1,
        source: source.clone(),
    }))
}

pub(super) fn entered_in_error(r: &Value) -> bool {
    r["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
}

/// FHIR requires a clinical status unless the entry is in error; a sender that leaves it out
/// is read as saying the condition applies.
pub(super) fn clinical_status(
    r: &Value,
    location: &str,
    kind: &str,
) -> Result<ClinicalStatus, IngestError> {
    match r["clinicalStatus"]["coding"][0]["code"].as_str() {
        None => Ok(ClinicalStatus::Active),
        Some(code) => ClinicalStatus::parse(code).map_err(|_| {
            invalid(
                location,
                format!("{kind}.clinicalStatus {code:?} is not a known status"),
            )
        }),
    }
}
