//! The citizen's own record (or the record of someone they hold a proxy for).

use access_control::audit::query as audit_query;
use access_control::{Basis, Request};
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use maud::Markup;
use records_domain::model::PatientId;
use records_domain::store::{labs, patients, plans, prescriptions, Category, ReadPermit};
use records_domain::Tx;

use crate::app::AppState;
use crate::auth::{CurrentUser, PatientUser};
use crate::error::{AppError, AppResult};
use crate::views::layout::RecordBanner;
use crate::views::patient as view;

pub fn routes() -> Router<AppState> {
    Router::new().route("/me", get(overview))
}

/// The record on screen: the one the user switched to as a proxy, or their own.
pub fn whose_record(user: &CurrentUser) -> AppResult<PatientId> {
    user.signed_in
        .acting_for
        .or(user.user.patient_id)
        .ok_or(AppError::NotFound)
}

pub async fn banner(tx: &mut Tx, patient: PatientId, basis: Basis) -> AppResult<RecordBanner> {
    let p = patients::by_id(tx, patient)
        .await?
        .ok_or(AppError::NotFound)?;
    let relation = match basis {
        Basis::OwnRecord => "your own record".to_string(),
        Basis::Guardian => "you are viewing as guardian".to_string(),
        Basis::PowerOfAttorney => "you are viewing with power of attorney".to_string(),
        other => other.describe().to_string(),
    };
    Ok(RecordBanner {
        name: p.full_name(),
        birth_date: records_domain::db::date_text(p.birth_date),
        relation,
        emergency: false,
    })
}

async fn overview(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let patient = whose_record(&user)?;
    let actor = user.actor();
    let req = Request {
        actor: &actor,
        ctx: &user.ctx,
        patient,
        resource_id: None,
    };
    let (mut tx, grant) = state.gate().summary(&req).await?;
    let mut summary = view::Summary {
        banner: banner(&mut tx, patient, grant.basis()).await?,
        ..Default::default()
    };
    if grant.covers(Category::LabResults) {
        summary.labs = Some(crate::views::components::latest_per_test(
            &labs::for_patient(&mut tx, &grant).await?,
        ));
        summary.results_pending = labs::has_unreleased(&mut tx, patient).await?;
    }
    if grant.covers(Category::Prescriptions) {
        let all = prescriptions::for_patient(&mut tx, &grant).await?;
        summary.prescriptions = Some(crate::views::components::split_prescriptions(all).0);
    }
    if grant.covers(Category::TreatmentPlans) {
        let all = plans::for_patient(&mut tx, &grant).await?;
        summary.plans = Some(
            all.into_iter()
                .filter(|p| p.status.as_str() == "active")
                .collect(),
        );
    }
    if grant.covers(Category::AccessLog) {
        let since = audit_query::record_visit(&mut tx, user.user.id, patient).await?;
        summary.new_accesses =
            Some(audit_query::count_accesses_since(&mut tx, patient, user.user.id, since).await?);
    }
    tx.commit().await?;
    Ok(view::overview(&user, &user.csrf().await?, summary))
}
