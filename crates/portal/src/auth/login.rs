//! Signing in and out, the second factor, and changing one's password.
//!
//! Every verdict on a credential is taken by the database in a conditional write (see
//! `accounts::record_failure`, `record_success`, `accept_totp_step`): of any number of
//! concurrent attempts no more get a verdict than the lock-out allows, a TOTP code is accepted
//! once, and an attempt that is refused leaves nothing behind. A change of password or second
//! factor raises the account's session epoch, which ends every other session.

use access_control::accounts::{self, Failure, PasswordSetBy, User};
use access_control::audit::{self, NewEvent, Outcome};
use access_control::RequestContext;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::Markup;
use records_domain::Tx;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

use super::csrf::{self, CsrfForm, LoginCsrfForm};
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
const THROTTLED: &str = "throttled: too many attempts from this address \
                         (recorded once a minute per address)";

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
    /// The account's session epoch when the password was right: a reset in between ends this.
    #[serde(default)]
    epoch: i64,
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

/// The sign-in form. It stores nothing: its token is signed, not kept in a session.
pub async fn login_page(State(state): State<AppState>, jar: CookieJar) -> (CookieJar, Markup) {
    let (jar, token) = csrf::login_token(&state, jar);
    (jar, view::login(&token, None))
}

pub async fn login(
    State(state): State<AppState>,
    Client(ctx): Client,
    session: Session,
    jar: CookieJar,
    LoginCsrfForm(form): LoginCsrfForm<LoginForm>,
) -> AppResult<Response> {
    let (jar, csrf) = csrf::login_token(&state, jar);
    let failed = move || {
        (
            StatusCode::UNAUTHORIZED,
            jar,
            view::login(&csrf, Some(LOGIN_FAILED)),
        )
            .into_response()
    };
    if let Err(retry_after_secs) = state.throttle.attempt(&ctx.client_addr) {
        metrics::counter!("portal_throttled_total", "limit" => "sign_in").increment(1);
        if state.anonymous_audit.should_record(&ctx.client_addr) {
            append_system(
                &state,
                NewEvent::anonymous(&short(&form.username), &ctx, "login", Outcome::Failure)
                    .reason(THROTTLED),
            )
            .await?;
        }
        return Err(AppError::TooManyRequests { retry_after_secs });
    }
    let user = {
        let mut conn = state.db.pool().acquire().await?;
        accounts::by_username(&mut conn, &form.username).await?
    };
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => accounts::dummy_hash().to_string(),
    };
    // Hashed whatever the account's state, so that the time taken tells nothing.
    let password_ok = state.hasher.verify(hash, form.password).await?;
    let Some(user) = user else {
        append_system(
            &state,
            NewEvent::anonymous(&short(&form.username), &ctx, "login", Outcome::Failure)
                .reason("unknown user name"),
        )
        .await?;
        return Ok(failed());
    };
    if user.disabled {
        refuse_unevaluated(&state, &user, &ctx, "account disabled").await?;
        return Ok(failed());
    }
    if !password_ok {
        record_failure(&state, &user, &ctx, "wrong password").await?;
        return Ok(failed());
    }
    let now = OffsetDateTime::now_utc();
    if user.role.requires_second_factor() || user.totp_secret.is_some() {
        // Read again after hashing: failures counted meanwhile may have locked the account, and
        // a locked account must not confirm that a password is right.
        let fresh = {
            let mut conn = state.db.pool().acquire().await?;
            accounts::by_id(&mut conn, user.id).await?
        };
        let Some(fresh) = fresh.filter(|u| !u.disabled) else {
            refuse_unevaluated(&state, &user, &ctx, "account disabled").await?;
            return Ok(failed());
        };
        if fresh.is_locked(now) {
            refuse_unevaluated(&state, &user, &ctx, "account locked").await?;
            return Ok(failed());
        }
        session
            .insert(
                PENDING_KEY,
                PendingSecondFactor {
                    user_id: fresh.id,
                    since: now.unix_timestamp(),
                    epoch: fresh.session_epoch,
                },
            )
            .await?;
        return Ok(Redirect::to("/login/second-factor").into_response());
    }
    let mut tx = state.db.begin_write().await?;
    if !accounts::record_success(&mut tx, user.id, now).await? {
        tx.rollback().await?;
        refuse_unevaluated(&state, &user, &ctx, "account locked").await?;
        return Ok(failed());
    }
    complete_login(&session, &user, user.session_epoch, &ctx, tx).await
}

