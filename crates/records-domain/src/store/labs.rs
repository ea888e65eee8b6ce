use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Flag, PortableQuery, Statement, Utc, UuidText};
use crate::model::{Interpretation, LabResult, LabValue, Panel, PatientId, ResultStatus, Source};
use crate::store::{
    imported_before, require, require_upsert, same_patient, Category, ReadPermit, Upserted,
    WritePermit, Written,
};
use crate::DomainError;

/// The columns `LabRow` reads, in a macro so that statements can `concat!` them.
macro_rules! columns {
    () => {
        "id, patient_id, category, code_system, code, display, value_numeric, value_text, unit, \
         reference_low, reference_high, interpretation, status, effective_at, issued_at, \
         performing_lab, released_at, panel_code, panel_display, identifier, version, \
         source_system, source_id"
    };
}

const BY_SOURCE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM lab_results WHERE source_system = $1 AND source_id = $2"
);
/// What a source may correct: the columns `bind_content` binds as `$1` to `$17`, in this
/// order, for both the UPDATE and the INSERT.
macro_rules! content_columns {
    () => {
        "code_system, code, display, value_numeric, value_text, unit, reference_low, \
         reference_high, interpretation, status, effective_at, issued_at, performing_lab, \
         category, panel_code, panel_display, identifier"
    };
}

const UPDATE: &str = concat!(
    "UPDATE lab_results SET (",
    content_columns!(),
    ") = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17), \
     version = version + 1 WHERE id = $18"
);
const INSERT: &str = concat!(
    "INSERT INTO lab_results (",
    content_columns!(),
    ", id, patient_id, released_at, source_system, source_id, version) VALUES ($1, $2, $3, $4, \
     $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, 1)"
);
const FOR_PATIENT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM lab_results WHERE patient_id = $1 AND ($2 = 1 OR released_at <= $3) \
     ORDER BY effective_at DESC, id"
);
const HISTORY: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM lab_results WHERE patient_id = $1 AND code = $2 AND ($3 = 1 OR released_at <= $4) \
     ORDER BY effective_at, id"
);
const COUNT_UNRELEASED: &str =
    "SELECT COUNT(*) FROM lab_results WHERE patient_id = $1 AND released_at > $2";
const RELEASE: &str = "UPDATE lab_results SET released_at = $1, version = version + 1 \
     WHERE id = $2 AND patient_id = $3 AND released_at > $1";
const PATIENT_OF: &str = "SELECT patient_id FROM lab_results WHERE id = $1";
const BUMP_VERSION: &str =
    "UPDATE lab_results SET version = version + 1 WHERE id = $1 AND patient_id = $2";
/// The components of one panel share its code, time and source; their source ids tell them
/// from another panel of the same code and time.
const PANEL_COMPONENTS: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM lab_results WHERE patient_id = $1 AND source_system = $2 AND panel_code = $3 \
     AND effective_at = $4 AND ($5 = 1 OR released_at <= $6)"
);
const BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM lab_results WHERE id = $1 AND patient_id = $2 AND ($3 = 1 OR released_at <= $4)"
);

/// Every statement of this module; the searches with every filter on.
pub(crate) fn statements() -> Vec<Statement> {
    let mut all = crate::statements!("labs": BY_SOURCE, UPDATE, INSERT, FOR_PATIENT, HISTORY,
        COUNT_UNRELEASED, RELEASE, PATIENT_OF, BY_ID, PANEL_COMPONENTS, BUMP_VERSION);
    let every_filter = LabQuery {
        codes: vec![
            (Some("http://loinc.org".into()), "2093-3".into()),
            (None, "2085-9".into()),
        ],
        identifier: Some("urn:lab|1".into()),
        written_from: Some(OffsetDateTime::UNIX_EPOCH),
        written_until: Some(OffsetDateTime::UNIX_EPOCH),
        from: Some(OffsetDateTime::UNIX_EPOCH),
        until: Some(OffsetDateTime::UNIX_EPOCH),
        category: Some("laboratory".into()),
        newest_first: true,
        limit: 1,
        offset: 0,
    };
    let patient = PatientId(Uuid::nil());
    let now = OffsetDateTime::UNIX_EPOCH;
    for (name, what) in [
        ("labs::search page", Page::Rows),
        ("labs::search count", Page::Count),
    ] {
        let query = search_query(patient, false, now, &every_filter, what);
        all.push(Statement::new(name, query.sql().to_string()));
    }
    all
}

