//! The FHIR R4 interface at `/fhir/r4`: read and search for Patient, Observation,
//! MedicationRequest, CarePlan and AuditEvent; transaction Bundles and single resources in.
//! The same access policy and audit log as the pages: every read goes through the gate with the
//! token's user as the actor. Errors are OperationOutcomes.

mod anonymous;
pub mod error;
pub mod ingest;
pub mod resources;
pub mod search;

use access_control::accounts;
use access_control::audit::{self, query as audit_query, NewEvent, Outcome};
use access_control::tokens::{self, ApiToken};
use access_control::{AccessError, Actor, Reach, Request, RequestContext, Role};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use records_domain::model::PatientId;
use records_domain::store::{labs, patients, plans, prescriptions, Category};
use records_domain::Cpr;
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::client_context;
pub use error::{FhirError, FhirResult};
use ingest::Writer;
use search::{AuditSearch, ObservationSearch, PatientSearch, StatusSearch};

pub const BASE: &str = "/fhir/r4";
/// Bundles from labs and imports are larger than any form; JSON nesting is capped separately.
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;
const MAX_JSON_DEPTH: usize = 64;
pub(crate) const FHIR_JSON: &str = "application/fhir+json";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/r4", post(transaction))
        .route("/fhir/r4/metadata", get(metadata))
        .route("/fhir/r4/Patient", get(search_patients))
        .route("/fhir/r4/Patient/{id}", get(read_patient))
        .route(
            "/fhir/r4/Observation",
            get(search_observations).post(create),
        )
        .route(
            "/fhir/r4/Observation/{id}",
            get(read_observation).put(update),
        )
        .route(
            "/fhir/r4/MedicationRequest",
            get(search_medication_requests).post(create),
        )
        .route(
            "/fhir/r4/MedicationRequest/{id}",
            get(read_medication_request).put(update),
        )
        .route("/fhir/r4/CarePlan", get(search_care_plans).post(create))
        .route("/fhir/r4/CarePlan/{id}", get(read_care_plan).put(update))
        .route("/fhir/r4/AuditEvent", get(search_audit_events))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body.to_string(),
    )
        .into_response();
    if let Some(version) = body["meta"]["versionId"].as_str() {
        if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
            response.headers_mut().insert(header::ETAG, etag);
        }
    }
    response
}

/// The caller of a FHIR request: a live bearer token and who it acts as. `actor` is the token's
/// user (or system client) until `require` narrows it to what the scope for the resource at
/// hand allows.
pub struct FhirCaller {
    pub token: ApiToken,
    user: Option<Actor>,
    pub actor: Actor,
    pub ctx: RequestContext,
}

impl FromRequestParts<AppState> for FhirCaller {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, FhirError> {
        let ctx = client_context(parts, state);
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let mut conn = state.db.pool().acquire().await?;
        let token = match secret {
            Some(s) if !s.is_empty() => tokens::find(&mut conn, s).await?,
            _ => None,
        };
        let Some(token) = token else {
            drop(conn);
            return Err(anonymous::refuse(state, &ctx).await);
        };
        let user = match token.user_id {
            Some(user_id) => Some(
                accounts::by_id(&mut conn, user_id)
                    .await?
                    .filter(|u| !u.disabled)
                    .map(|u| u.actor())
                    .ok_or(FhirError::Unauthenticated("the token's user is disabled"))?,
            ),
            None => None,
        };
        let actor = user.clone().unwrap_or_else(|| {
            Actor::system(
                token.id,
                format!("system client {}", token.name),
                Reach::WholeRole,
            )
        });
        Ok(Self {
            token,
            user,
            actor,
            ctx,
        })
    }
}

async fn audit_system(state: &AppState, event: NewEvent) -> Result<(), FhirError> {
    let mut tx = state.db.begin_write().await?;
    audit::append(&mut tx, event).await?;
    tx.commit().await?;
    Ok(())
}

impl FhirCaller {
    /// Scope check, which also sets who the caller acts as for this resource (a `patient/`
    /// scope confines a user to their own record); a refusal is audited and answered 403.
    async fn require(&mut self, state: &AppState, resource: &str, write: bool) -> FhirResult<()> {
        if let Some(actor) = self.token.actor(self.user.clone(), resource, write) {
            self.actor = actor;
            return Ok(());
        }
        let what = if write { "write" } else { "read" };
        audit_system(
            state,
            NewEvent::by(&self.actor, &self.ctx, "fhir scope check", Outcome::Denied)
                .resource(resource, None)
                .reason(format!(
                    "token {} has no {what} scope for {resource}",
                    self.token.name
                )),
        )
        .await?;
        Err(FhirError::Forbidden(format!(
            "the token's scopes do not allow {what} of {resource}"
        )))
    }

