//! "Who looked at my record": every access by anyone else, the "I don't recognise this" report
//! that puts an entry in the auditors' queue, and the downloads for independent checking: the
//! chain, and the proofs that the events are in the signed transparency log.

use std::collections::HashMap;

use access_control::accounts;
use access_control::audit::query::{self as audit_query, REVIEW_PATIENT_REPORT};
use access_control::audit::{self, AuditEvent, NewEvent, Outcome};
use access_control::{Audited, Basis, ReadGrant};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use records_domain::model::PatientId;
use records_domain::store::{clinics, Category};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::{CurrentUser, PatientUser};
use crate::error::{AppError, AppResult};
use crate::routes::open::Opener;
use crate::views::patient as view;

/// Enough for years of a typical record; older entries stay in the chain download.
const SHOWN_ENTRIES: i64 = 500;
const MAX_COMMENT_CHARS: usize = 2000;

pub async fn page(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (mut record, banner) = Opener::citizen(&state, &user)?
        .read(Category::AccessLog, None)
        .await?;
    let (conn, grant) = record.parts();
    let (patient, basis) = (grant.patient(), grant.basis());
    let owner = record_owner(conn, patient).await?;
    let entries = audit_query::accesses_to(conn, patient, owner, SHOWN_ENTRIES).await?;
    let reviews = audit_query::reviews_of_patient(conn, patient).await?;
    let clinic_names: HashMap<Uuid, String> = clinics::all(conn)
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    record.commit().await?;
    let reviews = reviews.into_iter().map(|r| (r.event_id, r)).collect();
    let view_as = view::LogView {
        // Guardians see who looked and when, not which results or what a clinician wrote.
        details: basis != Basis::Guardian,
        chain_download: basis == Basis::OwnRecord,
    };
    Ok(view::access_log(
        &user,
        &user.csrf().await?,
        banner,
        &entries,
        &clinic_names,
        &reviews,
        view_as,
    ))
}

/// The user of the record's owner: their own looks at their record are not news to them.
pub(super) async fn record_owner(
    tx: &mut sqlx::AnyConnection,
    patient: PatientId,
) -> AppResult<Uuid> {
    Ok(accounts::for_patient(tx, patient)
        .await?
        .map_or(Uuid::nil(), |u| u.id))
}

#[derive(Deserialize)]
pub struct ReportForm {
    comment: String,
}

pub async fn report(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    Path(event_id): Path<Uuid>,
    CsrfForm(form): CsrfForm<ReportForm>,
) -> AppResult<Response> {
    let comment = form.comment.trim();
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(AppError::bad_request(format!(
            "Please keep the comment under {MAX_COMMENT_CHARS} characters."
        )));
    }
    let (mut record, _) = Opener::citizen(&state, &user)?
        .read_to_record(Category::AccessLog, Some(event_id.to_string()))
        .await?;
    let (conn, grant) = record.parts();
    let event = audit_query::by_id(conn, event_id)
        .await?
        .filter(|e| e.patient_id == Some(grant.patient().0))
        .ok_or_else(AppError::not_found)?;
    let opened = audit_query::open_review(
        conn,
        event.id,
        Some(grant.patient()),
        REVIEW_PATIENT_REPORT,
        comment,
    )
    .await?;
    if !opened {
        return Err(AppError::conflict(
            "This access has already been reported; the auditors' answer will appear here.",
        ));
    }
    audit::append(
        conn,
        NewEvent::by(
            &user.actor(),
            &user.ctx,
            "report unrecognised access",
            Outcome::Success,
        )
        .about(grant.patient())
        .resource("audit_event", Some(event.id.to_string())),
    )
    .await?;
    record.commit().await?;
    Ok(Redirect::to(&format!("/me/access-log#e-{}", event.id)).into_response())
}

/// Open the access log for a download, audited as `what`. The downloads hold the owner's own
/// actions too (blocks, reports): theirs alone, so a proxy is answered 404 (the refusal's read
/// is committed, as any other).
async fn own_log(
    state: &AppState,
    user: &CurrentUser,
    what: &str,
) -> AppResult<Audited<ReadGrant>> {
    let (mut record, _) = Opener::citizen(state, user)?
        .read(Category::AccessLog, Some(what.into()))
        .await?;
    if record.parts().1.basis() != Basis::OwnRecord {
        record.commit().await?;
        return Err(AppError::not_found());
    }
    Ok(record)
}

/// How to recompute the chain, as the README documents it.
const HASH_RULE: &str = "hash = hex(SHA-256(canonical || prev_hash)); canonical = JSON array [encoding, seq, id, occurred_at, actor_id, actor_name, actor_role, actor_clinic_id, on_behalf_of, patient_id, action, resource_type, resource_id, basis, outcome, reason, client_addr_commitment] without white space, absent values as null; the first prev_hash is 64 zeros (or the prev_hash of the first event kept, when older events were pruned). client_addr_commitment = hex(HMAC-SHA256(key, client address)); the auditors hold the address and key of each event. Events of encoding 1 (stored before addresses were committed to) hashed the address itself, which is not shown: check that their prev_hash links, their hashes only the auditors can recompute.";

/// The record's whole hash chain as JSON, with the rule to recompute it, so that anyone can
/// check that no entry was changed or removed.
pub async fn chain(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Response> {
    let mut record = own_log(&state, &user, "chain").await?;
    let (conn, grant) = record.parts();
    let patient = grant.patient();
    let events = audit_query::chain_of(conn, patient).await?;
    record.commit().await?;
    // Staff network addresses are not the patient's to see: each event carries the commitment
    // its hash covers instead (see access_control::audit).
    let body = serde_json::json!({
        "patient_id": patient.0,
        "hash_rule": HASH_RULE,
        "events": events.iter().map(AuditEvent::for_patient).collect::<Vec<_>>(),
    });
    crate::routes::json_download("access-log-chain.json", &body)
}

/// The patient's events with an inclusion proof each, the signed checkpoint they lead to and
/// the log's key (`transparency_log::AuditDownload`): what `tools/verify_audit_download.py`
/// and `portal audit verify-proof` check without the portal.
pub async fn proof(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Response> {
    let mut record = own_log(&state, &user, "proof").await?;
    let patient = record.parts().1.patient();
    record.commit().await?;
    let download = crate::transparency::proofs::of_patient(&state, patient, user.signed_in.user_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    crate::routes::json_download("access-log-proof.json", &download)
}
