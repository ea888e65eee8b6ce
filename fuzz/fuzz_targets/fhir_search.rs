//! The FHIR search-parameter parsers on arbitrary query strings, decoded as the API does
//! (`serde_urlencoded` into pairs) and given to every search type. None of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portal::fhir::search::{
    patient_reference, AuditSearch, Handling, ObservationSearch, PatientSearch, StatusSearch,
};

fuzz_target!(|query: &str| {
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    for handling in [Handling::Strict, Handling::Lenient] {
        let _ = ObservationSearch::parse(&pairs, handling);
        let _ = PatientSearch::parse(&pairs, handling);
        let _ = StatusSearch::parse(&pairs, handling, true);
        let _ = AuditSearch::parse(&pairs, handling);
    }
    for (k, v) in &pairs {
        let _ = patient_reference(k, v);
    }
});
