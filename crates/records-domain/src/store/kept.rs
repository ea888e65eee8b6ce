//! What the stores of diagnoses, allergies and vaccinations share: a patient's rows kept under
//! the key of the source that sent them (so a re-import updates), always read whole. Each kind
//! says its SQL and how its columns bind; finding, comparing, inserting and updating are here.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, FromRow};
use uuid::Uuid;

use crate::db::UuidText;
use crate::model::{PatientId, Source};
use crate::store::{imported_before, require, require_upsert, same_patient, Category, Upserted};
use crate::store::{ReadPermit, WritePermit, Written};
use crate::DomainError;

/// A list kept in one column as JSON: parts of a row (an allergy's reactions, the results a
/// report names) that are only ever read and written with it.
pub struct JsonList<T>(pub Vec<T>);

impl<T: serde::Serialize + serde::de::DeserializeOwned> crate::db::TextColumn for JsonList<T> {
    fn to_column(&self) -> Result<String, sqlx::error::BoxDynError> {
        Ok(serde_json::to_string(&self.0)?)
    }
    fn from_column(text: &str) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self(serde_json::from_str(text)?))
    }
}
crate::text_column!(JsonList<crate::model::Reaction>);
crate::text_column!(JsonList<String>);

/// One kind of record kept under its source's key.
pub trait Kept: Sized + Clone + PartialEq + Send + Sync {
    const CATEGORY: Category;
    /// Binds the source's system as `$1` and its id as `$2`.
    const BY_SOURCE: &'static str;
    /// Binds the patient as `$1`; in the order the pages show them.
    const FOR_PATIENT: &'static str;
    /// Binds the row's id as `$1` and the patient as `$2`.
    const BY_ID: &'static str;
    /// Binds the row's id as `$1`.
    const PATIENT_OF: &'static str;
    /// Binds the content, then id, patient, source system and source id.
    const INSERT: &'static str;
    /// Binds the content, then the id of the row to update.
    const UPDATE: &'static str;
    type Row: for<'r> FromRow<'r, AnyRow> + Send + Unpin + Into<Self>;

    fn id(&self) -> Uuid;
    fn patient_id(&self) -> PatientId;
    fn source(&self) -> &Source;
    /// The same content under the stored row's id and version, to tell an unchanged re-import.
    fn as_stored(&self, id: Uuid, version: i64) -> Self;
    fn version(&self) -> i64;
    fn bind_content<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>>;
}

/// The accessors every kind implements alike: its fields have the same names.
macro_rules! kept_fields {
    () => {
        fn id(&self) -> uuid::Uuid {
            self.id
        }
        fn patient_id(&self) -> crate::model::PatientId {
            self.patient_id
        }
        fn source(&self) -> &crate::model::Source {
            &self.source
        }
        fn version(&self) -> i64 {
            self.version
        }
        fn as_stored(&self, id: uuid::Uuid, version: i64) -> Self {
            Self {
                id,
                version,
                ..self.clone()
            }
        }
    };
}
pub(crate) use kept_fields;

/// The four reads of a kind, from its table, its columns and the order its page lists them in.
macro_rules! kept_reads {
    ($table:literal, $columns:literal, order by $order:literal) => {
        const BY_SOURCE: &'static str = concat!(
            "SELECT ",
            $columns,
            " FROM ",
            $table,
            " WHERE source_system = $1 AND source_id = $2"
        );
        const FOR_PATIENT: &'static str = concat!(
            "SELECT ",
            $columns,
            " FROM ",
            $table,
            " WHERE patient_id = $1 ORDER BY ",
            $order
        );
        const BY_ID: &'static str = concat!(
            "SELECT ",
            $columns,
            " FROM ",
            $table,
            " WHERE id = $1 AND patient_id = $2"
        );
        const PATIENT_OF: &'static str =
            concat!("SELECT patient_id FROM ", $table, " WHERE id = $1");
    };
}
pub(crate) use kept_reads;

/// The SQL of every kind, for the test that prepares each statement on both engines.
pub(crate) fn statements_of<T: Kept>(module: &'static str) -> Vec<crate::db::Statement> {
    [
        ("BY_SOURCE", T::BY_SOURCE),
        ("FOR_PATIENT", T::FOR_PATIENT),
        ("BY_ID", T::BY_ID),
        ("PATIENT_OF", T::PATIENT_OF),
        ("INSERT", T::INSERT),
        ("UPDATE", T::UPDATE),
    ]
    .into_iter()
    .map(|(name, sql)| crate::db::Statement::new(format!("{module}::{name}"), sql))
    .collect()
}

pub async fn upsert<T: Kept>(
    conn: &mut AnyConnection,
    permit: &impl WritePermit,
    record: &T,
) -> Result<Written, DomainError> {
    require_upsert(permit, T::CATEGORY, record.patient_id(), record.source())?;
    let stored: Option<T::Row> = imported_before(&mut *conn, T::BY_SOURCE, record.source()).await?;
    let Some(current) = stored.map(T::Row::into) else {
        record
            .bind_content(sqlx::query(T::INSERT))
            .bind(UuidText(record.id()))
            .bind(record.patient_id())
            .bind(&record.source().system)
            .bind(&record.source().id)
            .execute(conn)
            .await?;
        return Ok(Written::new(Upserted::Inserted, record.id(), 1));
    };
    same_patient(current.patient_id(), record.patient_id())?;
    if record.as_stored(current.id(), current.version()) == current {
        return Ok(Written::new(
            Upserted::Unchanged,
            current.id(),
            current.version(),
        ));
    }
    record
        .bind_content(sqlx::query(T::UPDATE))
        .bind(UuidText(current.id()))
        .execute(conn)
        .await?;
    Ok(Written::new(
        Upserted::Updated,
        current.id(),
        current.version() + 1,
    ))
}

pub async fn for_patient<T: Kept>(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
) -> Result<Vec<T>, DomainError> {
    require(permit, T::CATEGORY)?;
    let rows: Vec<T::Row> = sqlx::query_as(T::FOR_PATIENT)
        .bind(permit.patient_id())
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(T::Row::into).collect())
}

pub async fn by_id_for<T: Kept>(
    conn: &mut AnyConnection,
    permit: &impl ReadPermit,
    id: Uuid,
) -> Result<T, DomainError> {
    require(permit, T::CATEGORY)?;
    let row: T::Row = sqlx::query_as(T::BY_ID)
        .bind(UuidText(id))
        .bind(permit.patient_id())
        .fetch_optional(conn)
        .await?
        .ok_or(DomainError::NotFound)?;
    Ok(row.into())
}

/// The patient a row belongs to: needed to decide on access before reading it.
pub async fn patient_of<T: Kept>(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<PatientId>, DomainError> {
    Ok(sqlx::query_scalar(T::PATIENT_OF)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?)
}
