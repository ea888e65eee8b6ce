//! Reading through FHIR: `metadata`, read by id and search for each resource type. Every read
//! is one gate decision (and audit event) for the patient it is about, as on the pages; a
//! search returns one Bundle page with a `next` link.

use access_control::audit::{query as audit_query, NewEvent, Outcome};
use access_control::{AccessError, Audited, ReadGrant, Role};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use records_domain::model::{
    Allergy, Contact, Diagnosis, LabResult, PatientId, Prescription, Report, TreatmentPlan,
    Vaccination,
};
use records_domain::store::kept::{self, Kept};
use records_domain::store::{labs, patients, plans, prescriptions, Category};
use records_domain::{Cpr, DomainError};
use serde_json::{json, Value};
use sqlx::AnyConnection;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::caller::audit_system;
use super::search::{
    self, AuditSearch, Handling, ObservationSearch, Paging, PatientSearch, Shared, StatusSearch,
};
use super::versions::{self, version_of};
use super::{fhir_json, ingest, resources, FhirCaller, FhirError, FhirResult};
use crate::app::AppState;

fn query_pairs(raw: Option<String>) -> FhirResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| FhirError::malformed("the query string is malformed"))
}

/// `Prefer: handling=lenient` drops unknown search parameters; strict is the default.
fn handling(headers: &HeaderMap) -> Handling {
    let lenient = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("handling=lenient"));
    if lenient {
        Handling::Lenient
    } else {
        Handling::Strict
    }
}

fn link(path: &str, used: &[(String, String)], offset: Option<i64>) -> String {
    let mut pairs: Vec<(String, String)> = used
        .iter()
        .filter(|(k, _)| k != "_offset")
        .cloned()
        .collect();
    if let Some(offset) = offset {
        pairs.push(("_offset".into(), offset.to_string()));
    }
    match serde_urlencoded::to_string(&pairs) {
        Ok(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

/// One page of a search, its total and what it includes, as a searchset Bundle.
fn answer(
    base: &str,
    kind: &str,
    shared: &Shared,
    total: i64,
    matches: Vec<Value>,
    included: Vec<Value>,
) -> Response {
    let path = format!("{base}/{kind}");
    let Paging { offset, count } = shared.paging;
    let next_url = (!shared.count_only && offset + count < total)
        .then(|| link(&path, &shared.used, Some(offset + count)));
    let matches = if shared.count_only {
        Vec::new()
    } else if shared.elements.is_empty() {
        matches
    } else {
        matches
            .iter()
            .map(|r| resources::subset(r, &shared.elements))
            .collect()
    };
    let set = resources::Searchset {
        self_url: link(&path, &shared.used, (offset > 0).then_some(offset)),
        next_url,
        total: (!shared.no_total).then_some(total),
        matches,
        included: if shared.count_only {
            Vec::new()
        } else {
            included
        },
    };
    fhir_json(StatusCode::OK, &set.bundle(base))
}

/// A read the client already holds (`If-None-Match` with the current ETag) is answered 304.
fn unless_unchanged(headers: &HeaderMap, resource: &Value) -> Response {
    let current = resource["meta"]["versionId"].as_str().unwrap_or_default();
    let held = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim().trim_start_matches("W/").trim_matches('"') == current)
        });
    if held {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{current}\"")) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return response;
    }
    fhir_json(StatusCode::OK, resource)
}

pub(super) async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let statement = resources::capability_statement(
        &super::base::base_url(&headers, &state),
        &super::smart::token_endpoint(&headers, &state),
    );
    fhir_json(StatusCode::OK, &statement)
}

fn uuid(id: &str) -> FhirResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| FhirError::not_found())
}

/// A patient's record opened as the overview is: one decision and one audit event.
async fn open_patient(
    state: &AppState,
    caller: &mut FhirCaller,
    id: &str,
    what: String,
) -> FhirResult<(PatientId, Audited<ReadGrant>)> {
    caller.require(state, "Patient", false).await?;
    let patient = PatientId(uuid(id)?);
    let record = state
        .gate()
        .summary(&caller.request(patient, Some(what)))
        .await?;
    Ok((patient, record))
}

