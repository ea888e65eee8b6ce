//! ImagingStudy: what was imaged, with which modality, where and when. The images themselves
//! stay in the hospital's archive; the study's identifier finds them there.

use records_domain::model::{ImagingStatus, ImagingStudy, PatientId, Source};
use serde_json::Value;
use uuid::Uuid;

use super::{
    invalid, parse_instant, responsible, status_unless_in_error, text, IngestError,
    ResolveReference,
};

/// `None` for a study entered in error.
pub fn parse_imaging_study(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<ImagingStudy>, IngestError> {
    let Some(status) = status_unless_in_error(r, location, ImagingStatus::parse)? else {
        return Ok(None);
    };
    let series: &[Value] = r["series"].as_array().map_or(&[], Vec::as_slice);
    let started_at = parse_instant(&r["started"], location, "started")?
        .or(series
            .iter()
            .find_map(|s| parse_instant(&s["started"], location, "series.started").transpose())
            .transpose()?)
        .ok_or_else(|| invalid(location, "ImagingStudy.started is required"))?;
    let modality = distinct(
        r["modality"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(series.iter().map(|s| &s["modality"]))
            .filter_map(display_of),
    );
    let body_site = distinct(series.iter().filter_map(|s| display_of(&s["bodySite"])));
    let instances = r["numberOfInstances"].as_i64().unwrap_or_else(|| {
        series
            .iter()
            .map(|s| s["numberOfInstances"].as_i64().unwrap_or(0))
            .sum()
    });
    Ok(Some(ImagingStudy {
        id: Uuid::now_v7(),
        patient_id: patient,
        status,
        started_at,
        modality: if modality.is_empty() {
            "Imaging".into()
        } else {
            modality
        },
        body_site: Some(body_site).filter(|b| !b.is_empty()),
        description: text(&r["description"])
            .or_else(|| series.iter().find_map(|s| text(&s["description"])))
            .map(str::to_string),
        series: r["numberOfSeries"].as_i64().unwrap_or(series.len() as i64),
        instances,
        performer: responsible(r, batch, &["interpreter", "referrer"])
            .unwrap_or_else(|| "Unknown".into()),
        identifier: text(&r["identifier"][0]["value"]).map(str::to_string),
        version: 1,
        source: source.clone(),
    }))
}

/// The name a Coding gives, or its code.
fn display_of(coding: &Value) -> Option<String> {
    text(&coding["display"])
        .or_else(|| text(&coding["code"]))
        .map(str::to_string)
}

/// The names in their first order, each once, comma-separated.
fn distinct(names: impl Iterator<Item = String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for name in names {
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    seen.join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::NoBundle;
    use super::*;
    use serde_json::json;

    #[test]
    fn a_study_keeps_modality_body_site_counts_and_its_uid() {
        let r = json!({"resourceType": "ImagingStudy", "status": "available",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"}],
            "started": "2017-02-10T09:56:48+00:00", "numberOfSeries": 1,
            "series": [{"uid": "1.2", "modality": {"code": "DX", "display": "Digital Radiography"},
                "numberOfInstances": 2, "bodySite": {"code": "51299004", "display": "Clavicle"}}]});
        let study = parse_imaging_study(
            &r,
            &NoBundle,
            PatientId(Uuid::nil()),
            &super::super::test_source(),
            "x",
        )
        .unwrap()
        .unwrap();
        assert_eq!(study.modality, "Digital Radiography");
        assert_eq!(study.body_site.as_deref(), Some("Clavicle"));
        assert_eq!((study.series, study.instances), (1, 2));
        assert_eq!(study.identifier.as_deref(), Some("urn:oid:1.2.3"));
        let in_error = json!({"resourceType": "ImagingStudy", "status": "entered-in-error"});
        assert_eq!(
            parse_imaging_study(
                &in_error,
                &NoBundle,
                PatientId(Uuid::nil()),
                &super::super::test_source(),
                "x"
            ),
            Ok(None)
        );
        let no_date = json!({"resourceType": "ImagingStudy", "status": "available"});
        assert!(parse_imaging_study(
            &no_date,
            &NoBundle,
            PatientId(Uuid::nil()),
            &super::super::test_source(),
            "x"
        )
        .is_err());
    }
}
