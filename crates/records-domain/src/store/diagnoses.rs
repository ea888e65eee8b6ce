//! Diagnoses (FHIR Condition): current ones first, then the rest, newest first.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::db::{Utc, UuidText};
use crate::model::{ClinicalStatus, Diagnosis, PatientId, Source};
use crate::store::kept::{kept_fields, kept_reads, Kept};
use crate::store::Category;

#[derive(sqlx::FromRow)]
pub struct DiagnosisRow {
    id: UuidText,
    patient_id: PatientId,
    code_system: String,
    code: String,
    display: String,
    clinical_status: ClinicalStatus,
    onset_at: Option<Utc>,
    abated_at: Option<Utc>,
    recorded_at: Option<Utc>,
    recorder: String,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<DiagnosisRow> for Diagnosis {
    fn from(row: DiagnosisRow) -> Self {
        Diagnosis {
            id: row.id.0,
            patient_id: row.patient_id,
            code_system: row.code_system,
            code: row.code,
            display: row.display,
            clinical_status: row.clinical_status,
            onset_at: row.onset_at.map(Into::into),
            abated_at: row.abated_at.map(Into::into),
            recorded_at: row.recorded_at.map(Into::into),
            recorder: row.recorder,
            version: row.version,
            source: row.source,
        }
    }
}

impl Kept for Diagnosis {
    const CATEGORY: Category = Category::Diagnoses;
    kept_reads!(
        "diagnoses",
        "id, patient_id, code_system, code, display, clinical_status, onset_at, abated_at, \
         recorded_at, recorder, version, source_system, source_id",
        order by "CASE WHEN clinical_status IN ('active', 'recurrence', 'relapse') THEN 0 ELSE 1 \
                  END, COALESCE(onset_at, recorded_at) DESC, id"
    );
    const INSERT: &'static str = "INSERT INTO diagnoses (code_system, code, display, \
         clinical_status, onset_at, abated_at, recorded_at, recorder, id, patient_id, version, \
         source_system, source_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12)";
    const UPDATE: &'static str = "UPDATE diagnoses SET code_system = $1, code = $2, \
         display = $3, clinical_status = $4, onset_at = $5, abated_at = $6, recorded_at = $7, \
         recorder = $8, version = version + 1 WHERE id = $9";
    type Row = DiagnosisRow;

    kept_fields!();
    fn bind_content<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        query
            .bind(&self.code_system)
            .bind(&self.code)
            .bind(&self.display)
            .bind(self.clinical_status)
            .bind(self.onset_at.map(Utc))
            .bind(self.abated_at.map(Utc))
            .bind(self.recorded_at.map(Utc))
            .bind(&self.recorder)
    }
}
