//! Reading the audit log: a patient's "who looked at my record", the auditor's filtered search
//! with keyset paging (fast at any depth: every filter has an index ending in time and id),
//! the review queue and per-clinician statistics.

use futures::stream::BoxStream;
use futures::StreamExt;
use records_domain::db::{ts, RowExt};
use records_domain::model::PatientId;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{from_row, AuditEvent};
use crate::AccessError;

/// Accesses to a patient's record by anyone but `viewer` (the patient's own user), newest first.
pub async fn accesses_to(
    conn: &mut AnyConnection,
    patient: PatientId,
    viewer: Uuid,
    limit: i64,
) -> Result<Vec<AuditEvent>, AccessError> {
    let rows = sqlx::query(
        "SELECT * FROM audit_events WHERE patient_id = $1 AND (actor_id IS NULL OR actor_id <> $2) \
         AND resource_type <> '' ORDER BY occurred_at DESC, id DESC LIMIT $3",
    )
    .bind(patient.0.to_string())
    .bind(viewer.to_string())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The whole chain of one patient, oldest first, for download and independent verification.
pub async fn chain_of(
    conn: &mut AnyConnection,
    patient: PatientId,
) -> Result<Vec<AuditEvent>, AccessError> {
    let rows = sqlx::query("SELECT * FROM audit_events WHERE chain_key = $1 ORDER BY seq")
        .bind(patient.0.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn count_accesses_since(
    conn: &mut AnyConnection,
    patient: PatientId,
    viewer: Uuid,
    since: OffsetDateTime,
) -> Result<i64, AccessError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_events WHERE patient_id = $1 AND (actor_id IS NULL OR actor_id <> $2) \
         AND resource_type <> '' AND occurred_at > $3",
    )
    .bind(patient.0.to_string())
    .bind(viewer.to_string())
    .bind(ts(since))
    .fetch_one(conn)
    .await?;
    Ok(row.int("n")?)
}

/// Events of one action about a patient after `since` (all of them without), oldest first.
pub async fn about_patient_since(
    conn: &mut AnyConnection,
    patient: PatientId,
    action: &str,
    since: Option<OffsetDateTime>,
) -> Result<Vec<AuditEvent>, AccessError> {
    let rows = sqlx::query(
        "SELECT * FROM audit_events WHERE patient_id = $1 AND action = $2 AND occurred_at > $3 \
         ORDER BY occurred_at, id",
    )
    .bind(patient.0.to_string())
    .bind(action)
    .bind(since.map(ts).unwrap_or_default())
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// When `viewer` last opened this patient's overview before the view that is audited as
/// `current_seq`: read from the log itself, so that showing the overview writes nothing more
/// than its audit event.
pub async fn previous_visit(
    conn: &mut AnyConnection,
    viewer: Uuid,
    patient: PatientId,
    current_seq: i64,
) -> Result<OffsetDateTime, AccessError> {
    let row = sqlx::query(
        "SELECT occurred_at FROM audit_events WHERE chain_key = $1 AND seq < $2 AND actor_id = $3 \
         AND action = 'read summary' AND outcome = 'allowed' ORDER BY seq DESC LIMIT 1",
    )
    .bind(patient.0.to_string())
    .bind(current_seq)
    .bind(viewer.to_string())
    .fetch_optional(conn)
    .await?;
    match row {
        Some(r) => Ok(r.time("occurred_at")?),
        None => Ok(OffsetDateTime::UNIX_EPOCH),
    }
}

pub async fn by_id(conn: &mut AnyConnection, id: Uuid) -> Result<Option<AuditEvent>, AccessError> {
    let row = sqlx::query("SELECT * FROM audit_events WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub patient_id: Option<PatientId>,
    pub actor_id: Option<Uuid>,
    pub clinic_id: Option<Uuid>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub basis: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// Position after the last row of a page: (occurred_at, id) of that row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub occurred_at: String,
    pub id: String,
}

impl Filter {
    fn where_clause(&self, after: Option<&Cursor>) -> (String, Vec<String>) {
        let mut clauses = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let mut add = |clause: &str, value: String| {
            binds.push(value);
            clauses.push(clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(p) = self.patient_id {
            add("patient_id = ?", p.0.to_string());
        }
        if let Some(a) = self.actor_id {
            add("actor_id = ?", a.to_string());
        }
        if let Some(c) = self.clinic_id {
            add("actor_clinic_id = ?", c.to_string());
        }
        if let Some(a) = &self.action {
            add("action = ?", a.clone());
        }
        if let Some(o) = &self.outcome {
            add("outcome = ?", o.clone());
        }
        if let Some(b) = &self.basis {
            add("basis = ?", b.clone());
        }
        if let Some(f) = self.from {
            add("occurred_at >= ?", ts(f));
        }
        if let Some(u) = self.until {
            add("occurred_at < ?", ts(u));
        }
        if let Some(c) = after {
            binds.push(c.occurred_at.clone());
            let t = binds.len();
            binds.push(c.id.clone());
            clauses.push(format!(
                "(occurred_at < ${t} OR (occurred_at = ${t} AND id < ${}))",
                binds.len()
            ));
        }
        let sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        (sql, binds)
    }
}

/// One page of matching events, newest first, and the cursor for the next page.
pub async fn search(
    conn: &mut AnyConnection,
    filter: &Filter,
    after: Option<&Cursor>,
    page_size: i64,
) -> Result<(Vec<AuditEvent>, Option<Cursor>), AccessError> {
    let (clause, binds) = filter.where_clause(after);
    let sql = format!(
        "SELECT * FROM audit_events {clause} ORDER BY occurred_at DESC, id DESC LIMIT {}",
        page_size + 1
    );
    let mut query = sqlx::query(&sql);
    for b in &binds {
        query = query.bind(b.as_str());
    }
    let rows = query.fetch_all(conn).await?;
    let mut events = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let next = if events.len() as i64 > page_size {
        events.truncate(page_size as usize);
        events.last().map(|e| Cursor {
            occurred_at: e.occurred_at.clone(),
            id: e.id.to_string(),
        })
    } else {
        None
    };
    Ok((events, next))
}

/// A filter turned into SQL, for streaming every match (CSV export) without holding it all.
pub struct Export {
    sql: String,
    binds: Vec<String>,
}

impl Export {
    pub fn new(filter: &Filter) -> Self {
        let (clause, binds) = filter.where_clause(None);
        Self {
            sql: format!("SELECT * FROM audit_events {clause} ORDER BY occurred_at DESC, id DESC"),
            binds,
        }
    }

    /// Matching events, newest first.
    pub fn stream<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> BoxStream<'a, Result<AuditEvent, AccessError>> {
        let mut query = sqlx::query(&self.sql);
        for b in &self.binds {
            query = query.bind(b.as_str());
        }
        query
            .fetch(conn)
            .map(|row: Result<AnyRow, sqlx::Error>| {
                row.map_err(AccessError::from).and_then(|r| from_row(&r))
            })
            .boxed()
    }
}

/// An entry in the auditors' review queue: a patient's report or a flagged override, with the
/// auditor's answer once closed. Reports and answers are append-only (the database refuses
/// changes): the answer is a row of its own in `audit_review_closures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: Uuid,
    pub event_id: Uuid,
    pub patient_id: Option<Uuid>,
    pub kind: String,
    pub comment: String,
    /// "open", or "closed" once answered.
    pub status: String,
    pub resolution_note: Option<String>,
    pub opened_at: String,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
}

pub const REVIEW_PATIENT_REPORT: &str = "patient_report";
pub const REVIEW_OVERRIDE: &str = "emergency_override";
pub const REVIEW_DENIAL_THEN_OVERRIDE: &str = "denial_then_override";

/// A review with its answer, if any.
const REVIEWS: &str = "SELECT r.id, r.event_id, r.patient_id, r.kind, r.comment, r.opened_at, \
     c.note AS resolution_note, c.closed_at, c.closed_by FROM audit_reviews r \
     LEFT JOIN audit_review_closures c ON c.review_id = r.id";

pub async fn open_review(
    conn: &mut AnyConnection,
    event_id: Uuid,
    patient_id: Option<PatientId>,
    kind: &str,
    comment: &str,
) -> Result<bool, AccessError> {
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO audit_reviews (id, event_id, patient_id, kind, comment, opened_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id, kind) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(event_id.to_string())
    .bind(patient_id.map(|p| p.0.to_string()))
    .bind(kind)
    .bind(comment)
    .bind(ts(OffsetDateTime::now_utc()))
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Reviews with `status` "open" or "closed", newest first.
pub async fn reviews(
    conn: &mut AnyConnection,
    status: &str,
    limit: i64,
) -> Result<Vec<Review>, AccessError> {
    let answered = match status {
        "open" => "IS NULL",
        "closed" => "IS NOT NULL",
        other => return Err(AccessError::invalid(format!("no review status {other:?}"))),
    };
    let rows = sqlx::query(&format!(
        "{REVIEWS} WHERE c.review_id {answered} ORDER BY r.opened_at DESC, r.id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(review_from_row).collect()
}

pub async fn reviews_of_patient(
    conn: &mut AnyConnection,
    patient: PatientId,
) -> Result<Vec<Review>, AccessError> {
    let rows = sqlx::query(&format!(
        "{REVIEWS} WHERE r.patient_id = $1 AND r.kind = $2 ORDER BY r.opened_at DESC"
    ))
    .bind(patient.0.to_string())
    .bind(REVIEW_PATIENT_REPORT)
    .fetch_all(conn)
    .await?;
    rows.iter().map(review_from_row).collect()
}

pub async fn review_by_id(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<Review>, AccessError> {
    let row = sqlx::query(&format!("{REVIEWS} WHERE r.id = $1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(review_from_row).transpose()
}

/// Answer an open review by appending its closure; false if it was closed already (by someone
/// else, concurrently: the closure's key is the review).
pub async fn close_review(
    conn: &mut AnyConnection,
    id: Uuid,
    note: &str,
    by: &str,
) -> Result<bool, AccessError> {
    let done = sqlx::query(
        "INSERT INTO audit_review_closures (review_id, note, closed_at, closed_by) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (review_id) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(note)
    .bind(ts(OffsetDateTime::now_utc()))
    .bind(by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn review_from_row(row: &AnyRow) -> Result<Review, AccessError> {
    let closed_at = row.opt_text("closed_at")?;
    Ok(Review {
        id: row.uuid("id")?,
        event_id: row.uuid("event_id")?,
        patient_id: row.opt_uuid("patient_id")?,
        kind: row.text("kind")?,
        comment: row.text("comment")?,
        status: if closed_at.is_some() {
            "closed"
        } else {
            "open"
        }
        .into(),
        resolution_note: row.opt_text("resolution_note")?,
        opened_at: row.text("opened_at")?,
        closed_at,
        closed_by: row.opt_text("closed_by")?,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClinicianStats {
    pub actor_id: Uuid,
    pub actor_name: String,
    pub accesses: i64,
    pub overrides: i64,
    pub outside_list: i64,
    pub denials: i64,
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

/// Per clinician over a time range: accesses, overrides, accesses to patients outside their
/// practice's list, denials, and on how many distinct days they accessed records.
pub async fn clinician_stats(
    conn: &mut AnyConnection,
    from: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<Vec<ClinicianStats>, AccessError> {
    let rows = sqlx::query(
        "SELECT actor_id, MAX(actor_name) AS actor_name, \
         SUM(CASE WHEN outcome = 'allowed' THEN 1 ELSE 0 END) AS accesses, \
         SUM(CASE WHEN outcome = 'allowed' AND basis = 'emergency_override' THEN 1 ELSE 0 END) AS overrides, \
         SUM(CASE WHEN outcome = 'allowed' AND basis <> 'gp_listing' THEN 1 ELSE 0 END) AS outside_list, \
         SUM(CASE WHEN outcome = 'denied' THEN 1 ELSE 0 END) AS denials, \
         COUNT(DISTINCT SUBSTR(occurred_at, 1, 10)) AS days \
         FROM audit_events WHERE actor_role = 'clinician' AND patient_id IS NOT NULL AND occurred_at >= $1 AND occurred_at < $2 \
         GROUP BY actor_id ORDER BY accesses DESC",
    )
    .bind(ts(from))
    .bind(ts(until))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ClinicianStats {
                actor_id: r.uuid("actor_id")?,
                actor_name: r.text("actor_name")?,
                accesses: r.int("accesses")?,
                overrides: r.int("overrides")?,
                outside_list: r.int("outside_list")?,
                denials: r.int("denials")?,
                days: r.int("days")?,
            })
        })
        .collect()
}

/// How many events match (the `total` of a FHIR AuditEvent search).
pub async fn count(conn: &mut AnyConnection, filter: &Filter) -> Result<i64, AccessError> {
    let (clause, binds) = filter.where_clause(None);
    let sql = format!("SELECT COUNT(*) AS n FROM audit_events {clause}");
    let mut query = sqlx::query(&sql);
    for b in &binds {
        query = query.bind(b.as_str());
    }
    Ok(query.fetch_one(conn).await?.int("n")?)
}
