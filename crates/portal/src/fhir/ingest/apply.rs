//! Writing a batch (a Bundle, or a chunk of NDJSON lines) in one transaction: patients first,
//! then every other resource under the write grant the gate gives for its patient and
//! category. A refusal anywhere rolls the whole batch back and is then recorded on its own.

use std::collections::HashMap;

use access_control::gate::Refusal;
use access_control::{BatchGrants, Gate};
use records_domain::model::{PatientId, Source};
use records_domain::store::kept::{self, Kept};
use records_domain::store::{labs, plans, prescriptions, Upserted, WritePermit};
use records_domain::DomainError;
use serde_json::Value;

use super::identity::{register, subject_of};
use super::parse::{
    bundle_entries, invalid, parse_allergy, parse_care_plan, parse_condition, parse_encounter,
    parse_imaging_study, parse_immunization, parse_medication_request, parse_observation,
    parse_procedure, parse_report, Batch, IngestError,
};
use super::{category_of, ApplyError, Summary, Writer};

/// Apply a Bundle in one transaction: every stored resource is written, or none is.
pub async fn apply_bundle(
    gate: &Gate<'_>,
    writer: &Writer<'_>,
    bundle: &Value,
) -> Result<Summary, ApplyError> {
    let (entries, urls) = bundle_entries(bundle)?;
    apply(gate, writer, Batch::new(entries, &urls)).await
}

/// Apply loose resources (one NDJSON chunk) in one transaction; references between them and to
/// earlier imports of the same source resolve.
pub async fn apply_resources(
    gate: &Gate<'_>,
    writer: &Writer<'_>,
    resources: Vec<(String, &Value)>,
) -> Result<Summary, ApplyError> {
    let urls = vec![None; resources.len()];
    apply(gate, writer, Batch::new(resources, &urls)).await
}

/// Inside a batch a refusal is kept apart until the batch's transaction is rolled back and the
/// refusal recorded, so that it cannot reach a caller unaudited.
pub(super) enum BatchError {
    Failed(ApplyError),
    Refused(Refusal),
}

impl<E: Into<ApplyError>> From<E> for BatchError {
    fn from(e: E) -> Self {
        Self::Failed(e.into())
    }
}

async fn apply(
    gate: &Gate<'_>,
    writer: &Writer<'_>,
    batch: Batch<'_>,
) -> Result<Summary, ApplyError> {
    let mut tx = gate.db.begin_write().await?;
    match write_batch(gate, &mut tx, writer, &batch).await {
        Ok(summary) => {
            tx.commit().await?;
            Ok(summary)
        }
        Err(BatchError::Failed(e)) => Err(e),
        Err(BatchError::Refused(refusal)) => {
            tx.rollback().await?;
            Err(gate.record_refusal(refusal).await.into())
        }
    }
}

