//! Reading through FHIR: `metadata`, read by id and search for each resource type. Every read
//! is one gate decision (and audit event) for the patient it is about, as on the pages; a
//! search returns one Bundle page with a `next` link.

use access_control::audit::{query as audit_query, NewEvent, Outcome};
use access_control::{AccessError, Role};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use records_domain::model::PatientId;
use records_domain::store::{labs, patients, plans, prescriptions, Category};
use records_domain::Cpr;
use serde_json::Value;
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
    let total = visible.len() as i64;
    let page: Vec<Value> = visible
        .into_iter()
        .skip(query.paging.offset as usize)
        .take(query.paging.count as usize)
        .collect();
    let path = format!("{BASE}/Patient");
    let next = next_url(
        &path,
        &pairs,
        query.paging.offset,
        query.paging.count,
        total,
    );
    Ok(fhir_json(
        StatusCode::OK,
        &resources::searchset(BASE, &self_url(&path, &raw), next, total, page),
    ))
}

pub(super) async fn read_observation(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, "Observation", false).await?;
    let id = uuid(&id)?;
    let patient = labs::patient_of(&mut *state.db.pool().acquire().await?, id)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let mut record = state
        .gate()
        .read(
            &caller.request(patient, Some(format!("Observation/{id}"))),
            Category::LabResults,
        )
        .await?;
    let (conn, grant) = record.parts();
    let result = labs::by_id_for(conn, grant, id).await?;
    record.commit().await?;
    Ok(fhir_json(StatusCode::OK, &resources::observation(&result)))
}

pub(super) async fn search_observations(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "Observation", false).await?;
    let pairs = query_pairs(raw.clone())?;
    let q = ObservationSearch::parse(&pairs)?;
    let patient = caller.patient_or_own(q.patient)?;
    let mut record = state
        .gate()
        .read(
            &caller.request(patient, Some("Observation search".into())),
            Category::LabResults,
        )
        .await?;
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
    record.commit().await?;
    let path = format!("{BASE}/Observation");
    let next = next_url(&path, &pairs, q.paging.offset, q.paging.count, total);
    Ok(fhir_json(
        StatusCode::OK,
        &resources::searchset(
            BASE,
            &self_url(&path, &raw),
            next,
            total,
            results.iter().map(resources::observation).collect(),
        ),
    ))
}

pub(super) async fn read_medication_request(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, "MedicationRequest", false).await?;
    let id = uuid(&id)?;
    let patient = prescriptions::patient_of(&mut *state.db.pool().acquire().await?, id)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let mut record = state
        .gate()
        .read(
            &caller.request(patient, Some(format!("MedicationRequest/{id}"))),
            Category::Prescriptions,
        )
        .await?;
    let (conn, grant) = record.parts();
    let found = prescriptions::by_id_for(conn, grant, id).await?;
    record.commit().await?;
    Ok(fhir_json(
        StatusCode::OK,
        &resources::medication_request(&found),
    ))
}

pub(super) async fn search_medication_requests(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "MedicationRequest", false).await?;
    let pairs = query_pairs(raw.clone())?;
    let q = StatusSearch::parse(&pairs)?;
    let patient = caller.patient_or_own(q.patient)?;
    let mut record = state
        .gate()
        .read(
            &caller.request(patient, Some("MedicationRequest search".into())),
            Category::Prescriptions,
        )
        .await?;
    let (conn, grant) = record.parts();
    let all = prescriptions::for_patient(conn, grant).await?;
    record.commit().await?;
    let matching: Vec<Value> = all
        .iter()
        .filter(|p| q.status.as_deref().is_none_or(|s| p.status.as_str() == s))
        .map(resources::medication_request)
        .collect();
    Ok(paged(
        "MedicationRequest",
        &pairs,
        &raw,
        &q.paging,
        matching,
    ))
}

pub(super) async fn read_care_plan(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, "CarePlan", false).await?;
    let id = uuid(&id)?;
    let patient = plans::patient_of(&mut *state.db.pool().acquire().await?, id)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let mut record = state
        .gate()
        .read(
            &caller.request(patient, Some(format!("CarePlan/{id}"))),
            Category::TreatmentPlans,
        )
        .await?;
    let (conn, grant) = record.parts();
    let found = plans::by_id_for(conn, grant, id).await?;
    record.commit().await?;
    Ok(fhir_json(StatusCode::OK, &resources::care_plan(&found)))
}

pub(super) async fn search_care_plans(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "CarePlan", false).await?;
    let pairs = query_pairs(raw.clone())?;
    let q = StatusSearch::parse(&pairs)?;
    let patient = caller.patient_or_own(q.patient)?;
    let mut record = state
        .gate()
        .read(
            &caller.request(patient, Some("CarePlan search".into())),
            Category::TreatmentPlans,
        )
        .await?;
    let (conn, grant) = record.parts();
    let all = plans::for_patient(conn, grant).await?;
    record.commit().await?;
    let matching: Vec<Value> = all
        .iter()
        .filter(|p| q.status.as_deref().is_none_or(|s| p.status.as_str() == s))
        .map(resources::care_plan)
        .collect();
    Ok(paged("CarePlan", &pairs, &raw, &q.paging, matching))
}

/// Page a search whose matches are few enough to filter in memory (one patient's
/// prescriptions or plans).
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

/// Auditors only; the search is itself an audited auditor action.
pub(super) async fn search_audit_events(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "AuditEvent", false).await?;
    if caller.actor.role != Role::Auditor {
        audit_system(
            &state,
            NewEvent::by(
                &caller.actor,
                &caller.ctx,
                "fhir AuditEvent search",
                Outcome::Denied,
            )
            .reason("only auditors read the audit log"),
        )
        .await?;
        return Err(FhirError::Forbidden(
            "only auditors read the audit log".into(),
        ));
    }
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