    fn request(&self, patient: PatientId, resource_id: Option<String>) -> Request<'_> {
        Request {
            actor: &self.actor,
            ctx: &self.ctx,
            patient,
            resource_id,
        }
    }

    /// The patient a search is about: given, or the caller's own record for patient tokens.
    fn patient_or_own(&self, given: Option<Uuid>) -> FhirResult<PatientId> {
        given
            .map(PatientId)
            .or(self.actor.patient_id)
            .ok_or_else(|| FhirError::malformed("search parameter patient is required"))
    }
}

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

async fn metadata() -> Response {
    fhir_json(StatusCode::OK, &resources::capability_statement(BASE))
}

fn uuid(id: &str) -> FhirResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| FhirError::not_found())
}

async fn read_patient(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, "Patient", false).await?;
    let patient = PatientId(uuid(&id)?);
    let (mut tx, _grant) = state
        .gate()
        .summary(&caller.request(patient, Some(format!("Patient/{id}"))))
        .await?;
    let found = patients::by_id(&mut tx, patient)
        .await?
        .ok_or_else(FhirError::not_found)?;
    tx.commit().await?;
    Ok(fhir_json(StatusCode::OK, &resources::patient(&found)))
}

/// Candidates are found first; each is returned only if the policy lets this caller see it
/// (and that decision is audited like any other read).
async fn search_patients(
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
            Ok((tx, _)) => {
                tx.commit().await?;
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

async fn read_observation(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, "Observation", false).await?;
    let id = uuid(&id)?;
    let patient = labs::patient_of(&mut *state.db.pool().acquire().await?, id)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let (mut tx, grant) = state
        .gate()
        .read(
            &caller.request(patient, Some(format!("Observation/{id}"))),
            Category::LabResults,
        )
        .await?;
    let result = labs::by_id_for(&mut tx, &grant, id).await?;
    tx.commit().await?;
    Ok(fhir_json(StatusCode::OK, &resources::observation(&result)))
}

async fn search_observations(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "Observation", false).await?;
    let pairs = query_pairs(raw.clone())?;
    let q = ObservationSearch::parse(&pairs)?;
    let patient = caller.patient_or_own(q.patient)?;
    let (mut tx, grant) = state
        .gate()
        .read(
            &caller.request(patient, Some("Observation search".into())),
            Category::LabResults,
        )
        .await?;
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
    let (results, total) = labs::search(&mut tx, &grant, &lab_query).await?;
    tx.commit().await?;
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

async fn read_medication_request(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, "MedicationRequest", false).await?;
    let id = uuid(&id)?;
    let patient = prescriptions::patient_of(&mut *state.db.pool().acquire().await?, id)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let (mut tx, grant) = state
        .gate()
        .read(
            &caller.request(patient, Some(format!("MedicationRequest/{id}"))),
            Category::Prescriptions,
        )
        .await?;
    let found = prescriptions::by_id_for(&mut tx, &grant, id).await?;
    tx.commit().await?;
    Ok(fhir_json(
        StatusCode::OK,
        &resources::medication_request(&found),
    ))
}

async fn search_medication_requests(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "MedicationRequest", false).await?;
    let pairs = query_pairs(raw.clone())?;
    let q = StatusSearch::parse(&pairs)?;
    let patient = caller.patient_or_own(q.patient)?;
    let (mut tx, grant) = state
        .gate()
        .read(
            &caller.request(patient, Some("MedicationRequest search".into())),
            Category::Prescriptions,
        )
        .await?;
    let all = prescriptions::for_patient(&mut tx, &grant).await?;
    tx.commit().await?;
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

async fn read_care_plan(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    caller.require(&state, "CarePlan", false).await?;
    let id = uuid(&id)?;
    let patient = plans::patient_of(&mut *state.db.pool().acquire().await?, id)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let (mut tx, grant) = state
        .gate()
        .read(
            &caller.request(patient, Some(format!("CarePlan/{id}"))),
            Category::TreatmentPlans,
        )
        .await?;
    let found = plans::by_id_for(&mut tx, &grant, id).await?;
    tx.commit().await?;
    Ok(fhir_json(StatusCode::OK, &resources::care_plan(&found)))
}

