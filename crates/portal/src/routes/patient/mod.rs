//! The citizen's own record, or the record of someone they hold a proxy for: the record pages,
//! "who looked at my record", and the patient's controls (blocks, powers of attorney, switching
//! to a proxy record).

mod access_log;
mod consent;
mod record;

use access_control::{AccessError, Audited, Denial, ReadGrant, Request};
use axum::routing::{get, post};
use axum::Router;
use records_domain::model::PatientId;
use records_domain::store::Category;

use crate::app::AppState;
use crate::auth::{set_signed_in, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::routes::banner::{banner, Viewer};
use crate::views::layout::RecordBanner;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(record::overview))
        .route(
            "/me/sign-in-notice",
            post(record::acknowledge_issued_sign_ins),
        )
        .route("/me/labs", get(record::labs))
        .route("/me/labs/{code}", get(record::lab_history))
        .route("/me/prescriptions", get(record::prescriptions))
        .route("/me/plans", get(record::plans))
        .route("/me/access-log", get(access_log::page))
        .route("/me/access-log/chain.json", get(access_log::chain))
        .route("/me/access-log/{event}/report", post(access_log::report))
        .route("/me/blocks", get(consent::blocks).post(consent::add_block))
        .route("/me/blocks/{block}/lift", post(consent::lift_block))
        .route("/me/proxies", get(consent::proxies))
        .route("/me/proxies/grant", post(consent::grant_power_of_attorney))
        .route("/me/proxies/{proxy}/revoke", post(consent::revoke))
        .route("/me/switch", post(consent::switch))
}

/// The record on screen: the one the user switched to as a proxy, or their own.
pub fn whose_record(user: &CurrentUser) -> AppResult<PatientId> {
    user.signed_in
        .acting_for
        .or(user.user.patient_id)
        .ok_or_else(AppError::not_found)
}

/// The user's own record: consent is managed by the patient in person, never through a proxy.
fn own_record(user: &CurrentUser) -> AppResult<PatientId> {
    user.user.patient_id.ok_or_else(AppError::not_found)
}

/// Decide and audit a read of one category of the record on screen; the transaction, the grant
/// and the banner that names whose record it is.
async fn open(
    state: &AppState,
    user: &CurrentUser,
    category: Category,
    resource_id: Option<String>,
) -> AppResult<(Audited<ReadGrant>, RecordBanner)> {
    open_as(state, user, category, resource_id, false).await
}

/// As `open`, in a write transaction, for a page that records something of the user's own
/// (a report about an access).
async fn open_to_record(
    state: &AppState,
    user: &CurrentUser,
    category: Category,
    resource_id: Option<String>,
) -> AppResult<(Audited<ReadGrant>, RecordBanner)> {
    open_as(state, user, category, resource_id, true).await
}

async fn open_as(
    state: &AppState,
    user: &CurrentUser,
    category: Category,
    resource_id: Option<String>,
    records: bool,
) -> AppResult<(Audited<ReadGrant>, RecordBanner)> {
    let patient = whose_record(user)?;
    let actor = user.actor();
    let req = Request {
        actor: &actor,
        ctx: &user.ctx,
        patient,
        resource_id,
    };
    let gate = state.gate();
    let opened = if records {
        gate.read_to_record(&req, category).await
    } else {
        gate.read(&req, category).await
    };
    let mut record = match opened {
        Ok(opened) => opened,
        Err(e) => return Err(proxy_ended(user, e).await),
    };
    let (conn, grant) = record.parts();
    let banner = banner(conn, Viewer::Citizen, patient, grant.basis()).await?;
    Ok((record, banner))
}

/// A proxy that ended while the user was viewing through it (revoked, expired, the child
/// turned 15) sends them back to their own record instead of a refusal on every page.
async fn proxy_ended(user: &CurrentUser, error: AccessError) -> AppError {
    match error {
        AccessError::Denied(Denial::NotYourRecord | Denial::ChildTurned15)
            if user.signed_in.acting_for.is_some() =>
        {
            let mut signed_in = user.signed_in.clone();
            signed_in.acting_for = None;
            match set_signed_in(&user.session, &signed_in).await {
                Ok(()) => AppError::ProxyEnded,
                Err(e) => e,
            }
        }
        other => other.into(),
    }
}