fn short(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Count a failed attempt (unless the account is already locked: then it is not evaluated)
/// and audit it.
async fn record_failure(
    state: &AppState,
    user: &User,
    ctx: &RequestContext,
    why: &str,
) -> AppResult<()> {
    let mut tx = state.db.begin_write().await?;
    let reason = match accounts::record_failure(&mut tx, user.id, OffsetDateTime::now_utc()).await?
    {
        Failure::AlreadyLocked => "account locked".to_string(),
        Failure::Counted {
            locked_until: Some(until),
        } => format!(
            "{why}; account locked until {}",
            records_domain::db::ts(until)
        ),
        Failure::Counted { locked_until: None } => why.to_string(),
    };
    audit::append(
        &mut tx,
        NewEvent::by(&user.actor(), ctx, "login", Outcome::Failure).reason(reason),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("portal_login_failures_total", "counted" => "true").increment(1);
    Ok(())
}

/// Audit an attempt refused whatever the credentials, without counting it.
async fn refuse_unevaluated(
    state: &AppState,
    user: &User,
    ctx: &RequestContext,
    why: &str,
) -> AppResult<()> {
    append_system(
        state,
        NewEvent::by(&user.actor(), ctx, "login", Outcome::Failure).reason(why),
    )
    .await?;
    metrics::counter!("portal_login_failures_total", "counted" => "false").increment(1);
    Ok(())
}

async fn append_system(state: &AppState, event: NewEvent) -> AppResult<()> {
    state.audit.append(event).await?;
    Ok(())
}

/// Finish a sign-in whose last step `tx` accepted: audit it, commit, and only then make the
/// session a signed-in one.
async fn complete_login(
    session: &Session,
    user: &User,
    epoch: i64,
    ctx: &RequestContext,
    mut tx: Tx,
) -> AppResult<Response> {
    audit::append(
        &mut tx,
        NewEvent::by(&user.actor(), ctx, "login", Outcome::Success),
    )
    .await?;
    if let Some(admin) = user.password_issued_by {
        let event = issued_sign_in(&mut tx, user, admin, ctx).await?;
        audit::append(&mut tx, event).await?;
    }
    tx.commit().await?;
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
            epoch,
            issued_password: user.password_issued_by.is_some(),
            active_at: OffsetDateTime::now_utc().unix_timestamp(),
        },
    )
    .await?;
    csrf::rotate(session).await?;
    Ok(Redirect::to(home_for(user.role)).into_response())
}

/// A sign-in with a password an administrator issued. The portal cannot tell the user from the
/// administrator who knows that password, so the event names the administrator as actor and
/// goes into the citizen's chain, where "who looked at my record" shows it (the citizen's own
/// events are not shown there).
async fn issued_sign_in(
    tx: &mut Tx,
    user: &User,
    admin: Uuid,
    ctx: &RequestContext,
) -> AppResult<NewEvent> {
    let reason = format!(
        "{} signed in with the one-time password this administrator issued: \
         it was the account holder or whoever else knew that password",
        user.username
    );
    let event = match accounts::by_id(tx, admin).await? {
        Some(admin) => NewEvent::by(
            &admin.actor(),
            ctx,
            accounts::ISSUED_SIGN_IN,
            Outcome::Success,
        ),
        None => NewEvent::anonymous(
            "an administrator",
            ctx,
            accounts::ISSUED_SIGN_IN,
            Outcome::Success,
        ),
    }
    .resource("user", Some(user.id.to_string()))
    .reason(reason);
    Ok(match user.patient_id {
        Some(patient) => event.about(patient),
        None => event,
    })
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
        .filter(|u| !u.disabled && u.session_epoch == pending.epoch)
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
    // Only failures spend the address's attempts here: staff behind one hospital address sign
    // in by the dozen, and the account's lock-out already bounds concurrent guessing.
    if let Err(retry_after_secs) = state.throttle.check(&ctx.client_addr) {
        metrics::counter!("portal_throttled_total", "limit" => "sign_in").increment(1);
        if state.anonymous_audit.should_record(&ctx.client_addr) {
            append_system(
                &state,
                NewEvent::by(&user.actor(), &ctx, "login", Outcome::Failure).reason(THROTTLED),
            )
            .await?;
        }
        return Err(AppError::TooManyRequests { retry_after_secs });
    }
    let csrf = csrf::token(&session).await?;
    let enrolling = match &user.totp_secret {
        Some(_) => None,
        None => Some(
            session
                .get::<String>(ENROL_KEY)
                .await?
                .ok_or(AppError::LoginRequired)?,
        ),
    };
    let now = OffsetDateTime::now_utc();
    let mut tx = state.db.begin_write().await?;
    // A locked account's codes are not evaluated at all.
    let accepted_epoch = if user.is_locked(now) {
        None
    } else {
        match (&user.totp_secret, &enrolling) {
            (Some(secret), _) => match totp::current_step(secret, &user.username, &form.code)? {
                Some(step) => accounts::accept_totp_step(&mut tx, user.id, step, now)
                    .await?
                    .then_some(user.session_epoch),
                None => (accounts::use_recovery_code(&mut tx, user.id, &form.code).await?
                    && accounts::record_success(&mut tx, user.id, now).await?)
                    .then_some(user.session_epoch),
            },
            (None, Some(secret)) => match totp::current_step(secret, &user.username, &form.code)? {
                Some(step) if accounts::record_success(&mut tx, user.id, now).await? => {
                    accounts::enrol_totp(&mut tx, user.id, secret, step, true).await?
                }
                _ => None,
            },
            (None, None) => None,
        }
    };
    if let Some(epoch) = accepted_epoch {
        return complete_login(&session, &user, epoch, &ctx, tx).await;
    }
    // Nothing of a refused attempt stays (a recovery code spent on a locked account, say).
    tx.rollback().await?;
    // The address pays for the failure; the answer is 401 either way.
    let _ = state.throttle.attempt(&ctx.client_addr);
    record_failure(&state, &user, &ctx, "wrong second-factor code").await?;
    let page = match &enrolling {
        None => view::second_factor(
            &csrf,
            Some("That code is not right. Use the current code from your app, or a recovery code."),
        ),
        Some(secret) => view::enrol_second_factor(
            &csrf,
            &totp::qr_svg(secret, &user.username)?,
            secret,
            Some("That code is not right. Check the time on your phone."),
            "/login/second-factor",
        ),
    };
    Ok((StatusCode::UNAUTHORIZED, page).into_response())
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
            StatusCode::BAD_REQUEST,
            view::change_password(&user, &csrf, Some(&problem)),
        )
            .into_response());
    }
    let hash = state.hasher.hash(form.new).await?;
    let mut tx = state.db.begin_write().await?;
    let epoch = accounts::set_password(&mut tx, user.user.id, &hash, PasswordSetBy::User).await?;
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
    // Every other session of the user has just ended; this one goes on, under a new id.
    keep_session(&user, epoch).await?;
    Ok(view::password_changed(&user, &csrf).into_response())
}

