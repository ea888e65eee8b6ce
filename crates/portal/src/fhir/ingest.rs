//! FHIR R4 in: parsing Patient, Observation, MedicationRequest and CarePlan resources into
//! records, and applying a Bundle in one transaction (all or nothing). Used by the FHIR write
//! API and by `portal import`.
//!
//! National IDs: a Patient that carries a CPR identifier (`urn:oid:1.2.208.176.1.2`) keeps it.
//! One that does not (the Synthea samples are American) is assigned one by this rule, so that
//! a re-import assigns the same number: the date part is the birth date; the seventh digit puts
//! the year in the right century (CPR office table); the last three digits are taken from the
//! SHA-256 of the resource's source key, with the last digit's parity following the sex (odd
//! male, even female); on a clash with another person the serial steps by 2. The original
//! identifier is kept (`original_identifier`).

use std::collections::{BTreeMap, HashMap};

use access_control::gate::Refusal;
use access_control::{Actor, BatchGrants, Gate, Request, RequestContext};
use records_domain::model::*;
use records_domain::store::{labs, patients, plans, prescriptions, Category, Upserted};
use records_domain::{Cpr, DomainError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

pub const CPR_SYSTEM: &str = "urn:oid:1.2.208.176.1.2";

/// Why a resource could not be used, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct IngestError {
    pub location: String,
    pub problem: String,
}

fn invalid(location: &str, problem: impl Into<String>) -> IngestError {
    IngestError {
        location: location.to_string(),
        problem: problem.into(),
    }
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

/// Resources of one Bundle (or one NDJSON chunk), indexed so references between them resolve.
pub struct Batch<'a> {
    entries: Vec<(String, &'a Value)>,
    /// fullUrl or `Type/id` -> position in `entries`
    by_reference: HashMap<String, usize>,
}

impl<'a> Batch<'a> {
    pub fn new(entries: Vec<(String, &'a Value)>, full_urls: &[Option<&'a str>]) -> Self {
        let mut by_reference = HashMap::new();
        for (position, ((_, resource), full_url)) in entries.iter().zip(full_urls).enumerate() {
            if let Some(url) = full_url {
                by_reference.insert(url.to_string(), position);
            }
            if let (Some(kind), Some(id)) =
                (resource["resourceType"].as_str(), resource["id"].as_str())
            {
                by_reference.insert(format!("{kind}/{id}"), position);
            }
        }
        Self {
            entries,
            by_reference,
        }
    }

    fn position_of(&self, reference: &Value) -> Option<usize> {
        reference["reference"]
            .as_str()
            .and_then(|r| self.by_reference.get(r).copied())
    }

    fn resolve(&self, reference: &Value) -> Option<&'a Value> {
        self.position_of(reference)
            .and_then(|i| self.entries.get(i))
            .map(|(_, r)| *r)
    }
}

/// A Bundle's resources with their positions (`Bundle.entry[3]`), and their fullUrls.
pub type Entries<'a> = (Vec<(String, &'a Value)>, Vec<Option<&'a str>>);

/// The entries of a Bundle with their positions, after checking its shape.
pub fn bundle_entries(bundle: &Value) -> Result<Entries<'_>, IngestError> {
    if bundle["resourceType"] != "Bundle" {
        return Err(invalid("Bundle", "resourceType must be Bundle"));
    }
    let kind = bundle["type"].as_str().unwrap_or_default();
    if !matches!(kind, "transaction" | "batch" | "collection" | "searchset") {
        return Err(invalid(
            "Bundle.type",
            format!("{kind:?} bundles are not accepted (use transaction)"),
        ));
    }
    let entries = bundle["entry"]
        .as_array()
        .ok_or_else(|| invalid("Bundle.entry", "missing"))?;
    let mut resources = Vec::with_capacity(entries.len());
    let mut urls = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let resource = &entry["resource"];
        if !resource.is_object() {
            return Err(invalid(
                &format!("Bundle.entry[{i}]"),
                "entry without a resource",
            ));
        }
        resources.push((format!("Bundle.entry[{i}]"), resource));
        urls.push(entry["fullUrl"].as_str());
    }
    Ok((resources, urls))
}

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

