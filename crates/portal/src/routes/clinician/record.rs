//! The clinician's view of a record (held-back results included) and the emergency override.

use access_control::care;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use records_domain::model::{Patient, PatientId};
use records_domain::store::{kept, labs, patients, plans, prescriptions, Category};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::{ClinicianUser, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::routes::open::Opener;
use crate::views::clinician as view;
use crate::views::components::{latest_per_test, split_prescriptions};
use crate::views::entries::Listed;

pub async fn overview(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (mut record, banner) = Opener::clinician(&state, &user, patient).summary().await?;
    let (conn, grant) = record.parts();
    let results = labs::for_patient(conn, grant).await?;
    let (active, _) = split_prescriptions(prescriptions::for_patient(conn, grant).await?);
    let overview = view::RecordOverview {
        latest: latest_per_test(&results),
        active,
        plans: plans::for_patient(conn, grant).await?,
        diagnoses: kept::for_patient(conn, grant).await?,
        allergies: kept::for_patient(conn, grant).await?,
        vaccinations: kept::for_patient(conn, grant).await?,
        contacts: kept::for_patient(conn, grant).await?,
    };
    record.commit().await?;
    Ok(view::overview(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        &overview,
    ))
}

/// Diagnoses, allergies or vaccinations (`T`), through the same gate as every other part.
pub async fn entries<T: Listed>(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (banner, items) = Opener::clinician(&state, &user, patient)
        .read_with(T::CATEGORY, None, async |conn, grant| {
            kept::for_patient::<T>(conn, grant).await
        })
        .await?;
    Ok(view::entries(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        &items,
    ))
}

pub async fn labs(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (banner, results) = Opener::clinician(&state, &user, patient)
        .read_with(Category::LabResults, None, async |conn, grant| {
            labs::for_patient(conn, grant).await
        })
        .await?;
    Ok(view::labs(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        &results,
    ))
}

pub async fn lab_history(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, code)): Path<(Uuid, String)>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (banner, history) = Opener::clinician(&state, &user, patient)
        .lab_history(&code)
        .await?;
    Ok(view::lab_history(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        &history,
    ))
}

pub async fn prescriptions(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (banner, (all, requests)) = Opener::clinician(&state, &user, patient)
        .read_with(Category::Prescriptions, None, super::orders::medicine_card)
        .await?;
    let (active, past) = split_prescriptions(all);
    Ok(view::prescriptions(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        (&active, &past, &requests),
        None,
    ))
}

pub async fn plans(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (banner, all) = Opener::clinician(&state, &user, patient)
        .read_with(Category::TreatmentPlans, None, async |conn, grant| {
            plans::for_patient(conn, grant).await
        })
        .await?;
    Ok(view::plans(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        &all,
    ))
}

pub async fn override_form(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
) -> AppResult<Markup> {
    let p = override_target(&state, &user, PatientId(patient)).await?;
    Ok(view::override_form(
        &user,
        &user.csrf().await?,
        &p,
        state.config.override_window,
        None,
    ))
}

/// The patient the override form names. Showing a name is learning that the patient exists,
/// so it is audited like a search hit.
async fn override_target(
    state: &AppState,
    user: &CurrentUser,
    patient: PatientId,
) -> AppResult<Patient> {
    let actor = user.actor();
    let opener = Opener::clinician(state, user, patient);
    let mut tx = state.db.begin_read().await?;
    state
        .gate()
        .lookup(&mut tx, &[opener.request(&actor, None)])
        .await?;
    let found = patients::by_id(&mut tx, patient)
        .await?
        .ok_or_else(AppError::not_found)?;
    tx.commit().await?;
    Ok(found)
}

#[derive(Deserialize)]
pub struct OverrideForm {
    reason: String,
}

pub async fn grant_override(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
    CsrfForm(form): CsrfForm<OverrideForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    let granted = care::grant_override(
        &state.db,
        &user.actor(),
        &user.ctx,
        patient,
        &form.reason,
        state.config.override_window,
    )
    .await;
    match granted {
        Ok(_) => Ok(Redirect::to(&format!("/clinician/patients/{}", patient.0)).into_response()),
        Err(access_control::AccessError::Invalid(problem)) => {
            let p = override_target(&state, &user, patient).await?;
            let page = view::override_form(
                &user,
                &user.csrf().await?,
                &p,
                state.config.override_window,
                Some((&problem, &form.reason)),
            );
            Ok((axum::http::StatusCode::BAD_REQUEST, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
