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
pub mod base;
pub mod caller;
pub mod error;
pub mod ingest;
mod proof;
mod protocol;
mod r4_types;
mod read;
pub mod resources;
pub mod search;
pub mod smart;
pub mod versions;
mod write;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
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
    let router = Router::new()
        .route("/fhir/r4", post(write::bundle))
        .route("/fhir/r4/metadata", get(read::metadata))
        .route(
            "/fhir/r4/.well-known/smart-configuration",
            get(smart::configuration),
        )
        .route("/fhir/r4/Patient", get(read::search_patients))
        .route("/fhir/r4/Patient/{id}", get(read::read_patient))
        .route("/fhir/r4/Patient/{id}/$everything", get(read::everything))
        .route(
            "/fhir/r4/Observation",
            get(read::search_observations).post(write::create),
        );
    let router = record!(router, Observation);
    let router = searched_by_status!(
        router,
        MedicationRequest,
        CarePlan,
        Condition,
        AllergyIntolerance,
        Immunization,
        Encounter,
        Procedure,
        DiagnosticReport,
        ImagingStudy
    );
    router
        .route("/fhir/r4/AuditEvent", get(read::search_audit_events))
        .route(
            "/fhir/r4/AuditEvent/{id}/$proof",
            get(proof::audit_event_proof),
        )
        .route("/fhir/r4/{*rest}", any(protocol::unknown_route))
        .layer(axum::middleware::from_fn(protocol::json_only))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

/// Read, vread, history and update of one record type. A macro, not a generic function:
/// each handler's future is `Send` only for a concrete type.
macro_rules! record {
    ($router:expr, $kind:ident) => {
        $router
            .route(
                concat!("/fhir/r4/", stringify!($kind), "/{id}"),
                get(read::read_by_id::<read::$kind>).put(write::update),
            )
            .route(
                concat!("/fhir/r4/", stringify!($kind), "/{id}/_history"),
                get(read::history::<read::$kind>),
            )
            .route(
                concat!("/fhir/r4/", stringify!($kind), "/{id}/_history/{version}"),
                get(read::vread::<read::$kind>),
            )
    };
}

/// Record types searched by patient and status, with create and the instance routes.
macro_rules! searched_by_status {
    ($router:expr, $($kind:ident),+) => {
        $router
            $(
                .route(
                    concat!("/fhir/r4/", stringify!($kind)),
                    get(read::search_by_status::<read::$kind>).post(write::create),
                )
            )+
            $(
                .merge(record!(Router::new(), $kind))
            )+
    };
}
use {record, searched_by_status};

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