#[derive(sqlx::FromRow)]
struct LabRow {
    id: UuidText,
    patient_id: PatientId,
    category: String,
    code_system: String,
    code: String,
    display: String,
    value_numeric: Option<f64>,
    value_text: Option<String>,
    unit: Option<String>,
    reference_low: Option<f64>,
    reference_high: Option<f64>,
    interpretation: Interpretation,
    status: ResultStatus,
    effective_at: Utc,
    issued_at: Utc,
    performing_lab: String,
    released_at: Utc,
    panel_code: Option<String>,
    panel_display: Option<String>,
    identifier: Option<String>,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<LabRow> for LabResult {
    fn from(row: LabRow) -> Self {
        let value = match (row.value_numeric, row.value_text) {
            (Some(v), _) => LabValue::Numeric(v),
            (None, Some(t)) => LabValue::Text(t),
            (None, None) => LabValue::Text(String::new()),
        };
        LabResult {
            id: row.id.0,
            patient_id: row.patient_id,
            category: row.category,
            code_system: row.code_system,
            code: row.code,
            display: row.display,
            value,
            unit: row.unit,
            reference_low: row.reference_low,
            reference_high: row.reference_high,
            interpretation: row.interpretation,
            status: row.status,
            effective_at: row.effective_at.0,
            issued_at: row.issued_at.0,
            performing_lab: row.performing_lab,
            released_at: row.released_at.0,
            panel: row.panel_code.map(|code| Panel {
                display: row.panel_display.unwrap_or_else(|| code.clone()),
                code,
            }),
            identifier: row.identifier,
            version: row.version,
            source: row.source,
        }
    }
}

/// Insert, or update the result with the same source key; an identical re-import is a no-op.
pub async fn upsert(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    result: &LabResult,
) -> Result<Written, DomainError> {
    require_upsert(
        permit,
        Category::LabResults,
        result.patient_id,
        &result.source,
    )?;
    let existing: Option<LabRow> = imported_before(&mut *conn, BY_SOURCE, &result.source).await?;
    match existing.map(LabResult::from) {
        Some(current) => {
            same_patient(current.patient_id, result.patient_id)?;
            if same_content(&current, result) {
                return Ok(Written::new(
                    Upserted::Unchanged,
                    current.id,
                    current.version,
                ));
            }
            bind_content(sqlx::query(UPDATE), result)
                .bind(UuidText(current.id))
                .execute(conn)
                .await?;
            Ok(Written::new(
                Upserted::Updated,
                current.id,
                current.version + 1,
            ))
        }
        None => {
            bind_content(sqlx::query(INSERT), result)
                .bind(UuidText(result.id))
                .bind(result.patient_id)
                .bind(Utc(result.released_at))
                .bind(&result.source.system)
                .bind(&result.source.id)
                .execute(conn)
                .await?;
            Ok(Written::new(Upserted::Inserted, result.id, 1))
        }
    }
}

/// Binds the `content_columns!` of `result`, in their order.
fn bind_content<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    result: &'q LabResult,
) -> Query<'q, Any, AnyArguments<'q>> {
    let (numeric, text) = match &result.value {
        LabValue::Numeric(v) => (Some(*v), None),
        LabValue::Text(t) => (None, Some(t.as_str())),
    };
    query
        .bind(&result.code_system)
        .bind(&result.code)
        .bind(&result.display)
        .bind(numeric)
        .bind(text)
        .bind(result.unit.as_deref())
        .bind(result.reference_low)
        .bind(result.reference_high)
        .bind(result.interpretation)
        .bind(result.status)
        .bind(Utc(result.effective_at))
        .bind(Utc(result.issued_at))
        .bind(&result.performing_lab)
        .bind(&result.category)
        .bind(result.panel.as_ref().map(|p| p.code.as_str()))
        .bind(result.panel.as_ref().map(|p| p.display.as_str()))
        .bind(result.identifier.as_deref())
}

