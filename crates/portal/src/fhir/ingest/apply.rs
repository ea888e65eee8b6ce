//! Writing a batch (a Bundle, or a chunk of NDJSON lines) in one transaction: patients first,
//! then every other resource under the write grant the gate gives for its patient and
//! category. A refusal anywhere rolls the whole batch back and is then recorded on its own.

use std::collections::HashMap;

use access_control::gate::Refusal;
use access_control::{BatchGrants, Gate};
use records_domain::model::{LabResult, PatientId, Source};
use records_domain::store::kept::{self, Kept};
use records_domain::store::{labs, plans, prescriptions, Upserted, WritePermit, Written};
use records_domain::DomainError;
use serde_json::Value;
use time::OffsetDateTime;

use crate::fhir::{resources, versions};

use super::identity::{register, subject_of};
use super::parse::{
    bundle_entries, invalid, parse_allergy, parse_care_plan, parse_condition, parse_encounter,
    parse_imaging_study, parse_immunization, parse_medication_request, parse_observation,
    parse_procedure, parse_report, Batch, IngestError,
};
use super::{category_of, ApplyError, Summary, Writer};

/// What became of one resource of a batch.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Written, or found unchanged: the resource as the portal now serves it.
    Stored {
        outcome: Upserted,
        resource: Value,
        /// When this version was written; `None` for an unchanged resource, written before.
        written_at: Option<OffsetDateTime>,
    },
    Skipped {
        reason: &'static str,
    },
}

/// What a batch did: counts by type, and each resource's fate in the batch's order.
#[derive(Debug, Default)]
pub struct Applied {
    pub summary: Summary,
    pub entries: Vec<Entry>,
}

/// Apply a Bundle in one transaction: every stored resource is written, or none is.
pub async fn apply_bundle(
    gate: &Gate<'_>,
    writer: &Writer<'_>,
    bundle: &Value,
) -> Result<Applied, ApplyError> {
    let (entries, urls) = bundle_entries(bundle)?;
    apply(gate, writer, Batch::new(entries, &urls)).await
}

/// Apply the entries of a transaction, each with its fullUrl, in one database transaction.
pub async fn apply_batch(
    gate: &Gate<'_>,
    writer: &Writer<'_>,
    resources: Vec<(String, &Value)>,
    full_urls: &[Option<&str>],
) -> Result<Applied, ApplyError> {
    apply(gate, writer, Batch::new(resources, full_urls)).await
}

