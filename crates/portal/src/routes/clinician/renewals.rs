//! The clinic's queue of renewal requests. Each patient in it is decided on as a search hit is
//! (audited, nothing of the record read); only those the clinician may open are listed, and
//! the request itself is read on the patient's medicine card, through the gate.

use axum::extract::State;
use maud::Markup;
use records_domain::store::{patients, renewals};

use crate::app::AppState;
use crate::auth::ClinicianUser;
use crate::error::AppResult;
use crate::routes::open::Opener;
use crate::views::clinician as view;

pub async fn queue(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
) -> AppResult<Markup> {
    let csrf = user.csrf().await?;
    let Some(clinic) = user.user.clinic_id else {
        return Ok(view::renewal_queue(&user, &csrf, &[]));
    };
    let mut tx = state.db.begin_read().await?;
    let open = renewals::open_for_clinic(&mut tx, clinic).await?;
    let mut found = Vec::with_capacity(open.len());
    for (_, patient, asked) in &open {
        if let Some(p) = patients::by_id(&mut tx, *patient).await? {
            found.push((p, asked.0));
        }
    }
    let actor = user.actor();
    let openers: Vec<_> = found
        .iter()
        .map(|(p, _)| Opener::clinician(&state, &user, p.id))
        .collect();
    let requests: Vec<_> = openers.iter().map(|o| o.request(&actor, None)).collect();
    let decisions = state.gate().lookup(&mut tx, &requests).await?;
    tx.commit().await?;
    let queue: Vec<_> = found
        .into_iter()
        .zip(decisions)
        .filter(|(_, d)| d.is_allowed())
        .map(|(hit, _)| hit)
        .collect();
    Ok(view::renewal_queue(&user, &csrf, &queue))
}