fn same_content(a: &LabResult, b: &LabResult) -> bool {
    a.patient_id == b.patient_id
        && a.category == b.category
        && a.code_system == b.code_system
        && a.code == b.code
        && a.display == b.display
        && a.value == b.value
        && a.unit == b.unit
        && a.reference_low == b.reference_low
        && a.reference_high == b.reference_high
        && a.interpretation == b.interpretation
        && a.status == b.status
        && a.effective_at == b.effective_at
        && a.issued_at == b.issued_at
        && a.performing_lab == b.performing_lab
        && a.panel == b.panel
        && a.identifier == b.identifier
}

/// Every component of the panel `head` stands for, in the panel's order; empty for a result
/// that is not part of a panel.
pub async fn panel_components(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    head: &LabResult,
) -> Result<Vec<LabResult>, DomainError> {
    require(permit, Category::LabResults)?;
    let (Some(panel), Some(panel_source)) = (&head.panel, head.panel_source_id()) else {
        return Ok(Vec::new());
    };
    let rows: Vec<LabRow> = sqlx::query_as(PANEL_COMPONENTS)
        .bind(permit.patient_id())
        .bind(&head.source.system)
        .bind(&panel.code)
        .bind(Utc(head.effective_at))
        .bind(Flag(permit.includes_unreleased()))
        .bind(Utc::now())
        .fetch_all(conn)
        .await?;
    let mut components: Vec<(u32, LabResult)> = rows
        .into_iter()
        .map(LabResult::from)
        .filter_map(|r| {
            let (panel_id, n) = r.source.id.rsplit_once('#')?;
            let n = n.parse().ok()?;
            (panel_id == panel_source).then_some((n, r))
        })
        .collect();
    components.sort_by_key(|(n, _)| *n);
    Ok(components.into_iter().map(|(_, r)| r).collect())
}

/// All results the permit may see, newest first.
pub async fn for_patient(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
) -> Result<Vec<LabResult>, DomainError> {
    require(permit, Category::LabResults)?;
    let rows: Vec<LabRow> = sqlx::query_as(FOR_PATIENT)
        .bind(permit.patient_id())
        .bind(Flag(permit.includes_unreleased()))
        .bind(Utc::now())
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(LabResult::from).collect())
}

/// One test's history, oldest first (the order of a trend chart).
pub async fn history(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    code: &str,
) -> Result<Vec<LabResult>, DomainError> {
    require(permit, Category::LabResults)?;
    let rows: Vec<LabRow> = sqlx::query_as(HISTORY)
        .bind(permit.patient_id())
        .bind(code)
        .bind(Flag(permit.includes_unreleased()))
        .bind(Utc::now())
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(LabResult::from).collect())
}

/// Whether results exist that are held back from this reader (they may be pending a talk).
pub async fn has_unreleased(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
) -> Result<bool, DomainError> {
    require(permit, Category::LabResults)?;
    let n: i64 = sqlx::query_scalar(COUNT_UNRELEASED)
        .bind(permit.patient_id())
        .bind(Utc::now())
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

/// Make a held-back result visible to the patient now.
pub async fn release(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    result: Uuid,
) -> Result<(), DomainError> {
    require(permit, Category::LabResults)?;
    let done = sqlx::query(RELEASE)
        .bind(Utc::now())
        .bind(UuidText(result))
        .bind(permit.patient_id())
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DomainError::NotFound);
    }
    Ok(())
}

/// A new version of the result that stands for a panel, when another of its components
/// changed: the panel is one resource, and its version is this result's. Returns the new
/// version.
pub async fn bump_version(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    result: &LabResult,
) -> Result<i64, DomainError> {
    require(permit, Category::LabResults)?;
    sqlx::query(BUMP_VERSION)
        .bind(UuidText(result.id))
        .bind(permit.patient_id())
        .execute(conn)
        .await?;
    Ok(result.version + 1)
}

