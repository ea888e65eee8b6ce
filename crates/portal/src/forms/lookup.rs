//! The clinician's patient lookup: by CPR number, or by name and birth date (POSTed, so that
//! neither appears in a URL).

use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct LookupForm {
    #[serde(default)]
    pub cpr: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub birth_date: String,
}
