//! The prescribing form, as typed and as checked.

use records_domain::store::prescriptions;
use records_domain::DomainError;
use serde::Deserialize;

use super::fields::{optional_date, start_date};

/// The prescribing form as sent; kept as text so a refused form comes back as it was typed.
#[derive(Deserialize, Default, Clone)]
pub struct PrescriptionForm {
    pub medication_code: String,
    pub medication_name: String,
    pub dosage_text: String,
    #[serde(default)]
    pub valid_from: String,
    #[serde(default)]
    pub valid_until: String,
}

impl PrescriptionForm {
    pub fn parse(&self) -> Result<prescriptions::NewPrescription, DomainError> {
        Ok(prescriptions::NewPrescription {
            medication_code: self.medication_code.trim().to_uppercase(),
            medication_name: self.medication_name.clone(),
            dosage_text: self.dosage_text.clone(),
            valid_from: start_date(&self.valid_from, "The start date")?,
            valid_until: optional_date(&self.valid_until, "The end date")?,
        })
    }
}
