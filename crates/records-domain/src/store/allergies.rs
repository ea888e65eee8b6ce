//! Allergies and intolerances (FHIR AllergyIntolerance): current ones first, the most critical
//! first among them.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::db::{Utc, UuidText};
use crate::model::{Allergy, ClinicalStatus, Criticality, PatientId, Reaction, Source};
use crate::store::kept::{kept_fields, kept_reads, JsonList, Kept};
use crate::store::Category;

#[derive(sqlx::FromRow)]
pub struct AllergyRow {
    id: UuidText,
    patient_id: PatientId,
    code_system: String,
    code: String,
    substance: String,
    clinical_status: ClinicalStatus,
    criticality: Option<Criticality>,
    category: Option<String>,
    reactions: JsonList<Reaction>,
    recorded_at: Option<Utc>,
    recorder: String,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<AllergyRow> for Allergy {
    fn from(row: AllergyRow) -> Self {
        Allergy {
            id: row.id.0,
            patient_id: row.patient_id,
            code_system: row.code_system,
            code: row.code,
            substance: row.substance,
            clinical_status: row.clinical_status,
            criticality: row.criticality,
            category: row.category,
            reactions: row.reactions.0,
            recorded_at: row.recorded_at.map(Into::into),
            recorder: row.recorder,
            version: row.version,
            source: row.source,
        }
    }
}

impl Kept for Allergy {
    const CATEGORY: Category = Category::Allergies;
    kept_reads!(
        "allergies",
        "id, patient_id, code_system, code, substance, clinical_status, criticality, category, \
         reactions, recorded_at, recorder, version, source_system, source_id",
        order by "CASE WHEN clinical_status = 'active' THEN 0 ELSE 1 END, \
                  CASE WHEN criticality = 'high' THEN 0 ELSE 1 END, recorded_at DESC, id"
    );
    const INSERT: &'static str = "INSERT INTO allergies (code_system, code, substance, \
         clinical_status, criticality, category, reactions, recorded_at, recorder, id, \
         patient_id, version, source_system, source_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $13)";
    const UPDATE: &'static str = "UPDATE allergies SET code_system = $1, code = $2, \
         substance = $3, clinical_status = $4, criticality = $5, category = $6, reactions = $7, \
         recorded_at = $8, recorder = $9, version = version + 1 WHERE id = $10";
    type Row = AllergyRow;

    kept_fields!();
    fn bind_content<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        query
            .bind(&self.code_system)
            .bind(&self.code)
            .bind(&self.substance)
            .bind(self.clinical_status)
            .bind(self.criticality)
            .bind(self.category.as_deref())
            .bind(JsonList(self.reactions.clone()))
            .bind(self.recorded_at.map(Utc))
            .bind(&self.recorder)
    }
}
