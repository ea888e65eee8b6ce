//! Writing through FHIR: create (`POST /{type}`, conditional with `If-None-Exist`), update
//! (`PUT /{type}/{id}`, checked with `If-Match`), and Bundles at the base: a transaction all
//! or nothing, a batch entry by entry. Every answer says what happened to each resource, with
//! its `Location`, `ETag` and `Last-Modified`, as the specification's transaction processing
//! rules ask. What a resource means for the record, and every decision on it, is `ingest`'s.

use std::collections::HashSet;

use access_control::BatchGrants;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use records_domain::model::PatientId;
use records_domain::store::{self, Table, Upserted};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::ingest::{self, Applied, Entry, Writer};
use super::{base, fhir_json, r4_types, resources, versions, FhirCaller, FhirError, FhirResult};
use crate::app::AppState;

const MAX_JSON_DEPTH: usize = 64;

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

/// Where each resource type the portal keeps is stored.
fn table_of(kind: &str) -> Option<Table> {
    Some(match kind {
        "Patient" => Table::Patients,
        "Observation" => Table::LabResults,
        "MedicationRequest" => Table::Prescriptions,
        "CarePlan" => Table::TreatmentPlans,
        "Condition" => Table::Diagnoses,
        "AllergyIntolerance" => Table::Allergies,
        "Immunization" => Table::Vaccinations,
        "Encounter" => Table::Contacts,
        "Procedure" => Table::Procedures,
        "DiagnosticReport" => Table::Reports,
        "ImagingStudy" => Table::ImagingStudies,
        _ => return None,
    })
}

fn source_system(caller: &FhirCaller) -> String {
    format!("urn:portal:client:{}", caller.token.name)
}

/// What the client asked to get back (`Prefer: return=...`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

fn prefer_return(headers: &HeaderMap) -> Return {
    let prefer = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(str::trim)
        .find_map(|p| p.strip_prefix("return="));
    match prefer {
        Some("minimal") => Return::Minimal,
        Some("OperationOutcome") => Return::OperationOutcome,
        _ => Return::Representation,
    }
}

