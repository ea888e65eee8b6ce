use std::collections::HashMap;

use sqlx::AnyConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::{IsoDate, Statement, Utc, UuidText};
use crate::model::{
    Activity, ActivityStatus, Goal, GoalStatus, PatientId, PlanStatus, Source, TreatmentPlan,
};
use crate::store::{
    imported_before, require, require_upsert, same_patient, Category, ReadPermit, Upserted,
    WritePermit, Written,
};
use crate::DomainError;

/// The columns `PlanRow` reads, in a macro so that statements can `concat!` them.
macro_rules! columns {
    () => {
        "id, patient_id, title, description, status, period_start, period_end, author, \
         updated_at, version, source_system, source_id"
    };
}

const BY_SOURCE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM treatment_plans WHERE source_system = $1 AND source_id = $2"
);
const BUMP_VERSION: &str = "UPDATE treatment_plans SET version = version + 1 WHERE id = $1";
const INSERT: &str = "INSERT INTO treatment_plans (id, patient_id, title, description, status, \
     period_start, period_end, author, updated_at, version, source_system, source_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11)";
const DELETE_GOALS: &str = "DELETE FROM plan_goals WHERE plan_id = $1";
const DELETE_ACTIVITIES: &str = "DELETE FROM plan_activities WHERE plan_id = $1";
const INSERT_GOAL: &str =
    "INSERT INTO plan_goals (id, plan_id, position, description, target, status) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const INSERT_ACTIVITY: &str =
    "INSERT INTO plan_activities (id, plan_id, position, description, status) \
     VALUES ($1, $2, $3, $4, $5)";
const FOR_PATIENT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM treatment_plans WHERE patient_id = $1 \
     ORDER BY CASE WHEN status IN ('active', 'draft', 'on-hold') THEN 0 ELSE 1 END, \
     period_start DESC, id"
);
const BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM treatment_plans WHERE id = $1 AND patient_id = $2"
);
const PARTS: &str =
    "SELECT g.plan_id, 'goal' AS kind, g.position, g.description, g.target, g.status \
       FROM plan_goals g JOIN treatment_plans t ON t.id = g.plan_id WHERE t.patient_id = $1 \
     UNION ALL SELECT a.plan_id, 'activity', a.position, a.description, NULL, a.status \
       FROM plan_activities a JOIN treatment_plans t ON t.id = a.plan_id WHERE t.patient_id = $1 \
     ORDER BY plan_id, kind, position";
const WRITE_CONTENT: &str =
    "UPDATE treatment_plans SET title = $1, description = $2, status = $3, \
     period_start = $4, period_end = $5, author = $6, updated_at = $7 WHERE id = $8";
const CLAIM_VERSION: &str = "UPDATE treatment_plans SET version = version + 1 \
     WHERE id = $1 AND patient_id = $2 AND version = $3";
const PATIENT_OF: &str = "SELECT patient_id FROM treatment_plans WHERE id = $1";

