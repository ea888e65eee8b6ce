//! Proof downloads as the pages and FHIR serve them. One publishing round runs first, so that a
//! proof asked for right after an access (the download's own among them) covers it rather than
//! waiting for the publisher's next round; one round only, so that a request never waits for a
//! backlog the background publisher is draining.

use access_control::audit::log;
use access_control::AccessError;
use records_domain::model::PatientId;
use transparency_log::AuditDownload;
use uuid::Uuid;

use crate::app::AppState;

/// Every event of `patient` with its proof; `None` while nothing is signed yet.
pub async fn of_patient(
    state: &AppState,
    patient: PatientId,
    owner: Uuid,
) -> Result<Option<AuditDownload>, AccessError> {
    let settings = &state.config.log;
    log::publish(&state.db, &settings.signer).await?;
    let mut conn = state.db.pool().acquire().await?;
    log::download_for(&mut conn, patient, owner, &settings.keys()).await
}

/// One event with its proof; `None` for an unknown event.
pub async fn of_event(state: &AppState, event: Uuid) -> Result<Option<AuditDownload>, AccessError> {
    let settings = &state.config.log;
    log::publish(&state.db, &settings.signer).await?;
    let mut conn = state.db.pool().acquire().await?;
    log::download_of_event(&mut conn, event, &settings.keys()).await
}
