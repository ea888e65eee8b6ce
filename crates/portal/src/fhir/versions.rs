//! Past and present versions of resources written through FHIR or `portal import`, as the
//! portal served each one when it was written (`resource_versions`). vread and `_history`
//! read them; `written_at` is a version's `meta.lastUpdated` and `Last-Modified`.
//!
//! Finding a version here is not reading a record: callers decide access through the gate
//! for the patient a version names before they return it.

use std::collections::HashMap;

use records_domain::db::{Utc, UuidText};
use records_domain::model::PatientId;
use records_domain::DomainError;
use serde_json::Value;
use sqlx::AnyConnection;
use time::OffsetDateTime;
use uuid::Uuid;

const INSERT: &str = "INSERT INTO resource_versions \
     (resource_type, resource_id, version, patient_id, written_at, body) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const ONE: &str = "SELECT version, written_at, body FROM resource_versions \
     WHERE resource_type = $1 AND resource_id = $2 AND version = $3";
const ALL: &str = "SELECT version, written_at, body FROM resource_versions \
     WHERE resource_type = $1 AND resource_id = $2 ORDER BY version DESC LIMIT 100";
const WRITTEN_AT: &str = "SELECT resource_id, version, written_at FROM resource_versions \
     WHERE resource_type = $1 AND patient_id = $2";

/// One version of one resource, as served when it was written.
#[derive(Debug, Clone)]
pub struct Version {
    pub number: i64,
    pub written_at: OffsetDateTime,
    pub body: Value,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    version: i64,
    written_at: Utc,
    body: String,
}

impl TryFrom<VersionRow> for Version {
    type Error = DomainError;

    fn try_from(row: VersionRow) -> Result<Self, DomainError> {
        let body = serde_json::from_str(&row.body)
            .map_err(|e| DomainError::Corrupt(format!("stored FHIR version: {e}")))?;
        Ok(Version {
            number: row.version,
            written_at: row.written_at.0,
            body,
        })
    }
}

/// The served form of a version: its body with `meta.lastUpdated` set.
pub fn stamped(mut body: Value, written_at: OffsetDateTime) -> Value {
    if body["meta"].is_object() {
        body["meta"]["lastUpdated"] = super::resources::instant(written_at).into();
    }
    body
}

pub async fn record(
    conn: &mut AnyConnection,
    patient: PatientId,
    written_at: OffsetDateTime,
    body: &Value,
) -> Result<(), DomainError> {
    sqlx::query(INSERT)
        .bind(body["resourceType"].as_str().unwrap_or_default())
        .bind(body["id"].as_str().unwrap_or_default())
        .bind(version_of(body))
        .bind(patient)
        .bind(Utc(written_at))
        .bind(body.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Many versions written at one moment, in as few statements as the engines' bind limits
/// allow: an import keeps every resource's version without a statement of its own each.
pub async fn record_all(
    conn: &mut AnyConnection,
    written_at: OffsetDateTime,
    versions: &[(PatientId, &Value)],
) -> Result<(), DomainError> {
    const COLUMNS: usize = 6;
    const ROWS_PER_STATEMENT: usize = 500;
    for chunk in versions.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|row| {
                let params: Vec<String> = (1..=COLUMNS)
                    .map(|column| format!("${}", row * COLUMNS + column))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO resource_versions \
             (resource_type, resource_id, version, patient_id, written_at, body) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (patient, body) in chunk {
            query = query
                .bind(
                    body["resourceType"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
                .bind(body["id"].as_str().unwrap_or_default().to_string())
                .bind(version_of(body))
                .bind(*patient)
                .bind(Utc(written_at))
                .bind(body.to_string());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A resource's `meta.versionId` as a number (1 when it names none).
pub fn version_of(body: &Value) -> i64 {
    body["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

pub async fn one(
    conn: &mut AnyConnection,
    kind: &str,
    id: Uuid,
    version: i64,
) -> Result<Option<Version>, DomainError> {
    let row: Option<VersionRow> = sqlx::query_as(ONE)
        .bind(kind)
        .bind(UuidText(id))
        .bind(version)
        .fetch_optional(conn)
        .await?;
    row.map(Version::try_from).transpose()
}

/// The newest versions first (at most 100, the most a history page shows).
pub async fn all(
    conn: &mut AnyConnection,
    kind: &str,
    id: Uuid,
) -> Result<Vec<Version>, DomainError> {
    let rows: Vec<VersionRow> = sqlx::query_as(ALL)
        .bind(kind)
        .bind(UuidText(id))
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(Version::try_from).collect()
}

/// When each written version of a patient's resources of one type was written, keyed on
/// (resource id, version): what `meta.lastUpdated` and `_lastUpdated` are made of.
pub async fn written_at(
    conn: &mut AnyConnection,
    kind: &str,
    patient: PatientId,
) -> Result<HashMap<(String, i64), OffsetDateTime>, DomainError> {
    let rows: Vec<(String, i64, Utc)> = sqlx::query_as(WRITTEN_AT)
        .bind(kind)
        .bind(patient)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, version, at)| ((id, version), at.0))
        .collect())
}

/// `meta.lastUpdated` for a served resource whose version was written here.
pub fn stamp(resource: &mut Value, written: &HashMap<(String, i64), OffsetDateTime>) {
    let key = (
        resource["id"].as_str().unwrap_or_default().to_string(),
        version_of(resource),
    );
    if let Some(at) = written.get(&key) {
        resource["meta"]["lastUpdated"] = super::resources::instant(*at).into();
    }
}
