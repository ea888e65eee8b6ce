//! Reading through FHIR: `metadata`, read by id and search for each resource type. Every read
//! is one gate decision (and audit event) for the patient it is about, as on the pages; a
//! search returns one Bundle page with a `next` link.

use access_control::audit::{query as audit_query, NewEvent, Outcome};
use access_control::{AccessError, Audited, ReadGrant, Role};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use records_domain::model::{
    Allergy, Contact, Diagnosis, LabResult, PatientId, Prescription, Report, TreatmentPlan,
    Vaccination,
};
use records_domain::store::kept::{self, Kept};
use records_domain::store::{labs, patients, plans, prescriptions, Category};
use records_domain::{Cpr, DomainError};
use serde_json::Value;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::caller::audit_system;
use super::search::{self, AuditSearch, ObservationSearch, PatientSearch, StatusSearch};
use super::{fhir_json, ingest, resources, FhirCaller, FhirError, FhirResult, BASE};
use crate::app::AppState;

fn query_pairs(raw: Option<String>) -> FhirResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| FhirError::malformed("the query string is malformed"))
}

/// The next page's URL: the same query with `_offset` moved on.
fn next_url(
    path: &str,
    pairs: &[(String, String)],
    offset: i64,
    count: i64,
    total: i64,
) -> Option<String> {
    if offset + count >= total {
        return None;
    }
    let mut next: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "_offset")
        .cloned()
        .collect();
    next.push(("_offset".into(), (offset + count).to_string()));
    serde_urlencoded::to_string(&next)
        .ok()
        .map(|q| format!("{path}?{q}"))
}

fn self_url(path: &str, raw: &Option<String>) -> String {
    match raw {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

pub(super) async fn metadata() -> Response {
    fhir_json(StatusCode::OK, &resources::capability_statement(BASE))
}

fn uuid(id: &str) -> FhirResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| FhirError::not_found())
}

pub(super) async fn read_patient(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, "Patient", false).await?;
    let patient = PatientId(uuid(&id)?);
    let mut record = state
        .gate()
        .summary(&caller.request(patient, Some(format!("Patient/{id}"))))
        .await?;
    let found = patients::by_id(record.conn(), patient)
        .await?
        .ok_or_else(FhirError::not_found)?;
    record.commit().await?;
    Ok(fhir_json(StatusCode::OK, &resources::patient(&found)))
}

