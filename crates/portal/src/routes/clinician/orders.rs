//! Writes that change what the patient sees: releasing held-back results, prescribing and
//! stopping prescriptions. Each is decided and audited by the gate in the write's transaction.

use access_control::{ReadGrant, WriteGrant};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use records_domain::model::{PatientId, Prescription};
use records_domain::store::renewals::{self, RenewalRequest};
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
    let (banner, (all, requests)) = Opener::clinician(state, user, patient)
        .read_with(Category::Prescriptions, None, medicine_card)
        .await?;
    let (active, past) = split_prescriptions(all);
    let page = view::prescriptions(
        user,
        &user.csrf().await?,
        banner,
        patient,
        (&active, &past, &requests),
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

/// The medicine card as the clinician sees it: every prescription and the open renewal
/// requests.
pub(super) async fn medicine_card(
    conn: &mut AnyConnection,
    grant: &ReadGrant,
) -> Result<(Vec<Prescription>, Vec<RenewalRequest>), DomainError> {
    let all = prescriptions::for_patient(conn, grant).await?;
    let open = renewals::for_patient(conn, grant)
        .await?
        .into_iter()
        .filter(RenewalRequest::is_open)
        .collect();
    Ok((all, open))
}

#[derive(Deserialize)]
pub struct RenewForm {
    /// Empty: valid until stopped.
    #[serde(default)]
    valid_until: String,
}

/// Renew on request: a new prescription of the same medicine and dosage, linked to the request.
pub async fn renew(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, request)): Path<(Uuid, Uuid)>,
    CsrfForm(form): CsrfForm<RenewForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    let valid_until = match form.valid_until.trim() {
        "" => None,
        day => Some(records_domain::db::parse_date(day).map_err(AppError::from)?),
    };
    let id = Uuid::now_v7();
    Opener::clinician(&state, &user, patient)
        .write_with(
            Category::Prescriptions,
            Some(id.to_string()),
            async |conn, grant| {
                answered(renewals::renew(conn, grant, request, id, valid_until).await)
            },
        )
        .await?;
    Ok(back_to(patient, "prescriptions"))
}

#[derive(Deserialize)]
pub struct DeclineForm {
    reason: String,
}

pub async fn decline(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, request)): Path<(Uuid, Uuid)>,
    CsrfForm(form): CsrfForm<DeclineForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    Opener::clinician(&state, &user, patient)
        .write_with(
            Category::Prescriptions,
            Some(request.to_string()),
            async |conn, grant| {
                answered(renewals::decline(conn, grant, request, &form.reason).await)
            },
        )
        .await?;
    Ok(back_to(patient, "prescriptions"))
}

/// A request someone else answered first is a conflict the clinician can read about.
fn answered<T>(result: Result<T, DomainError>) -> AppResult<T> {
    result.map_err(|e| match e {
        DomainError::Conflict => AppError::conflict(
            "This request has already been answered, so nothing was changed. Reload the page.",
        ),
        other => other.into(),
    })
}