/// `W/"3"`, `"3"` or `3` → 3.
fn etag_version(tag: &str) -> Option<i64> {
    tag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// The write a request or a Bundle entry asks for.
enum Op {
    Create {
        if_none_exist: Option<String>,
    },
    Update {
        id: String,
        if_match: Option<String>,
    },
}

/// A resource written, or found by a conditional create: what the answer is made of.
struct Answer {
    status: StatusCode,
    resource: Value,
    written_at: Option<OffsetDateTime>,
}

impl Answer {
    fn kind(&self) -> &str {
        self.resource["resourceType"].as_str().unwrap_or_default()
    }

    fn id(&self) -> &str {
        self.resource["id"].as_str().unwrap_or_default()
    }

    fn version(&self) -> &str {
        self.resource["meta"]["versionId"].as_str().unwrap_or("1")
    }

    fn location(&self, base: &str) -> String {
        format!(
            "{base}/{}/{}/_history/{}",
            self.kind(),
            self.id(),
            self.version()
        )
    }

    fn status_line(&self) -> String {
        format!(
            "{} {}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("")
        )
    }

    /// A Bundle entry's `response`.
    fn entry(&self, base: &str, want: Return) -> Value {
        let mut response = json!({
            "status": self.status_line(),
            "location": self.location(base),
            "etag": format!("W/\"{}\"", self.version()),
        });
        if let Some(at) = self.written_at {
            response["lastModified"] = resources::instant(at).into();
        }
        let mut entry = json!({ "response": response });
        // Who a patient is goes back to no writer: the population register knows it already.
        if want == Return::Representation && self.kind() != "Patient" {
            entry["fullUrl"] = format!("{base}/{}/{}", self.kind(), self.id()).into();
            entry["resource"] = self.resource.clone();
        }
        entry
    }

    fn into_response(self, base: &str, want: Return) -> Response {
        let location = self.location(base);
        let mut response = match want {
            Return::Representation => fhir_json(self.status, &self.resource),
            Return::OperationOutcome => fhir_json(
                self.status,
                &resources::operation_outcome(
                    "information",
                    "informational",
                    &format!("{} {}", self.kind(), self.status_line()),
                ),
            ),
            Return::Minimal => self.status.into_response(),
        };
        let headers = response.headers_mut();
        for (name, value) in [
            (header::LOCATION, Some(location)),
            (header::ETAG, Some(format!("W/\"{}\"", self.version()))),
            (header::LAST_MODIFIED, self.written_at.map(http_date)),
        ] {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
        response
    }
}

fn http_date(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// Checks what a write needs before it is applied, and turns the resource into what the
/// ingest expects: a server id in the URL becomes the source key the resource is kept under.
/// A conditional create whose match exists answers without writing.
async fn prepare(
    state: &AppState,
    caller: &mut FhirCaller,
    op: &Op,
    resource: &mut Value,
) -> FhirResult<Option<Answer>> {
    let kind = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !r4_types::is_resource_type(&kind) {
        return Err(FhirError::malformed(format!(
            "{kind:?} is not a FHIR R4 resource type"
        )));
    }
    if ingest::is_kept(&kind) {
        caller.require(state, &kind, true).await?;
    }
    let Some(table) = table_of(&kind) else {
        return Ok(None);
    };
    match op {
        Op::Create { if_none_exist } => {
            if let Some(condition) = if_none_exist {
                if let Some(found) =
                    conditional_match(state, caller, table, condition, resource).await?
                {
                    return Ok(Some(found));
                }
            }
            if resource["id"].as_str().is_none() && resource["identifier"][0].is_null() {
                // The server names a resource that came without a name of its own.
                resource["id"] = Uuid::now_v7().to_string().into();
            }
            Ok(None)
        }
        Op::Update { id, if_match } => {
            if resource["id"].as_str() != Some(id.as_str()) {
                return Err(FhirError::malformed(
                    "the resource's id must match the id in the URL",
                ));
            }
            let held = match Uuid::parse_str(id) {
                Ok(uuid) => {
                    store::source_key(&mut *state.db.pool().acquire().await?, table, uuid).await?
                }
                Err(_) => None,
            };
            // Another source's resource is answered as one that does not exist: nothing of it,
            // not even its version, reaches a caller before a decision.
            let held = held.filter(|(source, _)| source.system == source_system(caller));
            let wanted = if_match.as_deref().map(etag_version);
            match (held, wanted) {
                (Some((_, version)), Some(wanted)) if wanted != Some(version) => {
                    Err(FhirError::PreconditionFailed(format!(
                        "{kind}/{id} is at version {version}, not the one If-Match names"
                    )))
                }
                (None, Some(_)) => Err(FhirError::PreconditionFailed(format!(
                    "this client holds no {kind}/{id}, so no version of it can match"
                ))),
                (Some((source, _)), _) => {
                    resource["id"] = kept_under(table, source.id).into();
                    Ok(None)
                }
                // A client's own id: the resource is kept under it, so resending it updates.
                (None, None) => Ok(None),
            }
        }
    }
}

/// The source id a resource is sent under: a panel's first component (`X#0`) stands for the
/// panel, which the source sent as `X`.
fn kept_under(table: Table, source_id: String) -> String {
    match source_id.rsplit_once('#') {
        Some((panel, n)) if table == Table::LabResults && n.bytes().all(|b| b.is_ascii_digit()) => {
            panel.to_string()
        }
        _ => source_id,
    }
}

/// `If-None-Exist: identifier=system|value`, matched among what this client wrote. A match is
/// answered with the version it wrote last, and the look is audited like the write it stands
/// in for.
async fn conditional_match(
    state: &AppState,
    caller: &FhirCaller,
    table: Table,
    condition: &str,
    resource: &Value,
) -> FhirResult<Option<Answer>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(condition)
        .map_err(|_| FhirError::malformed("If-None-Exist is not a query string"))?;
    let identifier = match pairs.as_slice() {
        [(name, value)] if name == "identifier" => value,
        _ => {
            return Err(FhirError::malformed(
                "If-None-Exist takes one parameter, identifier=system|value",
            ))
        }
    };
    let Some(kind) = kind_of(table) else {
        return Err(FhirError::malformed(
            "If-None-Exist is supported for Observation and ImagingStudy, the types that keep \
             their identifier",
        ));
    };
    let mut conn = state.db.pool().acquire().await?;
    let source = source_system(caller);
    let Some(id) = store::by_identifier(&mut conn, table, &source, identifier).await? else {
        return Ok(None);
    };
    let version = store::source_key(&mut conn, table, id)
        .await?
        .map_or(1, |(_, v)| v);
    let Some(found) = versions::one(&mut conn, kind, id, version).await? else {
        return Ok(None);
    };
    drop(conn);
    // The same identifier about another patient is another result, not this one.
    let Some(patient) = patient_named(&found.body).filter(|p| Some(*p) == patient_named(resource))
    else {
        return Ok(None);
    };
    // Answering with what is stored is decided, and audited, as the write it stands in for.
    let gate = state.gate();
    let category = ingest::category_of(kind).ok_or_else(FhirError::not_found)?;
    let mut tx = state.db.begin_write().await?;
    let request = caller.request(patient, Some(format!("{kind}/{id}")));
    let mut grants = BatchGrants::default();
    let refused = grants
        .write(&gate, &mut tx, &request, category, &source)
        .await?
        .err();
    if let Some(refusal) = refused {
        tx.rollback().await?;
        return Err(gate.record_refusal(refusal).await.into());
    }
    tx.commit().await?;
    Ok(Some(Answer {
        status: StatusCode::OK,
        resource: versions::stamped(found.body, found.written_at),
        written_at: Some(found.written_at),
    }))
}

fn kind_of(table: Table) -> Option<&'static str> {
    ["Observation", "ImagingStudy"]
        .into_iter()
        .find(|k| table_of(k) == Some(table))
}

fn patient_named(resource: &Value) -> Option<PatientId> {
    let reference = resource["subject"]["reference"]
        .as_str()
        .or(resource["patient"]["reference"].as_str())?;
    Uuid::parse_str(reference.strip_prefix("Patient/")?)
        .ok()
        .map(PatientId)
}

/// What the ingest made of a resource, as an answer; the reason when it was skipped.
async fn answer(state: &AppState, entry: Entry) -> FhirResult<Result<Answer, &'static str>> {
    let (outcome, resource, written_at) = match entry {
        Entry::Stored {
            outcome,
            resource,
            written_at,
        } => (outcome, resource, written_at),
        Entry::Skipped { reason } => return Ok(Err(reason)),
    };
    let status = match outcome {
        Upserted::Inserted => StatusCode::CREATED,
        Upserted::Updated | Upserted::Unchanged => StatusCode::OK,
    };
    let written_at = match written_at {
        Some(at) => Some(at),
        None => earlier_version(state, &resource).await?,
    };
    let resource = match written_at {
        Some(at) => versions::stamped(resource, at),
        None => resource,
    };
    Ok(Ok(Answer {
        status,
        resource,
        written_at,
    }))
}

