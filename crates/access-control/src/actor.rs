//! Who is asking: the signed-in user (or system client) as the policy sees them.

use std::fmt;

use records_domain::db::TextColumn;
use records_domain::model::PatientId;
use serde::{Deserialize, Serialize};
use sqlx::error::BoxDynError;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Patient,
    Clinician,
    Auditor,
    Administrator,
    /// A source system or app calling the FHIR API with a token.
    System,
}

impl Role {
    pub const USERS: [Role; 4] = [
        Role::Patient,
        Role::Clinician,
        Role::Auditor,
        Role::Administrator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Clinician => "clinician",
            Self::Auditor => "auditor",
            Self::Administrator => "administrator",
            Self::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Patient,
            Self::Clinician,
            Self::Auditor,
            Self::Administrator,
            Self::System,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }

    /// Roles that may not sign in with a password alone.
    pub fn requires_second_factor(self) -> bool {
        matches!(self, Self::Clinician | Self::Auditor | Self::Administrator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TextColumn for Role {
    fn to_column(&self) -> Result<String, BoxDynError> {
        Ok(self.as_str().to_string())
    }
    fn from_column(text: &str) -> Result<Self, BoxDynError> {
        Self::parse(text).ok_or_else(|| format!("unknown role {text:?}").into())
    }
}
records_domain::text_column!(Role);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
    /// The patient this user is, for patients.
    pub patient_id: Option<PatientId>,
    /// The clinic a clinician works at.
    pub clinic_id: Option<Uuid>,
    /// What the way the actor signed in does to their role's reach.
    #[serde(default)]
    pub reach: Reach,
}

/// Signing in to the pages gives a user everything their role allows. A SMART token can narrow a
/// patient to their own record (`patient/` scopes), and only a system client trusted as the
/// population register may change who a patient is (name, sex, birth date, CPR number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Reach {
    #[default]
    WholeRole,
    OwnRecordOnly,
    PopulationRegister,
}

impl Actor {
    /// A source system (a lab, a registry, the command line's operator) acting for no person.
    pub fn system(user_id: Uuid, name: impl Into<String>, reach: Reach) -> Self {
        Self {
            user_id,
            name: name.into(),
            role: Role::System,
            patient_id: None,
            clinic_id: None,
            reach,
        }
    }
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub client_addr: String,
}
