//! The access decision (the Danish model; the README's "Who may write what"): one pure function
//! from who is asking, what they ask for and the facts about the patient to a decision with
//! its basis.
//! Everything that reads or changes a patient's data goes through `decide`, via `gate`.

use records_domain::db::TextColumn;
use records_domain::model::{age_on, PatientId};
use records_domain::store::Category;
use serde::{Deserialize, Serialize};
use sqlx::error::BoxDynError;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::actor::{Actor, Reach, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// The overview page: whatever parts of the record the basis covers.
    ReadSummary,
    Read(Category),
    Write(Category),
    /// Change who may see the record: blocks and powers of attorney.
    ManageConsent,
    /// Register a patient or change who they are: name, sex, birth date, CPR number.
    WriteDemographics,
    /// Ask the GP to renew a prescription: the patient, or whoever holds their power of
    /// attorney. Never a write to the medicine card itself.
    RequestRenewal,
    /// Learn which patient a CPR number names, and their demographics: what a lab needs to
    /// address the result it reports. Nothing of the record itself.
    Identify,
}

impl Action {
    pub fn describe(self) -> String {
        match self {
            Self::ReadSummary => "read summary".into(),
            Self::Read(c) => format!("read {}", c.as_str()),
            Self::Write(c) => format!("write {}", c.as_str()),
            Self::ManageConsent => "manage consent".into(),
            Self::WriteDemographics => "write demographics".into(),
            Self::RequestRenewal => "request renewal".into(),
            Self::Identify => "identify".into(),
        }
    }
}

/// Why access was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Basis {
    OwnRecord,
    Guardian,
    PowerOfAttorney,
    GpListing,
    CareRelationship,
    EmergencyOverride,
    /// A lab or other source system delivering clinical data under its own namespace.
    SourceSystem,
    /// The register that is the authority on who a patient is.
    PopulationRegister,
}

impl Basis {
    const ALL: [Self; 8] = [
        Self::OwnRecord,
        Self::Guardian,
        Self::PowerOfAttorney,
        Self::GpListing,
        Self::CareRelationship,
        Self::EmergencyOverride,
        Self::SourceSystem,
        Self::PopulationRegister,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OwnRecord => "own_record",
            Self::Guardian => "guardian",
            Self::PowerOfAttorney => "power_of_attorney",
            Self::GpListing => "gp_listing",
            Self::CareRelationship => "care_relationship",
            Self::EmergencyOverride => "emergency_override",
            Self::SourceSystem => "source_system",
            Self::PopulationRegister => "population_register",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::OwnRecord => "own record",
            Self::Guardian => "guardian of a child under 15",
            Self::PowerOfAttorney => "power of attorney",
            Self::GpListing => "patient is listed with the clinician's practice",
            Self::CareRelationship => "care relationship",
            Self::EmergencyOverride => "emergency override",
            Self::SourceSystem => "delivered by a laboratory or other source system",
            Self::PopulationRegister => "population register",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == text)
    }

    pub fn is_proxy(self) -> bool {
        matches!(self, Self::Guardian | Self::PowerOfAttorney)
    }
}

/// Why access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Denial {
    NotYourRecord,
    ChildTurned15,
    CategoryNotForGuardians,
    NoTreatmentRelationship,
    BlockedByPatient,
    NoClinicalAccessForRole,
    ReadOnlyAccess,
    /// A `patient/` token reaches its own patient's record only.
    OutsideTokenPatient,
    DemographicsOnlyFromRegister,
    /// Found by the store, not by `decide`: an update that names another patient than the
    /// record it changes.
    RecordOfAnotherPatient,
}

impl Denial {
    pub const ALL: [Denial; 10] = [
        Self::NotYourRecord,
        Self::ChildTurned15,
        Self::CategoryNotForGuardians,
        Self::NoTreatmentRelationship,
        Self::BlockedByPatient,
        Self::NoClinicalAccessForRole,
        Self::ReadOnlyAccess,
        Self::OutsideTokenPatient,
        Self::DemographicsOnlyFromRegister,
        Self::RecordOfAnotherPatient,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotYourRecord => "not_your_record",
            Self::ChildTurned15 => "child_turned_15",
            Self::CategoryNotForGuardians => "category_not_for_guardians",
            Self::NoTreatmentRelationship => "no_treatment_relationship",
            Self::BlockedByPatient => "blocked_by_patient",
            Self::NoClinicalAccessForRole => "no_clinical_access_for_role",
            Self::ReadOnlyAccess => "read_only_access",
            Self::OutsideTokenPatient => "outside_token_patient",
            Self::DemographicsOnlyFromRegister => "demographics_only_from_register",
            Self::RecordOfAnotherPatient => "record_of_another_patient",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::NotYourRecord => "This is not your record and you hold no proxy for it.",
            Self::ChildTurned15 => "Guardian access ends on the child's 15th birthday.",
            Self::CategoryNotForGuardians => "Guardians do not see this part of a child's record.",
            Self::NoTreatmentRelationship => {
                "The patient is not listed with your practice and you have no active care relationship."
            }
            Self::BlockedByPatient => "The patient has blocked your access.",
            Self::NoClinicalAccessForRole => "Your role gives no access to clinical data.",
            Self::ReadOnlyAccess => "Your access to this record is read-only.",
            Self::OutsideTokenPatient => "This token reaches its own patient's record only.",
            Self::DemographicsOnlyFromRegister => {
                "Only the population register may register a patient or change who they are."
            }
            Self::RecordOfAnotherPatient => {
                "The record being changed belongs to another patient; an update cannot move it."
            }
        }
    }

    /// A clinician may break the glass where the refusal is about relationships and consent.
    pub fn override_possible(self) -> bool {
        matches!(self, Self::NoTreatmentRelationship | Self::BlockedByPatient)
    }
}

