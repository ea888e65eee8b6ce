//! Reading the audit log: a patient's "who looked at my record", the auditor's filtered search
//! with keyset paging (fast at any depth: every filter has an index ending in time and id),
//! and the review queue.

use futures::stream::BoxStream;
use futures::StreamExt;
use records_domain::db::{PortableQuery, Statement, Utc, UuidText};
use records_domain::model::PatientId;
use sqlx::AnyConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AuditEvent, EventRow};
use crate::AccessError;

const ACCESSES_TO: &str = concat!(
    "SELECT ",
    crate::audit_event_columns!(),
    " FROM audit_events WHERE patient_id = $1 AND (actor_id IS NULL OR actor_id <> $2) \
     AND resource_type <> '' ORDER BY occurred_at DESC, id DESC LIMIT $3"
);
const CHAIN_OF: &str = concat!(
    "SELECT ",
    crate::audit_event_columns!(),
    " FROM audit_events WHERE chain_key = $1 ORDER BY seq"
);
const COUNT_ACCESSES_SINCE: &str = "SELECT COUNT(*) FROM audit_events WHERE patient_id = $1 \
     AND (actor_id IS NULL OR actor_id <> $2) AND resource_type <> '' AND occurred_at > $3";
const PREVIOUS_VISIT: &str = "SELECT occurred_at FROM audit_events WHERE chain_key = $1 \
     AND seq < $2 AND actor_id = $3 AND action = 'read summary' AND outcome = 'allowed' \
     ORDER BY seq DESC LIMIT 1";
const BY_ID: &str = concat!(
    "SELECT ",
    crate::audit_event_columns!(),
    " FROM audit_events WHERE id = $1"
);
/// A review with its answer, if any.
macro_rules! reviews {
    () => {
        "SELECT r.id, r.event_id, r.patient_id, r.kind, r.comment, r.opened_at, \
         c.note AS resolution_note, c.closed_at, c.closed_by FROM audit_reviews r \
         LEFT JOIN audit_review_closures c ON c.review_id = r.id"
    };
}
const OPEN_REVIEW: &str = "INSERT INTO audit_reviews (id, event_id, patient_id, kind, comment, \
     opened_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id, kind) DO NOTHING";
const OPEN_REVIEWS: &str = concat!(
    reviews!(),
    " WHERE c.review_id IS NULL ORDER BY r.opened_at DESC, r.id DESC LIMIT $1"
);
const CLOSED_REVIEWS: &str = concat!(
    reviews!(),
    " WHERE c.review_id IS NOT NULL ORDER BY r.opened_at DESC, r.id DESC LIMIT $1"
);
const REVIEWS_OF_PATIENT: &str = concat!(
    reviews!(),
    " WHERE r.patient_id = $1 AND r.kind = $2 ORDER BY r.opened_at DESC"
);
const REVIEW_BY_ID: &str = concat!(reviews!(), " WHERE r.id = $1");
const CLOSE_REVIEW: &str = "INSERT INTO audit_review_closures (review_id, note, closed_at, \
     closed_by) VALUES ($1, $2, $3, $4) ON CONFLICT (review_id) DO NOTHING";

/// Every statement of this module; the dynamic ones with every clause switched on.
pub(crate) fn statements() -> Vec<Statement> {
    let mut all = records_domain::statements!("audit::query": ACCESSES_TO, CHAIN_OF,
        COUNT_ACCESSES_SINCE, PREVIOUS_VISIT, BY_ID, OPEN_REVIEW, OPEN_REVIEWS, CLOSED_REVIEWS,
        REVIEWS_OF_PATIENT, REVIEW_BY_ID, CLOSE_REVIEW);
    let id = Uuid::nil();
    let every_filter = Filter {
        patient_id: Some(PatientId(id)),
        actor_id: Some(id),
        clinic_id: Some(id),
        action: Some("read summary".into()),
        outcome: Some("allowed".into()),
        basis: Some("gp_listing".into()),
        from: Some(OffsetDateTime::UNIX_EPOCH),
        until: Some(OffsetDateTime::UNIX_EPOCH),
    };
    let after = Cursor {
        occurred_at: Utc(OffsetDateTime::UNIX_EPOCH).to_string(),
        id: id.to_string(),
    };
    let dynamic = [
        (
            "audit::query::search",
            search_query(&every_filter, Some(&after), 1),
        ),
        ("audit::query::Export", export_query(&every_filter)),
        ("audit::query::count", count_query(&every_filter)),
        (
            "audit::query::about_patient_since",
            since_query(
                PatientId(id),
                "read summary",
                Some(OffsetDateTime::UNIX_EPOCH),
            ),
        ),
    ];
    for (name, query) in dynamic {
        all.push(Statement::new(name, query.sql().to_string()));
    }
    all
}

