//! Administration: users (create, disable, reset password), clinics, GP listings and care
//! relationships. Administrators see names and CPR numbers to identify people, never clinical
//! data: none of these handlers opens a record. Every change is audited.

use access_control::audit::{self, NewEvent, Outcome};
use access_control::{accounts, care, Role};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use rand::RngCore;
use records_domain::cpr::Cpr;
use records_domain::model::{Clinic, ClinicKind, Patient};
use records_domain::store::{clinics, patients};
use records_domain::Tx;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::login::Empty;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::forms::fields::{optional_date, start_date};
use crate::views::admin as view;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/users", get(users).post(create_user))
        .route("/admin/users/{user}/disable", post(disable_user))
        .route("/admin/users/{user}/enable", post(enable_user))
        .route("/admin/users/{user}/reset-password", post(reset_password))
        .route("/admin/clinics", get(clinic_list).post(create_clinic))
        .route("/admin/listings", get(listings).post(set_listing))
        .route(
            "/admin/relationships",
            get(relationships).post(add_relationship),
        )
        .route("/admin/relationships/{id}/end", post(end_relationship))
}

async fn home(AdminUser(_): AdminUser) -> Redirect {
    Redirect::to("/admin/users")
}

fn audit_event(admin: &CurrentUser, action: &str) -> NewEvent {
    NewEvent::by(&admin.actor(), &admin.ctx, action, Outcome::Success)
}

/// A one-time password the administrator hands over; the user must change it at first login.
fn temporary_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!(
        "{}-{}-{}-{}",
        &chars[..4],
        &chars[4..8],
        &chars[8..12],
        &chars[12..]
    )
}

async fn patient_by_cpr(state: &AppState, text: &str) -> AppResult<Patient> {
    let cpr = Cpr::parse(text.trim()).map_err(|e| AppError::bad_request(e.to_string()))?;
    let mut conn = state.db.pool().acquire().await?;
    patients::by_cpr(&mut conn, &cpr)
        .await?
        .ok_or_else(|| AppError::bad_request("No patient has that CPR number."))
}

fn optional_uuid(text: &str, what: &str) -> AppResult<Option<Uuid>> {
    match text.trim() {
        "" => Ok(None),
        id => Uuid::parse_str(id)
            .map(Some)
            .map_err(|_| AppError::bad_request(format!("Choose {what} from the list."))),
    }
}

async fn users(State(state): State<AppState>, AdminUser(admin): AdminUser) -> AppResult<Markup> {
    let mut conn = state.db.pool().acquire().await?;
    let all = accounts::all(&mut conn).await?;
    let clinics = clinics::all(&mut conn).await?;
    drop(conn);
    Ok(view::users(
        &admin,
        &admin.csrf().await?,
        &all,
        &clinics,
        None,
    ))
}

#[derive(Deserialize)]
struct NewUserForm {
    username: String,
    display_name: String,
    role: String,
    #[serde(default)]
    clinic: String,
    #[serde(default)]
    cpr: String,
}

async fn create_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    CsrfForm(form): CsrfForm<NewUserForm>,
) -> AppResult<Markup> {
    let role = Role::parse(&form.role)
        .filter(|r| *r != Role::System)
        .ok_or_else(|| AppError::bad_request("Choose a role."))?;
    let patient_id = match form.cpr.trim() {
        "" => None,
        cpr => Some(patient_by_cpr(&state, cpr).await?.id),
    };
    let new = accounts::NewUser {
        username: form.username.trim().to_string(),
        display_name: form.display_name.trim().to_string(),
        role,
        patient_id: patient_id.filter(|_| role == Role::Patient),
        clinic_id: optional_uuid(&form.clinic, "a clinic")?.filter(|_| role == Role::Clinician),
        totp_secret: None,
        must_change_password: true,
    };
    new.validate()?;
    let password = temporary_password();
    let hash = state.hasher.hash(password.clone()).await?;
    let mut tx = state.db.begin_write().await?;
    let id = accounts::create(&mut tx, &new, &hash).await?;
    accounts::set_password_issuer(&mut tx, id, admin.user.id).await?;
    // A citizen's account is part of their record's story: it goes into their chain and log.
    let mut event = audit_event(&admin, "create user")
        .resource("user", Some(id.to_string()))
        .reason(format!("{} as {}", new.username, role.as_str()));
    if let Some(patient) = new.patient_id {
        event = event.about(patient);
    }
    audit::append(&mut tx, event).await?;
    users_page(tx, &admin, Some((&new.username, &password))).await
}