/// Candidates are found first; each is returned only if the policy lets this caller see it
/// (and that decision is audited like any other read).
pub(super) async fn search_patients(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "Patient", false).await?;
    let pairs = query_pairs(raw.clone())?;
    let query = PatientSearch::parse(&pairs)?;
    let candidates = {
        let mut conn = state.db.pool().acquire().await?;
        match (&query.identifier, &query.name) {
            (Some((Some(system), value)), _) if system == "_id" => {
                patients::by_id(&mut conn, PatientId(uuid(value)?))
                    .await?
                    .into_iter()
                    .collect()
            }
            (Some((system, value)), _) => {
                if system.as_deref().is_some_and(|s| s != ingest::CPR_SYSTEM) {
                    Vec::new()
                } else {
                    let cpr = Cpr::parse(value)
                        .map_err(|e| FhirError::malformed(format!("identifier: {e}")))?;
                    patients::by_cpr(&mut conn, &cpr)
                        .await?
                        .into_iter()
                        .collect()
                }
            }
            (None, Some(name)) => {
                patients::search_by_name(&mut conn, name, query.birthdate, 50).await?
            }
            (None, None) => Vec::new(),
        }
    };
    let mut visible = Vec::new();
    for candidate in candidates {
        match state
            .gate()
            .summary(&caller.request(candidate.id, Some("Patient search".into())))
            .await
        {
            Ok(record) => {
                record.commit().await?;
                visible.push(resources::patient(&candidate));
            }
            Err(AccessError::Denied(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(paged("Patient", &pairs, &raw, &query.paging, visible))
}

/// A resource kept in one category of a patient's record: what the read-by-id handler, and for
/// `ByStatus` the search handler, need to know of it.
pub(super) trait RecordResource {
    const TYPE: &'static str;
    const CATEGORY: Category;
    type Row;
    async fn patient_of(
        conn: &mut AnyConnection,
        id: Uuid,
    ) -> Result<Option<PatientId>, DomainError>;
    async fn by_id(
        conn: &mut AnyConnection,
        grant: &ReadGrant,
        id: Uuid,
    ) -> Result<Self::Row, DomainError>;
    fn render(row: &Self::Row) -> Value;
}

/// A resource searched by patient and status: few enough per patient to filter in memory.
pub(super) trait ByStatus: RecordResource {
    async fn for_patient(
        conn: &mut AnyConnection,
        grant: &ReadGrant,
    ) -> Result<Vec<Self::Row>, DomainError>;
    fn status(row: &Self::Row) -> &str;
}

pub(super) struct Observation;
pub(super) struct MedicationRequest;
pub(super) struct CarePlan;

/// The three stores answer the same questions under the same names, so each resource is a
/// line: its FHIR type, its category, its row, the store that holds it and how it renders.
macro_rules! record_resource {
    ($resource:ident, $category:ident, $row:ty, $store:ident, $render:path) => {
        impl RecordResource for $resource {
            const TYPE: &'static str = stringify!($resource);
            const CATEGORY: Category = Category::$category;
            type Row = $row;
            async fn patient_of(
                conn: &mut AnyConnection,
                id: Uuid,
            ) -> Result<Option<PatientId>, DomainError> {
                $store::patient_of(conn, id).await
            }
            async fn by_id(
                conn: &mut AnyConnection,
                grant: &ReadGrant,
                id: Uuid,
            ) -> Result<$row, DomainError> {
                $store::by_id_for(conn, grant, id).await
            }
            fn render(row: &$row) -> Value {
                $render(row)
            }
        }
    };
    ($resource:ident, $category:ident, $row:ty, $store:ident, $render:path, searched by status) => {
        record_resource!($resource, $category, $row, $store, $render);
        impl ByStatus for $resource {
            async fn for_patient(
                conn: &mut AnyConnection,
                grant: &ReadGrant,
            ) -> Result<Vec<$row>, DomainError> {
                $store::for_patient(conn, grant).await
            }
            fn status(row: &$row) -> &str {
                row.status.as_str()
            }
        }
    };
}

/// Diagnoses, allergies and vaccinations share one store (`kept`), searched by patient and
/// their status field.
macro_rules! kept_resource {
    ($resource:ident, $row:ty, $render:path, $status:ident) => {
        impl RecordResource for $resource {
            const TYPE: &'static str = stringify!($resource);
            const CATEGORY: Category = <$row as Kept>::CATEGORY;
            type Row = $row;
            async fn patient_of(
                conn: &mut AnyConnection,
                id: Uuid,
            ) -> Result<Option<PatientId>, DomainError> {
                kept::patient_of::<$row>(conn, id).await
            }
            async fn by_id(
                conn: &mut AnyConnection,
                grant: &ReadGrant,
                id: Uuid,
            ) -> Result<$row, DomainError> {
                kept::by_id_for(conn, grant, id).await
            }
            fn render(row: &$row) -> Value {
                $render(row)
            }
        }
        impl ByStatus for $resource {
            async fn for_patient(
                conn: &mut AnyConnection,
                grant: &ReadGrant,
            ) -> Result<Vec<$row>, DomainError> {
                kept::for_patient(conn, grant).await
            }
            fn status(row: &$row) -> &str {
                row.$status.as_str()
            }
        }
    };
}

pub(super) struct Condition;
pub(super) struct AllergyIntolerance;
pub(super) struct Immunization;
kept_resource!(Condition, Diagnosis, resources::condition, clinical_status);
kept_resource!(
    AllergyIntolerance,
    Allergy,
    resources::allergy_intolerance,
    clinical_status
);
kept_resource!(Immunization, Vaccination, resources::immunization, status);
pub(super) struct Encounter;
pub(super) struct Procedure;
pub(super) struct DiagnosticReport;
kept_resource!(Encounter, Contact, resources::encounter, status);
kept_resource!(
    Procedure,
    records_domain::model::Procedure,
    resources::procedure,
    status
);
pub(super) struct ImagingStudy;
kept_resource!(
    ImagingStudy,
    records_domain::model::ImagingStudy,
    resources::imaging_study,
    status
);
kept_resource!(
    DiagnosticReport,
    Report,
    resources::diagnostic_report,
    status
);

/// A result, or a panel with its components (the result that stands for it first).
pub(super) struct Observed(LabResult, Vec<LabResult>);

impl Observed {
    async fn of(
        conn: &mut AnyConnection,
        grant: &ReadGrant,
        result: LabResult,
    ) -> Result<Self, DomainError> {
        let components = labs::panel_components(conn, grant, &result).await?;
        Ok(Observed(result, components))
    }
}

impl RecordResource for Observation {
    const TYPE: &'static str = "Observation";
    const CATEGORY: Category = Category::LabResults;
    type Row = Observed;
    async fn patient_of(
        conn: &mut AnyConnection,
        id: Uuid,
    ) -> Result<Option<PatientId>, DomainError> {
        labs::patient_of(conn, id).await
    }
    /// A panel's later components are parts of the panel's Observation, not resources.
    async fn by_id(
        conn: &mut AnyConnection,
        grant: &ReadGrant,
        id: Uuid,
    ) -> Result<Observed, DomainError> {
        let result = labs::by_id_for(conn, grant, id).await?;
        if result.panel.is_some() && !result.stands_for_panel() {
            return Err(DomainError::NotFound);
        }
        Observed::of(conn, grant, result).await
    }
    fn render(row: &Observed) -> Value {
        resources::observation(&row.0, &row.1)
    }
}
record_resource!(
    MedicationRequest,
    Prescriptions,
    Prescription,
    prescriptions,
    resources::medication_request,
    searched by status
);
record_resource!(
    CarePlan,
    TreatmentPlans,
    TreatmentPlan,
    plans,
    resources::care_plan,
    searched by status
);

/// Decide and audit a read of the resource's category of one patient's record.
async fn open<R: RecordResource>(
    state: &AppState,
    caller: &FhirCaller,
    patient: PatientId,
    resource_id: String,
) -> FhirResult<Audited<ReadGrant>> {
    Ok(state
        .gate()
        .read(&caller.request(patient, Some(resource_id)), R::CATEGORY)
        .await?)
}

pub(super) async fn read_by_id<R: RecordResource>(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, R::TYPE, false).await?;
    let id = uuid(&id)?;
    let patient = R::patient_of(&mut *state.db.pool().acquire().await?, id)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let mut record = open::<R>(&state, &caller, patient, format!("{}/{id}", R::TYPE)).await?;
    let (conn, grant) = record.parts();
    let found = R::by_id(conn, grant, id).await?;
    record.commit().await?;
    Ok(fhir_json(StatusCode::OK, &R::render(&found)))
}

pub(super) async fn search_by_status<R: ByStatus>(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, R::TYPE, false).await?;
    let pairs = query_pairs(raw.clone())?;
    let q = StatusSearch::parse(&pairs)?;
    let patient = caller.patient_or_own(q.patient)?;
    let mut record = open::<R>(&state, &caller, patient, format!("{} search", R::TYPE)).await?;
    let (conn, grant) = record.parts();
    let all = R::for_patient(conn, grant).await?;
    record.commit().await?;
    let matching: Vec<Value> = all
        .iter()
        .filter(|row| q.status.as_deref().is_none_or(|s| R::status(row) == s))
        .map(R::render)
        .collect();
    Ok(paged(R::TYPE, &pairs, &raw, &q.paging, matching))
}

/// Observations are many (years of lab results): searched and paged in the database.
pub(super) async fn search_observations(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, Observation::TYPE, false).await?;
    let pairs = query_pairs(raw.clone())?;
    let q = ObservationSearch::parse(&pairs)?;
    let patient = caller.patient_or_own(q.patient)?;
    let mut record =
        open::<Observation>(&state, &caller, patient, "Observation search".into()).await?;
    let (conn, grant) = record.parts();
    let lab_query = labs::LabQuery {
        code_system: q.code.as_ref().and_then(|c| c.0.clone()),
        code: q.code.as_ref().map(|c| c.1.clone()),
        from: q.dates.from,
        until: q.dates.until,
        category: q.category.clone(),
        newest_first: q.newest_first,
        limit: q.paging.count,
        offset: q.paging.offset,
    };
    let (results, total) = labs::search(conn, grant, &lab_query).await?;
    let mut found = Vec::with_capacity(results.len());
    for result in results {
        found.push(Observation::render(
            &Observed::of(conn, grant, result).await?,
        ));
    }
    record.commit().await?;
    let path = format!("{BASE}/Observation");
    let next = next_url(&path, &pairs, q.paging.offset, q.paging.count, total);
    Ok(fhir_json(
        StatusCode::OK,
        &resources::searchset(BASE, &self_url(&path, &raw), next, total, found),
    ))
}