/// When an unchanged resource's version was written, if it was written through FHIR.
async fn earlier_version(state: &AppState, resource: &Value) -> FhirResult<Option<OffsetDateTime>> {
    let (Some(kind), Some(id), Some(version)) = (
        resource["resourceType"].as_str(),
        resource["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok()),
        resource["meta"]["versionId"]
            .as_str()
            .and_then(|v| v.parse().ok()),
    ) else {
        return Ok(None);
    };
    let mut conn = state.db.pool().acquire().await?;
    Ok(versions::one(&mut conn, kind, id, version)
        .await?
        .map(|v| v.written_at))
}

/// One resource through `prepare` and the ingest.
async fn write_one(
    state: &AppState,
    caller: &mut FhirCaller,
    op: Op,
    mut resource: Value,
) -> FhirResult<Answer> {
    let kind = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if ingest::category_of(&kind).is_none() {
        let kinds: Vec<&str> = ingest::CLINICAL_TYPES.iter().map(|(k, _)| *k).collect();
        return Err(FhirError::malformed(format!(
            "send one of {}",
            kinds.join(", ")
        )));
    }
    if let Some(found) = prepare(state, caller, &op, &mut resource).await? {
        return Ok(found);
    }
    let source = source_system(caller);
    let writer = Writer {
        source_system: &source,
        actor: &caller.actor,
        ctx: &caller.ctx,
    };
    let Applied { mut entries, .. } =
        ingest::apply_resources(&state.gate(), &writer, vec![(kind.clone(), &resource)]).await?;
    let entry = entries.pop().ok_or_else(FhirError::not_found)?;
    answer(state, entry).await?.map_err(|reason| {
        FhirError::invalid(format!("{kind} not stored: {reason}; nothing was written"))
    })
}

/// The resource type a request's path names: `/fhir/r4/Observation[/id]`.
fn path_type(uri: &Uri) -> &str {
    uri.path()
        .trim_start_matches(super::BASE)
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

fn same_type(uri: &Uri, resource: &Value) -> FhirResult<()> {
    let sent = resource["resourceType"].as_str().unwrap_or_default();
    if sent != path_type(uri) {
        return Err(FhirError::malformed(format!(
            "a {sent:?} sent to {}",
            uri.path()
        )));
    }
    Ok(())
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(super) async fn create(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<Response> {
    caller.require(&state, path_type(&uri), true).await?;
    let resource = parse_body(&body)?;
    same_type(&uri, &resource)?;
    let op = Op::Create {
        if_none_exist: header_text(&headers, "if-none-exist"),
    };
    let answer = write_one(&state, &mut caller, op, resource).await?;
    Ok(answer.into_response(&base::base_url(&headers, &state), prefer_return(&headers)))
}

pub(super) async fn update(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<Response> {
    caller.require(&state, path_type(&uri), true).await?;
    let resource = parse_body(&body)?;
    same_type(&uri, &resource)?;
    let op = Op::Update {
        id,
        if_match: header_text(&headers, "if-match"),
    };
    let answer = write_one(&state, &mut caller, op, resource).await?;
    Ok(answer.into_response(&base::base_url(&headers, &state), prefer_return(&headers)))
}

/// One entry of a transaction or batch, read off its `request`.
struct Request {
    op: Op,
    resource: Value,
    full_url: Option<String>,
}

fn entry_request(position: usize, entry: &Value) -> FhirResult<Request> {
    let at = format!("Bundle.entry[{position}]");
    let request = &entry["request"];
    let method = request["method"].as_str().unwrap_or_default();
    let url = request["url"].as_str().unwrap_or_default();
    let op = match method {
        // An entry without a request is created, as a collection's entries would be.
        "POST" | "" => Op::Create {
            if_none_exist: request["ifNoneExist"].as_str().map(str::to_string),
        },
        "PUT" => {
            let Some((_, id)) = url.split('?').next().and_then(|u| u.split_once('/')) else {
                return Err(FhirError::malformed(format!(
                    "{at}: a PUT names Type/id in request.url"
                )));
            };
            Op::Update {
                id: id.to_string(),
                if_match: request["ifMatch"].as_str().map(str::to_string),
            }
        }
        other => {
            return Err(FhirError::not_supported(format!(
                "{at}: {other} is not supported in a Bundle; the portal creates and updates \
                 (POST, PUT), and removes nothing through FHIR"
            )))
        }
    };
    let resource = entry["resource"].clone();
    if !resource.is_object() {
        return Err(FhirError::malformed(format!(
            "{at}: entry without a resource"
        )));
    }
    let kind = resource["resourceType"].as_str().unwrap_or_default();
    if !url.is_empty() && url.split(['/', '?']).next().is_none_or(|t| t != kind) {
        return Err(FhirError::malformed(format!(
            "{at}: request.url {url:?} does not name the resource's type {kind:?}"
        )));
    }
    Ok(Request {
        op,
        resource,
        full_url: entry["fullUrl"].as_str().map(str::to_string),
    })
}

/// A transaction or batch Bundle at the base.
pub(super) async fn bundle(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<Response> {
    let bundle = parse_body(&body)?;
    if bundle["resourceType"] != "Bundle" {
        return Err(FhirError::invalid("POST a Bundle to the base"));
    }
    let entries = bundle["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut seen = HashSet::new();
    for url in entries.iter().filter_map(|e| e["fullUrl"].as_str()) {
        if !seen.insert(url) {
            return Err(FhirError::malformed(format!(
                "fullUrl {url} appears twice (FHIR rule bdl-7)"
            )));
        }
    }
    let base = base::base_url(&headers, &state);
    let want = match prefer_return(&headers) {
        Return::Representation if headers.get("prefer").is_none() => Return::Minimal,
        want => want,
    };
    let reply = match bundle["type"].as_str() {
        Some("transaction") => transaction(&state, &mut caller, entries, &base, want).await?,
        Some("batch") => batch(&state, &mut caller, entries, &base, want).await,
        other => {
            return Err(FhirError::invalid(format!(
                "Bundle.type {other:?}: POST a transaction or a batch to the base"
            )))
        }
    };
    Ok(fhir_json(StatusCode::OK, &reply))
}

/// All or nothing: every entry is checked, then all are applied in one database
/// transaction; the first failure fails the whole and nothing is written.
async fn transaction(
    state: &AppState,
    caller: &mut FhirCaller,
    entries: &[Value],
    base: &str,
    want: Return,
) -> FhirResult<Value> {
    let mut requests = Vec::with_capacity(entries.len());
    for (position, entry) in entries.iter().enumerate() {
        requests.push(entry_request(position, entry)?);
    }
    let mut answered: Vec<Option<Answer>> = Vec::with_capacity(requests.len());
    for request in &mut requests {
        answered.push(prepare(state, caller, &request.op, &mut request.resource).await?);
    }
    let to_write: Vec<usize> = (0..requests.len())
        .filter(|&i| answered[i].is_none())
        .collect();
    let resources: Vec<(String, &Value)> = to_write
        .iter()
        .map(|&i| (format!("Bundle.entry[{i}]"), &requests[i].resource))
        .collect();
    let urls: Vec<Option<&str>> = to_write
        .iter()
        .map(|&i| requests[i].full_url.as_deref())
        .collect();
    let source = source_system(caller);
    let writer = Writer {
        source_system: &source,
        actor: &caller.actor,
        ctx: &caller.ctx,
    };
    let applied = ingest::apply_batch(&state.gate(), &writer, resources, &urls).await?;
    let mut written = applied.entries.into_iter();
    let mut reply = Vec::with_capacity(requests.len());
    for found in answered {
        let answer = match found {
            Some(found) => Ok(found),
            None => match written.next() {
                Some(entry) => answer(state, entry).await?,
                None => Err("not applied"),
            },
        };
        reply.push(match answer {
            Ok(answer) => answer.entry(base, want),
            Err(reason) => skipped_entry(reason),
        });
    }
    Ok(json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": reply }))
}

/// A resource of a type the portal does not keep: accepted, and said to be skipped.
fn skipped_entry(reason: &str) -> Value {
    json!({ "response": {
        "status": "200 OK",
        "outcome": resources::operation_outcome("warning", "not-supported", &format!("not stored: {reason}")),
    }})
}

/// Each entry on its own: one that fails is answered with its error, the others stand.
async fn batch(
    state: &AppState,
    caller: &mut FhirCaller,
    entries: &[Value],
    base: &str,
    want: Return,
) -> Value {
    let mut reply = Vec::with_capacity(entries.len());
    for (position, entry) in entries.iter().enumerate() {
        let answered = match entry_request(position, entry) {
            Ok(request) => write_one(state, caller, request.op, request.resource).await,
            Err(e) => Err(e),
        };
        reply.push(match answered {
            Ok(answer) => answer.entry(base, want),
            Err(error) => {
                let (status, outcome) = error.status_and_outcome();
                json!({ "response": {
                    "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")),
                    "outcome": outcome,
                }})
            }
        });
    }
    json!({ "resourceType": "Bundle", "type": "batch-response", "entry": reply })
}
