//! The clinician's work: find a patient, open their record (with a treatment relationship, or
//! by emergency override), release results, prescribe, and keep treatment plans.

mod lookup;
mod orders;
mod plans;
mod record;

use access_control::{AccessError, Audited, ReadGrant, Request, WriteGrant};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use records_domain::model::PatientId;
use records_domain::store::Category;

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppResult};
use crate::routes::banner::{banner, Viewer};
use crate::views::layout::RecordBanner;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/clinician", get(lookup::page))
        .route("/clinician/lookup", post(lookup::search))
        .route("/clinician/patients/{patient}", get(record::overview))
        .route("/clinician/patients/{patient}/labs", get(record::labs))
        .route(
            "/clinician/patients/{patient}/labs/{code}",
            get(record::lab_history),
        )
        .route(
            "/clinician/patients/{patient}/results/{result}/release",
            post(orders::release),
        )
        .route(
            "/clinician/patients/{patient}/prescriptions",
            get(record::prescriptions).post(orders::prescribe),
        )
        .route(
            "/clinician/patients/{patient}/prescriptions/{prescription}/stop",
            post(orders::stop),
        )
        .route(
            "/clinician/patients/{patient}/plans",
            get(record::plans).post(plans::create),
        )
        .route(
            "/clinician/patients/{patient}/plans/new",
            get(plans::new_form),
        )
        .route(
            "/clinician/patients/{patient}/plans/{plan}",
            get(plans::edit_form).post(plans::update),
        )
        .route(
            "/clinician/patients/{patient}/override",
            get(record::override_form).post(record::grant_override),
        )
}

/// A refusal the clinician may override becomes the page that offers the override.
fn offer_override(patient: PatientId) -> impl FnOnce(AccessError) -> AppError {
    move |e| match e {
        AccessError::Denied(denial) if denial.override_possible() => {
            AppError::OverrideOffered { denial, patient }
        }
        other => other.into(),
    }
}

fn request<'a>(
    actor: &'a access_control::Actor,
    user: &'a CurrentUser,
    patient: PatientId,
    resource_id: Option<String>,
) -> Request<'a> {
    Request {
        actor,
        ctx: &user.ctx,
        patient,
        resource_id,
    }
}

/// Decide and audit a read of one category (or the overview, with `None`).
async fn open_read(
    state: &AppState,
    user: &CurrentUser,
    patient: PatientId,
    category: Option<Category>,
    resource_id: Option<String>,
) -> AppResult<(Audited<ReadGrant>, RecordBanner)> {
    let actor = user.actor();
    let req = request(&actor, user, patient, resource_id);
    let gate = state.gate();
    let opened = match category {
        Some(c) => gate.read(&req, c).await,
        None => gate.summary(&req).await,
    };
    let mut record = opened.map_err(offer_override(patient))?;
    let (conn, grant) = record.parts();
    let viewer = Viewer::Clinician {
        user_id: user.user.id,
    };
    let banner = banner(conn, viewer, patient, grant.basis()).await?;
    Ok((record, banner))
}

/// Commit a write and go back to the record page it was made from.
async fn written(
    record: Audited<WriteGrant>,
    patient: PatientId,
    page: &str,
) -> AppResult<Response> {
    record.commit().await?;
    Ok(Redirect::to(&format!("/clinician/patients/{}/{page}", patient.0)).into_response())
}

/// Decide and audit a change to one category.
async fn open_write(
    state: &AppState,
    user: &CurrentUser,
    patient: PatientId,
    category: Category,
    resource_id: Option<String>,
) -> AppResult<Audited<WriteGrant>> {
    let actor = user.actor();
    let req = request(&actor, user, patient, resource_id);
    state
        .gate()
        .write(&req, category)
        .await
        .map_err(offer_override(patient))
}
