//! AllergyIntolerance: the substance, how critical, and the reactions it caused.

use records_domain::model::{Allergy, ClinicalStatus, Criticality, PatientId, Reaction, Source};
use serde_json::Value;
use uuid::Uuid;

use super::condition::{clinical_status, entered_in_error};
use super::{coding, invalid, parse_instant, responsible, text, IngestError, ResolveReference};

/// `None` for an allergy entered in error.
pub fn parse_allergy(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<Allergy>, IngestError> {
    if entered_in_error(r) {
        return Ok(None);
    }
    let (code_system, code, substance) = coding(&r["code"])
        .ok_or_else(|| invalid(location, "AllergyIntolerance needs a code with a coding"))?;
    let clinical_status = clinical_status(r, location, "AllergyIntolerance")?;
    if !matches!(
        clinical_status,
        ClinicalStatus::Active | ClinicalStatus::Inactive | ClinicalStatus::Resolved
    ) {
        return Err(invalid(
            location,
            "AllergyIntolerance.clinicalStatus is active, inactive or resolved",
        ));
    }
    let criticality = match text(&r["criticality"]) {
        None => None,
        Some(c) => Some(Criticality::parse(c).map_err(|_| {
            invalid(
                location,
                format!(
                    "AllergyIntolerance.criticality {c:?} is not low, high or unable-to-assess"
                ),
            )
        })?),
    };
    Ok(Some(Allergy {
        id: Uuid::now_v7(),
        patient_id: patient,
        code_system,
        code,
        substance,
        clinical_status,
        criticality,
        category: text(&r["category"][0]).map(str::to_string),
        reactions: reactions(&r["reaction"]),
        recorded_at: parse_instant(&r["recordedDate"], location, "recordedDate")?,
        recorder: responsible(r, batch, &["recorder", "asserter"])
            .unwrap_or_else(|| "Unknown clinician".into()),
        version: 1,
        source: source.clone(),
    }))
}

fn reactions(list: &Value) -> Vec<Reaction> {
    let Some(list) = list.as_array() else {
        return Vec::new();
    };
    list.iter()
        .flat_map(|reaction| {
            let severity = text(&reaction["severity"]).map(str::to_string);
            reaction["manifestation"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |m| {
                    coding(m).map(|c| c.2).map(|manifestation| Reaction {
                        manifestation,
                        severity: severity.clone(),
                    })
                })
        })
        .collect()
}
