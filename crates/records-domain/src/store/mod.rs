//! Storage of records. Reading or changing a patient's data needs a permit, and the only
//! permits are the grants that `access_control` issues after a decision (and an audit entry).
//! Ingest (seed, FHIR, import) writes through the `upsert` functions, keyed on the writer's
//! source namespace and the source's id; an upsert never moves a row to another patient.

pub mod allergies;
pub mod clinics;
pub mod contacts;
pub mod diagnoses;
pub mod imaging;
pub mod kept;
pub mod labs;
pub mod patients;
pub mod plans;
pub mod prescriptions;
pub mod procedures;
pub mod renewals;
pub mod reports;
pub mod vaccinations;

use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use uuid::Uuid;

use crate::db::Statement;
use crate::model::{
    Allergy, Contact, Diagnosis, ImagingStudy, PatientId, Procedure, Report, Source, Vaccination,
};
use crate::DomainError;

/// Every SQL statement the stores send, for the test that prepares each on both engines.
pub fn statements() -> Vec<Statement> {
    [
        labs::statements(),
        prescriptions::statements(),
        plans::statements(),
        patients::statements(),
        clinics::statements(),
        renewals::statements(),
        kept::statements_of::<Diagnosis>("diagnoses"),
        kept::statements_of::<Allergy>("allergies"),
        kept::statements_of::<Vaccination>("vaccinations"),
        kept::statements_of::<Contact>("contacts"),
        kept::statements_of::<Procedure>("procedures"),
        kept::statements_of::<Report>("reports"),
        kept::statements_of::<ImagingStudy>("imaging"),
    ]
    .concat()
}

/// The parts of a record that a decision can grant separately (guardians, for example, see
/// prescriptions, plans and vaccinations but not lab results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Category {
    LabResults,
    Prescriptions,
    TreatmentPlans,
    Diagnoses,
    Allergies,
    Vaccinations,
    Contacts,
    Procedures,
    Reports,
    AccessLog,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Self::LabResults,
        Self::Prescriptions,
        Self::TreatmentPlans,
        Self::Diagnoses,
        Self::Allergies,
        Self::Vaccinations,
        Self::Contacts,
        Self::Procedures,
        Self::Reports,
        Self::AccessLog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LabResults => "lab_results",
            Self::Prescriptions => "prescriptions",
            Self::TreatmentPlans => "treatment_plans",
            Self::Diagnoses => "diagnoses",
            Self::Allergies => "allergies",
            Self::Vaccinations => "vaccinations",
            Self::Contacts => "contacts",
            Self::Procedures => "procedures",
            Self::Reports => "reports",
            Self::AccessLog => "access_log",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Proof that reading this patient's clinical data was decided and audited.
///
/// Implemented by `access_control::ReadGrant` only; an implementation anywhere else would be a
/// way around the access decision and must not pass review.
pub trait ReadPermit {
    fn patient_id(&self) -> PatientId;
    /// Clinicians see results that are held back from the patient; patients and proxies do not.
    fn includes_unreleased(&self) -> bool;
    fn covers(&self, category: Category) -> bool;
}

/// Refuse a read or write outside the categories the decision granted.
pub(crate) fn require(
    permit: &impl ReadPermit,
    category: Category,
) -> Result<(), crate::DomainError> {
    if permit.covers(category) {
        Ok(())
    } else {
        Err(crate::DomainError::NotPermitted)
    }
}

/// Proof that changing this patient's clinical data was decided and audited.
/// Implemented by `access_control::WriteGrant` only.
pub trait WritePermit: ReadPermit {
    /// Who is recorded as the author of the change.
    fn author_name(&self) -> &str;
    /// The namespace of source keys this writer may create and update.
    fn source_system(&self) -> &str;
}

/// Proof that asking for a renewal of this patient's prescriptions was decided and audited.
/// Implemented by `access_control::RenewalGrant` only.
pub trait RenewalPermit {
    fn patient_id(&self) -> PatientId;
    /// Who asks: the user's id and name.
    fn requester(&self) -> (uuid::Uuid, &str);
}

