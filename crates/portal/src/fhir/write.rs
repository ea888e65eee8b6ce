//! Writing through FHIR: transaction Bundles (all or nothing) and single resources created or
//! updated by id. The body is parsed here; what it means for the record, and every decision
//! on it, is `ingest`'s.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::ingest::{self, Writer};
use super::{fhir_json, resources, FhirCaller, FhirError, FhirResult};
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
pub(super) async fn transaction(
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
    for kind in kinds.iter().filter(|k| ingest::is_kept(k)) {
        caller.require(&state, kind, true).await?;
    }
    let source = source_system(&caller);
    let summary = ingest::apply_bundle(&state.gate(), &writer(&caller, &source), &bundle).await?;
    let entry: Vec<Value> = entries
        .iter()
        .map(|(_, r)| {
            let kept = ingest::is_kept(r["resourceType"].as_str().unwrap_or(""));
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

pub(super) async fn create(
    State(state): State<AppState>,
    caller: FhirCaller,
    body: Bytes,
) -> FhirResult<Response> {
    write_single(state, caller, None, body).await
}

pub(super) async fn update(
    State(state): State<AppState>,
    caller: FhirCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> FhirResult<Response> {
    write_single(state, caller, Some(id), body).await
}

/// One clinical resource (`ingest::CLINICAL_TYPES`) from a system client, keyed on its id.
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
    if ingest::category_of(&kind).is_none() {
        let kinds: Vec<&str> = ingest::CLINICAL_TYPES.iter().map(|(k, _)| *k).collect();
        return Err(FhirError::malformed(format!(
            "send one of {}",
            kinds.join(", ")
        )));
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