/// The patient a result belongs to: needed to decide on access before reading it.
pub async fn patient_of(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<PatientId>, DomainError> {
    Ok(sqlx::query_scalar(PATIENT_OF)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?)
}

pub async fn by_id_for(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    id: Uuid,
) -> Result<LabResult, DomainError> {
    require(permit, Category::LabResults)?;
    let row: LabRow = sqlx::query_as(BY_ID)
        .bind(UuidText(id))
        .bind(permit.patient_id())
        .bind(Flag(permit.includes_unreleased()))
        .bind(Utc::now())
        .fetch_optional(conn)
        .await?
        .ok_or(DomainError::NotFound)?;
    Ok(row.into())
}

/// Filters of a result search (FHIR Observation search).
#[derive(Debug, Clone, Default)]
pub struct LabQuery {
    /// Any of these codes, each with or without its system (FHIR's OR list).
    pub codes: Vec<(Option<String>, String)>,
    /// The source's identifier, `system|value`.
    pub identifier: Option<String>,
    /// When the result's current version was written, as `resource_versions` keeps it (FHIR's
    /// `_lastUpdated`): a result with no kept version matches no such filter.
    pub written_from: Option<OffsetDateTime>,
    pub written_until: Option<OffsetDateTime>,
    pub from: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub category: Option<String>,
    pub newest_first: bool,
    pub limit: i64,
    pub offset: i64,
}

/// What a search query returns: one page of rows, or the number of all matches.
#[derive(Clone, Copy)]
enum Page {
    Rows,
    Count,
}

/// Only the filters the search names become clauses (an empty text names none, as in FHIR).
fn search_query<'q>(
    patient: PatientId,
    includes_unreleased: bool,
    now: OffsetDateTime,
    q: &'q LabQuery,
    page: Page,
) -> PortableQuery<'q> {
    let select = match page {
        Page::Rows => concat!("SELECT ", columns!()),
        Page::Count => "SELECT COUNT(*)",
    };
    let mut query = PortableQuery::new(select);
    query.push_bind(" FROM lab_results WHERE patient_id = ", patient);
    if !includes_unreleased {
        query.push_bind(" AND released_at <= ", Utc(now));
    }
    // A panel is found by its own code, once: through its first component.
    query.push(" AND (panel_code IS NULL OR source_id LIKE '%#0')");
    for (n, (system, code)) in q.codes.iter().enumerate() {
        query.push(if n == 0 { " AND ((" } else { " OR (" });
        query.push_bind("COALESCE(panel_code, code) = ", code.as_str());
        if let Some(system) = given(system) {
            query.push_bind(" AND code_system = ", system);
        }
        query.push(if n + 1 == q.codes.len() { "))" } else { ")" });
    }
    if let Some(identifier) = given(&q.identifier) {
        query.push_bind(" AND identifier = ", identifier);
    }
    if q.written_from.is_some() || q.written_until.is_some() {
        query.push(
            " AND EXISTS (SELECT 1 FROM resource_versions v WHERE v.resource_type = 'Observation' \
             AND v.resource_id = lab_results.id AND v.version = lab_results.version",
        );
        if let Some(from) = q.written_from {
            query.push_bind(" AND v.written_at >= ", Utc(from));
        }
        if let Some(until) = q.written_until {
            query.push_bind(" AND v.written_at < ", Utc(until));
        }
        query.push(")");
    }
    if let Some(from) = q.from {
        query.push_bind(" AND effective_at >= ", Utc(from));
    }
    if let Some(until) = q.until {
        query.push_bind(" AND effective_at < ", Utc(until));
    }
    if let Some(category) = given(&q.category) {
        query.push_bind(" AND category = ", category);
    }
    if let Page::Rows = page {
        let order = if q.newest_first { "DESC" } else { "ASC" };
        query.push(&format!(" ORDER BY effective_at {order}, id {order}"));
        query.push_bind(" LIMIT ", q.limit);
        query.push_bind(" OFFSET ", q.offset);
    }
    query
}

fn given(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.is_empty())
}

/// One page of matching results and the number of all matches; a panel is one match, its
/// first component (see `panel_components`).
pub async fn search(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    q: &LabQuery,
) -> Result<(Vec<LabResult>, i64), DomainError> {
    require(permit, Category::LabResults)?;
    let (patient, unreleased) = (permit.patient_id(), permit.includes_unreleased());
    let now = OffsetDateTime::now_utc();
    let (total,): (i64,) = search_query(patient, unreleased, now, q, Page::Count)
        .build_query_as()?
        .fetch_one(&mut *conn)
        .await?;
    let rows: Vec<LabRow> = search_query(patient, unreleased, now, q, Page::Rows)
        .build_query_as()?
        .fetch_all(conn)
        .await?;
    Ok((rows.into_iter().map(LabResult::from).collect(), total))
}