/// The users page after a change made in `tx`, with the one-time password just issued.
async fn users_page(
    mut tx: Tx,
    admin: &CurrentUser,
    issued: Option<(&str, &str)>,
) -> AppResult<Markup> {
    let all = accounts::all(&mut tx).await?;
    let clinics = clinics::all(&mut tx).await?;
    tx.commit().await?;
    Ok(view::users(
        admin,
        &admin.csrf().await?,
        &all,
        &clinics,
        issued,
    ))
}

async fn set_disabled(
    state: &AppState,
    admin: &CurrentUser,
    user: Uuid,
    disabled: bool,
) -> AppResult<Response> {
    if user == admin.user.id {
        return Err(AppError::bad_request(
            "You cannot disable your own account.",
        ));
    }
    let mut tx = state.db.begin_write().await?;
    // Either way every session of the user ends (see `accounts::set_disabled`).
    accounts::set_disabled(&mut tx, user, disabled).await?;
    let action = if disabled {
        "disable user"
    } else {
        "enable user"
    };
    audit::append(
        &mut tx,
        audit_event(admin, action).resource("user", Some(user.to_string())),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/admin/users").into_response())
}

async fn disable_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> AppResult<Response> {
    set_disabled(&state, &admin, user, true).await
}

async fn enable_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> AppResult<Response> {
    set_disabled(&state, &admin, user, false).await
}

async fn reset_password(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> AppResult<Markup> {
    let password = temporary_password();
    let hash = state.hasher.hash(password.clone()).await?;
    let mut tx = state.db.begin_write().await?;
    let target = accounts::by_id(&mut tx, user)
        .await?
        .ok_or_else(AppError::not_found)?;
    // Ends every session of the user, and marks the password as issued by this administrator:
    // the next sign-in with it shows in the citizen's access log.
    accounts::set_password(
        &mut tx,
        user,
        &hash,
        accounts::PasswordSetBy::Administrator(admin.user.id),
    )
    .await?;
    let mut event = audit_event(&admin, "reset password").resource("user", Some(user.to_string()));
    if let Some(patient) = target.patient_id {
        event = event.about(patient);
    }
    audit::append(&mut tx, event).await?;
    users_page(tx, &admin, Some((&target.username, &password))).await
}

async fn clinic_list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> AppResult<Markup> {
    let mut conn = state.db.pool().acquire().await?;
    let all = clinics::all(&mut conn).await?;
    let mut listed = Vec::with_capacity(all.len());
    for clinic in all {
        let n = patients::listed_with(&mut conn, clinic.id).await?;
        listed.push((clinic, n));
    }
    drop(conn);
    Ok(view::clinics(&admin, &admin.csrf().await?, &listed))
}

#[derive(Deserialize)]
struct ClinicForm {
    name: String,
    kind: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    phone: String,
}

async fn create_clinic(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    CsrfForm(form): CsrfForm<ClinicForm>,
) -> AppResult<Response> {
    let name = form.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AppError::bad_request(
            "Give the clinic a name (at most 200 characters).",
        ));
    }
    let clinic = Clinic {
        id: Uuid::now_v7(),
        name: name.to_string(),
        kind: ClinicKind::parse(&form.kind)
            .map_err(|_| AppError::bad_request("Choose the kind of clinic."))?,
        address: form.address.trim().chars().take(300).collect(),
        phone: form.phone.trim().chars().take(40).collect(),
    };
    let mut tx = state.db.begin_write().await?;
    clinics::insert(&mut tx, &clinic).await?;
    audit::append(
        &mut tx,
        audit_event(&admin, "create clinic")
            .resource("clinic", Some(clinic.id.to_string()))
            .reason(clinic.name.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/admin/clinics").into_response())
}

async fn listings(State(state): State<AppState>, AdminUser(admin): AdminUser) -> AppResult<Markup> {
    let mut conn = state.db.pool().acquire().await?;
    let clinics = clinics::all(&mut conn).await?;
    drop(conn);
    Ok(view::listings(&admin, &admin.csrf().await?, &clinics, None))
}

#[derive(Deserialize)]
struct ListingForm {
    cpr: String,
    /// Empty: the patient leaves their GP list.
    #[serde(default)]
    clinic: String,
}

async fn set_listing(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    CsrfForm(form): CsrfForm<ListingForm>,
) -> AppResult<Markup> {
    let patient = patient_by_cpr(&state, &form.cpr).await?;
    let clinic = optional_uuid(&form.clinic, "a clinic")?;
    let mut tx = state.db.begin_write().await?;
    let clinic_name = match clinic {
        Some(id) => Some(
            clinics::by_id(&mut tx, id)
                .await?
                .ok_or_else(|| AppError::bad_request("Choose a clinic from the list."))?
                .name,
        ),
        None => None,
    };
    patients::set_gp_clinic(&mut tx, patient.id, clinic).await?;
    audit::append(
        &mut tx,
        audit_event(&admin, "set gp listing")
            .about(patient.id)
            .resource("gp_listing", clinic.map(|c| c.to_string()))
            .reason(clinic_name.clone().unwrap_or_else(|| "no GP".into())),
    )
    .await?;
    let clinics = clinics::all(&mut tx).await?;
    tx.commit().await?;
    let done = format!(
        "{} is now listed with {}.",
        patient.full_name(),
        clinic_name.as_deref().unwrap_or("no GP practice")
    );
    Ok(view::listings(
        &admin,
        &admin.csrf().await?,
        &clinics,
        Some(&done),
    ))
}

async fn relationships(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> AppResult<Markup> {
    let mut conn = state.db.pool().acquire().await?;
    let all = care::relationships(&mut conn, None).await?;
    let clinicians = accounts::clinicians(&mut conn).await?;
    drop(conn);
    Ok(view::relationships(
        &admin,
        &admin.csrf().await?,
        &all,
        &clinicians,
    ))
}

#[derive(Deserialize)]
struct RelationshipForm {
    clinician: String,
    cpr: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    reason: String,
}

async fn add_relationship(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    CsrfForm(form): CsrfForm<RelationshipForm>,
) -> AppResult<Response> {
    let patient = patient_by_cpr(&state, &form.cpr).await?;
    let clinician = optional_uuid(&form.clinician, "a clinician")?
        .ok_or_else(|| AppError::bad_request("Choose a clinician from the list."))?;
    let from = start_date(&form.from, "The start date")?;
    let until = optional_date(&form.until, "The end date")?;
    let mut tx = state.db.begin_write().await?;
    let is_clinician = accounts::by_id(&mut tx, clinician)
        .await?
        .is_some_and(|u| u.role == Role::Clinician);
    if !is_clinician {
        return Err(AppError::bad_request("Choose a clinician from the list."));
    }
    care::add_relationship(
        &mut tx,
        &admin.actor(),
        &admin.ctx,
        clinician,
        patient.id,
        from,
        until,
        &form.reason,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/admin/relationships").into_response())
}

async fn end_relationship(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<Uuid>,
    CsrfForm(_): CsrfForm<Empty>,
) -> AppResult<Response> {
    let mut tx = state.db.begin_write().await?;
    care::end_relationship(&mut tx, &admin.actor(), &admin.ctx, id).await?;
    tx.commit().await?;
    Ok(Redirect::to("/admin/relationships").into_response())
}