/// Apply loose resources (one NDJSON chunk) in one transaction; references between them and to
/// earlier imports of the same source resolve.
pub async fn apply_resources(
    gate: &Gate<'_>,
    writer: &Writer<'_>,
    resources: Vec<(String, &Value)>,
) -> Result<Applied, ApplyError> {
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
) -> Result<Applied, ApplyError> {
    let mut tx = gate.db.begin_write().await?;
    match write_batch(gate, &mut tx, writer, &batch).await {
        Ok(applied) => {
            tx.commit().await?;
            Ok(applied)
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
) -> Result<Applied, BatchError> {
    let mut summary = Summary::default();
    let mut entries: Vec<Option<Entry>> = vec![None; batch.entries.len()];
    let now = OffsetDateTime::now_utc();
    // Where the batch made a new version, kept together at the end (`versions::record_all`).
    let mut new_versions: Vec<(PatientId, usize)> = Vec::new();
    // Patients first, so that the other resources can point at them wherever they stand.
    let mut patient_ids: HashMap<usize, PatientId> = HashMap::new();
    for (position, (location, resource)) in batch
        .entries
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| r["resourceType"] == "Patient")
    {
        let (written, patient) = register(gate, tx, writer, resource, location).await?;
        patient_ids.insert(position, patient.id);
        summary.count("Patient", written.outcome);
        let served = resources::patient(&patient);
        entries[position] = Some(stored(written.outcome, served, now));
        if written.outcome != Upserted::Unchanged {
            new_versions.push((patient.id, position));
        }
    }
    let mut grants = BatchGrants::default();
    for (position, (location, resource)) in batch.entries.iter().enumerate() {
        let kind = resource["resourceType"]
            .as_str()
            .unwrap_or("(no resourceType)");
        if kind == "Patient" {
            continue;
        }
        let skip = |summary: &mut Summary, entries: &mut Vec<Option<Entry>>, reason| {
            summary.skip(kind, reason);
            entries[position] = Some(Entry::Skipped { reason });
        };
        if kind == "Goal" {
            skip(
                &mut summary,
                &mut entries,
                "kept inside the CarePlan that refers to it",
            );
            continue;
        }
        let Some(category) = category_of(kind) else {
            skip(
                &mut summary,
                &mut entries,
                "resource type not kept by the portal",
            );
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
                let results = parse_observation(resource, batch, subject, &source, location)?;
                observe(tx, grant, results).await
            }
            "MedicationRequest" => {
                let mut p = parse_medication_request(resource, batch, subject, &source, location)?;
                prescriptions::upsert(tx, grant, &p).await.map(|w| {
                    (p.id, p.version) = (w.id, w.version);
                    Some((w.outcome, resources::medication_request(&p)))
                })
            }
            "CarePlan" => match parse_care_plan(resource, batch, subject, &source, location)? {
                Some(mut plan) => plans::upsert(tx, grant, &plan).await.map(|w| {
                    (plan.id, plan.version) = (w.id, w.version);
                    Some((w.outcome, resources::care_plan(&plan)))
                }),
                None => {
                    skip(
                        &mut summary,
                        &mut entries,
                        "status entered-in-error or unknown",
                    );
                    continue;
                }
            },
            "Condition" => {
                let parsed = parse_condition(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed, resources::condition).await
            }
            "AllergyIntolerance" => {
                let parsed = parse_allergy(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed, resources::allergy_intolerance).await
            }
            "Immunization" => {
                let parsed = parse_immunization(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed, resources::immunization).await
            }
            "Encounter" => {
                let parsed = parse_encounter(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed, resources::encounter).await
            }
            "Procedure" => {
                let parsed = parse_procedure(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed, resources::procedure).await
            }
            "DiagnosticReport" => {
                let parsed = parse_report(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed, resources::diagnostic_report).await
            }
            "ImagingStudy" => {
                let parsed = parse_imaging_study(resource, batch, subject, &source, location)?;
                keep(tx, grant, parsed, resources::imaging_study).await
            }
            _ => {
                skip(
                    &mut summary,
                    &mut entries,
                    "resource type not kept by the portal",
                );
                continue;
            }
        };
        let written = written.map_err(|e| match e {
            DomainError::BelongsToAnotherPatient(owner) => BatchError::Refused(gate.refuse_move(
                &writer.request(subject, Some(source.id.clone())),
                owner,
                kind,
            )),
            other => other.into(),
        })?;
        // An Observation panel may hold no results; every other kind writes nothing only
        // when its resource was entered in error.
        let Some((outcome, served)) = written else {
            if kind != "Observation" {
                skip(&mut summary, &mut entries, "entered in error");
            }
            continue;
        };
        summary.count(kind, outcome);
        entries[position] = Some(stored(outcome, served, now));
        if outcome != Upserted::Unchanged {
            new_versions.push((subject, position));
        }
    }
    let bodies: Vec<(PatientId, &Value)> = new_versions
        .iter()
        .filter_map(|&(patient, position)| match &entries[position] {
            Some(Entry::Stored { resource, .. }) => Some((patient, resource)),
            _ => None,
        })
        .collect();
    versions::record_all(tx, now, &bodies).await?;
    let entries = entries
        .into_iter()
        .map(|e| {
            e.unwrap_or(Entry::Skipped {
                reason: "no results",
            })
        })
        .collect();
    Ok(Applied { summary, entries })
}

/// A resource as stored; a new version carries the time it was written, and is kept with the
/// batch's other new versions at its end.
fn stored(outcome: Upserted, served: Value, now: OffsetDateTime) -> Entry {
    if outcome == Upserted::Unchanged {
        return Entry::Stored {
            outcome,
            resource: served,
            written_at: None,
        };
    }
    Entry::Stored {
        outcome,
        resource: versions::stamped(served, now),
        written_at: Some(now),
    }
}

/// Store a result, or a panel's components; the first stands for the whole Observation.
async fn observe(
    tx: &mut sqlx::AnyConnection,
    grant: &impl WritePermit,
    mut results: Vec<LabResult>,
) -> Result<Option<(Upserted, Value)>, DomainError> {
    let mut outcomes = Vec::with_capacity(results.len());
    for result in &mut results {
        let written = labs::upsert(tx, grant, result).await?;
        (result.id, result.version) = (written.id, written.version);
        outcomes.push(written.outcome);
    }
    let Some(head_outcome) = outcomes.first().copied() else {
        return Ok(None);
    };
    // A panel is new when its head is; otherwise any changed component changes it.
    let outcome = match head_outcome {
        Upserted::Inserted => Upserted::Inserted,
        _ if outcomes.iter().any(|o| *o != Upserted::Unchanged) => Upserted::Updated,
        _ => Upserted::Unchanged,
    };
    if head_outcome == Upserted::Unchanged && outcome != Upserted::Unchanged {
        // Another component changed: the panel is one resource with the head's version.
        results[0].version = labs::bump_version(tx, grant, &results[0]).await?;
    }
    let components = if results.len() > 1 { &results[..] } else { &[] };
    Ok(Some((
        outcome,
        resources::observation(&results[0], components),
    )))
}

/// Store one of the kinds the `kept` store holds; one entered in error (`None`) writes nothing.
async fn keep<T: Kept>(
    tx: &mut sqlx::AnyConnection,
    grant: &impl WritePermit,
    parsed: Option<T>,
    render: fn(&T) -> Value,
) -> Result<Option<(Upserted, Value)>, DomainError> {
    let Some(record) = parsed else {
        return Ok(None);
    };
    let Written {
        outcome,
        id,
        version,
    } = kept::upsert(tx, grant, &record).await?;
    Ok(Some((outcome, render(&record.as_stored(id, version)))))
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
