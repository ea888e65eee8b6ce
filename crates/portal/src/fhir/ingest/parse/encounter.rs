//! Encounter: a contact with the health service, where, with whom and why.

use records_domain::model::{Contact, ContactStatus, PatientId, Source};
use serde_json::Value;
use uuid::Uuid;

use super::{
    coding, invalid, parse_instant, reason, responsible, status_unless_in_error, text, IngestError,
    ResolveReference,
};

/// `None` for a contact entered in error.
pub fn parse_encounter(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<Contact>, IngestError> {
    let Some(status) = status_unless_in_error(r, location, ContactStatus::parse)? else {
        return Ok(None);
    };
    let class = text(&r["class"]["code"])
        .ok_or_else(|| invalid(location, "Encounter.class is required"))?
        .to_string();
    let (type_system, type_code, type_display) =
        coding(&r["type"][0]).unwrap_or_else(|| (String::new(), class.clone(), class.clone()));
    let started_at = parse_instant(&r["period"]["start"], location, "period.start")?
        .ok_or_else(|| invalid(location, "Encounter.period.start is required"))?;
    let named = |reference: &Value| {
        text(&reference["display"]).map(str::to_string).or_else(|| {
            batch
                .resolve_ref(reference)
                .and_then(|found| text(&found["name"]).map(str::to_string))
        })
    };
    let place = named(&r["location"][0]["location"])
        .or_else(|| named(&r["serviceProvider"]))
        .unwrap_or_else(|| "Unknown place".into());
    let practitioner = responsible(r, batch, &["participant"]).unwrap_or_default();
    Ok(Some(Contact {
        id: Uuid::now_v7(),
        patient_id: patient,
        type_system,
        type_code,
        type_display,
        class,
        status,
        started_at,
        ended_at: parse_instant(&r["period"]["end"], location, "period.end")?,
        place,
        practitioner,
        reason: reason(r, batch),
        version: 1,
        source: source.clone(),
    }))
}
