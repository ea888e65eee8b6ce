//! Writes that change what the patient sees: releasing held-back results, prescribing and
//! stopping prescriptions. Each is decided and audited by the gate in the write's transaction.

use access_control::WriteGrant;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use records_domain::model::PatientId;
use records_domain::store::{labs, prescriptions, Category};
use records_domain::DomainError;
use serde::Deserialize;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::back_to;
use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::login::Empty;
use crate::auth::{ClinicianUser, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::forms::PrescriptionForm;
use crate::routes::open::Opener;
use crate::views::clinician as view;
use crate::views::components::split_prescriptions;

pub async fn release(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, result)): Path<(Uuid, Uuid)>,
    CsrfForm(_): CsrfForm<Empty>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    Opener::clinician(&state, &user, patient)
        .write_with(
            Category::LabResults,
            Some(result.to_string()),
            async |conn, grant| labs::release(conn, grant, result).await,
        )
        .await?;
    Ok(back_to(patient, "labs"))
}

pub async fn prescribe(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
    CsrfForm(form): CsrfForm<PrescriptionForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    // Refused input comes back as typed, before anything is decided or written.
    let new = match form.parse().and_then(|new| new.validate().map(|()| new)) {
        Ok(new) => new,
        Err(DomainError::Invalid(problem)) => {
            return refused_prescription(&state, &user, patient, &form, &problem).await
        }
        Err(e) => return Err(e.into()),
    };
    let id = Uuid::now_v7();
    Opener::clinician(&state, &user, patient)
        .write_with(
            Category::Prescriptions,
            Some(id.to_string()),
            async |conn, grant| prescriptions::prescribe(conn, grant, id, &new).await,
        )
        .await?;
    Ok(back_to(patient, "prescriptions"))
}

async fn refused_prescription(
    state: &AppState,
    user: &CurrentUser,
    patient: PatientId,
    form: &PrescriptionForm,
    problem: &str,
) -> AppResult<Response> {
    let (banner, all) = Opener::clinician(state, user, patient)
        .read_with(Category::Prescriptions, None, async |conn, grant| {
            prescriptions::for_patient(conn, grant).await
        })
        .await?;
    let (active, past) = split_prescriptions(all);
    let page = view::prescriptions(
        user,
        &user.csrf().await?,
        banner,
        patient,
        &active,
        &past,
        Some((problem, form)),
    );
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

#[derive(Deserialize)]
pub struct StopForm {
    reason: String,
    version: i64,
}

pub async fn stop(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, prescription)): Path<(Uuid, Uuid)>,
    CsrfForm(form): CsrfForm<StopForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    // A stale form is refused with the reason kept, so it can be given again after a reload.
    let change = async |conn: &mut AnyConnection, grant: &WriteGrant| {
        match prescriptions::stop(conn, grant, prescription, form.version, &form.reason).await {
            Err(DomainError::Conflict) => Err(AppError::conflict(format!(
                "Someone changed or stopped this prescription after you opened it, so nothing was changed. \
                 Reload the prescriptions and check them. Your reason was: “{}”",
                form.reason.trim()
            ))),
            other => other.map_err(AppError::from),
        }
    };
    Opener::clinician(&state, &user, patient)
        .write_with(
            Category::Prescriptions,
            Some(prescription.to_string()),
            change,
        )
        .await?;
    Ok(back_to(patient, "prescriptions"))
}
