//! The banner on every record page: whose record it is and on what basis the viewer sees it.
//! One function for patients and clinicians, so the two cannot drift apart; what differs is
//! said by `Viewer` (a clinician also sees the CPR number and the time left on an override).

use access_control::{care, Basis};
use records_domain::model::PatientId;
use records_domain::store::patients;
use sqlx::AnyConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::views::layout::RecordBanner;

#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    /// The patient, or someone viewing as their proxy.
    Citizen,
    Clinician {
        user_id: Uuid,
    },
}

pub async fn banner(
    conn: &mut AnyConnection,
    viewer: Viewer,
    patient: PatientId,
    basis: Basis,
) -> AppResult<RecordBanner> {
    let p = patients::by_id(conn, patient)
        .await?
        .ok_or_else(AppError::not_found)?;
    let mut banner = RecordBanner {
        name: p.full_name(),
        birth_date: records_domain::db::date_text(p.birth_date),
        relation: basis.describe().to_string(),
        emergency: false,
    };
    match viewer {
        Viewer::Citizen => {
            banner.relation = match basis {
                Basis::OwnRecord => "your own record".to_string(),
                Basis::Guardian => "you are viewing as guardian".to_string(),
                Basis::PowerOfAttorney => "you are viewing with power of attorney".to_string(),
                other => other.describe().to_string(),
            }
        }
        Viewer::Clinician { user_id } => {
            banner.name = format!("{} (CPR {})", banner.name, p.cpr.formatted());
            if basis == Basis::EmergencyOverride {
                if let Some(access) = care::active_override(conn, user_id, patient).await? {
                    let left = (access.expires_at - OffsetDateTime::now_utc()).whole_minutes();
                    banner.relation = format!(
                        "Emergency override: {} h {} min left. Reason: {}",
                        left / 60,
                        left % 60,
                        access.reason
                    );
                    banner.emergency = true;
                }
            }
        }
    }
    Ok(banner)
}