/// Inside a batch a refusal is kept apart until the batch's transaction is rolled back and the
/// refusal recorded, so that it cannot reach a caller unaudited.
enum BatchError {
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
        let written = match category {
            Category::LabResults => {
                let mut outcomes = Vec::new();
                for result in parse_observation(resource, subject, &source, location)? {
                    outcomes.push(labs::upsert(tx, grant, &result).await);
                }
                outcomes.into_iter().collect::<Result<Vec<_>, _>>()
            }
            Category::Prescriptions => {
                let p = parse_medication_request(resource, batch, subject, &source, location)?;
                prescriptions::upsert(tx, grant, &p).await.map(|o| vec![o])
            }
            _ => match parse_care_plan(resource, batch, subject, &source, location)? {
                Some(plan) => plans::upsert(tx, grant, &plan).await.map(|o| vec![o]),
                None => {
                    summary.skip(kind, "status entered-in-error or unknown");
                    continue;
                }
            },
        };
        let outcomes = written.map_err(|e| match e {
            DomainError::BelongsToAnotherPatient(owner) => BatchError::Refused(gate.refuse_move(
                &writer.request(subject, Some(source.id.clone())),
                owner,
                kind,
            )),
            other => other.into(),
        })?;
        summary.count(kind, combined(&outcomes));
    }
    Ok(summary)
}

fn category_of(kind: &str) -> Option<Category> {
    match kind {
        "Observation" => Some(Category::LabResults),
        "MedicationRequest" => Some(Category::Prescriptions),
        "CarePlan" => Some(Category::TreatmentPlans),
        _ => None,
    }
}

