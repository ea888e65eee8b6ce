use sqlx::AnyConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{ts, RowExt};
use crate::model::{Clinic, ClinicKind};
use crate::DomainError;

pub async fn insert(conn: &mut AnyConnection, clinic: &Clinic) -> Result<(), DomainError> {
    sqlx::query(
        "INSERT INTO clinics (id, name, kind, address, phone, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(clinic.id.to_string())
    .bind(&clinic.name)
    .bind(clinic.kind.as_str())
    .bind(&clinic.address)
    .bind(&clinic.phone)
    .bind(ts(OffsetDateTime::now_utc()))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn all(conn: &mut AnyConnection) -> Result<Vec<Clinic>, DomainError> {
    let rows = sqlx::query("SELECT * FROM clinics ORDER BY name")
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn by_id(conn: &mut AnyConnection, id: Uuid) -> Result<Option<Clinic>, DomainError> {
    let row = sqlx::query("SELECT * FROM clinics WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Clinic, DomainError> {
    Ok(Clinic {
        id: row.uuid("id")?,
        name: row.text("name")?,
        kind: ClinicKind::parse(&row.text("kind")?)?,
        address: row.text("address")?,
        phone: row.text("phone")?,
    })
}