/// What `decide` answers: allowed on a basis, for the parts of the record it covers, or denied
/// with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        basis: Basis,
        categories: Vec<Category>,
    },
    Denied(Denial),
}

impl Decision {
    fn allow(basis: Basis, categories: Vec<Category>) -> Self {
        Self::Allowed { basis, categories }
    }

    fn deny(denial: Denial) -> Self {
        Self::Denied(denial)
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    pub fn basis(&self) -> Option<Basis> {
        match self {
            Self::Allowed { basis, .. } => Some(*basis),
            Self::Denied(_) => None,
        }
    }

    pub fn denial(&self) -> Option<Denial> {
        match self {
            Self::Allowed { .. } => None,
            Self::Denied(d) => Some(*d),
        }
    }

    /// The parts of the record the decision covers; none when denied.
    pub fn categories(&self) -> &[Category] {
        match self {
            Self::Allowed { categories, .. } => categories,
            Self::Denied(_) => &[],
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Allowed { basis, .. } => basis.describe(),
            Self::Denied(d) => d.describe(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyKind {
    Guardian,
    PowerOfAttorney,
}

impl ProxyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guardian => "guardian",
            Self::PowerOfAttorney => "power_of_attorney",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "guardian" => Some(Self::Guardian),
            "power_of_attorney" => Some(Self::PowerOfAttorney),
            _ => None,
        }
    }
}

impl TextColumn for ProxyKind {
    fn to_column(&self) -> Result<String, BoxDynError> {
        Ok(self.as_str().to_string())
    }
    fn from_column(text: &str) -> Result<Self, BoxDynError> {
        Self::parse(text).ok_or_else(|| format!("unknown proxy kind {text:?}").into())
    }
}
records_domain::text_column!(ProxyKind);

/// A time window; `until: None` means open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: OffsetDateTime,
    pub until: Option<OffsetDateTime>,
}

impl Period {
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.from <= t && self.until.is_none_or(|u| t < u)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFact {
    pub kind: ProxyKind,
    pub period: Period,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFact {
    pub clinician_id: Option<Uuid>,
    pub clinic_id: Option<Uuid>,
    pub period: Period,
    pub lifted: bool,
}

/// What the policy needs to know about the patient and about this actor's ties to them.
/// Loaded by `gate` from the database; built by hand in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub patient_id: PatientId,
    pub birth_date: Date,
    pub gp_clinic_id: Option<Uuid>,
    /// This actor's proxies for this patient.
    pub proxies: Vec<ProxyFact>,
    /// This clinician's care relationships with this patient.
    pub care_relationships: Vec<Period>,
    /// All of the patient's blocks.
    pub blocks: Vec<BlockFact>,
    /// End of this clinician's emergency override for this patient, if one was granted.
    pub override_expires_at: Vec<OffsetDateTime>,
}

impl Facts {
    /// A patient the register is about to create: no proxies, relationships or blocks yet.
    pub fn unregistered(patient_id: PatientId, birth_date: Date) -> Self {
        Self {
            patient_id,
            birth_date,
            gp_clinic_id: None,
            proxies: Vec::new(),
            care_relationships: Vec::new(),
            blocks: Vec::new(),
            override_expires_at: Vec::new(),
        }
    }
}

/// Configuration the law leaves to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// What a guardian of a child under 15 sees. Danish default: not lab results, and of the
    /// rest of the record the vaccinations (the childhood programme) but not diagnoses.
    pub guardian_categories: Vec<Category>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            guardian_categories: vec![
                Category::Prescriptions,
                Category::TreatmentPlans,
                Category::Vaccinations,
                Category::AccessLog,
            ],
        }
    }
}

const CLINICAL: [Category; 9] = [
    Category::LabResults,
    Category::Prescriptions,
    Category::TreatmentPlans,
    Category::Diagnoses,
    Category::Allergies,
    Category::Vaccinations,
    Category::Contacts,
    Category::Procedures,
    Category::Reports,
];

