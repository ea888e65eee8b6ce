//! What a record is. Each kind maps one-to-one onto a FHIR R4 resource:
//! Patient, Observation, MedicationRequest, CarePlan, Condition, AllergyIntolerance,
//! Immunization, Encounter, Procedure, DiagnosticReport and ImagingStudy.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::cpr::Cpr;
use crate::DomainError;

/// A closed set of values stored as text: `as_str` for FHIR and the pages, `parse` back; binds
/// and rows use the same text (`TextColumn`).
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Result<Self, DomainError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(DomainError::Invalid(format!(
                        "{other:?} is not a valid {}", stringify!($name)
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::db::TextColumn for $name {
            fn to_column(&self) -> Result<String, sqlx::error::BoxDynError> {
                Ok(self.as_str().to_string())
            }
            fn from_column(text: &str) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(Self::parse(text)?)
            }
        }
        $crate::text_column!($name);
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatientId(pub Uuid);

impl fmt::Display for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

text_enum!(Sex { Female => "female", Male => "male", Other => "other", Unknown => "unknown" });

impl Sex {
    /// The CPR convention: odd serial, male; even, female.
    pub fn from_cpr(cpr: &Cpr) -> Self {
        if cpr.is_odd() {
            Self::Male
        } else {
            Self::Female
        }
    }
}

#[derive(Debug, Clone)]
pub struct Patient {
    pub id: PatientId,
    pub cpr: Cpr,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: Date,
    pub sex: Sex,
    pub gp_clinic_id: Option<Uuid>,
    pub original_identifier: Option<String>,
    pub version: i64,
}

impl Patient {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }

    /// Age in whole years on `day` (a birthday counts from its first moment).
    pub fn age_on(&self, day: Date) -> i32 {
        age_on(self.birth_date, day)
    }
}

pub fn age_on(birth: Date, day: Date) -> i32 {
    let mut years = day.year() - birth.year();
    if (day.month() as u8, day.day()) < (birth.month() as u8, birth.day()) {
        years -= 1;
    }
    years
}

/// Where a clinical row came from, so a re-import updates instead of duplicating. Rows read
/// it from their `source_system` and `source_id` columns.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Source {
    #[sqlx(rename = "source_system")]
    pub system: String,
    #[sqlx(rename = "source_id")]
    pub id: String,
}

impl Source {
    pub const PORTAL: &'static str = "urn:portal";

    /// A row created in the portal itself.
    pub fn portal(id: Uuid) -> Self {
        Self {
            system: Self::PORTAL.into(),
            id: id.to_string(),
        }
    }
}

text_enum!(ClinicKind { GeneralPractice => "general_practice", Hospital => "hospital", Laboratory => "laboratory" });

#[derive(Debug, Clone)]
pub struct Clinic {
    pub id: Uuid,
    pub name: String,
    pub kind: ClinicKind,
    pub address: String,
    pub phone: String,
}

text_enum!(Interpretation {
    Low => "low", Normal => "normal", High => "high", Critical => "critical", Unknown => "unknown"
});

impl Interpretation {
    /// Flag a numeric value against its reference range. Values further out than half the
    /// range width beyond a limit (or below half the lower limit) are critical: a general rule
    /// for results without test-specific critical limits.
    pub fn classify(value: f64, low: Option<f64>, high: Option<f64>) -> Self {
        let width = match (low, high) {
            (Some(l), Some(h)) if h > l => h - l,
            _ => f64::INFINITY,
        };
        match (low, high) {
            (Some(l), _) if value < l => {
                if value < l - width / 2.0 || value < l / 2.0 {
                    Self::Critical
                } else {
                    Self::Low
                }
            }
            (_, Some(h)) if value > h => {
                if value > h + width / 2.0 {
                    Self::Critical
                } else {
                    Self::High
                }
            }
            (None, None) => Self::Unknown,
            _ => Self::Normal,
        }
    }
}

text_enum!(ResultStatus { Preliminary => "preliminary", Final => "final", Amended => "amended", Cancelled => "cancelled" });

#[derive(Debug, Clone, PartialEq)]
pub enum LabValue {
    Numeric(f64),
    Text(String),
}

impl fmt::Display for LabValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Numeric(v) => write!(f, "{}", trim_float(*v)),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// 5.0 -> "5", 5.25 -> "5.25": how a lab prints a value.
pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[derive(Debug, Clone)]
pub struct LabResult {
    pub id: Uuid,
    pub patient_id: PatientId,
    /// FHIR Observation category: laboratory, vital-signs, survey, ...
    pub category: String,
    pub code_system: String,
    pub code: String,
    pub display: String,
    pub value: LabValue,
    pub unit: Option<String>,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    pub interpretation: Interpretation,
    pub status: ResultStatus,
    pub effective_at: OffsetDateTime,
    pub issued_at: OffsetDateTime,
    pub performing_lab: String,
    /// Until this moment the patient and proxies do not see the result.
    pub released_at: OffsetDateTime,
    /// The panel this result is a component of (blood pressure: systolic and diastolic).
    pub panel: Option<Panel>,
    /// The source's identifier of the Observation, as `system|value`.
    pub identifier: Option<String>,
    pub version: i64,
    pub source: Source,
}