async fn search_care_plans(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "CarePlan", false).await?;
    let pairs = query_pairs(raw.clone())?;
    let q = StatusSearch::parse(&pairs)?;
    let patient = caller.patient_or_own(q.patient)?;
    let (mut tx, grant) = state
        .gate()
        .read(
            &caller.request(patient, Some("CarePlan search".into())),
            Category::TreatmentPlans,
        )
        .await?;
    let all = plans::for_patient(&mut tx, &grant).await?;
    tx.commit().await?;
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
async fn search_audit_events(
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

/// Parse a JSON body, refusing deep nesting before serde recurses into it.
fn parse_body(body: &Bytes) -> FhirResult<Value> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body.iter() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(FhirError::malformed(format!(
                        "JSON nested deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            (false, _, b'}' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| FhirError::malformed(format!("the body is not JSON: {e}")))
}

fn writer<'a>(caller: &'a FhirCaller, source: &'a str) -> Writer<'a> {
    Writer {
        source_system: source,
        actor: &caller.actor,
        ctx: &caller.ctx,
    }
}

fn source_system(caller: &FhirCaller) -> String {
    format!("urn:portal:client:{}", caller.token.name)
}

/// A transaction Bundle: all stored resources are written, or none.
async fn transaction(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    body: Bytes,
) -> FhirResult<Response> {
    let bundle = parse_body(&body)?;
    let (entries, _) = ingest::bundle_entries(&bundle)?;
    let kinds: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter_map(|(_, r)| r["resourceType"].as_str())
        .collect();
    for kind in kinds
        .iter()
        .filter(|k| ["Patient", "Observation", "MedicationRequest", "CarePlan"].contains(k))
    {
        caller.require(&state, kind, true).await?;
    }
    let source = source_system(&caller);
    let summary = ingest::apply_bundle(&state.gate(), &writer(&caller, &source), &bundle).await?;
    let entry: Vec<Value> = entries
        .iter()
        .map(|(_, r)| {
            let kept = ["Patient", "Observation", "MedicationRequest", "CarePlan"]
                .contains(&r["resourceType"].as_str().unwrap_or(""));
            let mut response = serde_json::json!({ "status": "200 OK" });
            if !kept {
                response["outcome"] = resources::operation_outcome(
                    "information",
                    "not-supported",
                    "resource type not kept by the portal; skipped",
                );
            }
            serde_json::json!({ "response": response })
        })
        .collect();
    let mut reply = serde_json::json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": entry });
    reply["meta"] = serde_json::json!({ "tag": [{ "system": "urn:portal:import", "code": format!("inserted={} updated={}", ingest::Summary::total(&summary.inserted), ingest::Summary::total(&summary.updated)) }] });
    Ok(fhir_json(StatusCode::OK, &reply))
}

async fn create(
    State(state): State<AppState>,
    caller: FhirCaller,
    body: Bytes,
) -> FhirResult<Response> {
    write_single(state, caller, None, body).await
}

async fn update(
    State(state): State<AppState>,
    caller: FhirCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> FhirResult<Response> {
    write_single(state, caller, Some(id), body).await
}

/// One Observation, MedicationRequest or CarePlan from a system client, keyed on its id.
async fn write_single(
    state: AppState,
    mut caller: FhirCaller,
    path_id: Option<String>,
    body: Bytes,
) -> FhirResult<Response> {
    let resource = parse_body(&body)?;
    let kind = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !["Observation", "MedicationRequest", "CarePlan"].contains(&kind.as_str()) {
        return Err(FhirError::malformed(
            "send an Observation, MedicationRequest or CarePlan",
        ));
    }
    caller.require(&state, &kind, true).await?;
    if let Some(id) = &path_id {
        if resource["id"].as_str() != Some(id.as_str()) {
            return Err(FhirError::malformed(
                "the resource's id must match the id in the URL",
            ));
        }
    }
    let source = source_system(&caller);
    let summary = ingest::apply_resources(
        &state.gate(),
        &writer(&caller, &source),
        vec![(kind.clone(), &resource)],
    )
    .await?;
    let status = if ingest::Summary::total(&summary.inserted) > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(fhir_json(
        status,
        &resources::operation_outcome("information", "informational", &format!("{kind} stored")),
    ))
}
