//! The record pages: overview, lab results (with a page per test), prescriptions, plans,
//! diagnoses, allergies and vaccinations.

use access_control::accounts;
use access_control::audit::query as audit_query;
use axum::extract::{Path, State};
use axum::response::Redirect;
use maud::Markup;
use records_domain::model::{
    Allergy, Contact, Diagnosis, ImagingStudy, Procedure, Report, Vaccination,
};
use records_domain::store::kept::{self, Kept};
use records_domain::store::{labs, plans, prescriptions, renewals, Category, ReadPermit};
use records_domain::DomainError;
use time::OffsetDateTime;

use super::access_log::record_owner;
use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::login::Empty;
use crate::auth::PatientUser;
use crate::error::{AppError, AppResult};
use crate::routes::open::Opener;
use crate::views::components::{latest_per_test, split_prescriptions};
use crate::views::entries::Listed;
use crate::views::patient as view;
use crate::views::timeline::{self, OnTimeline};

pub async fn overview(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (mut record, banner) = Opener::citizen(&state, &user)?.summary().await?;
    let (conn, grant) = record.parts();
    let patient = grant.patient();
    let mut summary = view::Summary {
        banner,
        ..Default::default()
    };
    if grant.covers(Category::LabResults) {
        summary.labs = Some(latest_per_test(&labs::for_patient(conn, grant).await?));
        summary.results_pending = labs::has_unreleased(conn, grant).await?;
    }
    if grant.covers(Category::Prescriptions) {
        let all = prescriptions::for_patient(conn, grant).await?;
        summary.prescriptions = Some(split_prescriptions(all).0);
    }
    if grant.covers(Category::TreatmentPlans) {
        let all = plans::for_patient(conn, grant).await?;
        summary.plans = Some(
            all.into_iter()
                .filter(|p| p.status.as_str() == "active")
                .collect(),
        );
    }
    if grant.covers(Category::Diagnoses) {
        summary.diagnoses = Some(kept::for_patient(conn, grant).await?);
    }
    if grant.covers(Category::Allergies) {
        summary.allergies = Some(kept::for_patient(conn, grant).await?);
    }
    if grant.covers(Category::Vaccinations) {
        summary.vaccinations = Some(kept::for_patient(conn, grant).await?);
    }
    if grant.covers(Category::Contacts) {
        summary.contacts = Some(kept::for_patient(conn, grant).await?);
    }
    if user.user.patient_id == Some(patient) {
        summary.issued_sign_ins = audit_query::about_patient_since(
            conn,
            patient,
            accounts::ISSUED_SIGN_IN,
            user.user.issued_sign_ins_seen_at,
        )
        .await?;
        summary.may_acknowledge = !user.signed_in.issued_password;
    }
    if grant.covers(Category::AccessLog) {
        let since =
            audit_query::previous_visit(conn, user.user.id, patient, grant.event_seq()).await?;
        let owner = record_owner(conn, patient).await?;
        summary.new_accesses =
            Some(audit_query::count_accesses_since(conn, patient, owner, since).await?);
    }
    record.commit().await?;
    Ok(view::overview(&user, &user.csrf().await?, summary))
}

/// The citizen has seen the notice of sign-ins with an administrator's password. Not from a
/// session that itself began with such a password: that may be the administrator's.
pub async fn acknowledge_issued_sign_ins(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    CsrfForm(_): CsrfForm<Empty>,
) -> AppResult<Redirect> {
    if user.signed_in.issued_password {
        return Err(AppError::bad_request(
            "Sign in with a password you chose yourself to dismiss this notice.",
        ));
    }
    let mut conn = state.db.pool().acquire().await?;
    accounts::acknowledge_issued_sign_ins(&mut conn, user.user.id, OffsetDateTime::now_utc())
        .await?;
    Ok(Redirect::to("/me"))
}

pub async fn labs(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (banner, (results, pending)) = Opener::citizen(&state, &user)?
        .read_with(Category::LabResults, None, async |conn, grant| {
            let results = labs::for_patient(conn, grant).await?;
            Ok::<_, DomainError>((results, labs::has_unreleased(conn, grant).await?))
        })
        .await?;
    Ok(view::labs(
        &user,
        &user.csrf().await?,
        banner,
        &results,
        pending,
    ))
}