/// Accesses to a patient's record by anyone but `viewer` (the patient's own user), newest first.
pub async fn accesses_to(
    conn: &mut AnyConnection,
    patient: PatientId,
    viewer: Uuid,
    limit: i64,
) -> Result<Vec<AuditEvent>, AccessError> {
    let rows: Vec<EventRow> = sqlx::query_as(ACCESSES_TO)
        .bind(patient)
        .bind(UuidText(viewer))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(AuditEvent::from).collect())
}

/// The whole chain of one patient, oldest first, for download and independent verification.
pub async fn chain_of(
    conn: &mut AnyConnection,
    patient: PatientId,
) -> Result<Vec<AuditEvent>, AccessError> {
    let rows: Vec<EventRow> = sqlx::query_as(CHAIN_OF)
        .bind(patient)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(AuditEvent::from).collect())
}

pub async fn count_accesses_since(
    conn: &mut AnyConnection,
    patient: PatientId,
    viewer: Uuid,
    since: OffsetDateTime,
) -> Result<i64, AccessError> {
    Ok(sqlx::query_scalar(COUNT_ACCESSES_SINCE)
        .bind(patient)
        .bind(UuidText(viewer))
        .bind(Utc(since))
        .fetch_one(conn)
        .await?)
}

fn since_query<'q>(
    patient: PatientId,
    action: &'q str,
    since: Option<OffsetDateTime>,
) -> PortableQuery<'q> {
    let mut query = PortableQuery::new(concat!(
        "SELECT ",
        crate::audit_event_columns!(),
        " FROM audit_events"
    ));
    query.push_bind(" WHERE patient_id = ", patient);
    query.push_bind(" AND action = ", action);
    if let Some(since) = since {
        query.push_bind(" AND occurred_at > ", Utc(since));
    }
    query.push(" ORDER BY occurred_at, id");
    query
}

/// Events of one action about a patient after `since` (all of them without), oldest first.
pub async fn about_patient_since(
    conn: &mut AnyConnection,
    patient: PatientId,
    action: &str,
    since: Option<OffsetDateTime>,
) -> Result<Vec<AuditEvent>, AccessError> {
    let rows: Vec<EventRow> = since_query(patient, action, since)
        .build_query_as()?
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(AuditEvent::from).collect())
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
    let at: Option<Utc> = sqlx::query_scalar(PREVIOUS_VISIT)
        .bind(patient)
        .bind(current_seq)
        .bind(UuidText(viewer))
        .fetch_optional(conn)
        .await?;
    Ok(at.map_or(OffsetDateTime::UNIX_EPOCH, OffsetDateTime::from))
}

pub async fn by_id(conn: &mut AnyConnection, id: Uuid) -> Result<Option<AuditEvent>, AccessError> {
    let row: Option<EventRow> = sqlx::query_as(BY_ID)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?;
    Ok(row.map(AuditEvent::from))
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
    /// Appends ` WHERE ...` with the clauses that apply (nothing when none do).
    fn push_where<'q>(&'q self, query: &mut PortableQuery<'q>, after: Option<&'q Cursor>) {
        let mut joiner = [" WHERE "].into_iter().chain(std::iter::repeat(" AND "));
        let mut and = |column: &str| format!("{}{column}", joiner.next().unwrap_or(" AND "));
        if let Some(p) = self.patient_id {
            query.push_bind(&and("patient_id = "), p);
        }
        if let Some(a) = self.actor_id {
            query.push_bind(&and("actor_id = "), UuidText(a));
        }
        if let Some(c) = self.clinic_id {
            query.push_bind(&and("actor_clinic_id = "), UuidText(c));
        }
        if let Some(a) = &self.action {
            query.push_bind(&and("action = "), a.as_str());
        }
        if let Some(o) = &self.outcome {
            query.push_bind(&and("outcome = "), o.as_str());
        }
        if let Some(b) = &self.basis {
            query.push_bind(&and("basis = "), b.as_str());
        }
        if let Some(f) = self.from {
            query.push_bind(&and("occurred_at >= "), Utc(f));
        }
        if let Some(u) = self.until {
            query.push_bind(&and("occurred_at < "), Utc(u));
        }
        if let Some(c) = after {
            // Keyset paging: rows strictly before the cursor in (occurred_at, id) order.
            query.push_bind(&and("(occurred_at < "), c.occurred_at.as_str());
            query.push_bind(" OR (occurred_at = ", c.occurred_at.as_str());
            query.push_bind(" AND id < ", c.id.as_str());
            query.push("))");
        }
    }
}

fn events_query<'q>(filter: &'q Filter, after: Option<&'q Cursor>) -> PortableQuery<'q> {
    let mut query = PortableQuery::new(concat!(
        "SELECT ",
        crate::audit_event_columns!(),
        " FROM audit_events"
    ));
    filter.push_where(&mut query, after);
    query.push(" ORDER BY occurred_at DESC, id DESC");
    query
}

