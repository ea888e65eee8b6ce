//! `AuditEvent/{id}/$proof`: the transparency log's inclusion proof of one audit event, as a
//! FHIR Parameters resource for auditors' tools. The same proof as the auditor's download, in
//! FHIR's terms: the leaf's bytes and index, the signed checkpoint, the path of hashes.

use access_control::audit::{NewEvent, Outcome};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use uuid::Uuid;

use super::caller::audit_system;
use super::read::auditors_only;
use super::{fhir_json, FhirCaller, FhirError, FhirResult};
use crate::app::AppState;

const ACTION: &str = "fhir AuditEvent proof";

pub(super) async fn audit_event_proof(
    State(state): State<AppState>,
    mut caller: FhirCaller,
    Path(id): Path<Uuid>,
) -> FhirResult<Response> {
    auditors_only(&state, &mut caller, ACTION).await?;
    let download = crate::transparency::proofs::of_event(&state, id).await?;
    audit_system(
        &state,
        NewEvent::by(&caller.actor, &caller.ctx, ACTION, Outcome::Success)
            .resource("audit_event", Some(id.to_string())),
    )
    .await?;
    let download = download.ok_or_else(FhirError::not_found)?;
    Ok(fhir_json(StatusCode::OK, &parameters(&download)))
}

fn parameters(download: &transparency_log::AuditDownload) -> Value {
    let mut parameter = vec![
        json!({ "name": "logKey", "valueString": download.log_key }),
        json!({ "name": "checkpoint", "valueString": download.checkpoint }),
    ];
    for event in &download.events {
        // Leaf indexes outgrow FHIR's 32-bit integer in a national log: a string.
        parameter.push(json!({ "name": "leafIndex", "valueString": event.leaf_index.to_string() }));
        parameter.push(json!({ "name": "leaf", "valueBase64Binary": event.entry }));
        for hash in &event.inclusion_proof {
            parameter
                .push(json!({ "name": "inclusionProof", "valueBase64Binary": hash.to_base64() }));
        }
    }
    for key in &download.witness_keys {
        parameter.push(json!({ "name": "witnessKey", "valueString": key }));
    }
    json!({ "resourceType": "Parameters", "parameter": parameter })
}