pub async fn lab_history(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    Path(code): Path<String>,
) -> AppResult<Markup> {
    let (banner, history) = Opener::citizen(&state, &user)?.lab_history(&code).await?;
    Ok(view::lab_history(
        &user,
        &user.csrf().await?,
        banner,
        &history,
    ))
}

pub async fn prescriptions(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (banner, (all, renewal)) = Opener::citizen(&state, &user)?
        .read_with(Category::Prescriptions, None, async |conn, grant| {
            let all = prescriptions::for_patient(conn, grant).await?;
            let renewal = view::Renewals {
                requests: renewals::for_patient(conn, grant).await?,
                may_ask: grant.basis() != access_control::Basis::Guardian,
            };
            Ok::<_, DomainError>((all, renewal))
        })
        .await?;
    let (active, past) = split_prescriptions(all);
    Ok(view::prescriptions(
        &user,
        &user.csrf().await?,
        banner,
        &active,
        &past,
        &renewal,
    ))
}

#[derive(serde::Deserialize)]
pub struct RenewalForm {
    #[serde(default)]
    message: String,
}

/// "Ask for renewal" on the medicine card: by the patient or their attorney, decided and
/// audited as its own action.
pub async fn request_renewal(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
    Path(prescription): Path<uuid::Uuid>,
    CsrfForm(form): CsrfForm<RenewalForm>,
) -> AppResult<Redirect> {
    Opener::citizen(&state, &user)?
        .request_renewal_with(prescription, async |conn, grant| {
            renewals::request(conn, grant, prescription, &form.message).await
        })
        .await?;
    Ok(Redirect::to("/me/prescriptions"))
}

pub async fn plans(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (banner, all) = Opener::citizen(&state, &user)?
        .read_with(Category::TreatmentPlans, None, async |conn, grant| {
            plans::for_patient(conn, grant).await
        })
        .await?;
    Ok(view::plans(&user, &user.csrf().await?, banner, &all))
}

/// Diagnoses, allergies or vaccinations (`T`) of the record on screen.
pub async fn entries<T: Listed>(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (banner, items) = Opener::citizen(&state, &user)?
        .read_with(T::CATEGORY, None, async |conn, grant| {
            kept::for_patient::<T>(conn, grant).await
        })
        .await?;
    Ok(view::entries(&user, &user.csrf().await?, banner, &items))
}

/// The whole record as one list: each part the decision covers, read in the same audited
/// transaction.
pub async fn timeline(
    State(state): State<AppState>,
    PatientUser(user): PatientUser,
) -> AppResult<Markup> {
    let (mut record, banner) = Opener::citizen(&state, &user)?.summary().await?;
    let (conn, grant) = record.parts();
    let mut entries = Vec::new();
    if grant.covers(Category::LabResults) {
        entries.extend(on_timeline(labs::for_patient(conn, grant).await?));
    }
    if grant.covers(Category::Prescriptions) {
        entries.extend(on_timeline(prescriptions::for_patient(conn, grant).await?));
    }
    if grant.covers(Category::TreatmentPlans) {
        entries.extend(on_timeline(plans::for_patient(conn, grant).await?));
    }
    entries.extend(kept_on_timeline::<Diagnosis>(conn, grant).await?);
    entries.extend(kept_on_timeline::<Allergy>(conn, grant).await?);
    entries.extend(kept_on_timeline::<Vaccination>(conn, grant).await?);
    entries.extend(kept_on_timeline::<Contact>(conn, grant).await?);
    entries.extend(kept_on_timeline::<Procedure>(conn, grant).await?);
    entries.extend(kept_on_timeline::<Report>(conn, grant).await?);
    entries.extend(kept_on_timeline::<ImagingStudy>(conn, grant).await?);
    record.commit().await?;
    let entries = timeline::sorted(entries);
    Ok(view::timeline(&user, &user.csrf().await?, banner, &entries))
}

fn on_timeline<T: OnTimeline>(items: Vec<T>) -> impl Iterator<Item = timeline::Entry> {
    items.into_iter().filter_map(|item| item.entry())
}

/// The entries of one kept kind, or none when the decision does not cover it.
async fn kept_on_timeline<T: Kept + OnTimeline>(
    conn: &mut sqlx::AnyConnection,
    grant: &access_control::ReadGrant,
) -> Result<Vec<timeline::Entry>, DomainError> {
    if !grant.covers(T::CATEGORY) {
        return Ok(Vec::new());
    }
    Ok(on_timeline(kept::for_patient::<T>(conn, grant).await?).collect())
}
