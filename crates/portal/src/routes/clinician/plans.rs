//! Creating and updating treatment plans. Updates carry the version the clinician saw; a stale
//! form gets a conflict page that shows the newer plan and keeps everything that was typed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::Markup;
use records_domain::db::date_text;
use records_domain::model::{
    Activity, ActivityStatus, Goal, GoalStatus, PatientId, PlanStatus, TreatmentPlan,
};
use records_domain::store::{plans, Category};
use records_domain::DomainError;
use serde::Deserialize;
use uuid::Uuid;

use super::{open_read, open_write, written};
use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::{ClinicianUser, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::routes::form_fields::{optional_date, start_date};
use crate::views::clinician as view;

/// The plan form as typed: goals one per line as `description | target | status`, activities
/// one per line as `description | status`.
#[derive(Deserialize, Default, Clone)]
pub struct PlanForm {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub status: String,
    #[serde(default)]
    pub period_start: String,
    #[serde(default)]
    pub period_end: String,
    #[serde(default)]
    pub goals: String,
    #[serde(default)]
    pub activities: String,
    #[serde(default)]
    pub version: i64,
}

impl PlanForm {
    pub fn of(plan: &TreatmentPlan) -> Self {
        Self {
            title: plan.title.clone(),
            description: plan.description.clone(),
            status: plan.status.as_str().into(),
            period_start: date_text(plan.period_start),
            period_end: plan.period_end.map(date_text).unwrap_or_default(),
            goals: plan
                .goals
                .iter()
                .map(|g| {
                    format!(
                        "{} | {} | {}",
                        g.description,
                        g.target.as_deref().unwrap_or(""),
                        g.status.as_str()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            activities: plan
                .activities
                .iter()
                .map(|a| format!("{} | {}", a.description, a.status.as_str()))
                .collect::<Vec<_>>()
                .join("\n"),
            version: plan.version,
        }
    }

    /// The plan as typed, checked: refused input never reaches the access decision or a write.
    fn valid_content(&self) -> Result<plans::PlanContent, DomainError> {
        let content = self.content()?;
        content.validate()?;
        Ok(content)
    }

    fn content(&self) -> Result<plans::PlanContent, DomainError> {
        Ok(plans::PlanContent {
            title: self.title.clone(),
            description: self.description.clone(),
            status: PlanStatus::parse(self.status.trim())
                .map_err(|_| DomainError::invalid("Choose a status for the plan."))?,
            period_start: start_date(&self.period_start, "The start date")?,
            period_end: optional_date(&self.period_end, "The end date")?,
            goals: lines(&self.goals)
                .map(parse_goal)
                .collect::<Result<_, _>>()?,
            activities: lines(&self.activities)
                .map(parse_activity)
                .collect::<Result<_, _>>()?,
        })
    }
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

fn parse_goal(line: &str) -> Result<Goal, DomainError> {
    let parts: Vec<&str> = line.split('|').map(str::trim).collect();
    if parts[0].is_empty() {
        return Err(DomainError::invalid(
            "Every goal line needs a description before the first |.",
        ));
    }
    let status = parts
        .get(2)
        .copied()
        .filter(|s| !s.is_empty())
        .unwrap_or("active");
    Ok(Goal {
        description: parts[0].to_string(),
        target: parts
            .get(1)
            .filter(|t| !t.is_empty())
            .map(|t| t.to_string()),
        status: GoalStatus::parse(status).map_err(|_| {
            DomainError::invalid(format!(
                "Goal “{}”: the status must be proposed, active, achieved or cancelled.",
                parts[0]
            ))
        })?,
    })
}

fn parse_activity(line: &str) -> Result<Activity, DomainError> {
    let (description, status) = line.split_once('|').unwrap_or((line, "not-started"));
    let status = status.trim();
    if description.trim().is_empty() {
        return Err(DomainError::invalid(
            "Every activity line needs a description.",
        ));
    }
    Ok(Activity {
        description: description.trim().to_string(),
        status: ActivityStatus::parse(if status.is_empty() { "not-started" } else { status })
            .map_err(|_| {
                DomainError::invalid(format!(
                    "Activity “{}”: the status must be not-started, scheduled, in-progress, completed or cancelled.",
                    description.trim()
                ))
            })?,
    })
}

pub async fn new_form(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (record, banner) =
        open_read(&state, &user, patient, Some(Category::TreatmentPlans), None).await?;
    record.commit().await?;
    let form = PlanForm {
        status: "active".into(),
        ..Default::default()
    };
    Ok(view::plan_form(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        None,
        &form,
        None,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path(patient): Path<Uuid>,
    CsrfForm(form): CsrfForm<PlanForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    let content = match form.valid_content() {
        Ok(content) => content,
        Err(DomainError::Invalid(problem)) => {
            return refused_form(&state, &user, patient, None, &form, &problem).await
        }
        Err(e) => return Err(e.into()),
    };
    let id = Uuid::now_v7();
    let mut record = open_write(
        &state,
        &user,
        patient,
        Category::TreatmentPlans,
        Some(id.to_string()),
    )
    .await?;
    let (conn, grant) = record.parts();
    plans::create(conn, grant, id, &content).await?;
    written(record, patient, "plans").await
}

pub async fn edit_form(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, plan)): Path<(Uuid, Uuid)>,
) -> AppResult<Markup> {
    let patient = PatientId(patient);
    let (mut record, banner) = open_read(
        &state,
        &user,
        patient,
        Some(Category::TreatmentPlans),
        Some(plan.to_string()),
    )
    .await?;
    let (conn, grant) = record.parts();
    let current = plans::by_id_for(conn, grant, plan).await?;
    record.commit().await?;
    Ok(view::plan_form(
        &user,
        &user.csrf().await?,
        banner,
        patient,
        Some(plan),
        &PlanForm::of(&current),
        None,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    ClinicianUser(user): ClinicianUser,
    Path((patient, plan)): Path<(Uuid, Uuid)>,
    CsrfForm(form): CsrfForm<PlanForm>,
) -> AppResult<Response> {
    let patient = PatientId(patient);
    let content = match form.valid_content() {
        Ok(content) => content,
        Err(DomainError::Invalid(problem)) => {
            return refused_form(&state, &user, patient, Some(plan), &form, &problem).await
        }
        Err(e) => return Err(e.into()),
    };
    let mut record = open_write(
        &state,
        &user,
        patient,
        Category::TreatmentPlans,
        Some(plan.to_string()),
    )
    .await?;
    let (conn, grant) = record.parts();
    match plans::update(conn, grant, plan, form.version, &content).await {
        Ok(()) => written(record, patient, "plans").await,
        Err(DomainError::Conflict) => {
            record.rollback().await?;
            conflict(&state, &user, patient, plan, form).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn refused_form(
    state: &AppState,
    user: &CurrentUser,
    patient: PatientId,
    plan: Option<Uuid>,
    form: &PlanForm,
    problem: &str,
) -> AppResult<Response> {
    let (record, banner) =
        open_read(state, user, patient, Some(Category::TreatmentPlans), None).await?;
    record.commit().await?;
    let page = view::plan_form(
        user,
        &user.csrf().await?,
        banner,
        patient,
        plan,
        form,
        Some(problem),
    );
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

/// Someone saved the plan first: show their version and keep this clinician's text, with the
/// new version number so that saving again is a deliberate choice.
async fn conflict(
    state: &AppState,
    user: &CurrentUser,
    patient: PatientId,
    plan: Uuid,
    mut form: PlanForm,
) -> AppResult<Response> {
    let (mut record, banner) = open_read(
        state,
        user,
        patient,
        Some(Category::TreatmentPlans),
        Some(plan.to_string()),
    )
    .await?;
    let (conn, grant) = record.parts();
    let current = plans::by_id_for(conn, grant, plan)
        .await
        .map_err(AppError::from)?;
    record.commit().await?;
    form.version = current.version;
    let page = view::plan_conflict(user, &user.csrf().await?, banner, patient, &current, &form);
    Ok((StatusCode::CONFLICT, page).into_response())
}