/// Page a search whose matches are few enough to filter in memory (the patients a search
/// may show, one patient's prescriptions or plans).
fn paged(
    kind: &str,
    pairs: &[(String, String)],
    raw: &Option<String>,
    paging: &search::Paging,
    matching: Vec<Value>,
) -> Response {
    let total = matching.len() as i64;
    let page = matching
        .into_iter()
        .skip(paging.offset as usize)
        .take(paging.count as usize)
        .collect();
    let path = format!("{BASE}/{kind}");
    let next = next_url(&path, pairs, paging.offset, paging.count, total);
    fhir_json(
        StatusCode::OK,
        &resources::searchset(BASE, &self_url(&path, raw), next, total, page),
    )
}

/// The audit log is the auditors'; anyone else's try is refused and audited as `action`.
pub(super) async fn auditors_only(
    state: &AppState,
    caller: &mut FhirCaller,
    action: &str,
) -> FhirResult<()> {
    caller.require(state, "AuditEvent", false).await?;
    if caller.actor.role == Role::Auditor {
        return Ok(());
    }
    audit_system(
        state,
        NewEvent::by(&caller.actor, &caller.ctx, action, Outcome::Denied)
            .reason("only auditors read the audit log"),
    )
    .await?;
    Err(FhirError::Forbidden(
        "only auditors read the audit log".into(),
    ))
}

