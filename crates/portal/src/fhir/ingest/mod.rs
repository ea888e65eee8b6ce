//! FHIR R4 in: Patient, Observation, MedicationRequest, CarePlan, Condition,
//! AllergyIntolerance, Immunization, Encounter, Procedure, DiagnosticReport and ImagingStudy
//! resources into records, a Bundle applied in one transaction (all or nothing). Used by the FHIR write API and by
//! `portal import`.
//!
//! Read in this order: `parse` (FHIR JSON into domain values, no database), `identity` (which
//! patient a resource is about, and registering patients), `apply` (writing a batch through
//! the gate, every write decided and audited).

mod apply;
mod identity;
pub mod parse;

use std::collections::BTreeMap;

use access_control::{Actor, Request, RequestContext};
use records_domain::model::PatientId;
use records_domain::store::{Category, Upserted};
use records_domain::DomainError;

pub use apply::{apply_batch, apply_bundle, apply_resources, Applied, Entry};
pub use identity::CPR_SYSTEM;
pub use parse::{
    bundle_entries, parse_allergy, parse_care_plan, parse_condition, parse_encounter,
    parse_imaging_study, parse_immunization, parse_medication_request, parse_observation,
    parse_patient, parse_procedure, parse_report, Batch, IngestError, NoBundle, ResolveReference,
};

/// The clinical resource types the portal keeps, each in a category of the record.
pub const CLINICAL_TYPES: [(&str, Category); 10] = [
    ("Observation", Category::LabResults),
    ("MedicationRequest", Category::Prescriptions),
    ("CarePlan", Category::TreatmentPlans),
    ("Condition", Category::Diagnoses),
    ("AllergyIntolerance", Category::Allergies),
    ("Immunization", Category::Vaccinations),
    ("Encounter", Category::Contacts),
    ("Procedure", Category::Procedures),
    ("DiagnosticReport", Category::Reports),
    ("ImagingStudy", Category::Reports),
];

pub fn category_of(kind: &str) -> Option<Category> {
    CLINICAL_TYPES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, c)| *c)
}

/// Whether a resource of this type is stored (a Patient, or a clinical type): writing it needs
/// the caller's write scope for the type.
pub fn is_kept(kind: &str) -> bool {
    kind == "Patient" || category_of(kind).is_some()
}

/// What an import did, by resource type.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub inserted: BTreeMap<String, u64>,
    pub updated: BTreeMap<String, u64>,
    pub unchanged: BTreeMap<String, u64>,
    /// resource type -> reason -> count
    pub skipped: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Summary {
    fn count(&mut self, kind: &str, outcome: Upserted) {
        let map = match outcome {
            Upserted::Inserted => &mut self.inserted,
            Upserted::Updated => &mut self.updated,
            Upserted::Unchanged => &mut self.unchanged,
        };
        *map.entry(kind.to_string()).or_default() += 1;
    }

    fn skip(&mut self, kind: &str, reason: &str) {
        *self
            .skipped
            .entry(kind.to_string())
            .or_default()
            .entry(reason.to_string())
            .or_default() += 1;
    }

    pub fn merge(&mut self, other: &Summary) {
        for (target, source) in [
            (&mut self.inserted, &other.inserted),
            (&mut self.updated, &other.updated),
            (&mut self.unchanged, &other.unchanged),
        ] {
            for (k, v) in source {
                *target.entry(k.clone()).or_default() += v;
            }
        }
        for (kind, reasons) in &other.skipped {
            for (reason, n) in reasons {
                *self
                    .skipped
                    .entry(kind.clone())
                    .or_default()
                    .entry(reason.clone())
                    .or_default() += n;
            }
        }
    }

    pub fn total(map: &BTreeMap<String, u64>) -> u64 {
        map.values().sum()
    }

    pub fn written(&self) -> u64 {
        Self::total(&self.inserted) + Self::total(&self.updated)
    }
}

/// Who is writing: recorded as the source system of every row and in the audit log.
pub struct Writer<'a> {
    pub source_system: &'a str,
    pub actor: &'a Actor,
    pub ctx: &'a RequestContext,
}

impl Writer<'_> {
    fn request(&self, patient: PatientId, resource_id: Option<String>) -> Request<'_> {
        Request {
            actor: self.actor,
            ctx: self.ctx,
            patient,
            resource_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Invalid(#[from] IngestError),
    #[error(transparent)]
    Storage(#[from] DomainError),
    #[error(transparent)]
    Access(#[from] access_control::AccessError),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}
