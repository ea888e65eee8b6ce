//! Observation: one lab result, or one per component for panels such as blood pressure, each
//! component naming its panel.

use records_domain::model::{
    Interpretation, LabResult, LabValue, Panel, PatientId, ResultStatus, Source,
};
use serde_json::Value;
use uuid::Uuid;

use super::{coding, invalid, parse_instant, responsible, text, IngestError, ResolveReference};

fn observation_status(r: &Value, location: &str) -> Result<ResultStatus, IngestError> {
    match r["status"].as_str() {
        Some("final") => Ok(ResultStatus::Final),
        Some("amended" | "corrected") => Ok(ResultStatus::Amended),
        Some("preliminary" | "registered") => Ok(ResultStatus::Preliminary),
        Some("cancelled" | "entered-in-error") => Ok(ResultStatus::Cancelled),
        other => Err(invalid(
            location,
            format!("Observation.status {other:?} is not a known status"),
        )),
    }
}

/// One lab result per Observation, or one per component for panels such as blood pressure.
pub fn parse_observation(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Vec<LabResult>, IngestError> {
    let status = observation_status(r, location)?;
    let effective = parse_instant(&r["effectiveDateTime"], location, "effectiveDateTime")?
        .or(parse_instant(
            &r["effectivePeriod"]["start"],
            location,
            "effectivePeriod.start",
        )?)
        .ok_or_else(|| invalid(location, "Observation.effectiveDateTime is required"))?;
    let issued = parse_instant(&r["issued"], location, "issued")?.unwrap_or(effective);
    let category = r["category"][0]["coding"][0]["code"]
        .as_str()
        .unwrap_or("laboratory")
        .to_string();
    // A result comes from a laboratory: the performer, or the organisation of the encounter.
    let lab = responsible(r, batch, &["performer"])
        .or_else(|| {
            let encounter = batch.resolve_ref(&r["encounter"])?;
            let provider = batch.resolve_ref(&encounter["serviceProvider"])?;
            text(&provider["name"]).map(str::to_string)
        })
        .unwrap_or_else(|| "Unknown laboratory".into());
    let identifier = text(&r["identifier"][0]["value"]).map(|value| {
        let system = text(&r["identifier"][0]["system"]).unwrap_or("");
        format!("{system}|{value}")
    });
    let components = r["component"].as_array().filter(|_| !has_value(r));
    let panel = match components {
        Some(_) => {
            let (_, code, display) = coding(&r["code"])
                .ok_or_else(|| invalid(location, "Observation.code needs a coding with a code"))?;
            Some(Panel { code, display })
        }
        None => None,
    };
    let base = |code: (String, String, String),
                value: LabValue,
                unit: Option<String>,
                range: (Option<f64>, Option<f64>),
                interpretation: Interpretation,
                id: String| LabResult {
        id: Uuid::now_v7(),
        patient_id: patient,
        category: category.clone(),
        code_system: code.0,
        code: code.1,
        display: code.2,
        value,
        unit,
        reference_low: range.0,
        reference_high: range.1,
        interpretation,
        status,
        effective_at: effective,
        issued_at: issued,
        performing_lab: lab.clone(),
        released_at: issued,
        panel: panel.clone(),
        identifier: identifier.clone(),
        version: 1,
        source: Source {
            system: source.system.clone(),
            id,
        },
    };
    let parts: Vec<(&Value, String)> = match components {
        Some(components) => components
            .iter()
            .enumerate()
            .map(|(i, c)| (c, format!("{}#{i}", source.id)))
            .collect(),
        _ => vec![(r, source.id.clone())],
    };
    let mut results = Vec::new();
    for (part, id) in parts {
        let code = coding(&part["code"])
            .ok_or_else(|| invalid(location, "Observation.code needs a coding with a code"))?;
        let (value, unit) = value_of(part, location)?;
        let range = (
            part["referenceRange"][0]["low"]["value"].as_f64(),
            part["referenceRange"][0]["high"]["value"].as_f64(),
        );
        let range = if range == (None, None) {
            (
                r["referenceRange"][0]["low"]["value"].as_f64(),
                r["referenceRange"][0]["high"]["value"].as_f64(),
            )
        } else {
            range
        };
        let interpretation = interpretation_of(part, &value, range);
        results.push(base(code, value, unit, range, interpretation, id));
    }
    Ok(results)
}

fn has_value(r: &Value) -> bool {
    [
        "valueQuantity",
        "valueString",
        "valueCodeableConcept",
        "valueBoolean",
        "valueInteger",
    ]
    .iter()
    .any(|k| !r[k].is_null())
}

fn value_of(part: &Value, location: &str) -> Result<(LabValue, Option<String>), IngestError> {
    if let Some(v) = part["valueQuantity"]["value"].as_f64() {
        let unit = text(&part["valueQuantity"]["unit"])
            .or_else(|| text(&part["valueQuantity"]["code"]))
            .map(str::to_string);
        return Ok((LabValue::Numeric(v), unit));
    }
    if let Some(v) = part["valueInteger"].as_i64() {
        return Ok((LabValue::Numeric(v as f64), None));
    }
    if let Some(s) = text(&part["valueString"]) {
        return Ok((LabValue::Text(s.chars().take(2000).collect()), None));
    }
    if let Some((_, code, display)) = coding(&part["valueCodeableConcept"]) {
        return Ok((
            LabValue::Text(if display.is_empty() { code } else { display }),
            None,
        ));
    }
    if let Some(b) = part["valueBoolean"].as_bool() {
        return Ok((LabValue::Text(if b { "yes" } else { "no" }.into()), None));
    }
    Err(invalid(
        location,
        "Observation has no value (valueQuantity, valueString, valueCodeableConcept, ...)",
    ))
}

fn interpretation_of(
    part: &Value,
    value: &LabValue,
    range: (Option<f64>, Option<f64>),
) -> Interpretation {
    match part["interpretation"][0]["coding"][0]["code"].as_str() {
        Some("L") => Interpretation::Low,
        Some("H") => Interpretation::High,
        Some("N") => Interpretation::Normal,
        Some("LL" | "HH" | "AA" | "LU" | "HU") => Interpretation::Critical,
        _ => match value {
            LabValue::Numeric(v) => Interpretation::classify(*v, range.0, range.1),
            LabValue::Text(_) => Interpretation::Unknown,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::NoBundle;
    use super::*;
    use serde_json::json;

    fn src() -> Source {
        super::super::test_source()
    }

    #[test]
    fn observation_panels_become_one_result_per_component() {
        let r = json!({"resourceType": "Observation", "id": "bp", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "55284-4"}]},
            "effectiveDateTime": "2020-01-01T10:00:00+00:00",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}]}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic"}]}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}]});
        let results =
            parse_observation(&r, &NoBundle, PatientId(Uuid::nil()), &src(), "x").unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].source.id, "1#1");
        assert_eq!(results[0].value, LabValue::Numeric(120.0));
        let panel = results[1].panel.as_ref().unwrap();
        assert_eq!(panel.code, "55284-4");
        assert_eq!(results[1].panel_source_id(), Some("1"));
        assert!(results[0].stands_for_panel() && !results[1].stands_for_panel());
    }

    #[test]
    fn observation_ranges_and_flags() {
        let r = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hb"}]},
            "effectiveDateTime": "2020-01-01", "valueQuantity": {"value": 6.1, "unit": "mmol/L"}, "referenceRange": [{"low": {"value": 7.3}, "high": {"value": 10.5}}]});
        let results =
            parse_observation(&r, &NoBundle, PatientId(Uuid::nil()), &src(), "x").unwrap();
        assert_eq!(results[0].interpretation, Interpretation::Low);
        let no_value = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"code": "x"}]}, "effectiveDateTime": "2020-01-01"});
        assert!(
            parse_observation(&no_value, &NoBundle, PatientId(Uuid::nil()), &src(), "x").is_err()
        );
        let bad_status = json!({"resourceType": "Observation", "status": "dancing"});
        assert!(
            parse_observation(&bad_status, &NoBundle, PatientId(Uuid::nil()), &src(), "x").is_err()
        );
    }
}
