use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{ts, RowExt};
use crate::model::{Interpretation, LabResult, LabValue, PatientId, ResultStatus, Source};
use crate::store::{
    require, require_upsert, same_patient, Category, ReadPermit, Upserted, WritePermit,
};
use crate::DomainError;

/// Insert, or update the result with the same source key; an identical re-import is a no-op.
pub async fn upsert(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    result: &LabResult,
) -> Result<Upserted, DomainError> {
    require_upsert(
        permit,
        Category::LabResults,
        result.patient_id,
        &result.source,
    )?;
    let existing =
        sqlx::query("SELECT * FROM lab_results WHERE source_system = $1 AND source_id = $2")
            .bind(&result.source.system)
            .bind(&result.source.id)
            .fetch_optional(&mut *conn)
            .await?;
    let (numeric, text) = match &result.value {
        LabValue::Numeric(v) => (Some(*v), None),
        LabValue::Text(t) => (None, Some(t.as_str())),
    };
    match existing {
        Some(row) => {
            let current = from_row(&row)?;
            same_patient(current.patient_id, result.patient_id)?;
            if same_content(&current, result) {
                return Ok(Upserted::Unchanged);
            }
            sqlx::query(
                "UPDATE lab_results SET code_system = $1, code = $2, display = $3, value_numeric = $4, \
                 value_text = $5, unit = $6, reference_low = $7, reference_high = $8, interpretation = $9, \
                 status = $10, effective_at = $11, issued_at = $12, performing_lab = $13, \
                 category = $15, version = version + 1 WHERE id = $14",
            )
            .bind(&result.code_system)
            .bind(&result.code)
            .bind(&result.display)
            .bind(numeric)
            .bind(text)
            .bind(result.unit.as_deref())
            .bind(result.reference_low)
            .bind(result.reference_high)
            .bind(result.interpretation.as_str())
            .bind(result.status.as_str())
            .bind(ts(result.effective_at))
            .bind(ts(result.issued_at))
            .bind(&result.performing_lab)
            .bind(current.id.to_string())
            .bind(&result.category)
            .execute(conn)
            .await?;
            Ok(Upserted::Updated)
        }
        None => {
            sqlx::query(
                "INSERT INTO lab_results (id, patient_id, code_system, code, display, value_numeric, value_text, \
                 unit, reference_low, reference_high, interpretation, status, effective_at, issued_at, \
                 performing_lab, released_at, version, source_system, source_id, category) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 1, $17, $18, $19)",
            )
            .bind(result.id.to_string())
            .bind(result.patient_id.0.to_string())
            .bind(&result.code_system)
            .bind(&result.code)
            .bind(&result.display)
            .bind(numeric)
            .bind(text)
            .bind(result.unit.as_deref())
            .bind(result.reference_low)
            .bind(result.reference_high)
            .bind(result.interpretation.as_str())
            .bind(result.status.as_str())
            .bind(ts(result.effective_at))
            .bind(ts(result.issued_at))
            .bind(&result.performing_lab)
            .bind(ts(result.released_at))
            .bind(&result.source.system)
            .bind(&result.source.id)
            .bind(&result.category)
            .execute(conn)
            .await?;
            Ok(Upserted::Inserted)
        }
    }
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
}