pub fn decide(
    actor: &Actor,
    action: Action,
    facts: &Facts,
    settings: &PolicySettings,
    now: OffsetDateTime,
) -> Decision {
    if actor.reach == Reach::OwnRecordOnly && actor.patient_id != Some(facts.patient_id) {
        return Decision::deny(Denial::OutsideTokenPatient);
    }
    if action == Action::WriteDemographics {
        return if actor.role == Role::System && actor.reach == Reach::PopulationRegister {
            Decision::allow(Basis::PopulationRegister, Vec::new())
        } else {
            Decision::deny(Denial::DemographicsOnlyFromRegister)
        };
    }
    // Everyone else identifies a patient exactly when they may open the overview.
    let action = match (action, actor.role) {
        (Action::Identify, role) if role != Role::System => Action::ReadSummary,
        _ => action,
    };
    match actor.role {
        Role::Patient => decide_for_patient_user(actor, action, facts, settings, now),
        Role::Clinician => decide_for_clinician(actor, action, facts, now),
        Role::System => decide_for_source_system(action),
        Role::Auditor | Role::Administrator => Decision::deny(Denial::NoClinicalAccessForRole),
    }
}

/// Labs and registries deliver clinical data for any patient (results arrive by CPR number)
/// but read nothing: what they wrote is theirs to correct, under their own source namespace.
fn decide_for_source_system(action: Action) -> Decision {
    match action {
        Action::Write(c) if CLINICAL.contains(&c) => Decision::allow(Basis::SourceSystem, vec![c]),
        Action::Identify => Decision::allow(Basis::SourceSystem, Vec::new()),
        _ => Decision::deny(Denial::NoClinicalAccessForRole),
    }
}

fn decide_for_patient_user(
    actor: &Actor,
    action: Action,
    facts: &Facts,
    settings: &PolicySettings,
    now: OffsetDateTime,
) -> Decision {
    if actor.patient_id == Some(facts.patient_id) {
        return match action {
            Action::ReadSummary | Action::Read(_) | Action::ManageConsent => {
                Decision::allow(Basis::OwnRecord, Category::ALL.to_vec())
            }
            Action::RequestRenewal => {
                Decision::allow(Basis::OwnRecord, vec![Category::Prescriptions])
            }
            Action::Write(_) | Action::WriteDemographics | Action::Identify => {
                Decision::deny(Denial::ReadOnlyAccess)
            }
        };
    }
    let holds = |kind: ProxyKind| {
        facts
            .proxies
            .iter()
            .any(|p| p.kind == kind && !p.revoked && p.period.contains(now))
    };
    if holds(ProxyKind::PowerOfAttorney) {
        return match action {
            Action::ReadSummary | Action::Read(_) => {
                Decision::allow(Basis::PowerOfAttorney, Category::ALL.to_vec())
            }
            Action::RequestRenewal => {
                Decision::allow(Basis::PowerOfAttorney, vec![Category::Prescriptions])
            }
            _ => Decision::deny(Denial::ReadOnlyAccess),
        };
    }
    if holds(ProxyKind::Guardian) {
        if guardianship_ended(facts.birth_date, now) {
            return Decision::deny(Denial::ChildTurned15);
        }
        return match action {
            Action::ReadSummary => {
                Decision::allow(Basis::Guardian, settings.guardian_categories.clone())
            }
            Action::Read(c) if settings.guardian_categories.contains(&c) => {
                Decision::allow(Basis::Guardian, settings.guardian_categories.clone())
            }
            Action::Read(_) => Decision::deny(Denial::CategoryNotForGuardians),
            _ => Decision::deny(Denial::ReadOnlyAccess),
        };
    }
    Decision::deny(Denial::NotYourRecord)
}

/// Guardian access ends on the child's 15th birthday as the day is counted in Denmark. The
/// date is taken at UTC+2 (Danish summer time), so in winter access ends an hour early rather
/// than an hour late.
pub fn guardianship_ended(birth_date: Date, now: OffsetDateTime) -> bool {
    let danish_day = now.to_offset(time::macros::offset!(+2)).date();
    age_on(birth_date, danish_day) >= 15
}

fn decide_for_clinician(
    actor: &Actor,
    action: Action,
    facts: &Facts,
    now: OffsetDateTime,
) -> Decision {
    let clinical = matches!(action, Action::ReadSummary)
        || matches!(action, Action::Read(c) | Action::Write(c) if CLINICAL.contains(&c));
    if !clinical {
        return Decision::deny(Denial::NoClinicalAccessForRole);
    }
    if facts.override_expires_at.iter().any(|&end| now < end) {
        return Decision::allow(Basis::EmergencyOverride, CLINICAL.to_vec());
    }
    let blocked = facts.blocks.iter().any(|b| {
        !b.lifted
            && b.period.contains(now)
            && (b.clinician_id == Some(actor.user_id)
                || (b.clinic_id.is_some() && b.clinic_id == actor.clinic_id))
    });
    if blocked {
        return Decision::deny(Denial::BlockedByPatient);
    }
    if facts.gp_clinic_id.is_some() && facts.gp_clinic_id == actor.clinic_id {
        return Decision::allow(Basis::GpListing, CLINICAL.to_vec());
    }
    if facts.care_relationships.iter().any(|r| r.contains(now)) {
        return Decision::allow(Basis::CareRelationship, CLINICAL.to_vec());
    }
    Decision::deny(Denial::NoTreatmentRelationship)
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
