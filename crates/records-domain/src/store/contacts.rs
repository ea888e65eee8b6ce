//! Contacts with the health service (FHIR Encounter): newest first, planned ones included.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::db::{Utc, UuidText};
use crate::model::{Contact, ContactStatus, PatientId, Source};
use crate::store::kept::{kept_fields, kept_reads, Kept};
use crate::store::Category;

#[derive(sqlx::FromRow)]
pub struct ContactRow {
    id: UuidText,
    patient_id: PatientId,
    type_system: String,
    type_code: String,
    type_display: String,
    class: String,
    status: ContactStatus,
    started_at: Utc,
    ended_at: Option<Utc>,
    place: String,
    practitioner: String,
    reason: Option<String>,
    version: i64,
    #[sqlx(flatten)]
    source: Source,
}

impl From<ContactRow> for Contact {
    fn from(row: ContactRow) -> Self {
        Contact {
            id: row.id.0,
            patient_id: row.patient_id,
            type_system: row.type_system,
            type_code: row.type_code,
            type_display: row.type_display,
            class: row.class,
            status: row.status,
            started_at: row.started_at.0,
            ended_at: row.ended_at.map(Into::into),
            place: row.place,
            practitioner: row.practitioner,
            reason: row.reason,
            version: row.version,
            source: row.source,
        }
    }
}

impl Kept for Contact {
    const CATEGORY: Category = Category::Contacts;
    kept_reads!(
        "contacts",
        "id, patient_id, type_system, type_code, type_display, class, status, started_at, \
         ended_at, place, practitioner, reason, version, source_system, source_id",
        order by "started_at DESC, id"
    );
    const INSERT: &'static str = "INSERT INTO contacts (type_system, type_code, type_display, \
         class, status, started_at, ended_at, place, practitioner, reason, id, patient_id, \
         version, source_system, source_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14)";
    const UPDATE: &'static str = "UPDATE contacts SET type_system = $1, type_code = $2, \
         type_display = $3, class = $4, status = $5, started_at = $6, ended_at = $7, place = $8, \
         practitioner = $9, reason = $10, version = version + 1 WHERE id = $11";
    type Row = ContactRow;

    kept_fields!();
    fn bind_content<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        query
            .bind(&self.type_system)
            .bind(&self.type_code)
            .bind(&self.type_display)
            .bind(&self.class)
            .bind(self.status)
            .bind(Utc(self.started_at))
            .bind(self.ended_at.map(Utc))
            .bind(&self.place)
            .bind(&self.practitioner)
            .bind(self.reason.as_deref())
    }
}