/// Proof that registering this patient, or changing who they are, was decided and audited.
/// Implemented by `access_control::RegisterGrant` only.
pub trait RegisterPermit {
    fn patient_id(&self) -> PatientId;
    fn source_system(&self) -> &str;
}

/// An upsert stays inside its permit: the permitted category, the permitted patient and the
/// writer's own source namespace.
pub(crate) fn require_upsert(
    permit: &impl WritePermit,
    category: Category,
    patient: PatientId,
    source: &crate::model::Source,
) -> Result<(), crate::DomainError> {
    require(permit, category)?;
    if patient != permit.patient_id() || source.system != permit.source_system() {
        return Err(crate::DomainError::NotPermitted);
    }
    Ok(())
}

/// The row an upsert would update belongs to `owner`, not to the patient the write is for.
pub(crate) fn same_patient(
    owner: PatientId,
    writing_for: PatientId,
) -> Result<(), crate::DomainError> {
    if owner == writing_for {
        Ok(())
    } else {
        Err(crate::DomainError::BelongsToAnotherPatient(owner))
    }
}

/// The row imported before under `source`, read with `statement`, which binds the source's
/// system as `$1` and its id as `$2`.
pub(crate) async fn imported_before<R>(
    conn: &mut AnyConnection,
    statement: &'static str,
    source: &crate::model::Source,
) -> Result<Option<R>, crate::DomainError>
where
    R: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
{
    Ok(sqlx::query_as(statement)
        .bind(&source.system)
        .bind(&source.id)
        .fetch_optional(conn)
        .await?)
}

/// What an upsert keyed on (source system, source id) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Inserted,
    Updated,
    Unchanged,
}

/// What an upsert did, to which row, and the version that row is at now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub outcome: Upserted,
    pub id: Uuid,
    pub version: i64,
}

impl Written {
    pub fn new(outcome: Upserted, id: Uuid, version: i64) -> Self {
        Self {
            outcome,
            id,
            version,
        }
    }
}

/// The tables of a record's entries, for the questions every kind answers alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Patients,
    LabResults,
    Prescriptions,
    TreatmentPlans,
    Diagnoses,
    Allergies,
    Vaccinations,
    Contacts,
    Procedures,
    Reports,
    ImagingStudies,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Patients => "patients",
            Self::LabResults => "lab_results",
            Self::Prescriptions => "prescriptions",
            Self::TreatmentPlans => "treatment_plans",
            Self::Diagnoses => "diagnoses",
            Self::Allergies => "allergies",
            Self::Vaccinations => "vaccinations",
            Self::Contacts => "contacts",
            Self::Procedures => "procedures",
            Self::Reports => "reports",
            Self::ImagingStudies => "imaging_studies",
        }
    }

    /// Only results and imaging studies keep their source's identifier.
    fn keeps_identifier(self) -> bool {
        matches!(self, Self::LabResults | Self::ImagingStudies)
    }
}

/// An entry's source key and version, found by the entry's id: whose it is to update, and
/// what an `If-Match` compares. Finding it reads nothing of the record.
pub async fn source_key(
    conn: &mut AnyConnection,
    table: Table,
    id: Uuid,
) -> Result<Option<(Source, i64)>, DomainError> {
    let sql = format!(
        "SELECT source_system, source_id, version FROM {} WHERE id = $1",
        table.name()
    );
    let row: Option<(String, String, i64)> = sqlx::query_as(&sql)
        .bind(crate::db::UuidText(id))
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(system, id, version)| (Source { system, id }, version)))
}

/// The entry a source system wrote under an identifier (`system|value`), if any: what a
/// conditional create looks for. The first of a panel's components stands for the panel.
pub async fn by_identifier(
    conn: &mut AnyConnection,
    table: Table,
    source_system: &str,
    identifier: &str,
) -> Result<Option<Uuid>, DomainError> {
    if !table.keeps_identifier() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT id FROM {} WHERE source_system = $1 AND identifier = $2 \
         ORDER BY source_id LIMIT 1",
        table.name()
    );
    let row: Option<crate::db::UuidText> = sqlx::query_scalar(&sql)
        .bind(source_system)
        .bind(identifier)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Uuid::from))
}
