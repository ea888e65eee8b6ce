//! Finding a patient by CPR number or by name and birth date. Sent by POST so that national IDs
//! and names never appear in URLs or access logs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::Markup;
use records_domain::cpr::Cpr;
use records_domain::db::parse_date;
use records_domain::model::Patient;
use records_domain::store::patients;

use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::ClinicianUser;
use crate::error::{AppError, AppResult};
use crate::forms::LookupForm;
use crate::problem::Problem;
use crate::routes::open::Opener;
use crate::views::clinician::{self as view, Hit};

const MAX_HITS: i64 = 50;

pub async fn page(ClinicianUser(user): ClinicianUser) -> AppResult<Markup> {
    Ok(view::lookup(&user, &user.csrf().await?, None, None))
}

pub async fn search(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    CsrfForm(form): CsrfForm<LookupForm>,
) -> AppResult<Response> {
    let csrf = user.csrf().await?;
    let found = match find(&state, &form).await {
        Ok(found) => found,
        Err(AppError::Problem(Problem::Invalid(problem))) => {
            let page = view::lookup(&user, &csrf, Some(&form), Some(Err(problem)));
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
        Err(e) => return Err(e),
    };
    let actor = user.actor();
    let openers: Vec<Opener> = found
        .iter()
        .map(|patient| Opener::clinician(&state, &user, patient.id))
        .collect();
    let requests: Vec<_> = openers.iter().map(|o| o.request(&actor, None)).collect();
    let mut tx = state.db.begin_read().await?;
    let decisions = state.gate().lookup(&mut tx, &requests).await?;
    tx.commit().await?;
    let hits = found
        .into_iter()
        .zip(decisions)
        .map(|(patient, decision)| Hit {
            may_open: decision.is_allowed(),
            basis: decision.reason(),
            patient,
        })
        .collect();
    Ok(view::lookup(&user, &csrf, Some(&form), Some(Ok(hits))).into_response())
}

async fn find(state: &AppState, form: &LookupForm) -> AppResult<Vec<Patient>> {
    let mut conn = state.db.pool().acquire().await?;
    if !form.cpr.trim().is_empty() {
        let cpr = Cpr::parse(form.cpr.trim()).map_err(|e| AppError::bad_request(e.to_string()))?;
        return Ok(patients::by_cpr(&mut conn, &cpr)
            .await?
            .into_iter()
            .collect());
    }
    let name = form.name.trim();
    if name.chars().count() < 2 {
        return Err(AppError::bad_request(
            "Enter a CPR number, or a name (at least 2 letters) and a birth date.",
        ));
    }
    let birth_date = parse_date(form.birth_date.trim())
        .map_err(|_| AppError::bad_request("Give the birth date as a date, like 1980-01-01."))?;
    Ok(patients::search_by_name(&mut conn, name, Some(birth_date), MAX_HITS).await?)
}