/// All results the permit may see, newest first.
pub async fn for_patient(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
) -> Result<Vec<LabResult>, DomainError> {
    require(permit, Category::LabResults)?;
    let rows = sqlx::query(
        "SELECT * FROM lab_results WHERE patient_id = $1 AND ($2 = 1 OR released_at <= $3) \
         ORDER BY effective_at DESC, id",
    )
    .bind(permit.patient_id().0.to_string())
    .bind(i64::from(permit.includes_unreleased()))
    .bind(ts(OffsetDateTime::now_utc()))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One test's history, oldest first (the order of a trend chart).
pub async fn history(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    code: &str,
) -> Result<Vec<LabResult>, DomainError> {
    require(permit, Category::LabResults)?;
    let rows = sqlx::query(
        "SELECT * FROM lab_results WHERE patient_id = $1 AND code = $2 AND ($3 = 1 OR released_at <= $4) \
         ORDER BY effective_at, id",
    )
    .bind(permit.patient_id().0.to_string())
    .bind(code)
    .bind(i64::from(permit.includes_unreleased()))
    .bind(ts(OffsetDateTime::now_utc()))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Whether results exist that are held back from this reader (they may be pending a talk).
pub async fn has_unreleased(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
) -> Result<bool, DomainError> {
    require(permit, Category::LabResults)?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM lab_results WHERE patient_id = $1 AND released_at > $2",
    )
    .bind(permit.patient_id().0.to_string())
    .bind(ts(OffsetDateTime::now_utc()))
    .fetch_one(conn)
    .await?;
    Ok(row.int("n")? > 0)
}

/// Make a held-back result visible to the patient now.
pub async fn release(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    result: Uuid,
) -> Result<(), DomainError> {
    require(permit, Category::LabResults)?;
    let done = sqlx::query(
        "UPDATE lab_results SET released_at = $1, version = version + 1 WHERE id = $2 AND patient_id = $3 AND released_at > $1",
    )
    .bind(ts(OffsetDateTime::now_utc()))
    .bind(result.to_string())
    .bind(permit.patient_id().0.to_string())
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(DomainError::NotFound);
    }
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<LabResult, DomainError> {
    let value = match (row.opt_float("value_numeric")?, row.opt_text("value_text")?) {
        (Some(v), _) => LabValue::Numeric(v),
        (None, Some(t)) => LabValue::Text(t),
        (None, None) => LabValue::Text(String::new()),
    };
    Ok(LabResult {
        id: row.uuid("id")?,
        patient_id: PatientId(row.uuid("patient_id")?),
        category: row.text("category")?,
        code_system: row.text("code_system")?,
        code: row.text("code")?,
        display: row.text("display")?,
        value,
        unit: row.opt_text("unit")?,
        reference_low: row.opt_float("reference_low")?,
        reference_high: row.opt_float("reference_high")?,
        interpretation: Interpretation::parse(&row.text("interpretation")?)?,
        status: ResultStatus::parse(&row.text("status")?)?,
        effective_at: row.time("effective_at")?,
        issued_at: row.time("issued_at")?,
        performing_lab: row.text("performing_lab")?,
        released_at: row.time("released_at")?,
        version: row.int("version")?,
        source: Source {
            system: row.text("source_system")?,
            id: row.text("source_id")?,
        },
    })
}

/// The patient a result belongs to: needed to decide on access before reading it.
pub async fn patient_of(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<PatientId>, DomainError> {
    let row = sqlx::query("SELECT patient_id FROM lab_results WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.uuid("patient_id").map(PatientId)).transpose()
}

pub async fn by_id_for(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    id: Uuid,
) -> Result<LabResult, DomainError> {
    require(permit, Category::LabResults)?;
    let row = sqlx::query("SELECT * FROM lab_results WHERE id = $1 AND patient_id = $2 AND ($3 = 1 OR released_at <= $4)")
        .bind(id.to_string())
        .bind(permit.patient_id().0.to_string())
        .bind(i64::from(permit.includes_unreleased()))
        .bind(ts(OffsetDateTime::now_utc()))
        .fetch_optional(conn)
        .await?
        .ok_or(DomainError::NotFound)?;
    from_row(&row)
}

/// Filters of a result search (FHIR Observation search).
#[derive(Debug, Clone, Default)]
pub struct LabQuery {
    pub code_system: Option<String>,
    pub code: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub category: Option<String>,
    pub newest_first: bool,
    pub limit: i64,
    pub offset: i64,
}

/// One page of matching results and the number of all matches.
pub async fn search(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    q: &LabQuery,
) -> Result<(Vec<LabResult>, i64), DomainError> {
    require(permit, Category::LabResults)?;
    let filter = "FROM lab_results WHERE patient_id = $1 AND ($2 = 1 OR released_at <= $3) \
                  AND ($4 = '' OR code_system = $4) AND ($5 = '' OR code = $5) AND ($6 = '' OR effective_at >= $6) \
                  AND ($7 = '' OR effective_at < $7) AND ($8 = '' OR category = $8)";
    let order = if q.newest_first { "DESC" } else { "ASC" };
    let page_sql =
        format!("SELECT * {filter} ORDER BY effective_at {order}, id {order} LIMIT $9 OFFSET $10");
    let count_sql = format!("SELECT COUNT(*) AS n {filter}");
    fn bind<'q>(
        sql: &'q str,
        permit: &impl ReadPermit,
        q: &LabQuery,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        sqlx::query(sql)
            .bind(permit.patient_id().0.to_string())
            .bind(i64::from(permit.includes_unreleased()))
            .bind(ts(OffsetDateTime::now_utc()))
            .bind(q.code_system.clone().unwrap_or_default())
            .bind(q.code.clone().unwrap_or_default())
            .bind(q.from.map(ts).unwrap_or_default())
            .bind(q.until.map(ts).unwrap_or_default())
            .bind(q.category.clone().unwrap_or_default())
    }
    let total = bind(&count_sql, permit, q)
        .fetch_one(&mut *conn)
        .await?
        .int("n")?;
    let rows = bind(&page_sql, permit, q)
        .bind(q.limit)
        .bind(q.offset)
        .fetch_all(conn)
        .await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}
