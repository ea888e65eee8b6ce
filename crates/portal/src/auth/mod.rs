//! Who is signed in. Login (password, then TOTP), sessions with idle and absolute timeouts,
//! CSRF tokens, throttling, and the extractors that hand a handler its signed-in user, already
//! checked for role. One implementation serves every role.

pub mod csrf;
pub mod hashing;
pub mod login;
pub mod throttle;
pub mod totp;

use access_control::accounts::{self, User};
use access_control::{Actor, RequestContext, Role};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use records_domain::model::PatientId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use time::{Duration, OffsetDateTime};
use tower_sessions::Session;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::AppError;

pub const IDLE_TIMEOUT: Duration = Duration::minutes(15);
pub const ABSOLUTE_TIMEOUT: Duration = Duration::hours(8);

const USER_KEY: &str = "user";

/// What the session remembers about a signed-in user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub user_id: Uuid,
    pub signed_in_at: i64,
    /// The record a patient user is looking at: their own, or one they hold a proxy for.
    pub acting_for: Option<PatientId>,
}

pub async fn signed_in(session: &Session) -> Result<Option<SignedIn>, AppError> {
    Ok(session.get::<SignedIn>(USER_KEY).await?)
}

pub async fn set_signed_in(session: &Session, value: &SignedIn) -> Result<(), AppError> {
    Ok(session.insert(USER_KEY, value).await?)
}

/// The signed-in user, loaded fresh from the database on every request so that disabling an
/// account or a role change takes effect at once.
#[derive(Clone)]
pub struct CurrentUser {
    pub user: User,
    pub session: Session,
    pub signed_in: SignedIn,
    pub ctx: RequestContext,
}

impl CurrentUser {
    pub fn actor(&self) -> Actor {
        self.user.actor()
    }

    pub async fn csrf(&self) -> Result<String, AppError> {
        csrf::token(&self.session).await
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, m)| AppError::internal(m))?;
        let Some(signed_in) = signed_in(&session).await? else {
            return Err(AppError::LoginRequired);
        };
        if absolute_timeout_passed(signed_in.signed_in_at, OffsetDateTime::now_utc()) {
            session.flush().await?;
            return Err(AppError::LoginRequired);
        }
        let mut conn = state.db.pool().acquire().await?;
        let user = accounts::by_id(&mut conn, signed_in.user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            session.flush().await?;
            return Err(AppError::LoginRequired);
        };
        let changing_password =
            parts.uri.path() == "/account/password" || parts.uri.path() == "/logout";
        if user.must_change_password && !changing_password {
            return Err(AppError::MustChangePassword);
        }
        Ok(Self {
            user,
            session,
            signed_in,
            ctx: client_context(parts, state),
        })
    }
}

/// Eight hours after signing in, a session ends however active it was.
pub fn absolute_timeout_passed(signed_in_at: i64, now: OffsetDateTime) -> bool {
    now.unix_timestamp() - signed_in_at > ABSOLUTE_TIMEOUT.whole_seconds()
}

pub fn client_context(parts: &Parts, state: &AppState) -> RequestContext {
    let forwarded = state
        .config
        .trust_proxy
        .then(|| {
            parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
        })
        .flatten()
        .and_then(|v| v.split(',').next())
        .map(|s| s.trim().to_string());
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    RequestContext {
        client_addr: forwarded.or(peer).unwrap_or_else(|| "unknown".into()),
    }
}

macro_rules! role_extractor {
    ($(#[$m:meta])* $name:ident, $role:expr) => {
        $(#[$m])*
        pub struct $name(pub CurrentUser);

        impl FromRequestParts<AppState> for $name {
            type Rejection = AppError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
                let user = CurrentUser::from_request_parts(parts, state).await?;
                if user.user.role != $role {
                    return Err(AppError::WrongRole);
                }
                Ok(Self(user))
            }
        }
    };
}

role_extractor!(
    /// A citizen signed in (possibly looking at a record they hold a proxy for).
    PatientUser, Role::Patient
);
role_extractor!(
    /// A clinician signed in with password and second factor.
    ClinicianUser, Role::Clinician
);
role_extractor!(
    /// An auditor signed in with password and second factor.
    AuditorUser, Role::Auditor
);
role_extractor!(
    /// An administrator signed in with password and second factor.
    AdminUser, Role::Administrator
);

/// The page a user lands on after signing in.
pub fn home_for(role: Role) -> &'static str {
    match role {
        Role::Patient => "/me",
        Role::Clinician => "/clinician",
        Role::Auditor => "/audit",
        Role::Administrator => "/admin",
        Role::System => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_eight_hours_after_sign_in() {
        let signed_in = OffsetDateTime::now_utc();
        let at = signed_in.unix_timestamp();
        assert!(!absolute_timeout_passed(at, signed_in + Duration::hours(8)));
        assert!(absolute_timeout_passed(
            at,
            signed_in + Duration::hours(8) + Duration::seconds(1)
        ));
    }
}
