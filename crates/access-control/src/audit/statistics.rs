//! The auditor's per-clinician statistics, kept as a rollup: one row per clinician and day,
//! added to in the same transaction that appends the events it counts. Aggregating the events
//! themselves took 276 ms for 30 days at 5 M events and grows with a nation's 40-80 M a month;
//! the rollup is read in time proportional to clinicians × days, whatever the volume.
//!
//! Only events by clinicians about a patient are counted, as the page always counted them; days
//! are UTC dates, the first ten characters of the stored time.

use std::collections::BTreeMap;

use records_domain::db::{PortableQuery, Statement, UuidText};
use sqlx::AnyConnection;
use time::Date;
use uuid::Uuid;

use super::AuditEvent;
use crate::AccessError;

/// Recount the rollup from the events: for loaders that bypass the append (the benchmark's
/// synthetic history). The migration that made the table ran the same aggregate once.
pub const REBUILD: &str = "INSERT INTO audit_clinician_days \
     (day, actor_id, actor_name, accesses, overrides, outside_list, denials) \
     SELECT SUBSTR(occurred_at, 1, 10), actor_id, MAX(actor_name), \
     SUM(CASE WHEN outcome = 'allowed' THEN 1 ELSE 0 END), \
     SUM(CASE WHEN outcome = 'allowed' AND basis = 'emergency_override' THEN 1 ELSE 0 END), \
     SUM(CASE WHEN outcome = 'allowed' AND basis <> 'gp_listing' THEN 1 ELSE 0 END), \
     SUM(CASE WHEN outcome = 'denied' THEN 1 ELSE 0 END) \
     FROM audit_events WHERE actor_role = 'clinician' AND patient_id IS NOT NULL \
     AND actor_id IS NOT NULL GROUP BY SUBSTR(occurred_at, 1, 10), actor_id";

const CLINICIAN_STATS: &str = "SELECT actor_id, MAX(actor_name) AS actor_name, \
     CAST(SUM(accesses) AS BIGINT) AS accesses, CAST(SUM(overrides) AS BIGINT) AS overrides, \
     CAST(SUM(outside_list) AS BIGINT) AS outside_list, CAST(SUM(denials) AS BIGINT) AS denials, \
     COUNT(*) AS days FROM audit_clinician_days WHERE day >= $1 AND day <= $2 \
     GROUP BY actor_id ORDER BY accesses DESC";

pub(crate) fn statements() -> Vec<Statement> {
    let days = BTreeMap::from([((String::new(), Uuid::nil()), DayCounts::default())]);
    let mut all = records_domain::statements!("audit::statistics": REBUILD, CLINICIAN_STATS);
    all.push(Statement::new(
        "audit::statistics::add",
        add_query(&days).sql().to_string(),
    ));
    all
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClinicianStats {
    pub actor_id: Uuid,
    pub actor_name: String,
    pub accesses: i64,
    pub overrides: i64,
    pub outside_list: i64,
    pub denials: i64,
    /// Days on which the clinician accessed any record (allowed or denied).
    pub days: i64,
}

impl ClinicianStats {
    pub fn per_day(&self) -> f64 {
        self.accesses as f64 / self.days.max(1) as f64
    }
    pub fn override_share(&self) -> f64 {
        if self.accesses == 0 {
            0.0
        } else {
            self.overrides as f64 / self.accesses as f64
        }
    }
}

/// Per clinician over the days `first..=last`: accesses, overrides, accesses to patients
/// outside their practice's list, denials, and on how many days they accessed records.
pub async fn clinician_stats(
    conn: &mut AnyConnection,
    first: Date,
    last: Date,
) -> Result<Vec<ClinicianStats>, AccessError> {
    let rows: Vec<StatsRow> = sqlx::query_as(CLINICIAN_STATS)
        .bind(first.to_string())
        .bind(last.to_string())
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(ClinicianStats::from).collect())
}

/// One clinician's counts on one day, within one batch of appended events.
#[derive(Debug, Default)]
struct DayCounts {
    actor_name: String,
    accesses: i64,
    overrides: i64,
    outside_list: i64,
    denials: i64,
}

/// Count a batch of appended events into the rollup, in one statement (none if the batch holds
/// no clinician's access). Rows are taken in key order, after the batch's chains, so that two
/// instances' batches never wait on each other in a cycle.
pub(super) async fn add(
    conn: &mut AnyConnection,
    events: &[AuditEvent],
) -> Result<(), AccessError> {
    let days = count(events);
    if days.is_empty() {
        return Ok(());
    }
    add_query(&days).build()?.execute(conn).await?;
    Ok(())
}

fn count(events: &[AuditEvent]) -> BTreeMap<(String, Uuid), DayCounts> {
    let mut days: BTreeMap<(String, Uuid), DayCounts> = BTreeMap::new();
    for event in events {
        let (Some(actor), Some(_), Some(day)) = (
            event.actor_id,
            event.patient_id,
            event.occurred_at.get(..10),
        ) else {
            continue;
        };
        if event.actor_role != "clinician" {
            continue;
        }
        let counts = days.entry((day.to_string(), actor)).or_default();
        counts.actor_name.clone_from(&event.actor_name);
        let allowed = event.outcome == "allowed";
        counts.accesses += i64::from(allowed);
        counts.overrides += i64::from(allowed && event.basis == "emergency_override");
        counts.outside_list += i64::from(allowed && event.basis != "gp_listing");
        counts.denials += i64::from(event.outcome == "denied");
    }
    days
}

fn add_query(days: &BTreeMap<(String, Uuid), DayCounts>) -> PortableQuery<'static> {
    let mut query = PortableQuery::new(
        "INSERT INTO audit_clinician_days \
         (day, actor_id, actor_name, accesses, overrides, outside_list, denials) VALUES ",
    );
    for (i, ((day, actor), counts)) in days.iter().enumerate() {
        query
            .push(if i == 0 { "(" } else { ", (" })
            .push_bind("", day.clone())
            .push_bind(", ", UuidText(*actor))
            .push_bind(", ", counts.actor_name.clone())
            .push_bind(", ", counts.accesses)
            .push_bind(", ", counts.overrides)
            .push_bind(", ", counts.outside_list)
            .push_bind(", ", counts.denials)
            .push(")");
    }
    query.push(
        " ON CONFLICT (day, actor_id) DO UPDATE SET actor_name = excluded.actor_name, \
         accesses = audit_clinician_days.accesses + excluded.accesses, \
         overrides = audit_clinician_days.overrides + excluded.overrides, \
         outside_list = audit_clinician_days.outside_list + excluded.outside_list, \
         denials = audit_clinician_days.denials + excluded.denials",
    );
    query
}

#[derive(sqlx::FromRow)]
struct StatsRow {
    actor_id: UuidText,
    actor_name: String,
    accesses: i64,
    overrides: i64,
    outside_list: i64,
    denials: i64,
    days: i64,
}

impl From<StatsRow> for ClinicianStats {
    fn from(row: StatsRow) -> Self {
        ClinicianStats {
            actor_id: row.actor_id.0,
            actor_name: row.actor_name,
            accesses: row.accesses,
            overrides: row.overrides,
            outside_list: row.outside_list,
            denials: row.denials,
            days: row.days,
        }
    }
}