/// The user's own session survives a change that ended all the others: it adopts the new
/// epoch, and gets a new id as at any change of privilege.
async fn keep_session(user: &CurrentUser, epoch: i64) -> AppResult<()> {
    user.session.cycle_id().await?;
    set_signed_in(
        &user.session,
        &SignedIn {
            epoch,
            ..user.signed_in.clone()
        },
    )
    .await
}

pub async fn security_page(user: CurrentUser) -> AppResult<Markup> {
    Ok(view::security(&user, &user.csrf().await?, None))
}

#[derive(Deserialize)]
pub struct StartTotpForm {
    #[serde(default)]
    password: String,
}

/// Set up a second factor (or replace it): the current password first, so that a session left
/// open somewhere cannot take over the account's second factor. A new secret then waits in the
/// session until a code confirms it.
pub async fn start_totp(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfForm(form): CsrfForm<StartTotpForm>,
) -> AppResult<Response> {
    let csrf = user.csrf().await?;
    if !state
        .hasher
        .verify(user.user.password_hash.clone(), form.password)
        .await?
    {
        return Ok((
            StatusCode::BAD_REQUEST,
            view::security(&user, &csrf, Some("Your current password is not right.")),
        )
            .into_response());
    }
    let secret = totp::new_secret();
    user.session.insert(ENROL_KEY, &secret).await?;
    Ok(view::enrol_page(
        &user,
        &csrf,
        &totp::qr_svg(&secret, &user.user.username)?,
        &secret,
        None,
    )
    .into_response())
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
    let refuse = |problem: &str| -> AppResult<Response> {
        let page = view::enrol_page(
            &user,
            &csrf,
            &totp::qr_svg(&secret, &user.user.username)?,
            &secret,
            Some(problem),
        );
        Ok((StatusCode::BAD_REQUEST, page).into_response())
    };
    let Some(step) = totp::current_step(&secret, &user.user.username, &form.code)? else {
        return refuse("That code is not right. Check the time on your phone.");
    };
    let codes = totp::recovery_codes();
    let mut tx = state.db.begin_write().await?;
    let Some(epoch) = accounts::enrol_totp(&mut tx, user.user.id, &secret, step, false).await?
    else {
        tx.rollback().await?;
        return refuse("That code has been used already. Enter the next code your app shows.");
    };
    accounts::replace_recovery_codes(&mut tx, user.user.id, &codes).await?;
    let action = match user.user.totp_secret {
        Some(_) => "replace second factor",
        None => "enable second factor",
    };
    audit::append(
        &mut tx,
        NewEvent::by(&user.actor(), &user.ctx, action, Outcome::Success),
    )
    .await?;
    tx.commit().await?;
    user.session.remove_value(ENROL_KEY).await?;
    keep_session(&user, epoch).await?;
    Ok(view::recovery_codes(&user, &csrf, &codes).into_response())
}