async fn write_batch(
    gate: &Gate<'_>,
    tx: &mut sqlx::AnyConnection,
    writer: &Writer<'_>,
    batch: &Batch<'_>,
) -> Result<Summary, BatchError> {
    let mut summary = Summary::default();
    // Patients first, so that the other resources can point at them wherever they stand.
    let mut patient_ids: HashMap<usize, PatientId> = HashMap::new();
    for (position, (location, resource)) in batch
        .entries
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| r["resourceType"] == "Patient")
    {
        let (id, outcome) = register(gate, tx, writer, resource, location).await?;
        patient_ids.insert(position, id);
        summary.count("Patient", outcome);
    }
    let mut grants = BatchGrants::default();
    for (location, resource) in &batch.entries {
        let kind = resource["resourceType"]
            .as_str()
            .unwrap_or("(no resourceType)");
        if kind == "Patient" {
            continue;
        }
        if kind == "Goal" {
            summary.skip(kind, "kept inside the CarePlan that refers to it");
            continue;
        }
        let Some(category) = category_of(kind) else {
            summary.skip(kind, "resource type not kept by the portal");
            continue;
        };
        let subject = subject_of(tx, writer, batch, &patient_ids, resource, location).await?;
        let source = source_of(writer, resource, location)?;
        let grant = grants
            .write(
                gate,
                tx,
                &writer.request(subject, None),
                category,
                writer.source_system,
            )
            .await?
            .map_err(BatchError::Refused)?;
        let written = match kind {
            "Observation" => {
                let mut outcomes = Vec::new();
                for result in parse_observation(resource, batch, subject, &source, location)? {
                    outcomes.push(labs::upsert(tx, grant, &result).await);
                }
                outcomes.into_iter().collect::<Result<Vec<_>, _>>()
            }
            "MedicationRequest" => {
                let p = parse_medication_request(resource, batch, subject, &source, location)?;
                prescriptions::upsert(tx, grant, &p).await.map(|o| vec![o])
            }
            "CarePlan" => match parse_care_plan(resource, batch, subject, &source, location)? {
                Some(plan) => plans::upsert(tx, grant, &plan).await.map(|o| vec![o]),
                None => {
                    summary.skip(kind, "status entered-in-error or unknown");
                    continue;
                }
            },
            "Condition" => {
                let parsed = parse_condition(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed).await
            }
            "AllergyIntolerance" => {
                let parsed = parse_allergy(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed).await
            }
            "Immunization" => {
                let parsed = parse_immunization(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed).await
            }
            "Encounter" => {
                let parsed = parse_encounter(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed).await
            }
            "Procedure" => {
                let parsed = parse_procedure(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed).await
            }
            "DiagnosticReport" => {
                let parsed = parse_report(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed).await
            }
            "ImagingStudy" => {
                let parsed = parse_imaging_study(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed).await
            }
            _ => {
                summary.skip(kind, "resource type not kept by the portal");
                continue;
            }
        };
        let outcomes: Vec<Upserted> = written.map_err(|e| match e {
            DomainError::BelongsToAnotherPatient(owner) => BatchError::Refused(gate.refuse_move(
                &writer.request(subject, Some(source.id.clone())),
                owner,
                kind,
            )),
            other => other.into(),
        })?;
        // An Observation panel may hold no results; every other kind writes nothing only
        // when its resource was entered in error.
        if outcomes.is_empty() && kind != "Observation" {
            summary.skip(kind, "entered in error");
            continue;
        }
        summary.count(kind, combined(&outcomes));
    }
    Ok(summary)
}

/// Store a diagnosis, allergy or vaccination; one entered in error (`None`) writes nothing.
async fn keep<T: Kept>(
    tx: &mut sqlx::AnyConnection,
    grant: &impl WritePermit,
    parsed: Option<T>,
) -> Result<Vec<Upserted>, DomainError> {
    match parsed {
        Some(record) => Ok(vec![kept::upsert(tx, grant, &record).await?]),
        None => Ok(Vec::new()),
    }
}

fn combined(outcomes: &[Upserted]) -> Upserted {
    if outcomes.contains(&Upserted::Inserted) {
        Upserted::Inserted
    } else if outcomes.contains(&Upserted::Updated) {
        Upserted::Updated
    } else {
        Upserted::Unchanged
    }
}

/// The source key of a resource: its id (or, failing that, its first identifier).
pub(super) fn source_of(
    writer: &Writer<'_>,
    resource: &Value,
    location: &str,
) -> Result<Source, IngestError> {
    let id = resource["id"]
        .as_str()
        .map(str::to_string)
        .or_else(|| resource["identifier"][0]["value"].as_str().map(|v| format!("{}|{v}", resource["identifier"][0]["system"].as_str().unwrap_or(""))))
        .ok_or_else(|| invalid(location, "a resource needs an id or an identifier, so that a re-import updates instead of duplicating"))?;
    if id.len() > 200 {
        return Err(invalid(location, "id is too long"));
    }
    Ok(Source {
        system: writer.source_system.to_string(),
        id,
    })
}
