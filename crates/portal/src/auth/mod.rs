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
use std::net::{IpAddr, SocketAddr};
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
    /// The user's session epoch at sign-in: once the account's epoch moves on (a new password
    /// or second factor, an administrator's reset, disabling), this session is over.
    #[serde(default)]
    pub epoch: i64,
    /// Signed in with a one-time password an administrator issued: whoever holds this session
    /// may be that administrator, so it cannot dismiss the notice of such sign-ins.
    #[serde(default)]
    pub issued_password: bool,
    /// When a request last moved the session's idle expiry on (unix seconds).
    #[serde(default)]
    pub active_at: i64,
}

/// How often a request moves the idle expiry on. The session store keeps the expiry it was
/// last saved with, so the session must be saved for the idle timeout to slide; saving on
/// every request would make every page view a database write, so it is saved at most once per
/// step, and the idle timeout is IDLE_TIMEOUT less up to one step.
const ACTIVITY_STEP: i64 = 60;

/// Whether this request should save the session to keep it alive.
pub fn activity_due(active_at: i64, now: OffsetDateTime) -> bool {
    now.unix_timestamp() - active_at >= ACTIVITY_STEP
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
            .map_err(|(_, m)| AppError::internal(anyhow::anyhow!(m)))?;
        let Some(signed_in) = signed_in(&session).await? else {
            return Err(AppError::LoginRequired);
        };
        if absolute_timeout_passed(signed_in.signed_in_at, OffsetDateTime::now_utc()) {
            session.flush().await?;
            return Err(AppError::LoginRequired);
        }
        let mut conn = state.db.pool().acquire().await?;
        let user = accounts::by_id(&mut conn, signed_in.user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled && u.session_epoch == signed_in.epoch) else {
            session.flush().await?;
            return Err(AppError::LoginRequired);
        };
        let now = OffsetDateTime::now_utc();
        let mut signed_in = signed_in;
        if activity_due(signed_in.active_at, now) {
            signed_in.active_at = now.unix_timestamp();
            set_signed_in(&session, &signed_in).await?;
        }
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
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let addr = forwarded_client(forwarded, state.config.trusted_proxies).or(peer);
    RequestContext {
        client_addr: addr.map_or_else(|| "unknown".into(), |a| a.to_string()),
    }
}

/// The client's address as the outermost of `trusted_proxies` proxies saw it. Each proxy
/// appends the address it received the request from to X-Forwarded-For, so the last
/// `trusted_proxies` entries are written by our own proxies and the one furthest left of them
/// is the client's; anything further left was sent by the client and proves nothing. `None`
/// (use the peer address) with no trusted proxy, or when the header has fewer entries than
/// there are proxies (the request did not come through them all) or an entry is no address.
pub fn forwarded_client<'a>(
    headers: impl Iterator<Item = &'a str>,
    trusted_proxies: usize,
) -> Option<IpAddr> {
    if trusted_proxies == 0 {
        return None;
    }
    // Several X-Forwarded-For headers read as one list, in order (RFC 9110, section 5.3).
    let entries: Vec<&str> = headers
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let entry = entries
        .len()
        .checked_sub(trusted_proxies)
        .map(|i| entries[i])?;
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
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
    fn activity_moves_the_idle_expiry_at_most_once_a_minute() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let active_at = at.unix_timestamp();
        assert!(!activity_due(active_at, at));
        assert!(!activity_due(active_at, at + Duration::seconds(59)));
        assert!(activity_due(active_at, at + Duration::seconds(60)));
        assert!(
            activity_due(0, at),
            "a session from before this rule is saved once"
        );
    }

    fn client(headers: &[&str], proxies: usize) -> Option<String> {
        forwarded_client(headers.iter().copied(), proxies).map(|a| a.to_string())
    }

    #[test]
    fn the_client_is_the_address_the_outermost_trusted_proxy_saw() {
        let spoofed = ["6.6.6.6, 203.0.113.7"];
        assert_eq!(client(&spoofed, 0), None, "no proxy trusted: the peer");
        assert_eq!(client(&spoofed, 1).as_deref(), Some("203.0.113.7"));
        assert_eq!(client(&spoofed, 2).as_deref(), Some("6.6.6.6"));
        assert_eq!(client(&spoofed, 3), None, "fewer entries than proxies");
        assert_eq!(
            client(&["1.1.1.1, 2.2.2.2", "198.51.100.1 , 10.0.0.2"], 2).as_deref(),
            Some("198.51.100.1"),
            "several headers are one list"
        );
        assert_eq!(client(&["2001:db8::1"], 1).as_deref(), Some("2001:db8::1"));
        assert_eq!(
            client(&["[2001:db8::1]:4711"], 1).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            client(&["203.0.113.7:4711"], 1).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(client(&["1.1.1.1, not-an-address"], 1), None);
        assert_eq!(client(&[], 1), None);
    }

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
