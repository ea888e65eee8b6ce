//! The treatment plan form, as typed and as checked.

use records_domain::db::date_text;
use records_domain::model::{
    Activity, ActivityStatus, Goal, GoalStatus, PlanStatus, TreatmentPlan,
};
use records_domain::store::plans;
use records_domain::DomainError;
use serde::Deserialize;

use super::fields::{optional_date, start_date};

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
    pub fn valid_content(&self) -> Result<plans::PlanContent, DomainError> {
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
