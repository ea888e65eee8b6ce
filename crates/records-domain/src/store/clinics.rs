use sqlx::AnyConnection;
use uuid::Uuid;

use crate::db::{Statement, Utc, UuidText};
use crate::model::{Clinic, ClinicKind};
use crate::DomainError;

const INSERT: &str =
    "INSERT INTO clinics (id, name, kind, address, phone, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
const ALL: &str = "SELECT id, name, kind, address, phone FROM clinics ORDER BY name";
const BY_ID: &str = "SELECT id, name, kind, address, phone FROM clinics WHERE id = $1";

pub(crate) fn statements() -> Vec<Statement> {
    crate::statements!("clinics": INSERT, ALL, BY_ID)
}

#[derive(sqlx::FromRow)]
struct ClinicRow {
    id: UuidText,
    name: String,
    kind: ClinicKind,
    address: String,
    phone: String,
}

impl From<ClinicRow> for Clinic {
    fn from(row: ClinicRow) -> Self {
        Clinic {
            id: row.id.0,
            name: row.name,
            kind: row.kind,
            address: row.address,
            phone: row.phone,
        }
    }
}

pub async fn insert(conn: &mut AnyConnection, clinic: &Clinic) -> Result<(), DomainError> {
    sqlx::query(INSERT)
        .bind(UuidText(clinic.id))
        .bind(&clinic.name)
        .bind(clinic.kind)
        .bind(&clinic.address)
        .bind(&clinic.phone)
        .bind(Utc::now())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn all(conn: &mut AnyConnection) -> Result<Vec<Clinic>, DomainError> {
    let rows: Vec<ClinicRow> = sqlx::query_as(ALL).fetch_all(conn).await?;
    Ok(rows.into_iter().map(Clinic::from).collect())
}

pub async fn by_id(conn: &mut AnyConnection, id: Uuid) -> Result<Option<Clinic>, DomainError> {
    let row: Option<ClinicRow> = sqlx::query_as(BY_ID)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Clinic::from))
}
