//! Reports (FHIR DiagnosticReport): newest first, with their conclusion and the names of the
//! results they group.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::db::{Utc, UuidText};
use crate::model::{PatientId, Report, ReportStatus, Source};
use crate::store::kept::{kept_fields, kept_reads, JsonList, Kept};
use crate::store::Category;

#[derive(sqlx::FromRow)]
pub struct ReportRow {
    id: UuidText,
    patient_id: PatientId,
    code_system: String,
    code: String,
    display: String,
    category: Option<String>,
    status: ReportStatus,
    effective_at: Utc,
    issued_at: Option<Utc>,
    performer: String,
    conclusion: Option<String>,
    results: JsonList<String>,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<ReportRow> for Report {
    fn from(row: ReportRow) -> Self {
        Report {
            id: row.id.0,
            patient_id: row.patient_id,
            code_system: row.code_system,
            code: row.code,
            display: row.display,
            category: row.category,
            status: row.status,
            effective_at: row.effective_at.0,
            issued_at: row.issued_at.map(Into::into),
            performer: row.performer,
            conclusion: row.conclusion,
            results: row.results.0,
            version: row.version,
            source: row.source,
        }
    }
}

impl Kept for Report {
    const CATEGORY: Category = Category::Reports;
    kept_reads!(
        "reports",
        "id, patient_id, code_system, code, display, category, status, effective_at, issued_at, \
         performer, conclusion, results, version, source_system, source_id",
        order by "effective_at DESC, id"
    );
    const INSERT: &'static str = "INSERT INTO reports (code_system, code, display, category, \
         status, effective_at, issued_at, performer, conclusion, results, id, patient_id, \
         version, source_system, source_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14)";
    const UPDATE: &'static str = "UPDATE reports SET code_system = $1, code = $2, display = $3, \
         category = $4, status = $5, effective_at = $6, issued_at = $7, performer = $8, \
         conclusion = $9, results = $10, version = version + 1 WHERE id = $11";
    type Row = ReportRow;

    kept_fields!();
    fn bind_content<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        query
            .bind(&self.code_system)
            .bind(&self.code)
            .bind(&self.display)
            .bind(self.category.as_deref())
            .bind(self.status)
            .bind(Utc(self.effective_at))
            .bind(self.issued_at.map(Utc))
            .bind(&self.performer)
            .bind(self.conclusion.as_deref())
            .bind(JsonList(self.results.clone()))
    }
}
