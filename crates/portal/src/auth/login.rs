//! Signing in and out, the second factor, and changing one's password.

use access_control::accounts::{self, User};
use access_control::audit::{self, NewEvent, Outcome};
use access_control::RequestContext;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

use super::csrf::{self, CsrfForm};
use super::{client_context, home_for, set_signed_in, totp, CurrentUser, SignedIn};
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::views::account as view;

const PENDING_KEY: &str = "pending_second_factor";
const ENROL_KEY: &str = "totp_enrolment";
/// One message for unknown user, wrong password, disabled and locked accounts: the answer
/// must not tell which user names exist.
pub const LOGIN_FAILED: &str =
    "Wrong user name or password, or the account is locked for a while. Try again.";

/// The client's address, for handlers that have no signed-in user yet.
pub struct Client(pub RequestContext);

impl FromRequestParts<AppState> for Client {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        Ok(Self(client_context(parts, state)))
    }
}

#[derive(Serialize, Deserialize)]
struct PendingSecondFactor {
    user_id: Uuid,
    since: i64,
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

pub async fn login_page(session: Session) -> AppResult<Markup> {
    Ok(view::login(&csrf::token(&session).await?, None))
}

pub async fn login(
    State(state): State<AppState>,
    Client(ctx): Client,
    session: Session,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> AppResult<Response> {
    let csrf = csrf::token(&session).await?;
    if let Err(retry_after_secs) = state.throttle.attempt(&ctx.client_addr) {
        append_system(
            &state,
            NewEvent::anonymous(&short(&form.username), &ctx, "login", Outcome::Failure)
                .reason("throttled: too many attempts from this address"),
        )
        .await?;
        return Err(AppError::TooManyRequests { retry_after_secs });
    }
    let now = OffsetDateTime::now_utc();
    let user = {
        let mut conn = state.db.pool().acquire().await?;
        accounts::by_username(&mut conn, &form.username).await?
    };
    let (hash, usable) = match &user {
        Some(u) => (u.password_hash.clone(), !u.disabled && !u.is_locked(now)),
        None => (accounts::dummy_hash().to_string(), false),
    };
    let password_ok = state.hasher.verify(hash, form.password).await?;
    let Some(user) = user else {
        append_system(
            &state,
            NewEvent::anonymous(&short(&form.username), &ctx, "login", Outcome::Failure)
                .reason("unknown user name"),
        )
        .await?;
        return Ok(failed(&csrf));
    };
    if !usable {
        let why = if user.disabled {
            "account disabled"
        } else {
            "account locked"
        };
        append_system(
            &state,
            NewEvent::by(&user.actor(), &ctx, "login", Outcome::Failure).reason(why),
        )
        .await?;
        return Ok(failed(&csrf));
    }
    if !password_ok {
        record_failure(&state, &user, &ctx, "wrong password").await?;
        return Ok(failed(&csrf));
    }
    if user.role.requires_second_factor() || user.totp_secret.is_some() {
        session
            .insert(
                PENDING_KEY,
                PendingSecondFactor {
                    user_id: user.id,
                    since: now.unix_timestamp(),
                },
            )
            .await?;
        return Ok(Redirect::to("/login/second-factor").into_response());
    }
    complete_login(&state, &session, &user, &ctx).await
}

fn failed(csrf: &str) -> Response {
    (
        axum::http::StatusCode::UNAUTHORIZED,
        view::login(csrf, Some(LOGIN_FAILED)),
    )
        .into_response()
}

fn short(name: &str) -> String {
    name.chars().take(64).collect()
}

async fn record_failure(
    state: &AppState,
    user: &User,
    ctx: &RequestContext,
    why: &str,
) -> AppResult<()> {
    let mut tx = state.db.begin_write().await?;
    let locked_until =
        accounts::record_failure(&mut tx, user.id, OffsetDateTime::now_utc()).await?;
    let reason = match locked_until {
        Some(until) => format!(
            "{why}; account locked until {}",
            records_domain::db::ts(until)
        ),
        None => why.to_string(),
    };
    audit::append(
        &mut tx,
        NewEvent::by(&user.actor(), ctx, "login", Outcome::Failure).reason(reason),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn append_system(state: &AppState, event: NewEvent) -> AppResult<()> {
    let mut tx = state.db.begin_write().await?;
    audit::append(&mut tx, event).await?;
    tx.commit().await?;
    Ok(())
}

async fn complete_login(
    state: &AppState,
    session: &Session,
    user: &User,
    ctx: &RequestContext,
) -> AppResult<Response> {
    // A new session id at sign-in defeats session fixation.
    session.cycle_id().await?;
    session.remove_value(PENDING_KEY).await?;
    session.remove_value(ENROL_KEY).await?;
    set_signed_in(
        session,
        &SignedIn {
            user_id: user.id,
            signed_in_at: OffsetDateTime::now_utc().unix_timestamp(),
            acting_for: None,
        },
    )
    .await?;
    csrf::rotate(session).await?;
    let mut tx = state.db.begin_write().await?;
    accounts::record_success(&mut tx, user.id).await?;
    audit::append(
        &mut tx,
        NewEvent::by(&user.actor(), ctx, "login", Outcome::Success),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(home_for(user.role)).into_response())
}

async fn pending_user(state: &AppState, session: &Session) -> AppResult<User> {
    let pending = session
        .get::<PendingSecondFactor>(PENDING_KEY)
        .await?
        .ok_or(AppError::LoginRequired)?;
    if OffsetDateTime::now_utc().unix_timestamp() - pending.since > 300 {
        session.remove_value(PENDING_KEY).await?;
        return Err(AppError::LoginRequired);
    }
    let mut conn = state.db.pool().acquire().await?;
    accounts::by_id(&mut conn, pending.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(AppError::LoginRequired)
}

pub async fn second_factor_page(
    State(state): State<AppState>,
    session: Session,
) -> AppResult<Markup> {
    let user = pending_user(&state, &session).await?;
    let csrf = csrf::token(&session).await?;
    match user.totp_secret {
        Some(_) => Ok(view::second_factor(&csrf, None)),
        None => {
            // Staff created without a second factor enrol before they get in.
            let secret = match session.get::<String>(ENROL_KEY).await? {
                Some(s) => s,
                None => {
                    let s = totp::new_secret();
                    session.insert(ENROL_KEY, &s).await?;
                    s
                }
            };
            Ok(view::enrol_second_factor(
                &csrf,
                &totp::qr_svg(&secret, &user.username)?,
                &secret,
                None,
                "/login/second-factor",
            ))
        }
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

pub async fn second_factor(
    State(state): State<AppState>,
    Client(ctx): Client,
    session: Session,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> AppResult<Response> {
    let user = pending_user(&state, &session).await?;
    let csrf = csrf::token(&session).await?;
    if user.is_locked(OffsetDateTime::now_utc()) {
        return Ok((
            axum::http::StatusCode::UNAUTHORIZED,
            view::second_factor(&csrf, Some(LOGIN_FAILED)),
        )
            .into_response());
    }
    let verified = match &user.totp_secret {
        Some(secret) => {
            totp::check(secret, &user.username, &form.code)?
                || accounts::use_recovery_code(
                    &mut *state.db.pool().acquire().await?,
                    user.id,
                    &form.code,
                )
                .await?
        }
        None => {
            let secret = session
                .get::<String>(ENROL_KEY)
                .await?
                .ok_or(AppError::LoginRequired)?;
            let ok = totp::check(&secret, &user.username, &form.code)?;
            if ok {
                let mut conn = state.db.pool().acquire().await?;
                accounts::set_totp_secret(&mut conn, user.id, Some(&secret)).await?;
            }
            ok
        }
    };
    if !verified {
        record_failure(&state, &user, &ctx, "wrong second-factor code").await?;
        let page = match &user.totp_secret {
            Some(_) => view::second_factor(&csrf, Some("That code is not right. Use the current code from your app, or a recovery code.")),
            None => {
                let secret = session.get::<String>(ENROL_KEY).await?.unwrap_or_default();
                view::enrol_second_factor(&csrf, &totp::qr_svg(&secret, &user.username)?, &secret, Some("That code is not right. Check the time on your phone."), "/login/second-factor")
            }
        };
        return Ok((axum::http::StatusCode::UNAUTHORIZED, page).into_response());
    }
    complete_login(&state, &session, &user, &ctx).await
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfForm(_): CsrfForm<Empty>,
) -> AppResult<Response> {
    append_system(
        &state,
        NewEvent::by(&user.actor(), &user.ctx, "logout", Outcome::Success),
    )
    .await?;
    // Deletes the session server-side: the old cookie is worthless from here on.
    user.session.flush().await?;
    Ok(Redirect::to("/login").into_response())
}

pub async fn password_page(user: CurrentUser) -> AppResult<Markup> {
    Ok(view::change_password(&user, &user.csrf().await?, None))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> AppResult<Response> {
    let csrf = user.csrf().await?;
    let problem = if !state
        .hasher
        .verify(user.user.password_hash.clone(), form.current)
        .await?
    {
        Some("Your current password is not right.".to_string())
    } else if form.new != form.confirm {
        Some("The two new passwords are not the same.".to_string())
    } else {
        accounts::check_new_password(&form.new, &user.user.username)
            .err()
            .map(|e| e.to_string())
    };
    if let Some(problem) = problem {
        return Ok((
            axum::http::StatusCode::BAD_REQUEST,
            view::change_password(&user, &csrf, Some(&problem)),
        )
            .into_response());
    }
    let hash = state.hasher.hash(form.new).await?;
    let mut tx = state.db.begin_write().await?;
    accounts::set_password(&mut tx, user.user.id, &hash, false).await?;
    audit::append(
        &mut tx,
        NewEvent::by(
            &user.actor(),
            &user.ctx,
            "change password",
            Outcome::Success,
        ),
    )
    .await?;
    tx.commit().await?;
    // A privilege-relevant change: new session id.
    user.session.cycle_id().await?;
    Ok(view::password_changed(&user, &csrf).into_response())
}

pub async fn security_page(user: CurrentUser) -> AppResult<Markup> {
    Ok(view::security(&user, &user.csrf().await?))
}

/// A patient starts optional TOTP enrolment: a new secret waits in the session until confirmed.
pub async fn start_totp(user: CurrentUser, CsrfForm(_): CsrfForm<Empty>) -> AppResult<Markup> {
    let secret = totp::new_secret();
    user.session.insert(ENROL_KEY, &secret).await?;
    Ok(view::enrol_page(
        &user,
        &user.csrf().await?,
        &totp::qr_svg(&secret, &user.user.username)?,
        &secret,
        None,
    ))
}

pub async fn confirm_totp(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> AppResult<Response> {
    let csrf = user.csrf().await?;
    let secret = user
        .session
        .get::<String>(ENROL_KEY)
        .await?
        .ok_or_else(|| AppError::bad_request("Start the set-up again."))?;
    if !totp::check(&secret, &user.user.username, &form.code)? {
        let page = view::enrol_page(
            &user,
            &csrf,
            &totp::qr_svg(&secret, &user.user.username)?,
            &secret,
            Some("That code is not right. Check the time on your phone."),
        );
        return Ok((axum::http::StatusCode::BAD_REQUEST, page).into_response());
    }
    let codes = totp::recovery_codes();
    let mut tx = state.db.begin_write().await?;
    accounts::set_totp_secret(&mut tx, user.user.id, Some(&secret)).await?;
    accounts::replace_recovery_codes(&mut tx, user.user.id, &codes).await?;
    audit::append(
        &mut tx,
        NewEvent::by(
            &user.actor(),
            &user.ctx,
            "enable second factor",
            Outcome::Success,
        ),
    )
    .await?;
    tx.commit().await?;
    user.session.remove_value(ENROL_KEY).await?;
    Ok(view::recovery_codes(&user, &csrf, &codes).into_response())
}