pub(super) async fn read_patient(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> FhirResult<Response> {
    let (patient, mut record) =
        open_patient(&state, &mut caller, &id, format!("Patient/{id}")).await?;
    let found = patients::by_id(record.conn(), patient)
        .await?
        .ok_or_else(FhirError::not_found)?;
    record.commit().await?;
    Ok(unless_unchanged(&headers, &resources::patient(&found)))
}

/// Candidates are found first; each is returned only if the policy lets this caller see it
/// (and that decision is audited like any other read). A source system finds a patient by
/// CPR number only, and learns who they are, nothing of their record.
pub(super) async fn search_patients(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, "Patient", false).await?;
    let pairs = query_pairs(raw)?;
    let query = PatientSearch::parse(&pairs, handling(&headers))?;
    let by_source_system = caller.actor.role == Role::System;
    let by_cpr = query
        .identifier
        .as_ref()
        .is_some_and(|(system, _)| system.as_deref() != Some("_id"));
    if by_source_system && !by_cpr {
        audit_system(
            &state,
            NewEvent::by(
                &caller.actor,
                &caller.ctx,
                "fhir Patient search",
                Outcome::Denied,
            )
            .reason("a source system finds patients by CPR number only"),
        )
        .await?;
        return Err(FhirError::Forbidden(
            "a source system finds patients by identifier (CPR number) only".into(),
        ));
    }
    let revinclude = revincluded(&query.shared.revinclude)?;
    for kind in &revinclude {
        if !same_reach(&caller, kind) {
            return Err(FhirError::Forbidden(format!(
                "the token's scopes do not let it read {kind} as it reads Patient; search {kind} on its own"
            )));
        }
    }
    if !query.shared.include.is_empty() {
        return Err(FhirError::malformed(
            "Patient searches take _revinclude, not _include",
        ));
    }
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
            // A patient's own token finds its own record: "who am I" for a SMART app.
            (None, None) => match caller.actor.patient_id {
                Some(own) => patients::by_id(&mut conn, own).await?.into_iter().collect(),
                None => {
                    return Err(FhirError::malformed(
                        "search patients by identifier or by name (optionally with birthdate)",
                    ))
                }
            },
        }
    };
    let mut visible = Vec::new();
    let mut included = Vec::new();
    for candidate in candidates {
        let request = caller.request(candidate.id, Some("Patient search".into()));
        let opened = if by_source_system {
            state.gate().identify(&request).await
        } else {
            state.gate().summary(&request).await
        };
        match opened {
            Ok(mut record) => {
                let (conn, grant) = record.parts();
                for kind in &revinclude {
                    included.extend(all_of(kind, conn, grant).await?);
                }
                record.commit().await?;
                visible.push(resources::patient(&candidate));
            }
            Err(AccessError::Denied(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let base = super::base::base_url(&headers, &state);
    Ok(in_memory_page(
        &base,
        "Patient",
        &query.shared,
        visible,
        included,
    ))
}

/// Whether the token's scope for `kind` makes it the same actor its Patient scope made (the
/// one the decision at hand was made for): a `patient/Patient.read` token reaches no
/// MedicationRequest, and a `user/` Patient scope does not stand in for a `patient/` one.
fn same_reach(caller: &FhirCaller, kind: &str) -> bool {
    caller
        .token
        .actor(caller.user.clone(), kind, false)
        .is_some_and(|actor| {
            actor.user_id == caller.actor.user_id
                && actor.reach == caller.actor.reach
                && actor.patient_id == caller.actor.patient_id
                && actor.role == caller.actor.role
        })
}

/// The types a `_revinclude=Type:subject` (or `:patient`) names, each once.
fn revincluded(values: &[String]) -> FhirResult<Vec<String>> {
    let mut values = values.to_vec();
    values.sort();
    values.dedup();
    values
        .iter()
        .map(|v| match v.split_once(':') {
            Some((kind, "subject" | "patient")) if ingest::category_of(kind).is_some() => {
                Ok(kind.to_string())
            }
            _ => Err(FhirError::malformed(format!(
                "_revinclude={v}: give Type:subject or Type:patient for a type the portal keeps"
            ))),
        })
        .collect()
}

/// Whether an `_include` asks for the patient a match is about (`Type:subject`,
/// `Type:patient`, `*`); anything else is refused.
fn includes_patient(caller: &FhirCaller, kind: &str, values: &[String]) -> FhirResult<bool> {
    if !values.is_empty() && !same_reach(caller, "Patient") {
        return Err(FhirError::Forbidden(
            "the token's scopes do not let it read Patient as it reads this type".into(),
        ));
    }
    for v in values {
        let ok = v == "*"
            || matches!(v.split_once(':'), Some((k, "subject" | "patient")) if k == kind || k == "*");
        if !ok {
            return Err(FhirError::malformed(format!(
                "_include={v}: only {kind}:subject (or :patient) is supported"
            )));
        }
    }
    Ok(!values.is_empty())
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
    /// Whether the type keeps its source's identifier, searched as `system|value`.
    const IDENTIFIED: bool = false;
    fn identifier(_row: &Self::Row) -> Option<String> {
        None
    }
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
    ($resource:ident, $row:ty, $render:path, $status:ident $(, identified by $system:literal)?) => {
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
            $(
                const IDENTIFIED: bool = true;
                fn identifier(row: &$row) -> Option<String> {
                    row.identifier.as_ref().map(|v| format!("{}|{v}", $system))
                }
            )?
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
    status,
    identified by "urn:dicom:uid"
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

/// The resource as it is now, with `meta.lastUpdated` when its version was written through
/// FHIR; the read is decided and audited for the patient it is about.
async fn current<R: RecordResource>(
    state: &AppState,
    caller: &mut FhirCaller,
    id: &str,
    what: String,
) -> FhirResult<(Uuid, Value)> {
    caller.require(state, R::TYPE, false).await?;
    let id = uuid(id)?;
    let patient = R::patient_of(&mut *state.db.pool().acquire().await?, id)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let mut record = open::<R>(state, caller, patient, what).await?;
    let (conn, grant) = record.parts();
    let found = R::render(&R::by_id(conn, grant, id).await?);
    let version = version_of(&found);
    let written = versions::one(conn, R::TYPE, id, version).await?;
    record.commit().await?;
    Ok((
        id,
        match written {
            Some(v) => versions::stamped(found, v.written_at),
            None => found,
        },
    ))
}

pub(super) async fn read_by_id<R: RecordResource>(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> FhirResult<Response> {
    let what = format!("{}/{id}", R::TYPE);
    let (_, found) = current::<R>(&state, &mut caller, &id, what).await?;
    Ok(unless_unchanged(&headers, &found))
}

/// One version: the current one, or a past one as it was served when written.
pub(super) async fn vread<R: RecordResource>(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path((id, version)): Path<(String, String)>,
) -> FhirResult<Response> {
    let what = format!("{}/{id}/_history/{version}", R::TYPE);
    let (uuid, now) = current::<R>(&state, &mut caller, &id, what).await?;
    let wanted: i64 = version.parse().map_err(|_| FhirError::not_found())?;
    if wanted == version_of(&now) {
        return Ok(fhir_json(StatusCode::OK, &now));
    }
    let mut conn = state.db.pool().acquire().await?;
    let past = versions::one(&mut conn, R::TYPE, uuid, wanted)
        .await?
        .ok_or_else(FhirError::not_found)?;
    Ok(fhir_json(
        StatusCode::OK,
        &versions::stamped(past.body, past.written_at),
    ))
}

/// Every version kept, newest first, the current one always among them.
pub(super) async fn history<R: RecordResource>(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> FhirResult<Response> {
    let what = format!("{}/{id}/_history", R::TYPE);
    let (uuid, now) = current::<R>(&state, &mut caller, &id, what).await?;
    let mut conn = state.db.pool().acquire().await?;
    let kept = versions::all(&mut conn, R::TYPE, uuid).await?;
    drop(conn);
    let newest = version_of(&now);
    let mut entries = vec![now];
    for v in kept.into_iter().filter(|v| v.number != newest) {
        entries.push(versions::stamped(v.body, v.written_at));
    }
    let base = super::base::base_url(&headers, &state);
    let url = format!("{base}/{}/{uuid}", R::TYPE);
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|resource| {
            let version = version_of(&resource);
            let (method, status) = if version == 1 {
                ("POST", "201 Created")
            } else {
                ("PUT", "200 OK")
            };
            let mut response = json!({ "status": status, "etag": format!("W/\"{version}\"") });
            if let Some(at) = resource["meta"]["lastUpdated"].as_str() {
                response["lastModified"] = at.into();
            }
            json!({
                "fullUrl": url,
                "resource": resource,
                "request": { "method": method, "url": format!("{}/{uuid}", R::TYPE) },
                "response": response,
            })
        })
        .collect();
    let total = entry.len();
    Ok(fhir_json(
        StatusCode::OK,
        &json!({ "resourceType": "Bundle", "type": "history", "total": total, "entry": entry }),
    ))
}

/// `meta.lastUpdated` for each resource of one type of one patient written through FHIR,
/// and the `_lastUpdated` filter on it: a resource never written through FHIR has no known
/// last update, and matches no `_lastUpdated`.
async fn stamp_all(
    conn: &mut AnyConnection,
    kind: &str,
    patient: PatientId,
    range: &search::DateRange,
    resources: Vec<Value>,
) -> FhirResult<Vec<Value>> {
    let written = versions::written_at(conn, kind, patient).await?;
    let filtered = range.from.is_some() || range.until.is_some();
    Ok(resources
        .into_iter()
        .filter_map(|mut r| {
            versions::stamp(&mut r, &written);
            let at = r["meta"]["lastUpdated"]
                .as_str()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
            let inside = |at: OffsetDateTime| {
                range.from.is_none_or(|f| at >= f) && range.until.is_none_or(|u| at < u)
            };
            (!filtered || at.is_some_and(inside)).then_some(r)
        })
        .collect())
}

pub(super) async fn search_by_status<R: ByStatus>(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, R::TYPE, false).await?;
    let pairs = query_pairs(raw)?;
    let q = StatusSearch::parse(&pairs, handling(&headers), R::IDENTIFIED)?;
    let include_patient = includes_patient(&caller, R::TYPE, &q.shared.include)?;
    if !q.shared.revinclude.is_empty() {
        return Err(FhirError::malformed("_revinclude is for Patient searches"));
    }
    let patient = caller.patient_or_own(q.patient)?;
    let mut record = open::<R>(&state, &caller, patient, format!("{} search", R::TYPE)).await?;
    let (conn, grant) = record.parts();
    let all = R::for_patient(conn, grant).await?;
    let matching: Vec<Value> = all
        .iter()
        .filter(|row| q.status.is_empty() || q.status.iter().any(|s| R::status(row) == s))
        .filter(|row| q.identifier.is_none() || R::identifier(row) == q.identifier)
        .map(R::render)
        .collect();
    let matching = stamp_all(conn, R::TYPE, patient, &q.shared.last_updated, matching).await?;
    let included = the_patient(conn, patient, include_patient).await?;
    record.commit().await?;
    let base = super::base::base_url(&headers, &state);
    Ok(in_memory_page(
        &base,
        R::TYPE,
        &q.shared,
        matching,
        included,
    ))
}

/// The patient a search is about, when it asks to include them.
async fn the_patient(
    conn: &mut AnyConnection,
    patient: PatientId,
    wanted: bool,
) -> FhirResult<Vec<Value>> {
    if !wanted {
        return Ok(Vec::new());
    }
    Ok(patients::by_id(conn, patient)
        .await?
        .iter()
        .map(resources::patient)
        .collect())
}

/// Observations are many (years of lab results): searched and paged in the database.
pub(super) async fn search_observations(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    caller.require(&state, Observation::TYPE, false).await?;
    let pairs = query_pairs(raw)?;
    let q = ObservationSearch::parse(&pairs, handling(&headers))?;
    let include_patient = includes_patient(&caller, Observation::TYPE, &q.shared.include)?;
    if !q.shared.revinclude.is_empty() {
        return Err(FhirError::malformed("_revinclude is for Patient searches"));
    }
    let patient = caller.patient_or_own(q.patient)?;
    let mut record =
        open::<Observation>(&state, &caller, patient, "Observation search".into()).await?;
    let (conn, grant) = record.parts();
    let written = versions::written_at(conn, Observation::TYPE, patient).await?;
    let lab_query = labs::LabQuery {
        codes: q.codes.clone(),
        identifier: q.identifier.clone(),
        written_from: q.shared.last_updated.from,
        written_until: q.shared.last_updated.until,
        from: q.dates.from,
        until: q.dates.until,
        category: q.category.clone(),
        newest_first: q.newest_first,
        limit: if q.shared.count_only {
            0
        } else {
            q.shared.paging.count
        },
        offset: q.shared.paging.offset,
    };
    let (results, total) = labs::search(conn, grant, &lab_query).await?;
    let mut found = Vec::with_capacity(results.len());
    for result in results {
        let mut resource = Observation::render(&Observed::of(conn, grant, result).await?);
        versions::stamp(&mut resource, &written);
        found.push(resource);
    }
    let included = the_patient(conn, patient, include_patient && !found.is_empty()).await?;
    record.commit().await?;
    let base = super::base::base_url(&headers, &state);
    Ok(answer(
        &base,
        Observation::TYPE,
        &q.shared,
        total,
        found,
        included,
    ))
}

/// Page a search whose matches are few enough to filter in memory (the patients a search
/// may show, one patient's prescriptions or plans).
fn in_memory_page(
    base: &str,
    kind: &str,
    shared: &Shared,
    matching: Vec<Value>,
    included: Vec<Value>,
) -> Response {
    let total = matching.len() as i64;
    let page = matching
        .into_iter()
        .skip(shared.paging.offset as usize)
        .take(shared.paging.count as usize)
        .collect();
    answer(base, kind, shared, total, page, included)
}

/// Every resource of one type in the record the grant opens; a type the grant does not
/// cover (a guardian's narrower view) gives none.
async fn all_of(kind: &str, conn: &mut AnyConnection, grant: &ReadGrant) -> FhirResult<Vec<Value>> {
    async fn rows<R: ByStatus>(
        conn: &mut AnyConnection,
        grant: &ReadGrant,
    ) -> Result<Vec<Value>, DomainError> {
        Ok(R::for_patient(conn, grant)
            .await?
            .iter()
            .map(R::render)
            .collect())
    }
    let found = match kind {
        "Observation" => observations(conn, grant).await,
        "MedicationRequest" => rows::<MedicationRequest>(conn, grant).await,
        "CarePlan" => rows::<CarePlan>(conn, grant).await,
        "Condition" => rows::<Condition>(conn, grant).await,
        "AllergyIntolerance" => rows::<AllergyIntolerance>(conn, grant).await,
        "Immunization" => rows::<Immunization>(conn, grant).await,
        "Encounter" => rows::<Encounter>(conn, grant).await,
        "Procedure" => rows::<Procedure>(conn, grant).await,
        "DiagnosticReport" => rows::<DiagnosticReport>(conn, grant).await,
        "ImagingStudy" => rows::<ImagingStudy>(conn, grant).await,
        _ => Ok(Vec::new()),
    };
    match found {
        Ok(found) => Ok(found),
        Err(DomainError::NotPermitted) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// All of a patient's Observations (what `$everything` and `_revinclude` return).
async fn observations(
    conn: &mut AnyConnection,
    grant: &ReadGrant,
) -> Result<Vec<Value>, DomainError> {
    let query = labs::LabQuery {
        newest_first: true,
        limit: EVERYTHING_LIMIT,
        ..Default::default()
    };
    let (results, _) = labs::search(conn, grant, &query).await?;
    let mut found = Vec::with_capacity(results.len());
    for result in results {
        found.push(Observation::render(
            &Observed::of(conn, grant, result).await?,
        ));
    }
    Ok(found)
}

/// The most Observations one `$everything` returns; years of monthly results fit.
const EVERYTHING_LIMIT: i64 = 5_000;

/// `Patient/{id}/$everything`: the patient and every part of their record the caller may
/// see, decided and audited as one access (the overview's decision).
pub(super) async fn everything(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> FhirResult<Response> {
    let what = format!("Patient/{id}/$everything");
    let (patient, mut record) = open_patient(&state, &mut caller, &id, what).await?;
    let (conn, grant) = record.parts();
    let found = patients::by_id(conn, patient)
        .await?
        .ok_or_else(FhirError::not_found)?;
    let mut entries = vec![resources::patient(&found)];
    // Only the types the token reads as it reads the Patient: the decision made covers those.
    for (kind, _) in ingest::CLINICAL_TYPES {
        if same_reach(&caller, kind) {
            entries.extend(all_of(kind, conn, grant).await?);
        }
    }
    record.commit().await?;
    let base = super::base::base_url(&headers, &state);
    let total = entries.len() as i64;
    let set = resources::Searchset {
        self_url: format!("{base}/Patient/{id}/$everything"),
        next_url: None,
        total: Some(total),
        matches: entries,
        included: Vec::new(),
    };
    Ok(fhir_json(StatusCode::OK, &set.bundle(&base)))
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
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    auditors_only(&state, &mut caller, "fhir AuditEvent search").await?;
    let pairs = query_pairs(raw.clone())?;
    let q = AuditSearch::parse(&pairs, handling(&headers))?;
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
    let Paging { offset, count } = q.shared.paging;
    let (events, _) = audit_query::search(&mut read, &filter, None, offset + count).await?;
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
        .skip(offset as usize)
        .map(resources::audit_event)
        .collect();
    let base = super::base::base_url(&headers, &state);
    Ok(answer(
        &base,
        "AuditEvent",
        &q.shared,
        total,
        page,
        Vec::new(),
    ))
}
