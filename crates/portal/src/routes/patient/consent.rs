//! The patient's controls over who sees their record: blocks of a named clinician or a clinic,
//! powers of attorney, and switching to a record the user holds a proxy for.

use access_control::audit::{self, NewEvent, Outcome};
use access_control::consent::{self, BlockTarget};
use access_control::policy::{guardianship_ended, ProxyKind};
use access_control::{accounts, Audited, Basis, ConsentGrant, Request};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use records_domain::db::parse_date;
use records_domain::model::PatientId;
use records_domain::store::clinics;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::own_record;
use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::{set_signed_in, CurrentUser, PatientUser};
use crate::error::{AppError, AppResult};
use crate::forms::fields::{optional_date, start_date};
use crate::routes::banner::{banner, Viewer};
use crate::views::layout::RecordBanner;
use crate::views::patient as view;

async fn manage(state: &AppState, user: &CurrentUser) -> AppResult<Audited<ConsentGrant>> {
    let patient = own_record(user)?;
    let actor = user.actor();
    let req = Request {
        actor: &actor,
        ctx: &user.ctx,
        patient,
        resource_id: None,
    };
    Ok(state.gate().consent(&req).await?)
}

/// As `manage`, for a page: with the banner of the patient's own record.
async fn manage_page(
    state: &AppState,
    user: &CurrentUser,
) -> AppResult<(Audited<ConsentGrant>, RecordBanner)> {
    let mut record = manage(state, user).await?;
    let (conn, grant) = record.parts();
    let banner = banner(conn, Viewer::Citizen, grant.patient(), Basis::OwnRecord).await?;
    Ok((record, banner))
}

pub async fn blocks(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (mut record, banner) = manage_page(&state, &user).await?;
    let (conn, grant) = record.parts();
    let current = consent::blocks(conn, grant).await?;
    let clinicians = accounts::clinicians(conn).await?;
    let clinics = clinics::all(conn).await?;
    record.commit().await?;
    Ok(view::blocks(
        &user,
        &user.csrf().await?,
        banner,
        &current,
        &clinicians,
        &clinics,
    ))
}

#[derive(Deserialize)]
pub struct BlockForm {
    /// `clinician:<id>` or `clinic:<id>`.
    target: String,
    #[serde(default)]
    until: String,
}

fn parse_target(text: &str) -> AppResult<BlockTarget> {
    let invalid = || AppError::bad_request("Choose a clinician or a clinic to block.");
    let (kind, id) = text.split_once(':').ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    match kind {
        "clinician" => Ok(BlockTarget::Clinician(id)),
        "clinic" => Ok(BlockTarget::Clinic(id)),
        _ => Err(invalid()),
    }
}

pub async fn add_block(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    CsrfForm(form): CsrfForm<BlockForm>,
) -> AppResult<Response> {
    let target = parse_target(&form.target)?;
    let until = optional_date(&form.until, "The end date")?;
    let mut record = manage(&state, &user).await?;
    let (conn, grant) = record.parts();
    consent::add_block(conn, grant, &user.actor(), &user.ctx, target, until).await?;
    record.commit().await?;
    Ok(Redirect::to("/me/blocks").into_response())
}

pub async fn lift_block(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    Path(block): Path<Uuid>,
    CsrfForm(_): CsrfForm<crate::auth::login::Empty>,
) -> AppResult<Response> {
    let mut record = manage(&state, &user).await?;
    let (conn, grant) = record.parts();
    consent::lift_block(conn, grant, &user.actor(), &user.ctx, block).await?;
    record.commit().await?;
    Ok(Redirect::to("/me/blocks").into_response())
}

pub async fn proxies(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (mut record, banner) = manage_page(&state, &user).await?;
    let (conn, grant) = record.parts();
    let granted = consent::granted_for(conn, grant).await?;
    let held = consent::held_by(conn, user.user.id).await?;
    record.commit().await?;
    let now = OffsetDateTime::now_utc();
    let held = held
        .into_iter()
        .map(|p| {
            let usable = p.is_current(now) && !child_turned_15(&p, now);
            (p, usable)
        })
        .collect::<Vec<_>>();
    Ok(view::proxies(
        &user,
        &user.csrf().await?,
        banner,
        &held,
        &granted,
    ))
}

fn child_turned_15(proxy: &consent::Proxy, now: OffsetDateTime) -> bool {
    proxy.kind == ProxyKind::Guardian
        && parse_date(&proxy.patient_birth_date).is_ok_and(|b| guardianship_ended(b, now))
}

#[derive(Deserialize)]
pub struct GrantForm {
    username: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
}

pub async fn grant_power_of_attorney(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    CsrfForm(form): CsrfForm<GrantForm>,
) -> AppResult<Response> {
    let from = start_date(&form.from, "The start date")?;
    let until = optional_date(&form.until, "The end date")?;
    let mut record = manage(&state, &user).await?;
    let (conn, grant) = record.parts();
    consent::grant_power_of_attorney(
        conn,
        grant,
        &user.actor(),
        &user.ctx,
        form.username.trim(),
        from,
        until,
    )
    .await?;
    record.commit().await?;
    Ok(Redirect::to("/me/proxies").into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    Path(proxy): Path<Uuid>,
    CsrfForm(_): CsrfForm<crate::auth::login::Empty>,
) -> AppResult<Response> {
    let mut record = manage(&state, &user).await?;
    let (conn, grant) = record.parts();
    consent::revoke_proxy(conn, grant, &user.actor(), &user.ctx, proxy).await?;
    record.commit().await?;
    Ok(Redirect::to("/me/proxies").into_response())
}

#[derive(Deserialize)]
pub struct SwitchForm {
    /// Empty for the user's own record.
    #[serde(default)]
    patient: String,
}

/// Put another person's record on screen. Only a current proxy allows it; every page of that
/// record still goes through the gate, which decides again (and audits "on behalf of").
pub async fn switch(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    CsrfForm(form): CsrfForm<SwitchForm>,
) -> AppResult<Response> {
    let target = match form.patient.trim() {
        "" => None,
        id => Some(PatientId(
            Uuid::parse_str(id).map_err(|_| AppError::not_found())?,
        )),
    };
    let target = target.filter(|p| Some(*p) != user.user.patient_id);
    let mut tx = state.db.begin_write().await?;
    let mut event = NewEvent::by(&user.actor(), &user.ctx, "switch record", Outcome::Success);
    if let Some(patient) = target {
        let now = OffsetDateTime::now_utc();
        let held = consent::held_by(&mut tx, user.user.id).await?;
        let proxy = held
            .iter()
            .find(|p| p.patient_id == patient && p.is_current(now) && !child_turned_15(p, now))
            .ok_or_else(AppError::not_found)?;
        // Into the patient's chain and log: they see who opened their record as a proxy.
        event = event
            .about(patient)
            .resource("proxy", Some(proxy.id.to_string()))
            .basis(proxy.kind.as_str());
        event.on_behalf_of = Some(patient.0.to_string());
    }
    audit::append(&mut tx, event).await?;
    tx.commit().await?;
    let mut signed_in = user.signed_in.clone();
    signed_in.acting_for = target;
    set_signed_in(&user.session, &signed_in).await?;
    Ok(Redirect::to("/me").into_response())
}
