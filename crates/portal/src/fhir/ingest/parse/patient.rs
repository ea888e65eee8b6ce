//! Patient: who a record is about (name, sex, birth date, CPR number).

use records_domain::model::{Patient, PatientId, Sex, Source};
use records_domain::Cpr;
use serde_json::Value;
use uuid::Uuid;

use super::{invalid, parse_date, text, IngestError};
use crate::fhir::ingest::identity::{assigned_cpr, CPR_SYSTEM};

pub fn parse_patient(r: &Value, source: &Source, location: &str) -> Result<Patient, IngestError> {
    let birth =
        text(&r["birthDate"]).ok_or_else(|| invalid(location, "Patient.birthDate is required"))?;
    let birth_date = parse_date(birth).map_err(|_| {
        invalid(
            location,
            format!("Patient.birthDate {birth:?} is not a date"),
        )
    })?;
    let name = &r["name"][0];
    let family = text(&name["family"])
        .ok_or_else(|| invalid(location, "Patient.name[0].family is required"))?;
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(text).collect())
        .unwrap_or_default();
    let sex = match r["gender"].as_str() {
        Some("female") => Sex::Female,
        Some("male") => Sex::Male,
        Some("other") => Sex::Other,
        _ => Sex::Unknown,
    };
    let identifiers = r["identifier"].as_array().cloned().unwrap_or_default();
    let cpr = identifiers
        .iter()
        .find(|i| i["system"] == CPR_SYSTEM)
        .map(|i| {
            Cpr::parse(i["value"].as_str().unwrap_or_default())
                .map_err(|e| invalid(location, format!("CPR identifier: {e}")))
        })
        .transpose()?;
    let original = identifiers
        .iter()
        .find(|i| i["system"] != CPR_SYSTEM)
        .and_then(|i| {
            Some(format!(
                "{}|{}",
                i["system"].as_str().unwrap_or(""),
                text(&i["value"])?
            ))
        });
    let cpr = match cpr {
        Some(c) => c,
        None => assigned_cpr(
            birth_date,
            sex,
            &format!("{}|{}", source.system, source.id),
            0,
        )
        .ok_or_else(|| {
            invalid(
                location,
                "birth date outside the years CPR numbers cover (1858-2057)",
            )
        })?,
    };
    if given.join(" ").len() > 200 || family.len() > 200 {
        return Err(invalid(location, "name is too long"));
    }
    Ok(Patient {
        id: PatientId(Uuid::now_v7()),
        cpr,
        given_name: given.join(" "),
        family_name: family.to_string(),
        birth_date,
        sex,
        gp_clinic_id: None,
        original_identifier: original,
        version: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src() -> Source {
        super::super::test_source()
    }

    #[test]
    fn patient_keeps_a_given_cpr_and_the_original_identifier() {
        let r = json!({"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:x", "value": "42"}, {"system": CPR_SYSTEM, "value": "010180-1234"}],
            "name": [{"family": "Hansen", "given": ["Ole", "Bo"]}], "gender": "male", "birthDate": "1980-01-01"});
        let p = parse_patient(&r, &src(), "Patient").unwrap();
        assert_eq!(p.cpr.digits(), "0101801234");
        assert_eq!(p.given_name, "Ole Bo");
        assert_eq!(p.original_identifier.as_deref(), Some("urn:x|42"));
    }

    #[test]
    fn malformed_patients_are_refused_with_their_position() {
        let r = json!({"resourceType": "Patient", "name": [{"family": "X"}], "birthDate": "1980-13-01"});
        let e = parse_patient(&r, &src(), "Bundle.entry[4]").unwrap_err();
        assert_eq!(e.location, "Bundle.entry[4]");
        let r = json!({"resourceType": "Patient", "birthDate": "1980-01-01"});
        assert!(parse_patient(&r, &src(), "x").is_err());
    }
}
