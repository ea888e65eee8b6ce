//! The FHIR search-parameter parsers on arbitrary query strings, decoded as the API does
//! (`serde_urlencoded` into pairs) and given to every search type. None of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portal::fhir::search::{
    patient_reference, AuditSearch, ObservationSearch, PatientSearch, StatusSearch,
};

fuzz_target!(|query: &str| {
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    let _ = ObservationSearch::parse(&pairs);
    let _ = PatientSearch::parse(&pairs);
    let _ = StatusSearch::parse(&pairs);
    let _ = AuditSearch::parse(&pairs);
    for (k, v) in &pairs {
        let _ = patient_reference(k, v);
    }
});