fn search_query<'q>(
    filter: &'q Filter,
    after: Option<&'q Cursor>,
    page_size: i64,
) -> PortableQuery<'q> {
    let mut query = events_query(filter, after);
    query.push_bind(" LIMIT ", page_size + 1);
    query
}

/// One page of matching events, newest first, and the cursor for the next page.
pub async fn search(
    conn: &mut AnyConnection,
    filter: &Filter,
    after: Option<&Cursor>,
    page_size: i64,
) -> Result<(Vec<AuditEvent>, Option<Cursor>), AccessError> {
    let rows: Vec<EventRow> = search_query(filter, after, page_size)
        .build_query_as()?
        .fetch_all(conn)
        .await?;
    let mut events: Vec<AuditEvent> = rows.into_iter().map(AuditEvent::from).collect();
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

fn export_query(filter: &Filter) -> PortableQuery<'_> {
    events_query(filter, None)
}

/// A filter turned into SQL, for streaming every match (CSV export) without holding it all.
pub struct Export {
    filter: Filter,
    sql: String,
}

impl Export {
    pub fn new(filter: &Filter) -> Self {
        Self {
            sql: export_query(filter).sql().to_string(),
            filter: filter.clone(),
        }
    }

    /// Matching events, newest first.
    pub fn stream<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> BoxStream<'a, Result<AuditEvent, AccessError>> {
        match export_query(&self.filter).into_parts() {
            Ok((_, arguments)) => sqlx::query_as_with::<_, EventRow, _>(&self.sql, arguments)
                .fetch(conn)
                .map(|row| row.map(AuditEvent::from).map_err(AccessError::from))
                .boxed(),
            Err(e) => futures::stream::once(async move { Err(e.into()) }).boxed(),
        }
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

pub async fn open_review(
    conn: &mut AnyConnection,
    event_id: Uuid,
    patient_id: Option<PatientId>,
    kind: &str,
    comment: &str,
) -> Result<bool, AccessError> {
    let inserted = sqlx::query(OPEN_REVIEW)
        .bind(UuidText(Uuid::now_v7()))
        .bind(UuidText(event_id))
        .bind(patient_id)
        .bind(kind)
        .bind(comment)
        .bind(Utc::now())
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
    let sql = match status {
        "open" => OPEN_REVIEWS,
        "closed" => CLOSED_REVIEWS,
        other => return Err(AccessError::invalid(format!("no review status {other:?}"))),
    };
    let rows: Vec<ReviewRow> = sqlx::query_as(sql).bind(limit).fetch_all(conn).await?;
    Ok(rows.into_iter().map(Review::from).collect())
}

pub async fn reviews_of_patient(
    conn: &mut AnyConnection,
    patient: PatientId,
) -> Result<Vec<Review>, AccessError> {
    let rows: Vec<ReviewRow> = sqlx::query_as(REVIEWS_OF_PATIENT)
        .bind(patient)
        .bind(REVIEW_PATIENT_REPORT)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(Review::from).collect())
}

pub async fn review_by_id(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<Review>, AccessError> {
    let row: Option<ReviewRow> = sqlx::query_as(REVIEW_BY_ID)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Review::from))
}

/// Answer an open review by appending its closure; false if it was closed already (by someone
/// else, concurrently: the closure's key is the review).
pub async fn close_review(
    conn: &mut AnyConnection,
    id: Uuid,
    note: &str,
    by: &str,
) -> Result<bool, AccessError> {
    let done = sqlx::query(CLOSE_REVIEW)
        .bind(UuidText(id))
        .bind(note)
        .bind(Utc::now())
        .bind(by)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(sqlx::FromRow)]
struct ReviewRow {
    id: UuidText,
    event_id: UuidText,
    patient_id: Option<UuidText>,
    kind: String,
    comment: String,
    resolution_note: Option<String>,
    opened_at: String,
    closed_at: Option<String>,
    closed_by: Option<String>,
}

impl From<ReviewRow> for Review {
    fn from(row: ReviewRow) -> Self {
        let status = if row.closed_at.is_some() {
            "closed"
        } else {
            "open"
        };
        Review {
            id: row.id.0,
            event_id: row.event_id.0,
            patient_id: row.patient_id.map(Uuid::from),
            kind: row.kind,
            comment: row.comment,
            status: status.into(),
            resolution_note: row.resolution_note,
            opened_at: row.opened_at,
            closed_at: row.closed_at,
            closed_by: row.closed_by,
        }
    }
}

fn count_query(filter: &Filter) -> PortableQuery<'_> {
    let mut query = PortableQuery::new("SELECT COUNT(*) FROM audit_events");
    filter.push_where(&mut query, None);
    query
}

/// How many events match (the `total` of a FHIR AuditEvent search).
pub async fn count(conn: &mut AnyConnection, filter: &Filter) -> Result<i64, AccessError> {
    let (n,): (i64,) = count_query(filter)
        .build_query_as()?
        .fetch_one(conn)
        .await?;
    Ok(n)
}
