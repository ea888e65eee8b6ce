//! The FHIR R4 interface at `/fhir/r4`: read and search for Patient, Observation,
//! MedicationRequest, CarePlan, Condition, AllergyIntolerance, Immunization, Encounter,
//! Procedure, DiagnosticReport, ImagingStudy and AuditEvent;
//! transaction Bundles and single resources in.
//! The same access policy and audit log as the pages: every read goes through the gate with the
//! token's user as the actor.
//!
//! Read in this order: `caller` (bearer token to actor, scope checks), `read` and `write` (the
//! handlers), `error` (OperationOutcomes), then what they stand on: `search` (query
//! parameters), `resources` (domain records as FHIR JSON), `ingest` (FHIR JSON into the
//! domain, also used by `portal import`) and `anonymous` (calls without a token).

mod anonymous;
pub mod caller;
pub mod error;
pub mod ingest;
mod proof;
mod read;
pub mod resources;
pub mod search;
mod write;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use crate::app::AppState;
pub use caller::FhirCaller;
pub use error::{FhirError, FhirResult};

pub const BASE: &str = "/fhir/r4";
/// Bundles from labs and imports are larger than any form; JSON nesting is capped separately.
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;
const FHIR_JSON: &str = "application/fhir+json";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/r4", post(write::transaction))
        .route("/fhir/r4/metadata", get(read::metadata))
        .route("/fhir/r4/Patient", get(read::search_patients))
        .route("/fhir/r4/Patient/{id}", get(read::read_patient))
        .route(
            "/fhir/r4/Observation",
            get(read::search_observations).post(write::create),
        )
        .route(
            "/fhir/r4/Observation/{id}",
            get(read::read_by_id::<read::Observation>).put(write::update),
        )
        .route(
            "/fhir/r4/MedicationRequest",
            get(read::search_by_status::<read::MedicationRequest>).post(write::create),
        )
        .route(
            "/fhir/r4/MedicationRequest/{id}",
            get(read::read_by_id::<read::MedicationRequest>).put(write::update),
        )
        .route(
            "/fhir/r4/CarePlan",
            get(read::search_by_status::<read::CarePlan>).post(write::create),
        )
        .route(
            "/fhir/r4/CarePlan/{id}",
            get(read::read_by_id::<read::CarePlan>).put(write::update),
        )
        .route(
            "/fhir/r4/Condition",
            get(read::search_by_status::<read::Condition>).post(write::create),
        )
        .route(
            "/fhir/r4/Condition/{id}",
            get(read::read_by_id::<read::Condition>).put(write::update),
        )
        .route(
            "/fhir/r4/AllergyIntolerance",
            get(read::search_by_status::<read::AllergyIntolerance>).post(write::create),
        )
        .route(
            "/fhir/r4/AllergyIntolerance/{id}",
            get(read::read_by_id::<read::AllergyIntolerance>).put(write::update),
        )
        .route(
            "/fhir/r4/Immunization",
            get(read::search_by_status::<read::Immunization>).post(write::create),
        )
        .route(
            "/fhir/r4/Immunization/{id}",
            get(read::read_by_id::<read::Immunization>).put(write::update),
        )
        .route(
            "/fhir/r4/Encounter",
            get(read::search_by_status::<read::Encounter>).post(write::create),
        )
        .route(
            "/fhir/r4/Encounter/{id}",
            get(read::read_by_id::<read::Encounter>).put(write::update),
        )
        .route(
            "/fhir/r4/Procedure",
            get(read::search_by_status::<read::Procedure>).post(write::create),
        )
        .route(
            "/fhir/r4/Procedure/{id}",
            get(read::read_by_id::<read::Procedure>).put(write::update),
        )
        .route(
            "/fhir/r4/DiagnosticReport",
            get(read::search_by_status::<read::DiagnosticReport>).post(write::create),
        )
        .route(
            "/fhir/r4/DiagnosticReport/{id}",
            get(read::read_by_id::<read::DiagnosticReport>).put(write::update),
        )
        .route(
            "/fhir/r4/ImagingStudy",
            get(read::search_by_status::<read::ImagingStudy>).post(write::create),
        )
        .route(
            "/fhir/r4/ImagingStudy/{id}",
            get(read::read_by_id::<read::ImagingStudy>).put(write::update),
        )
        .route("/fhir/r4/AuditEvent", get(read::search_audit_events))
        .route(
            "/fhir/r4/AuditEvent/{id}/$proof",
            get(proof::audit_event_proof),
        )
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

/// A FHIR JSON answer; a versioned resource carries its version as a weak ETag.
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
