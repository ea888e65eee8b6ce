//! Creating and updating treatment plans. Updates carry the version the clinician saw; a stale
//! form gets a conflict page that shows the newer plan and keeps everything that was typed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::Markup;
use records_domain::model::PatientId;
use records_domain::store::{plans, Category};
use records_domain::DomainError;
use uuid::Uuid;

use super::{back_to, written};
use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::{ClinicianUser, CurrentUser};
use crate::error::AppResult;
use crate::forms::PlanForm;
use crate::routes::open::Opener;
use crate::views::clinician as view;

pub async fn new_form(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (record, banner) = Opener::clinician(&state, &user, patient)
        .read(Category::TreatmentPlans, None)
        .await?;
    record.commit().await?;
    let form = PlanForm {
        status: "active".into(),
        ..Default::default()
    };
    Ok(view::plan_form(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        None,
        &form,
        None,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
    CsrfForm(form): CsrfForm<PlanForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    let content = match form.valid_content() {
        Ok(content) => content,
        Err(DomainError::Invalid(problem)) => {
            return refused_form(&state, &user, patient, None, &form, &problem).await
        }
        Err(e) => return Err(e.into()),
    };
    let id = Uuid::now_v7();
    Opener::clinician(&state, &user, patient)
        .write_with(
            Category::TreatmentPlans,
            Some(id.to_string()),
            async |conn, grant| plans::create(conn, grant, id, &content).await,
        )
        .await?;
    Ok(back_to(patient, "plans"))
}

pub async fn edit_form(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, plan)): Path<(Uuid, Uuid)>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (banner, current) = Opener::clinician(&state, &user, patient)
        .read_with(
            Category::TreatmentPlans,
            Some(plan.to_string()),
            async |conn, grant| plans::by_id_for(conn, grant, plan).await,
        )
        .await?;
    Ok(view::plan_form(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        Some(plan),
        &PlanForm::of(&current),
        None,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, plan)): Path<(Uuid, Uuid)>,
    CsrfForm(form): CsrfForm<PlanForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    let content = match form.valid_content() {
        Ok(content) => content,
        Err(DomainError::Invalid(problem)) => {
            return refused_form(&state, &user, patient, Some(plan), &form, &problem).await
        }
        Err(e) => return Err(e.into()),
    };
    let mut record = Opener::clinician(&state, &user, patient)
        .write(Category::TreatmentPlans, Some(plan.to_string()))
        .await?;
    let (conn, grant) = record.parts();
    match plans::update(conn, grant, plan, form.version, &content).await {
        Ok(()) => written(record, patient, "plans").await,
        Err(DomainError::Conflict) => {
            record.rollback().await?;
            conflict(&state, &user, patient, plan, form).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn refused_form(
    state: &AppState,
    user: &CurrentUser,
    patient: PatientId,
    plan: Option<Uuid>,
    form: &PlanForm,
    problem: &str,
) -> AppResult<Response> {
    let (record, banner) = Opener::clinician(state, user, patient)
        .read(Category::TreatmentPlans, None)
        .await?;
    record.commit().await?;
    let page = view::plan_form(
        user,
        &user.csrf().await?,
        banner,
        patient,
        plan,
        form,
        Some(problem),
    );
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

/// Someone saved the plan first: show their version and keep this clinician's text, with the
/// new version number so that saving again is a deliberate choice.
async fn conflict(
    state: &AppState,
    user: &CurrentUser,
    patient: PatientId,
    plan: Uuid,
    mut form: PlanForm,
) -> AppResult<Response> {
    let (banner, current) = Opener::clinician(state, user, patient)
        .read_with(
            Category::TreatmentPlans,
            Some(plan.to_string()),
            async |conn, grant| plans::by_id_for(conn, grant, plan).await,
        )
        .await?;
    form.version = current.version;
    let page = view::plan_conflict(user, &user.csrf().await?, banner, patient, &current, &form);
    Ok((StatusCode::CONFLICT, page).into_response())
}