/// A Patient resource names who the other resources are about. Naming a patient the portal
/// holds, exactly as it holds them, changes nothing and needs no permit; registering a patient
/// or changing who they are is for the population register alone.
async fn register(
    gate: &Gate<'_>,
    tx: &mut sqlx::AnyConnection,
    writer: &Writer<'_>,
    resource: &Value,
    location: &str,
) -> Result<(PatientId, Upserted), BatchError> {
    let source = source_of(writer, resource, location)?;
    let patient = parse_patient(resource, &source, location)?;
    let (patient, same_as) = if carries_cpr(resource) {
        (patient, patients::SameAs::SourceKeyOrCpr)
    } else {
        let patient = with_free_cpr(tx, patient, &source).await?;
        (patient, patients::SameAs::SourceKeyOnly)
    };
    let current = patients::existing(tx, &patient, &source, same_as).await?;
    if let Some(current) = &current {
        if patients::same_demographics(current, &patient) {
            return Ok((current.id, Upserted::Unchanged));
        }
    }
    let id = current.as_ref().map_or(patient.id, |c| c.id);
    let req = writer.request(id, Some(source.id.clone()));
    let grant = gate
        .authorize_register(tx, &req, patient.birth_date, writer.source_system)
        .await?
        .map_err(BatchError::Refused)?;
    Ok(patients::upsert(tx, &grant, &patient, current.as_ref(), &source).await?)
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
fn source_of(writer: &Writer<'_>, resource: &Value, location: &str) -> Result<Source, IngestError> {
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

async fn subject_of(
    conn: &mut sqlx::AnyConnection,
    writer: &Writer<'_>,
    batch: &Batch<'_>,
    patient_ids: &HashMap<usize, PatientId>,
    resource: &Value,
    location: &str,
) -> Result<PatientId, ApplyError> {
    let subject = &resource["subject"];
    if let Some(id) = batch
        .position_of(subject)
        .and_then(|position| patient_ids.get(&position))
    {
        return Ok(*id);
    }
    if let Some(reference) = subject["reference"].as_str() {
        if let Some(id) = reference.strip_prefix("Patient/") {
            if let Ok(uuid) = Uuid::parse_str(id) {
                if patients::by_id(conn, PatientId(uuid)).await?.is_some() {
                    return Ok(PatientId(uuid));
                }
            }
            let source = Source {
                system: writer.source_system.to_string(),
                id: id.to_string(),
            };
            if let Some(p) = patients::by_source(conn, &source).await? {
                return Ok(p.id);
            }
        }
    }
    if subject["identifier"]["system"] == CPR_SYSTEM {
        let cpr = Cpr::parse(subject["identifier"]["value"].as_str().unwrap_or_default())
            .map_err(|e| invalid(location, format!("subject.identifier: {e}")))?;
        if let Some(p) = patients::by_cpr(conn, &cpr).await? {
            return Ok(p.id);
        }
    }
    Err(invalid(location, "subject does not name a known patient (Patient/<id>, a Patient in the same Bundle, or a CPR identifier)").into())
}

fn text(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_instant(
    v: &Value,
    location: &str,
    field: &str,
) -> Result<Option<OffsetDateTime>, IngestError> {
    let Some(s) = text(v) else { return Ok(None) };
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(Some(t));
    }
    parse_date(s)
        .map(|d| Some(d.midnight().assume_utc()))
        .map_err(|_| invalid(location, format!("{field}: {s:?} is not a FHIR dateTime")))
}

pub fn parse_date(s: &str) -> Result<Date, DomainError> {
    records_domain::db::parse_date(s.get(..10).unwrap_or(s))
}

/// Code system, code and display of the first coding of a CodeableConcept.
fn coding(concept: &Value) -> Option<(String, String, String)> {
    let c = &concept["coding"][0];
    let code = text(&c["code"])?;
    let display = text(&c["display"])
        .or_else(|| text(&concept["text"]))
        .unwrap_or(code);
    Some((
        text(&c["system"]).unwrap_or("").to_string(),
        code.to_string(),
        display.to_string(),
    ))
}

pub fn parse_patient(r: &Value, source: &Source, location: &str) -> Result<Patient, IngestError> {
    let birth =
        text(&r["birthDate"]).ok_or_else(|| invalid(location, "Patient.birthDate is required"))?;
    let birth_date = parse_date(birth).map_err(|_| {
        invalid(
            location,
            format!("Patient.birthDate {birth:?} is not a date"),
        )
    })?;
    let name = &r["name"][0];
    let family = text(&name["family"])
        .ok_or_else(|| invalid(location, "Patient.name[0].family is required"))?;
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(text).collect())
        .unwrap_or_default();
    let sex = match r["gender"].as_str() {
        Some("female") => Sex::Female,
        Some("male") => Sex::Male,
        Some("other") => Sex::Other,
        _ => Sex::Unknown,
    };
    let identifiers = r["identifier"].as_array().cloned().unwrap_or_default();
    let cpr = identifiers
        .iter()
        .find(|i| i["system"] == CPR_SYSTEM)
        .map(|i| {
            Cpr::parse(i["value"].as_str().unwrap_or_default())
                .map_err(|e| invalid(location, format!("CPR identifier: {e}")))
        })
        .transpose()?;
    let original = identifiers
        .iter()
        .find(|i| i["system"] != CPR_SYSTEM)
        .and_then(|i| {
            Some(format!(
                "{}|{}",
                i["system"].as_str().unwrap_or(""),
                text(&i["value"])?
            ))
        });
    let cpr = match cpr {
        Some(c) => c,
        None => assigned_cpr(
            birth_date,
            sex,
            &format!("{}|{}", source.system, source.id),
            0,
        )
        .ok_or_else(|| {
            invalid(
                location,
                "birth date outside the years CPR numbers cover (1858-2057)",
            )
        })?,
    };
    if given.join(" ").len() > 200 || family.len() > 200 {
        return Err(invalid(location, "name is too long"));
    }
    Ok(Patient {
        id: PatientId(Uuid::now_v7()),
        cpr,
        given_name: given.join(" "),
        family_name: family.to_string(),
        birth_date,
        sex,
        gp_clinic_id: None,
        original_identifier: original,
    })
}

/// The documented assignment rule (module docs); `attempt` steps the serial on a clash.
pub fn assigned_cpr(birth: Date, sex: Sex, key: &str, attempt: u16) -> Option<Cpr> {
    let year = birth.year();
    let digest = Sha256::digest(key.as_bytes());
    let seventh = match year {
        1900..=1999 => digest[0] % 4,
        2000..=2036 => 4,
        2037..=2057 => 5 + digest[0] % 4,
        1858..=1899 => 5 + digest[0] % 4,
        _ => return None,
    };
    let base = (u16::from(digest[1]) << 8 | u16::from(digest[2])) % 100;
    let mut last = digest[3] % 10;
    let wants_odd = sex == Sex::Male;
    if sex != Sex::Other && sex != Sex::Unknown && (last % 2 == 1) != wants_odd {
        last = (last + 1) % 10;
    }
    let serial = (base * 10 + u16::from(last) + attempt * 2) % 1000;
    let digits = format!(
        "{:02}{:02}{:02}{}{:03}",
        birth.day(),
        birth.month() as u8,
        year % 100,
        seventh,
        serial
    );
    Cpr::parse(&digits).ok()
}

fn carries_cpr(patient: &Value) -> bool {
    patient["identifier"]
        .as_array()
        .is_some_and(|ids| ids.iter().any(|i| i["system"] == CPR_SYSTEM))
}

/// Keep the assigned CPR unless it belongs to someone else already; then step the serial.
async fn with_free_cpr(
    conn: &mut sqlx::AnyConnection,
    mut patient: Patient,
    source: &Source,
) -> Result<Patient, ApplyError> {
    if let Some(existing) = patients::by_source(conn, source).await? {
        patient.cpr = existing.cpr;
        return Ok(patient);
    }
    let key = format!("{}|{}", source.system, source.id);
    for attempt in 1..=500 {
        match patients::by_cpr(conn, &patient.cpr).await? {
            None => return Ok(patient),
            Some(_) => {
                patient.cpr = assigned_cpr(patient.birth_date, patient.sex, &key, attempt)
                    .ok_or_else(|| invalid(&key, "no free CPR number"))?;
            }
        }
    }
    Err(invalid(&key, "no free CPR number for this birth date").into())
}

fn observation_status(r: &Value, location: &str) -> Result<ResultStatus, IngestError> {
    match r["status"].as_str() {
        Some("final") => Ok(ResultStatus::Final),
        Some("amended" | "corrected") => Ok(ResultStatus::Amended),
        Some("preliminary" | "registered") => Ok(ResultStatus::Preliminary),
        Some("cancelled" | "entered-in-error") => Ok(ResultStatus::Cancelled),
        other => Err(invalid(
            location,
            format!("Observation.status {other:?} is not a known status"),
        )),
    }
}

/// One lab result per Observation, or one per component for panels such as blood pressure.
pub fn parse_observation(
    r: &Value,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Vec<LabResult>, IngestError> {
    let status = observation_status(r, location)?;
    let effective = parse_instant(&r["effectiveDateTime"], location, "effectiveDateTime")?
        .or(parse_instant(
            &r["effectivePeriod"]["start"],
            location,
            "effectivePeriod.start",
        )?)
        .ok_or_else(|| invalid(location, "Observation.effectiveDateTime is required"))?;
    let issued = parse_instant(&r["issued"], location, "issued")?.unwrap_or(effective);
    let category = r["category"][0]["coding"][0]["code"]
        .as_str()
        .unwrap_or("laboratory")
        .to_string();
    let lab = r["performer"][0]["display"]
        .as_str()
        .unwrap_or("Unknown laboratory")
        .to_string();
    let base = |code: (String, String, String),
                value: LabValue,
                unit: Option<String>,
                range: (Option<f64>, Option<f64>),
                interpretation: Interpretation,
                id: String| LabResult {
        id: Uuid::now_v7(),
        patient_id: patient,
        category: category.clone(),
        code_system: code.0,
        code: code.1,
        display: code.2,
        value,
        unit,
        reference_low: range.0,
        reference_high: range.1,
        interpretation,
        status,
        effective_at: effective,
        issued_at: issued,
        performing_lab: lab.clone(),
        released_at: issued,
        version: 1,
        source: Source {
            system: source.system.clone(),
            id,
        },
    };
    let parts: Vec<(&Value, String)> = match r["component"].as_array() {
        Some(components) if !has_value(r) => components
            .iter()
            .enumerate()
            .map(|(i, c)| (c, format!("{}#{i}", source.id)))
            .collect(),
        _ => vec![(r, source.id.clone())],
    };
    let mut results = Vec::new();
    for (part, id) in parts {
        let code = coding(&part["code"])
            .ok_or_else(|| invalid(location, "Observation.code needs a coding with a code"))?;
        let (value, unit) = value_of(part, location)?;
        let range = (
            part["referenceRange"][0]["low"]["value"].as_f64(),
            part["referenceRange"][0]["high"]["value"].as_f64(),
        );
        let range = if range == (None, None) {
            (
                r["referenceRange"][0]["low"]["value"].as_f64(),
                r["referenceRange"][0]["high"]["value"].as_f64(),
            )
        } else {
            range
        };
        let interpretation = interpretation_of(part, &value, range);
        results.push(base(code, value, unit, range, interpretation, id));
    }
    Ok(results)
}

fn has_value(r: &Value) -> bool {
    [
        "valueQuantity",
        "valueString",
        "valueCodeableConcept",
        "valueBoolean",
        "valueInteger",
    ]
    .iter()
    .any(|k| !r[k].is_null())
}

fn value_of(part: &Value, location: &str) -> Result<(LabValue, Option<String>), IngestError> {
    if let Some(v) = part["valueQuantity"]["value"].as_f64() {
        let unit = text(&part["valueQuantity"]["unit"])
            .or_else(|| text(&part["valueQuantity"]["code"]))
            .map(str::to_string);
        return Ok((LabValue::Numeric(v), unit));
    }
    if let Some(v) = part["valueInteger"].as_i64() {
        return Ok((LabValue::Numeric(v as f64), None));
    }
    if let Some(s) = text(&part["valueString"]) {
        return Ok((LabValue::Text(s.chars().take(2000).collect()), None));
    }
    if let Some((_, code, display)) = coding(&part["valueCodeableConcept"]) {
        return Ok((
            LabValue::Text(if display.is_empty() { code } else { display }),
            None,
        ));
    }
    if let Some(b) = part["valueBoolean"].as_bool() {
        return Ok((LabValue::Text(if b { "yes" } else { "no" }.into()), None));
    }
    Err(invalid(
        location,
        "Observation has no value (valueQuantity, valueString, valueCodeableConcept, ...)",
    ))
}

fn interpretation_of(
    part: &Value,
    value: &LabValue,
    range: (Option<f64>, Option<f64>),
) -> Interpretation {
    match part["interpretation"][0]["coding"][0]["code"].as_str() {
        Some("L") => Interpretation::Low,
        Some("H") => Interpretation::High,
        Some("N") => Interpretation::Normal,
        Some("LL" | "HH" | "AA" | "LU" | "HU") => Interpretation::Critical,
        _ => match value {
            LabValue::Numeric(v) => Interpretation::classify(*v, range.0, range.1),
            LabValue::Text(_) => Interpretation::Unknown,
        },
    }
}

pub fn parse_medication_request(
    r: &Value,
    batch_or_none: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Prescription, IngestError> {
    let (system, code, name) = coding(&r["medicationCodeableConcept"])
        .or_else(|| {
            batch_or_none
                .resolve_ref(&r["medicationReference"])
                .and_then(|m| coding(&m["code"]))
        })
        .ok_or_else(|| {
            invalid(
                location,
                "MedicationRequest needs medicationCodeableConcept with a coding",
            )
        })?;
    let status = match r["status"].as_str() {
        Some("active" | "on-hold" | "draft") => PrescriptionStatus::Active,
        Some("completed") => PrescriptionStatus::Completed,
        Some("stopped") => PrescriptionStatus::Stopped,
        Some("cancelled" | "entered-in-error") => PrescriptionStatus::Cancelled,
        other => {
            return Err(invalid(
                location,
                format!("MedicationRequest.status {other:?} is not a known status"),
            ))
        }
    };
    let authored = parse_instant(&r["authoredOn"], location, "authoredOn")?
        .ok_or_else(|| invalid(location, "MedicationRequest.authoredOn is required"))?;
    let prescriber = text(&r["requester"]["display"])
        .map(str::to_string)
        .or_else(|| {
            batch_or_none
                .resolve_ref(&r["requester"])
                .and_then(practitioner_name)
        })
        .unwrap_or_else(|| "Unknown prescriber".into());
    let validity = &r["dispenseRequest"]["validityPeriod"];
    let valid_from = parse_instant(&validity["start"], location, "validityPeriod.start")?
        .map(|t| t.date())
        .unwrap_or(authored.date());
    let valid_until =
        parse_instant(&validity["end"], location, "validityPeriod.end")?.map(|t| t.date());
    Ok(Prescription {
        id: Uuid::now_v7(),
        patient_id: patient,
        medication_system: system,
        medication_code: code,
        medication_name: name,
        dosage_text: dosage_text(&r["dosageInstruction"][0]),
        status,
        authored_at: authored,
        prescriber,
        valid_from,
        valid_until,
        stop_reason: text(&r["statusReason"]["text"]).map(str::to_string),
        version: 1,
        source: source.clone(),
    })
}

/// The dosage as a sentence: the sender's text, or one built from dose and timing.
fn dosage_text(d: &Value) -> String {
    if let Some(t) = text(&d["text"]) {
        return t.to_string();
    }
    let dose = d["doseAndRate"][0]["doseQuantity"]["value"]
        .as_f64()
        .map(|v| {
            format!(
                "{} {}",
                trim_float(v),
                d["doseAndRate"][0]["doseQuantity"]["unit"]
                    .as_str()
                    .unwrap_or("dose(s)")
            )
        });
    let repeat = &d["timing"]["repeat"];
    let timing = match (
        repeat["frequency"].as_i64(),
        repeat["period"].as_f64(),
        repeat["periodUnit"].as_str(),
    ) {
        (Some(f), Some(p), Some(u)) => Some(format!(
            "{f} time(s) per {} {}",
            trim_float(p),
            match u {
                "d" => "day(s)",
                "h" => "hour(s)",
                "wk" => "week(s)",
                "mo" => "month(s)",
                other => other,
            }
        )),
        _ => None,
    };
    let as_needed = d["asNeededBoolean"].as_bool() == Some(true);
    let parts: Vec<String> = [dose, timing, as_needed.then(|| "as needed".to_string())]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        "As directed by the prescriber".into()
    } else {
        parts.join(", ")
    }
}

fn practitioner_name(p: &Value) -> Option<String> {
    let name = &p["name"][0];
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(text).collect())
        .unwrap_or_default();
    let family = text(&name["family"])?;
    let prefix = name["prefix"][0]
        .as_str()
        .map(|p| format!("{p} "))
        .unwrap_or_default();
    Some(format!("{prefix}{} {family}", given.join(" ")).replace("  ", " "))
}

/// Resolving references to other resources of the same Bundle (none for single resources).
pub trait ResolveReference {
    fn resolve_ref(&self, reference: &Value) -> Option<&Value>;
}

impl ResolveReference for Batch<'_> {
    fn resolve_ref(&self, reference: &Value) -> Option<&Value> {
        self.resolve(reference)
    }
}

