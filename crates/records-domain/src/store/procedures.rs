//! Procedures (FHIR Procedure): newest first.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::db::{Utc, UuidText};
use crate::model::{PatientId, Procedure, ProcedureStatus, Source};
use crate::store::kept::{kept_fields, kept_reads, Kept};
use crate::store::Category;

#[derive(sqlx::FromRow)]
pub struct ProcedureRow {
    id: UuidText,
    patient_id: PatientId,
    code_system: String,
    code: String,
    display: String,
    status: ProcedureStatus,
    performed_at: Utc,
    performed_until: Option<Utc>,
    performer: String,
    reason: Option<String>,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<ProcedureRow> for Procedure {
    fn from(row: ProcedureRow) -> Self {
        Procedure {
            id: row.id.0,
            patient_id: row.patient_id,
            code_system: row.code_system,
            code: row.code,
            display: row.display,
            status: row.status,
            performed_at: row.performed_at.0,
            performed_until: row.performed_until.map(Into::into),
            performer: row.performer,
            reason: row.reason,
            version: row.version,
            source: row.source,
        }
    }
}

impl Kept for Procedure {
    const CATEGORY: Category = Category::Procedures;
    kept_reads!(
        "procedures",
        "id, patient_id, code_system, code, display, status, performed_at, performed_until, \
         performer, reason, version, source_system, source_id",
        order by "performed_at DESC, id"
    );
    const INSERT: &'static str = "INSERT INTO procedures (code_system, code, display, status, \
         performed_at, performed_until, performer, reason, id, patient_id, version, \
         source_system, source_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12)";
    const UPDATE: &'static str = "UPDATE procedures SET code_system = $1, code = $2, \
         display = $3, status = $4, performed_at = $5, performed_until = $6, performer = $7, \
         reason = $8, version = version + 1 WHERE id = $9";
    type Row = ProcedureRow;

    kept_fields!();
    fn bind_content<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        query
            .bind(&self.code_system)
            .bind(&self.code)
            .bind(&self.display)
            .bind(self.status)
            .bind(Utc(self.performed_at))
            .bind(self.performed_until.map(Utc))
            .bind(&self.performer)
            .bind(self.reason.as_deref())
    }
}