/// Auditors only; the search is itself an audited auditor action.
pub(super) async fn search_audit_events(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    auditors_only(&state, &mut caller, "fhir AuditEvent search").await?;
    let pairs = query_pairs(raw.clone())?;
    let q = AuditSearch::parse(&pairs)?;
    let filter = audit_query::Filter {
        patient_id: q.patient.map(PatientId),
        actor_id: q.agent,
        from: q.dates.from,
        until: q.dates.until,
        ..Default::default()
    };
    // Counting and loading up to 100,200 events must not hold the writer (SQLite's write lock)
    // and stall every page view: read in a read transaction, then append the search's own
    // event in a short write transaction, committed before anything is returned (no audit,
    // no access).
    let mut read = state.db.begin_read().await?;
    let total = audit_query::count(&mut read, &filter).await?;
    let (events, _) =
        audit_query::search(&mut read, &filter, None, q.paging.offset + q.paging.count).await?;
    read.rollback().await?;
    audit_system(
        &state,
        NewEvent::by(
            &caller.actor,
            &caller.ctx,
            "fhir AuditEvent search",
            Outcome::Success,
        )
        .reason(raw.clone().unwrap_or_default()),
    )
    .await?;
    let page = events
        .iter()
        .skip(q.paging.offset as usize)
        .map(resources::audit_event)
        .collect();
    let path = format!("{BASE}/AuditEvent");
    let next = next_url(&path, &pairs, q.paging.offset, q.paging.count, total);
    Ok(fhir_json(
        StatusCode::OK,
        &resources::searchset(BASE, &self_url(&path, &raw), next, total, page),
    ))
}
