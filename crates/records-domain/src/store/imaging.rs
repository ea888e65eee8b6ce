//! Imaging studies (FHIR ImagingStudy): newest first. They belong to the reports part of the
//! record: what a patient or a guardian may see of reports, they may see of imaging.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::db::{Utc, UuidText};
use crate::model::{ImagingStatus, ImagingStudy, PatientId, Source};
use crate::store::kept::{kept_fields, kept_reads, Kept};
use crate::store::Category;

#[derive(sqlx::FromRow)]
pub struct ImagingRow {
    id: UuidText,
    patient_id: PatientId,
    status: ImagingStatus,
    started_at: Utc,
    modality: String,
    body_site: Option<String>,
    description: Option<String>,
    series: i64,
    instances: i64,
    performer: String,
    identifier: Option<String>,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<ImagingRow> for ImagingStudy {
    fn from(row: ImagingRow) -> Self {
        ImagingStudy {
            id: row.id.0,
            patient_id: row.patient_id,
            status: row.status,
            started_at: row.started_at.0,
            modality: row.modality,
            body_site: row.body_site,
            description: row.description,
            series: row.series,
            instances: row.instances,
            performer: row.performer,
            identifier: row.identifier,
            version: row.version,
            source: row.source,
        }
    }
}

impl Kept for ImagingStudy {
    const CATEGORY: Category = Category::Reports;
    kept_reads!(
        "imaging_studies",
        "id, patient_id, status, started_at, modality, body_site, description, series, \
         instances, performer, identifier, version, source_system, source_id",
        order by "started_at DESC, id"
    );
    const INSERT: &'static str = "INSERT INTO imaging_studies (status, started_at, modality, \
         body_site, description, series, instances, performer, identifier, id, patient_id, version, \
         source_system, source_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, \
         $13)";
    const UPDATE: &'static str = "UPDATE imaging_studies SET status = $1, started_at = $2, \
         modality = $3, body_site = $4, description = $5, series = $6, instances = $7, \
         performer = $8, identifier = $9, version = version + 1 WHERE id = $10";
    type Row = ImagingRow;

    kept_fields!();
    fn bind_content<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        query
            .bind(self.status)
            .bind(Utc(self.started_at))
            .bind(&self.modality)
            .bind(self.body_site.as_deref())
            .bind(self.description.as_deref())
            .bind(self.series)
            .bind(self.instances)
            .bind(&self.performer)
            .bind(self.identifier.as_deref())
    }
}
