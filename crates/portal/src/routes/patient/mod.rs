//! The citizen's own record, or the record of someone they hold a proxy for: the record pages,
//! "who looked at my record", and the patient's controls (blocks, powers of attorney, switching
//! to a proxy record).

mod access_log;
mod consent;
mod record;

use axum::routing::{get, post};
use axum::Router;
use records_domain::model::{
    Allergy, Contact, Diagnosis, ImagingStudy, PatientId, Procedure, Report, Vaccination,
};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppResult};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(record::overview))
        .route(
            "/me/sign-in-notice",
            post(record::acknowledge_issued_sign_ins),
        )
        .route("/me/timeline", get(record::timeline))
        .route("/me/labs", get(record::labs))
        .route("/me/labs/{code}", get(record::lab_history))
        .route("/me/prescriptions", get(record::prescriptions))
        .route(
            "/me/prescriptions/{prescription}/renewal",
            post(record::request_renewal),
        )
        .route("/me/plans", get(record::plans))
        .route("/me/diagnoses", get(record::entries::<Diagnosis>))
        .route("/me/allergies", get(record::entries::<Allergy>))
        .route("/me/vaccinations", get(record::entries::<Vaccination>))
        .route("/me/contacts", get(record::entries::<Contact>))
        .route("/me/procedures", get(record::entries::<Procedure>))
        .route("/me/reports", get(record::entries::<Report>))
        .route("/me/imaging", get(record::entries::<ImagingStudy>))
        .route("/me/access-log", get(access_log::page))
        .route("/me/access-log/chain.json", get(access_log::chain))
        .route("/me/access-log/proof.json", get(access_log::proof))
        .route("/me/access-log/{event}/report", post(access_log::report))
        .route("/me/blocks", get(consent::blocks).post(consent::add_block))
        .route("/me/blocks/{block}/lift", post(consent::lift_block))
        .route("/me/proxies", get(consent::proxies))
        .route("/me/proxies/grant", post(consent::grant_power_of_attorney))
        .route("/me/proxies/{proxy}/revoke", post(consent::revoke))
        .route("/me/switch", post(consent::switch))
}

/// The user's own record: consent is managed by the patient in person, never through a proxy.
fn own_record(user: &CurrentUser) -> AppResult<PatientId> {
    user.user.patient_id.ok_or_else(AppError::not_found)
}