pub(crate) fn statements() -> Vec<Statement> {
    crate::statements!("plans": BY_SOURCE, BUMP_VERSION, INSERT, DELETE_GOALS, DELETE_ACTIVITIES,
        INSERT_GOAL, INSERT_ACTIVITY, FOR_PATIENT, BY_ID, PARTS, WRITE_CONTENT, CLAIM_VERSION,
        PATIENT_OF)
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: UuidText,
    patient_id: PatientId,
    title: String,
    description: String,
    status: PlanStatus,
    period_start: IsoDate,
    period_end: Option<IsoDate>,
    author: String,
    updated_at: Utc,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<PlanRow> for TreatmentPlan {
    fn from(row: PlanRow) -> Self {
        TreatmentPlan {
            id: row.id.0,
            patient_id: row.patient_id,
            title: row.title,
            description: row.description,
            status: row.status,
            period_start: row.period_start.0,
            period_end: row.period_end.map(Date::from),
            author: row.author,
            updated_at: row.updated_at.0,
            version: row.version,
            goals: Vec::new(),
            activities: Vec::new(),
            source: row.source,
        }
    }
}

/// A goal or an activity of a plan (`PARTS`); activities have no target.
#[derive(sqlx::FromRow)]
struct PartRow {
    plan_id: UuidText,
    kind: String,
    description: String,
    target: Option<String>,
    status: String,
}

pub async fn upsert(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    plan: &TreatmentPlan,
) -> Result<Written, DomainError> {
    require_upsert(
        permit,
        Category::TreatmentPlans,
        plan.patient_id,
        &plan.source,
    )?;
    let existing: Option<PlanRow> = imported_before(&mut *conn, BY_SOURCE, &plan.source).await?;
    match existing.map(TreatmentPlan::from) {
        None => {
            insert_row(conn, plan).await?;
            Ok(Written::new(Upserted::Inserted, plan.id, 1))
        }
        Some(mut current) => {
            same_patient(current.patient_id, plan.patient_id)?;
            load_parts(conn, std::slice::from_mut(&mut current)).await?;
            if same_content(&current, plan) {
                return Ok(Written::new(
                    Upserted::Unchanged,
                    current.id,
                    current.version,
                ));
            }
            let content = PlanContent::of(plan);
            write_content(conn, current.id, &content, &plan.author).await?;
            sqlx::query(BUMP_VERSION)
                .bind(UuidText(current.id))
                .execute(conn)
                .await?;
            Ok(Written::new(
                Upserted::Updated,
                current.id,
                current.version + 1,
            ))
        }
    }
}

fn same_content(a: &TreatmentPlan, b: &TreatmentPlan) -> bool {
    a.patient_id == b.patient_id
        && a.title == b.title
        && a.description == b.description
        && a.status == b.status
        && a.period_start == b.period_start
        && a.period_end == b.period_end
        && a.author == b.author
        && a.goals == b.goals
        && a.activities == b.activities
}

async fn insert_row(conn: &mut AnyConnection, plan: &TreatmentPlan) -> Result<(), DomainError> {
    sqlx::query(INSERT)
        .bind(UuidText(plan.id))
        .bind(plan.patient_id)
        .bind(&plan.title)
        .bind(&plan.description)
        .bind(plan.status)
        .bind(IsoDate(plan.period_start))
        .bind(plan.period_end.map(IsoDate))
        .bind(&plan.author)
        .bind(Utc(plan.updated_at))
        .bind(&plan.source.system)
        .bind(&plan.source.id)
        .execute(&mut *conn)
        .await?;
    replace_parts(conn, plan.id, &plan.goals, &plan.activities).await
}

async fn replace_parts(
    conn: &mut AnyConnection,
    plan: Uuid,
    goals: &[Goal],
    activities: &[Activity],
) -> Result<(), DomainError> {
    for delete in [DELETE_GOALS, DELETE_ACTIVITIES] {
        sqlx::query(delete)
            .bind(UuidText(plan))
            .execute(&mut *conn)
            .await?;
    }
    for (position, goal) in goals.iter().enumerate() {
        sqlx::query(INSERT_GOAL)
            .bind(UuidText(Uuid::now_v7()))
            .bind(UuidText(plan))
            .bind(position as i64)
            .bind(&goal.description)
            .bind(goal.target.as_deref())
            .bind(goal.status)
            .execute(&mut *conn)
            .await?;
    }
    for (position, activity) in activities.iter().enumerate() {
        sqlx::query(INSERT_ACTIVITY)
            .bind(UuidText(Uuid::now_v7()))
            .bind(UuidText(plan))
            .bind(position as i64)
            .bind(&activity.description)
            .bind(activity.status)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Current plans first (active, draft, on hold), then finished ones; newest first within each.
pub async fn for_patient(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
) -> Result<Vec<TreatmentPlan>, DomainError> {
    require(permit, Category::TreatmentPlans)?;
    let rows: Vec<PlanRow> = sqlx::query_as(FOR_PATIENT)
        .bind(permit.patient_id())
        .fetch_all(&mut *conn)
        .await?;
    let mut plans: Vec<TreatmentPlan> = rows.into_iter().map(TreatmentPlan::from).collect();
    load_parts(conn, &mut plans).await?;
    Ok(plans)
}

pub async fn by_id_for(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    id: Uuid,
) -> Result<TreatmentPlan, DomainError> {
    require(permit, Category::TreatmentPlans)?;
    let row: PlanRow = sqlx::query_as(BY_ID)
        .bind(UuidText(id))
        .bind(permit.patient_id())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(DomainError::NotFound)?;
    let mut plan = [TreatmentPlan::from(row)];
    load_parts(conn, &mut plan).await?;
    let [plan] = plan;
    Ok(plan)
}

/// Goals and activities of plans of one patient, in one round trip for all of them.
async fn load_parts(
    conn: &mut AnyConnection,
    plans: &mut [TreatmentPlan],
) -> Result<(), DomainError> {
    let Some(patient) = plans.first().map(|p| p.patient_id) else {
        return Ok(());
    };
    let rows: Vec<PartRow> = sqlx::query_as(PARTS)
        .bind(patient)
        .fetch_all(&mut *conn)
        .await?;
    let mut by_plan: HashMap<Uuid, &mut TreatmentPlan> =
        plans.iter_mut().map(|p| (p.id, p)).collect();
    for row in rows {
        let Some(plan) = by_plan.get_mut(&row.plan_id.0) else {
            continue;
        };
        // One column holds both kinds' statuses, so it is parsed once the kind is known.
        if row.kind == "goal" {
            plan.goals.push(Goal {
                description: row.description,
                target: row.target,
                status: GoalStatus::parse(&row.status)?,
            });
        } else {
            plan.activities.push(Activity {
                description: row.description,
                status: ActivityStatus::parse(&row.status)?,
            });
        }
    }
    Ok(())
}

/// What a clinician edits on a plan.
#[derive(Debug, Clone)]
pub struct PlanContent {
    pub title: String,
    pub description: String,
    pub status: PlanStatus,
    pub period_start: Date,
    pub period_end: Option<Date>,
    pub goals: Vec<Goal>,
    pub activities: Vec<Activity>,
}

impl PlanContent {
    fn of(plan: &TreatmentPlan) -> Self {
        Self {
            title: plan.title.clone(),
            description: plan.description.clone(),
            status: plan.status,
            period_start: plan.period_start,
            period_end: plan.period_end,
            goals: plan.goals.clone(),
            activities: plan.activities.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), DomainError> {
        if self.title.trim().is_empty() || self.title.len() > 200 {
            return Err(DomainError::invalid(
                "Give the plan a title (at most 200 characters).",
            ));
        }
        if self.description.len() > 4000 {
            return Err(DomainError::invalid(
                "The description can be at most 4000 characters.",
            ));
        }
        if matches!(self.period_end, Some(end) if end < self.period_start) {
            return Err(DomainError::invalid(
                "The plan cannot end before it starts.",
            ));
        }
        if self.goals.len() > 50 || self.activities.len() > 50 {
            return Err(DomainError::invalid(
                "A plan can have at most 50 goals and 50 activities.",
            ));
        }
        Ok(())
    }
}

async fn write_content(
    conn: &mut AnyConnection,
    id: Uuid,
    content: &PlanContent,
    author: &str,
) -> Result<(), DomainError> {
    sqlx::query(WRITE_CONTENT)
        .bind(content.title.trim())
        .bind(content.description.trim())
        .bind(content.status)
        .bind(IsoDate(content.period_start))
        .bind(content.period_end.map(IsoDate))
        .bind(author)
        .bind(Utc::now())
        .bind(UuidText(id))
        .execute(&mut *conn)
        .await?;
    replace_parts(conn, id, &content.goals, &content.activities).await
}

/// `id` is chosen by the caller so that the access decision's audit event can name it.
pub async fn create(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    id: Uuid,
    content: &PlanContent,
) -> Result<Uuid, DomainError> {
    require(permit, Category::TreatmentPlans)?;
    content.validate()?;
    let plan = TreatmentPlan {
        id,
        patient_id: permit.patient_id(),
        title: content.title.trim().to_string(),
        description: content.description.trim().to_string(),
        status: content.status,
        period_start: content.period_start,
        period_end: content.period_end,
        author: permit.author_name().to_string(),
        updated_at: OffsetDateTime::now_utc(),
        version: 1,
        goals: content.goals.clone(),
        activities: content.activities.clone(),
        source: Source::portal(id),
    };
    insert_row(conn, &plan).await?;
    Ok(id)
}

/// Optimistic concurrency: the version bump is the first write and names the version the
/// editor saw, so of two editors of one version exactly one wins.
pub async fn update(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    id: Uuid,
    expected_version: i64,
    content: &PlanContent,
) -> Result<(), DomainError> {
    require(permit, Category::TreatmentPlans)?;
    content.validate()?;
    let claimed = sqlx::query(CLAIM_VERSION)
        .bind(UuidText(id))
        .bind(permit.patient_id())
        .bind(expected_version)
        .execute(&mut *conn)
        .await?;
    if claimed.rows_affected() == 0 {
        by_id_for(conn, permit, id).await?;
        return Err(DomainError::Conflict);
    }
    write_content(conn, id, content, permit.author_name()).await
}

/// The patient a plan belongs to: needed to decide on access before reading it.
pub async fn patient_of(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<PatientId>, DomainError> {
    Ok(sqlx::query_scalar(PATIENT_OF)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?)
}
