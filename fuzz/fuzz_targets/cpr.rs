//! `Cpr::parse` on arbitrary UTF-8: it must never panic, and what it accepts must be ten ASCII
//! digits that format as DDMMYY-SSSS and parse back to the same digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use records_domain::cpr::Cpr;

fuzz_target!(|input: &str| {
    let Ok(cpr) = Cpr::parse(input) else { return };
    let digits = cpr.digits();
    assert_eq!(digits.len(), 10, "digits() of {input:?} is {digits:?}");
    assert!(
        digits.bytes().all(|b| b.is_ascii_digit()),
        "digits() of {input:?} is {digits:?}"
    );
    let formatted = cpr.formatted();
    assert_eq!(
        formatted,
        format!("{}-{}", &digits[..6], &digits[6..]),
        "formatted() of {input:?}"
    );
    let again = Cpr::parse(&formatted)
        .unwrap_or_else(|e| panic!("formatted() {formatted:?} of {input:?} does not parse: {e}"));
    assert_eq!(again.digits(), digits, "round trip of {input:?}");
    // The other accessors must be total on anything parse() accepts.
    let _ = (cpr.birth_date(), cpr.is_odd(), cpr.masked());
});
