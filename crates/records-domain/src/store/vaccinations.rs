//! Vaccinations (FHIR Immunization): newest first, the list a patient shows a travel clinic.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::db::{Utc, UuidText};
use crate::model::{PatientId, Source, Vaccination, VaccinationStatus};
use crate::store::kept::{kept_fields, kept_reads, Kept};
use crate::store::Category;

#[derive(sqlx::FromRow)]
pub struct VaccinationRow {
    id: UuidText,
    patient_id: PatientId,
    vaccine_system: String,
    vaccine_code: String,
    vaccine_name: String,
    status: VaccinationStatus,
    occurred_at: Utc,
    lot_number: Option<String>,
    site: Option<String>,
    performer: String,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<VaccinationRow> for Vaccination {
    fn from(row: VaccinationRow) -> Self {
        Vaccination {
            id: row.id.0,
            patient_id: row.patient_id,
            vaccine_system: row.vaccine_system,
            vaccine_code: row.vaccine_code,
            vaccine_name: row.vaccine_name,
            status: row.status,
            occurred_at: row.occurred_at.0,
            lot_number: row.lot_number,
            site: row.site,
            performer: row.performer,
            version: row.version,
            source: row.source,
        }
    }
}

impl Kept for Vaccination {
    const CATEGORY: Category = Category::Vaccinations;
    kept_reads!(
        "vaccinations",
        "id, patient_id, vaccine_system, vaccine_code, vaccine_name, status, occurred_at, \
         lot_number, site, performer, version, source_system, source_id",
        order by "occurred_at DESC, id"
    );
    const INSERT: &'static str = "INSERT INTO vaccinations (vaccine_system, vaccine_code, \
         vaccine_name, status, occurred_at, lot_number, site, performer, id, patient_id, \
         version, source_system, source_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12)";
    const UPDATE: &'static str = "UPDATE vaccinations SET vaccine_system = $1, \
         vaccine_code = $2, vaccine_name = $3, status = $4, occurred_at = $5, lot_number = $6, \
         site = $7, performer = $8, version = version + 1 WHERE id = $9";
    type Row = VaccinationRow;

    kept_fields!();
    fn bind_content<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        query
            .bind(&self.vaccine_system)
            .bind(&self.vaccine_code)
            .bind(&self.vaccine_name)
            .bind(self.status)
            .bind(Utc(self.occurred_at))
            .bind(self.lot_number.as_deref())
            .bind(self.site.as_deref())
            .bind(&self.performer)
    }
}