/// A single resource sent on its own: references cannot point into a Bundle.
pub struct NoBundle;

impl ResolveReference for NoBundle {
    fn resolve_ref(&self, _: &Value) -> Option<&Value> {
        None
    }
}

pub fn parse_care_plan(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<TreatmentPlan>, IngestError> {
    let status = match r["status"].as_str() {
        Some("draft") => PlanStatus::Draft,
        Some("active") => PlanStatus::Active,
        Some("on-hold") => PlanStatus::OnHold,
        Some("completed") => PlanStatus::Completed,
        Some("revoked") => PlanStatus::Revoked,
        Some("entered-in-error" | "unknown") => return Ok(None),
        other => {
            return Err(invalid(
                location,
                format!("CarePlan.status {other:?} is not a known status"),
            ))
        }
    };
    let title = text(&r["title"])
        .map(str::to_string)
        .or_else(|| coding(&r["category"][0]).map(|c| c.2))
        .or_else(|| text(&r["category"][0]["text"]).map(str::to_string))
        .unwrap_or_else(|| "Care plan".into());
    let addresses: Vec<String> = r["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| batch.resolve_ref(c))
                .filter_map(|c| coding(&c["code"]).map(|x| x.2))
                .collect()
        })
        .unwrap_or_default();
    let description = text(&r["description"])
        .map(str::to_string)
        .unwrap_or_else(|| {
            if addresses.is_empty() {
                String::new()
            } else {
                format!("Addresses: {}", addresses.join(", "))
            }
        });
    let start = parse_instant(&r["period"]["start"], location, "period.start")?
        .ok_or_else(|| invalid(location, "CarePlan.period.start is required"))?;
    let end = parse_instant(&r["period"]["end"], location, "period.end")?;
    let goals = r["goal"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|g| batch.resolve_ref(g))
                .filter_map(|g| {
                    Some(Goal {
                        description: text(&g["description"]["text"])
                            .map(str::to_string)
                            .or_else(|| coding(&g["description"]).map(|c| c.2))?,
                        target: text(&g["target"][0]["detailString"]).map(str::to_string),
                        status: match g["lifecycleStatus"].as_str() {
                            Some("proposed" | "planned") => GoalStatus::Proposed,
                            Some("completed") => GoalStatus::Achieved,
                            Some("cancelled" | "rejected" | "entered-in-error") => {
                                GoalStatus::Cancelled
                            }
                            _ => GoalStatus::Active,
                        },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let activities = r["activity"]
        .as_array()
        .map(|acts| {
            acts.iter()
                .filter_map(|a| {
                    let d = &a["detail"];
                    let description = coding(&d["code"])
                        .map(|c| c.2)
                        .or_else(|| text(&d["description"]).map(str::to_string))?;
                    let status = match d["status"].as_str() {
                        Some("scheduled") => ActivityStatus::Scheduled,
                        Some("in-progress") => ActivityStatus::InProgress,
                        Some("completed") => ActivityStatus::Completed,
                        Some("cancelled" | "stopped" | "entered-in-error") => {
                            ActivityStatus::Cancelled
                        }
                        _ => ActivityStatus::NotStarted,
                    };
                    Some(Activity {
                        description,
                        status,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let author = text(&r["author"]["display"])
        .map(str::to_string)
        .or_else(|| batch.resolve_ref(&r["author"]).and_then(practitioner_name))
        .unwrap_or_else(|| "Unknown author".into());
    Ok(Some(TreatmentPlan {
        id: Uuid::now_v7(),
        patient_id: patient,
        title,
        description,
        status,
        period_start: start.date(),
        period_end: end.map(|e| e.date()),
        author,
        updated_at: start,
        version: 1,
        goals,
        activities,
        source: source.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::date;

    fn src() -> Source {
        Source {
            system: "urn:test".into(),
            id: "1".into(),
        }
    }

    #[test]
    fn assigned_cpr_is_deterministic_valid_and_follows_sex() {
        let a = assigned_cpr(date!(1982 - 04 - 07), Sex::Male, "urn:x|abc", 0).unwrap();
        assert_eq!(
            a,
            assigned_cpr(date!(1982 - 04 - 07), Sex::Male, "urn:x|abc", 0).unwrap()
        );
        assert_eq!(a.birth_date(), date!(1982 - 04 - 07));
        assert!(a.is_odd());
        let f = assigned_cpr(date!(2010 - 12 - 31), Sex::Female, "urn:x|def", 3).unwrap();
        assert_eq!(f.birth_date(), date!(2010 - 12 - 31));
        assert!(!f.is_odd());
        assert_ne!(
            assigned_cpr(date!(1982 - 04 - 07), Sex::Male, "urn:x|abc", 1),
            Some(a)
        );
        assert!(assigned_cpr(date!(1700 - 01 - 01), Sex::Male, "k", 0).is_none());
    }

    #[test]
    fn patient_keeps_a_given_cpr_and_the_original_identifier() {
        let r = json!({"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:x", "value": "42"}, {"system": CPR_SYSTEM, "value": "010180-1234"}],
            "name": [{"family": "Hansen", "given": ["Ole", "Bo"]}], "gender": "male", "birthDate": "1980-01-01"});
        let p = parse_patient(&r, &src(), "Patient").unwrap();
        assert_eq!(p.cpr.digits(), "0101801234");
        assert_eq!(p.given_name, "Ole Bo");
        assert_eq!(p.original_identifier.as_deref(), Some("urn:x|42"));
    }

    #[test]
    fn malformed_patients_are_refused_with_their_position() {
        let r = json!({"resourceType": "Patient", "name": [{"family": "X"}], "birthDate": "1980-13-01"});
        let e = parse_patient(&r, &src(), "Bundle.entry[4]").unwrap_err();
        assert_eq!(e.location, "Bundle.entry[4]");
        let r = json!({"resourceType": "Patient", "birthDate": "1980-01-01"});
        assert!(parse_patient(&r, &src(), "x").is_err());
    }

    #[test]
    fn observation_panels_become_one_result_per_component() {
        let r = json!({"resourceType": "Observation", "id": "bp", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "55284-4"}]},
            "effectiveDateTime": "2020-01-01T10:00:00+00:00",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}]}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic"}]}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}]});
        let results = parse_observation(&r, PatientId(Uuid::nil()), &src(), "x").unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].source.id, "1#1");
        assert_eq!(results[0].value, LabValue::Numeric(120.0));
    }

    #[test]
    fn observation_ranges_and_flags() {
        let r = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hb"}]},
            "effectiveDateTime": "2020-01-01", "valueQuantity": {"value": 6.1, "unit": "mmol/L"}, "referenceRange": [{"low": {"value": 7.3}, "high": {"value": 10.5}}]});
        let results = parse_observation(&r, PatientId(Uuid::nil()), &src(), "x").unwrap();
        assert_eq!(results[0].interpretation, Interpretation::Low);
        let no_value = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"code": "x"}]}, "effectiveDateTime": "2020-01-01"});
        assert!(parse_observation(&no_value, PatientId(Uuid::nil()), &src(), "x").is_err());
        let bad_status = json!({"resourceType": "Observation", "status": "dancing"});
        assert!(parse_observation(&bad_status, PatientId(Uuid::nil()), &src(), "x").is_err());
    }

    #[test]
    fn dosage_is_built_from_timing_when_there_is_no_text() {
        let d = json!({"timing": {"repeat": {"frequency": 2, "period": 1.0, "periodUnit": "d"}}, "doseAndRate": [{"doseQuantity": {"value": 1.0}}], "asNeededBoolean": false});
        assert_eq!(dosage_text(&d), "1 dose(s), 2 time(s) per 1 day(s)");
        assert_eq!(dosage_text(&json!({})), "As directed by the prescriber");
    }
}
