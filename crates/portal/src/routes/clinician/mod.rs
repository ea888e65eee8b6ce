//! The clinician's work: find a patient, open their record (with a treatment relationship, or
//! by emergency override), release results, prescribe, and keep treatment plans.

mod lookup;
mod orders;
mod plans;
mod record;
mod renewals;

use access_control::{Audited, WriteGrant};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use records_domain::model::PatientId;
use records_domain::model::{
    Allergy, Contact, Diagnosis, ImagingStudy, Procedure, Report, Vaccination,
};

use crate::app::AppState;
use crate::error::AppResult;

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
        .route("/clinician/renewals", get(renewals::queue))
        .route(
            "/clinician/patients/{patient}/renewals/{request}/renew",
            post(orders::renew),
        )
        .route(
            "/clinician/patients/{patient}/renewals/{request}/decline",
            post(orders::decline),
        )
        .route(
            "/clinician/patients/{patient}/diagnoses",
            get(record::entries::<Diagnosis>),
        )
        .route(
            "/clinician/patients/{patient}/allergies",
            get(record::entries::<Allergy>),
        )
        .route(
            "/clinician/patients/{patient}/vaccinations",
            get(record::entries::<Vaccination>),
        )
        .route(
            "/clinician/patients/{patient}/contacts",
            get(record::entries::<Contact>),
        )
        .route(
            "/clinician/patients/{patient}/procedures",
            get(record::entries::<Procedure>),
        )
        .route(
            "/clinician/patients/{patient}/reports",
            get(record::entries::<Report>),
        )
        .route(
            "/clinician/patients/{patient}/imaging",
            get(record::entries::<ImagingStudy>),
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

/// Commit a write and go back to the record page it was made from.
async fn written(
    record: Audited<WriteGrant>,
    patient: PatientId,
    page: &str,
) -> AppResult<Response> {
    record.commit().await?;
    Ok(back_to(patient, page))
}

/// The record page a change was made from.
fn back_to(patient: PatientId, page: &str) -> Response {
    Redirect::to(&format!("/clinician/patients/{}/{page}", patient.0)).into_response()
}