/// A panel measured as one Observation with components. Each component is kept as a result of
/// its own (so that it has a history and a trend), named `panel source id#n`; the first stands
/// for the whole panel in FHIR.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub code: String,
    pub display: String,
}

impl LabResult {
    /// The source id of the panel this result is a component of.
    pub fn panel_source_id(&self) -> Option<&str> {
        self.panel.as_ref()?;
        self.source.id.rsplit_once('#').map(|(panel, _)| panel)
    }

    /// Whether this result stands for a whole panel in FHIR (it is its first component).
    pub fn stands_for_panel(&self) -> bool {
        self.panel.is_some() && self.source.id.ends_with("#0")
    }

    pub fn numeric_value(&self) -> Option<f64> {
        match self.value {
            LabValue::Numeric(v) => Some(v),
            LabValue::Text(_) => None,
        }
    }

    pub fn is_released(&self, now: OffsetDateTime) -> bool {
        self.released_at <= now
    }

    pub fn reference_range(&self) -> String {
        match (self.reference_low, self.reference_high) {
            (Some(l), Some(h)) => format!("{}–{}", trim_float(l), trim_float(h)),
            (Some(l), None) => format!("≥ {}", trim_float(l)),
            (None, Some(h)) => format!("≤ {}", trim_float(h)),
            (None, None) => String::new(),
        }
    }
}

text_enum!(PrescriptionStatus { Active => "active", Completed => "completed", Stopped => "stopped", Cancelled => "cancelled" });

#[derive(Debug, Clone)]
pub struct Prescription {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub medication_system: String,
    pub medication_code: String,
    pub medication_name: String,
    pub dosage_text: String,
    pub status: PrescriptionStatus,
    pub authored_at: OffsetDateTime,
    pub prescriber: String,
    pub valid_from: Date,
    pub valid_until: Option<Date>,
    pub stop_reason: Option<String>,
    pub version: i64,
    pub source: Source,
}

text_enum!(PlanStatus { Draft => "draft", Active => "active", OnHold => "on-hold", Completed => "completed", Revoked => "revoked" });
text_enum!(GoalStatus { Proposed => "proposed", Active => "active", Achieved => "achieved", Cancelled => "cancelled" });
text_enum!(ActivityStatus { NotStarted => "not-started", Scheduled => "scheduled", InProgress => "in-progress", Completed => "completed", Cancelled => "cancelled" });

#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub description: String,
    pub target: Option<String>,
    pub status: GoalStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub description: String,
    pub status: ActivityStatus,
}

#[derive(Debug, Clone)]
pub struct TreatmentPlan {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub title: String,
    pub description: String,
    pub status: PlanStatus,
    pub period_start: Date,
    pub period_end: Option<Date>,
    pub author: String,
    pub updated_at: OffsetDateTime,
    pub version: i64,
    pub goals: Vec<Goal>,
    pub activities: Vec<Activity>,
    pub source: Source,
}

text_enum!(
    /// FHIR's clinical status of a Condition; an AllergyIntolerance uses the first, fourth and
    /// last of them.
    ClinicalStatus { Active => "active", Recurrence => "recurrence", Relapse => "relapse", Inactive => "inactive", Remission => "remission", Resolved => "resolved" }
);

impl ClinicalStatus {
    /// What the overview shows first: a diagnosis or allergy that still applies.
    pub fn is_current(self) -> bool {
        matches!(self, Self::Active | Self::Recurrence | Self::Relapse)
    }
}

/// A diagnosis (FHIR Condition).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub code_system: String,
    pub code: String,
    pub display: String,
    pub clinical_status: ClinicalStatus,
    pub onset_at: Option<OffsetDateTime>,
    pub abated_at: Option<OffsetDateTime>,
    pub recorded_at: Option<OffsetDateTime>,
    pub recorder: String,
    pub version: i64,
    pub source: Source,
}

text_enum!(Criticality { Low => "low", High => "high", UnableToAssess => "unable-to-assess" });

/// One reaction to an allergen: what happened, and how bad it was (FHIR: mild, moderate,
/// severe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    pub manifestation: String,
    pub severity: Option<String>,
}

/// An allergy or intolerance (FHIR AllergyIntolerance).
#[derive(Debug, Clone, PartialEq)]
pub struct Allergy {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub code_system: String,
    pub code: String,
    pub substance: String,
    pub clinical_status: ClinicalStatus,
    pub criticality: Option<Criticality>,
    /// food, medication, environment or biologic
    pub category: Option<String>,
    pub reactions: Vec<Reaction>,
    pub recorded_at: Option<OffsetDateTime>,
    pub recorder: String,
    pub version: i64,
    pub source: Source,
}

text_enum!(VaccinationStatus { Completed => "completed", NotDone => "not-done" });

/// A vaccination given, or recorded as not given (FHIR Immunization).
#[derive(Debug, Clone, PartialEq)]
pub struct Vaccination {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub vaccine_system: String,
    pub vaccine_code: String,
    pub vaccine_name: String,
    pub status: VaccinationStatus,
    pub occurred_at: OffsetDateTime,
    pub lot_number: Option<String>,
    /// Where on the body, e.g. "Left arm".
    pub site: Option<String>,
    pub performer: String,
    pub version: i64,
    pub source: Source,
}

