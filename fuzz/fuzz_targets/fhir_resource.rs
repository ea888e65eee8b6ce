//! The FHIR ingest parsers on arbitrary JSON: every parser is given every document (a Patient
//! parser fed an Observation must refuse it, not panic), and a Bundle's entries are parsed with
//! the Bundle's reference resolver, as `apply_bundle` does. None of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portal::fhir::ingest::{
    bundle_entries, parse_allergy, parse_care_plan, parse_condition, parse_encounter,
    parse_imaging_study, parse_immunization, parse_medication_request, parse_observation,
    parse_patient, parse_procedure, parse_report, Batch, NoBundle, ResolveReference,
};
use records_domain::model::{PatientId, Source};
use serde_json::Value;
use uuid::Uuid;

fn source_of(resource: &Value) -> Source {
    Source {
        system: "urn:fuzz".into(),
        id: resource["id"].as_str().unwrap_or("fuzz").to_string(),
    }
}

fn parse_all(resource: &Value, resolver: &impl ResolveReference, location: &str) {
    let source = source_of(resource);
    let patient = PatientId(Uuid::nil());
    let _ = parse_patient(resource, &source, location);
    let _ = parse_observation(resource, resolver, patient, &source, location);
    let _ = parse_medication_request(resource, resolver, patient, &source, location);
    let _ = parse_care_plan(resource, resolver, patient, &source, location);
    let _ = parse_condition(resource, resolver, patient, &source, location);
    let _ = parse_allergy(resource, resolver, patient, &source, location);
    let _ = parse_immunization(resource, resolver, patient, &source, location);
    let _ = parse_encounter(resource, resolver, patient, &source, location);
    let _ = parse_procedure(resource, resolver, patient, &source, location);
    let _ = parse_report(resource, resolver, patient, &source, location);
    let _ = parse_imaging_study(resource, resolver, patient, &source, location);
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    parse_all(&value, &NoBundle, "fuzz");
    if let Ok((entries, urls)) = bundle_entries(&value) {
        let resources: Vec<(String, &Value)> = entries.clone();
        let batch = Batch::new(entries, &urls);
        for (location, resource) in &resources {
            parse_all(resource, &batch, location);
        }
    }
});
