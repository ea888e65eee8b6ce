//! The auditor's filter form (`POST /audit`, `POST /audit/export.csv`) on arbitrary bodies,
//! decoded as the portal does (`serde_urlencoded` into the form) and checked. It may refuse
//! with a message; it may not panic (a `until=9999-12-31` once did, on date arithmetic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portal::routes::audit::FilterForm;

fuzz_target!(|body: &str| {
    let Ok(form) = serde_urlencoded::from_str::<FilterForm>(body) else {
        return;
    };
    let _ = form.check();
});
