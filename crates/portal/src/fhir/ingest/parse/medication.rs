//! MedicationRequest: a prescription, its dosage as a sentence a patient can read.

use records_domain::model::{trim_float, PatientId, Prescription, PrescriptionStatus, Source};
use serde_json::Value;
use uuid::Uuid;

use super::{
    coding, invalid, parse_instant, practitioner_name, text, IngestError, ResolveReference,
};

pub fn parse_medication_request(
    r: &Value,
    batch_or_none: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Prescription, IngestError> {
    let (system, code, name) = coding(&r["medicationCodeableConcept"])
        .or_else(|| {
            batch_or_none
                .resolve_ref(&r["medicationReference"])
                .and_then(|m| coding(&m["code"]))
        })
        .ok_or_else(|| {
            invalid(
                location,
                "MedicationRequest needs medicationCodeableConcept with a coding",
            )
        })?;
    let status = match r["status"].as_str() {
        Some("active" | "on-hold" | "draft") => PrescriptionStatus::Active,
        Some("completed") => PrescriptionStatus::Completed,
        Some("stopped") => PrescriptionStatus::Stopped,
        Some("cancelled" | "entered-in-error") => PrescriptionStatus::Cancelled,
        other => {
            return Err(invalid(
                location,
                format!("MedicationRequest.status {other:?} is not a known status"),
            ))
        }
    };
    let authored = parse_instant(&r["authoredOn"], location, "authoredOn")?
        .ok_or_else(|| invalid(location, "MedicationRequest.authoredOn is required"))?;
    let prescriber = text(&r["requester"]["display"])
        .map(str::to_string)
        .or_else(|| {
            batch_or_none
                .resolve_ref(&r["requester"])
                .and_then(practitioner_name)
        })
        .unwrap_or_else(|| "Unknown prescriber".into());
    let validity = &r["dispenseRequest"]["validityPeriod"];
    let valid_from = parse_instant(&validity["start"], location, "validityPeriod.start")?
        .map(|t| t.date())
        .unwrap_or(authored.date());
    let valid_until =
        parse_instant(&validity["end"], location, "validityPeriod.end")?.map(|t| t.date());
    Ok(Prescription {
        id: Uuid::now_v7(),
        patient_id: patient,
        medication_system: system,
        medication_code: code,
        medication_name: name,
        dosage_text: dosage_text(&r["dosageInstruction"][0]),
        status,
        authored_at: authored,
        prescriber,
        valid_from,
        valid_until,
        stop_reason: text(&r["statusReason"]["text"]).map(str::to_string),
        version: 1,
        source: source.clone(),
    })
}

/// The dosage as a sentence: the sender's text, or one built from dose and timing.
fn dosage_text(d: &Value) -> String {
    if let Some(t) = text(&d["text"]) {
        return t.to_string();
    }
    let dose = d["doseAndRate"][0]["doseQuantity"]["value"]
        .as_f64()
        .map(|v| {
            format!(
                "{} {}",
                trim_float(v),
                d["doseAndRate"][0]["doseQuantity"]["unit"]
                    .as_str()
                    .unwrap_or("dose(s)")
            )
        });
    let repeat = &d["timing"]["repeat"];
    let timing = match (
        repeat["frequency"].as_i64(),
        repeat["period"].as_f64(),
        repeat["periodUnit"].as_str(),
    ) {
        (Some(f), Some(p), Some(u)) => Some(format!(
            "{f} time(s) per {} {}",
            trim_float(p),
            match u {
                "d" => "day(s)",
                "h" => "hour(s)",
                "wk" => "week(s)",
                "mo" => "month(s)",
                other => other,
            }
        )),
        _ => None,
    };
    let as_needed = d["asNeededBoolean"].as_bool() == Some(true);
    let parts: Vec<String> = [dose, timing, as_needed.then(|| "as needed".to_string())]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        "As directed by the prescriber".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dosage_is_built_from_timing_when_there_is_no_text() {
        let d = json!({"timing": {"repeat": {"frequency": 2, "period": 1.0, "periodUnit": "d"}}, "doseAndRate": [{"doseQuantity": {"value": 1.0}}], "asNeededBoolean": false});
        assert_eq!(dosage_text(&d), "1 dose(s), 2 time(s) per 1 day(s)");
        assert_eq!(dosage_text(&json!({})), "As directed by the prescriber");
    }
}
