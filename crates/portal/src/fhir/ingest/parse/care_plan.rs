//! CarePlan: a treatment plan with the Goals it refers to kept inside it.

use records_domain::model::{
    Activity, ActivityStatus, Goal, GoalStatus, PatientId, PlanStatus, Source, TreatmentPlan,
};
use serde_json::Value;
use uuid::Uuid;

use super::{coding, invalid, parse_instant, responsible, text, IngestError, ResolveReference};

pub fn parse_care_plan(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<TreatmentPlan>, IngestError> {
    let status = match r["status"].as_str() {
        Some("draft") => PlanStatus::Draft,
        Some("active") => PlanStatus::Active,
        Some("on-hold") => PlanStatus::OnHold,
        Some("completed") => PlanStatus::Completed,
        Some("revoked") => PlanStatus::Revoked,
        Some("entered-in-error" | "unknown") => return Ok(None),
        other => {
            return Err(invalid(
                location,
                format!("CarePlan.status {other:?} is not a known status"),
            ))
        }
    };
    let title = text(&r["title"])
        .map(str::to_string)
        .or_else(|| coding(&r["category"][0]).map(|c| c.2))
        .or_else(|| text(&r["category"][0]["text"]).map(str::to_string))
        .unwrap_or_else(|| "Care plan".into());
    let addresses: Vec<String> = r["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| batch.resolve_ref(c))
                .filter_map(|c| coding(&c["code"]).map(|x| x.2))
                .collect()
        })
        .unwrap_or_default();
    let description = text(&r["description"])
        .map(str::to_string)
        .unwrap_or_else(|| {
            if addresses.is_empty() {
                String::new()
            } else {
                format!("Addresses: {}", addresses.join(", "))
            }
        });
    let start = parse_instant(&r["period"]["start"], location, "period.start")?
        .ok_or_else(|| invalid(location, "CarePlan.period.start is required"))?;
    let end = parse_instant(&r["period"]["end"], location, "period.end")?;
    let goals = r["goal"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|g| batch.resolve_ref(g))
                .filter_map(|g| {
                    Some(Goal {
                        description: text(&g["description"]["text"])
                            .map(str::to_string)
                            .or_else(|| coding(&g["description"]).map(|c| c.2))?,
                        target: text(&g["target"][0]["detailString"]).map(str::to_string),
                        status: match g["lifecycleStatus"].as_str() {
                            Some("proposed" | "planned") => GoalStatus::Proposed,
                            Some("completed") => GoalStatus::Achieved,
                            Some("cancelled" | "rejected" | "entered-in-error") => {
                                GoalStatus::Cancelled
                            }
                            _ => GoalStatus::Active,
                        },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let activities = r["activity"]
        .as_array()
        .map(|acts| {
            acts.iter()
                .filter_map(|a| {
                    let d = &a["detail"];
                    let description = coding(&d["code"])
                        .map(|c| c.2)
                        .or_else(|| text(&d["description"]).map(str::to_string))?;
                    let status = match d["status"].as_str() {
                        Some("scheduled") => ActivityStatus::Scheduled,
                        Some("in-progress") => ActivityStatus::InProgress,
                        Some("completed") => ActivityStatus::Completed,
                        Some("cancelled" | "stopped" | "entered-in-error") => {
                            ActivityStatus::Cancelled
                        }
                        _ => ActivityStatus::NotStarted,
                    };
                    Some(Activity {
                        description,
                        status,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let author = responsible(r, batch, &["author", "contributor"])
        .unwrap_or_else(|| "Unknown author".into());
    Ok(Some(TreatmentPlan {
        id: Uuid::now_v7(),
        patient_id: patient,
        title,
        description,
        status,
        period_start: start.date(),
        period_end: end.map(|e| e.date()),
        author,
        updated_at: start,
        version: 1,
        goals,
        activities,
        source: source.clone(),
    }))
}