text_enum!(ContactStatus { Planned => "planned", Arrived => "arrived", Triaged => "triaged", InProgress => "in-progress", OnLeave => "onleave", Finished => "finished", Cancelled => "cancelled", Unknown => "unknown" });

/// A contact with the health service (FHIR Encounter): a visit, an admission, a video call.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub type_system: String,
    pub type_code: String,
    pub type_display: String,
    /// FHIR's class code: AMB (outpatient), EMER, IMP (admission), VR (virtual), HH (home).
    pub class: String,
    pub status: ContactStatus,
    pub started_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    /// The location or, failing that, the organisation.
    pub place: String,
    pub practitioner: String,
    pub reason: Option<String>,
    pub version: i64,
    pub source: Source,
}

impl Contact {
    /// The class in words a patient understands.
    pub fn class_text(&self) -> &'static str {
        match self.class.as_str() {
            "AMB" => "Outpatient visit",
            "EMER" => "Emergency",
            "IMP" | "ACUTE" | "NONAC" => "Admission",
            "VR" => "Video or phone",
            "HH" => "Home visit",
            _ => "Contact",
        }
    }
}

text_enum!(ProcedureStatus { Preparation => "preparation", InProgress => "in-progress", NotDone => "not-done", OnHold => "on-hold", Stopped => "stopped", Completed => "completed", Unknown => "unknown" });

/// A procedure done to or with the patient (FHIR Procedure).
#[derive(Debug, Clone, PartialEq)]
pub struct Procedure {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub code_system: String,
    pub code: String,
    pub display: String,
    pub status: ProcedureStatus,
    pub performed_at: OffsetDateTime,
    pub performed_until: Option<OffsetDateTime>,
    pub performer: String,
    pub reason: Option<String>,
    pub version: i64,
    pub source: Source,
}

text_enum!(ReportStatus { Registered => "registered", Partial => "partial", Preliminary => "preliminary", Final => "final", Amended => "amended", Corrected => "corrected", Appended => "appended", Cancelled => "cancelled", Unknown => "unknown" });

/// A report (FHIR DiagnosticReport): a lab panel, imaging or pathology, with its conclusion and
/// the names of the results it groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub code_system: String,
    pub code: String,
    pub display: String,
    pub category: Option<String>,
    pub status: ReportStatus,
    pub effective_at: OffsetDateTime,
    pub issued_at: Option<OffsetDateTime>,
    pub performer: String,
    pub conclusion: Option<String>,
    pub results: Vec<String>,
    pub version: i64,
    pub source: Source,
}

text_enum!(ImagingStatus { Registered => "registered", Available => "available", Cancelled => "cancelled", Unknown => "unknown" });

/// An imaging study (FHIR ImagingStudy): what was imaged, how and when. The images stay in the
/// hospital's archive; the study's identifier (its DICOM UID) is what finds them there.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagingStudy {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub status: ImagingStatus,
    pub started_at: OffsetDateTime,
    /// The modalities of its series in words ("Digital Radiography"), comma-separated.
    pub modality: String,
    pub body_site: Option<String>,
    pub description: Option<String>,
    pub series: i64,
    pub instances: i64,
    /// Who interpreted or referred, or the clinician or organisation of the contact.
    pub performer: String,
    pub identifier: Option<String>,
    pub version: i64,
    pub source: Source,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn interpretation_against_range() {
        assert_eq!(
            Interpretation::classify(5.0, Some(4.0), Some(6.0)),
            Interpretation::Normal
        );
        assert_eq!(
            Interpretation::classify(3.5, Some(4.0), Some(6.0)),
            Interpretation::Low
        );
        assert_eq!(
            Interpretation::classify(6.5, Some(4.0), Some(6.0)),
            Interpretation::High
        );
        assert_eq!(
            Interpretation::classify(9.0, Some(4.0), Some(6.0)),
            Interpretation::Critical
        );
        assert_eq!(
            Interpretation::classify(1.0, Some(4.0), Some(6.0)),
            Interpretation::Critical
        );
        assert_eq!(
            Interpretation::classify(1.0, None, None),
            Interpretation::Unknown
        );
        assert_eq!(
            Interpretation::classify(1.0, None, Some(5.0)),
            Interpretation::Normal
        );
    }

    #[test]
    fn age_counts_whole_years() {
        assert_eq!(age_on(date!(2011 - 11 - 25), date!(2026 - 11 - 24)), 14);
        assert_eq!(age_on(date!(2011 - 11 - 25), date!(2026 - 11 - 25)), 15);
        assert_eq!(age_on(date!(2012 - 02 - 29), date!(2027 - 02 - 28)), 14);
    }

    #[test]
    fn text_enums_round_trip() {
        for s in PlanStatus::ALL {
            assert_eq!(PlanStatus::parse(s.as_str()).unwrap(), *s);
        }
        assert!(PlanStatus::parse("nonsense").is_err());
    }
}
