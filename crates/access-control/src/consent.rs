//! The patient's say over who sees their record: blocks ("negative consent") of a named
//! clinician or a whole clinic, and powers of attorney. Guardianships come from the population
//! register (here: the seed) and end by themselves at the child's 15th birthday.
//! Every change is audited in the same transaction.

use records_domain::db::{Statement, Utc, UuidText};
use records_domain::model::PatientId;
use records_domain::DomainError;
use sqlx::AnyConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::actor::{Actor, RequestContext};
use crate::audit::{self, NewEvent, Outcome};
use crate::gate::ConsentGrant;
use crate::policy::ProxyKind;
use crate::AccessError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTarget {
    Clinician(Uuid),
    Clinic(Uuid),
}

#[derive(Debug, Clone)]
pub struct Block {
    pub id: Uuid,
    pub target: BlockTarget,
    pub target_name: String,
    pub valid_from: OffsetDateTime,
    pub valid_until: Option<OffsetDateTime>,
    pub lifted_at: Option<OffsetDateTime>,
}

impl Block {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.lifted_at.is_none()
            && self.valid_from <= now
            && self.valid_until.is_none_or(|u| now < u)
    }
}

const CLINICIAN_EXISTS: &str = "SELECT id FROM users WHERE id = $1 AND role = 'clinician'";
const CLINIC_EXISTS: &str = "SELECT id FROM clinics WHERE id = $1";
const INSERT_BLOCK: &str =
    "INSERT INTO blocks (id, patient_id, clinician_id, clinic_id, valid_from, \
     valid_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, $5)";
const LIFT_BLOCK: &str = "UPDATE blocks SET lifted_at = $1 \
     WHERE id = $2 AND patient_id = $3 AND lifted_at IS NULL";
const BLOCKS: &str = "SELECT b.id, b.clinician_id, b.clinic_id, b.valid_from, b.valid_until, \
     b.lifted_at, COALESCE(u.display_name, c.name, '') AS target_name FROM blocks b \
     LEFT JOIN users u ON u.id = b.clinician_id LEFT JOIN clinics c ON c.id = b.clinic_id \
     WHERE b.patient_id = $1 ORDER BY b.created_at DESC";

/// The proxies with the names `Proxy` shows, in a macro so that statements can `concat!` it.
macro_rules! proxy_select {
    () => {
        "SELECT x.id, x.patient_id, x.proxy_user_id, x.kind, x.valid_from, x.valid_until, \
         x.revoked_at, p.given_name || ' ' || p.family_name AS patient_name, p.birth_date, \
         u.display_name AS proxy_name FROM proxies x JOIN patients p ON p.id = x.patient_id \
         JOIN users u ON u.id = x.proxy_user_id"
    };
}

const PROXIES_HELD_BY: &str = concat!(
    proxy_select!(),
    " WHERE x.proxy_user_id = $1 ORDER BY patient_name"
);
const PROXIES_GRANTED_FOR: &str = concat!(
    proxy_select!(),
    " WHERE x.patient_id = $1 ORDER BY x.created_at DESC"
);
const PROXY_HOLDER: &str = "SELECT id, patient_id FROM users \
     WHERE username = $1 AND role = 'patient' AND disabled = 0";
const INSERT_PROXY: &str = "INSERT INTO proxies (id, patient_id, proxy_user_id, kind, valid_from, \
     valid_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const REVOKE_PROXY: &str = "UPDATE proxies SET revoked_at = $1 WHERE id = $2 AND patient_id = $3 \
     AND kind = 'power_of_attorney' AND revoked_at IS NULL";

pub(crate) fn statements() -> Vec<Statement> {
    records_domain::statements!("consent": CLINICIAN_EXISTS, CLINIC_EXISTS, INSERT_BLOCK,
        LIFT_BLOCK, BLOCKS, PROXIES_HELD_BY, PROXIES_GRANTED_FOR, PROXY_HOLDER, INSERT_PROXY,
        REVOKE_PROXY)
}

pub async fn add_block(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
    actor: &Actor,
    ctx: &RequestContext,
    target: BlockTarget,
    until: Option<Date>,
) -> Result<Uuid, AccessError> {
    let now = OffsetDateTime::now_utc();
    if matches!(until, Some(u) if u <= now.date()) {
        return Err(AccessError::invalid(
            "A block must last at least until tomorrow.",
        ));
    }
    let (clinician, clinic, table) = match target {
        BlockTarget::Clinician(id) => (Some(id), None, CLINICIAN_EXISTS),
        BlockTarget::Clinic(id) => (None, Some(id), CLINIC_EXISTS),
    };
    let target_id = clinician.or(clinic).unwrap_or_default();
    if sqlx::query(table)
        .bind(UuidText(target_id))
        .fetch_optional(&mut *conn)
        .await?
        .is_none()
    {
        return Err(AccessError::invalid(
            "Choose a clinician or clinic from the list.",
        ));
    }
    let id = Uuid::now_v7();
    sqlx::query(INSERT_BLOCK)
        .bind(UuidText(id))
        .bind(grant.patient())
        .bind(clinician.map(UuidText))
        .bind(clinic.map(UuidText))
        .bind(Utc(now))
        .bind(until.map(Utc::start_of))
        .execute(&mut *conn)
        .await?;
    let kind = if clinician.is_some() {
        "clinician"
    } else {
        "clinic"
    };
    audit::append(
        conn,
        NewEvent::by(actor, ctx, "add block", Outcome::Success)
            .about(grant.patient())
            .resource("block", Some(id.to_string()))
            .reason(format!("{kind} {target_id}")),
    )
    .await?;
    Ok(id)
}

pub async fn lift_block(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
    actor: &Actor,
    ctx: &RequestContext,
    block: Uuid,
) -> Result<(), AccessError> {
    let lift = Ending {
        statement: LIFT_BLOCK,
        action: "lift block",
        resource: "block",
    };
    end_now(conn, grant, actor, ctx, &lift, block).await
}

/// How a block or a power of attorney of the patient's is ended, and what the log calls it.
struct Ending {
    /// Binds the time it ends, the row's id and the patient's, in that order.
    statement: &'static str,
    action: &'static str,
    resource: &'static str,
}

/// Ends the patient's row now, or answers `NotFound` when the patient has no such row left
/// to end, and logs who ended it.
async fn end_now(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
    actor: &Actor,
    ctx: &RequestContext,
    ending: &Ending,
    id: Uuid,
) -> Result<(), AccessError> {
    let done = sqlx::query(ending.statement)
        .bind(Utc::now())
        .bind(UuidText(id))
        .bind(grant.patient())
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AccessError::Domain(DomainError::NotFound));
    }
    audit::append(
        conn,
        NewEvent::by(actor, ctx, ending.action, Outcome::Success)
            .about(grant.patient())
            .resource(ending.resource, Some(id.to_string())),
    )
    .await?;
    Ok(())
}

pub async fn blocks(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
) -> Result<Vec<Block>, AccessError> {
    let rows: Vec<BlockRow> = sqlx::query_as(BLOCKS)
        .bind(grant.patient())
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(Block::try_from).collect()
}

#[derive(sqlx::FromRow)]
struct BlockRow {
    id: UuidText,
    clinician_id: Option<UuidText>,
    clinic_id: Option<UuidText>,
    target_name: String,
    valid_from: Utc,
    valid_until: Option<Utc>,
    lifted_at: Option<Utc>,
}

impl TryFrom<BlockRow> for Block {
    type Error = AccessError;

    fn try_from(row: BlockRow) -> Result<Self, AccessError> {
        let target = match (row.clinician_id, row.clinic_id) {
            (Some(u), _) => BlockTarget::Clinician(u.0),
            (None, Some(c)) => BlockTarget::Clinic(c.0),
            (None, None) => {
                return Err(AccessError::Domain(DomainError::Corrupt(
                    "block without target".into(),
                )))
            }
        };
        Ok(Self {
            id: row.id.0,
            target,
            target_name: row.target_name,
            valid_from: row.valid_from.0,
            valid_until: row.valid_until.map(OffsetDateTime::from),
            lifted_at: row.lifted_at.map(OffsetDateTime::from),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Proxy {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub patient_name: String,
    pub patient_birth_date: String,
    pub proxy_user_id: Uuid,
    pub proxy_name: String,
    pub kind: ProxyKind,
    pub valid_from: OffsetDateTime,
    pub valid_until: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Proxy {
    pub fn is_current(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none()
            && self.valid_from <= now
            && self.valid_until.is_none_or(|u| now < u)
    }
}

#[derive(sqlx::FromRow)]
struct ProxyRow {
    id: UuidText,
    patient_id: PatientId,
    patient_name: String,
    birth_date: String,
    proxy_user_id: UuidText,
    proxy_name: String,
    kind: ProxyKind,
    valid_from: Utc,
    valid_until: Option<Utc>,
    revoked_at: Option<Utc>,
}

impl From<ProxyRow> for Proxy {
    fn from(row: ProxyRow) -> Self {
        Self {
            id: row.id.0,
            patient_id: row.patient_id,
            patient_name: row.patient_name,
            patient_birth_date: row.birth_date,
            proxy_user_id: row.proxy_user_id.0,
            proxy_name: row.proxy_name,
            kind: row.kind,
            valid_from: row.valid_from.0,
            valid_until: row.valid_until.map(OffsetDateTime::from),
            revoked_at: row.revoked_at.map(OffsetDateTime::from),
        }
    }
}

/// Proxies the user holds for other people's records (whose record can they switch to).
pub async fn held_by(conn: &mut AnyConnection, user: Uuid) -> Result<Vec<Proxy>, AccessError> {
    proxies(conn, PROXIES_HELD_BY, user).await
}

/// Proxies others hold for this patient's record.
pub async fn granted_for(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
) -> Result<Vec<Proxy>, AccessError> {
    proxies(conn, PROXIES_GRANTED_FOR, grant.patient().0).await
}

/// The proxies a statement selects by one key, the holder's or the patient's id.
async fn proxies(
    conn: &mut AnyConnection,
    sql: &str,
    key: Uuid,
) -> Result<Vec<Proxy>, AccessError> {
    let rows: Vec<ProxyRow> = sqlx::query_as(sql)
        .bind(UuidText(key))
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(Proxy::from).collect())
}

/// Give another portal user power of attorney over this record for a period.
#[allow(clippy::too_many_arguments)]
pub async fn grant_power_of_attorney(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
    actor: &Actor,
    ctx: &RequestContext,
    holder_username: &str,
    from: Date,
    until: Option<Date>,
) -> Result<Uuid, AccessError> {
    if matches!(until, Some(u) if u <= from) {
        return Err(AccessError::invalid(
            "The power of attorney must end after it starts.",
        ));
    }
    let holder: HolderRow = sqlx::query_as(PROXY_HOLDER)
        .bind(holder_username.trim())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| AccessError::invalid("There is no citizen user with that user name."))?;
    let holder_id = holder.id.0;
    if holder.patient_id == Some(grant.patient()) {
        return Err(AccessError::invalid(
            "You cannot give power of attorney to yourself.",
        ));
    }
    let id = insert_proxy(
        conn,
        grant.patient(),
        holder_id,
        ProxyKind::PowerOfAttorney,
        from,
        until,
    )
    .await?;
    audit::append(
        conn,
        NewEvent::by(actor, ctx, "grant power of attorney", Outcome::Success)
            .about(grant.patient())
            .resource("proxy", Some(id.to_string()))
            .reason(format!("to user {holder_id}")),
    )
    .await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct HolderRow {
    id: UuidText,
    patient_id: Option<PatientId>,
}

/// Insert a proxy row; used by `grant_power_of_attorney` and by the register import (seed).
pub async fn insert_proxy(
    conn: &mut AnyConnection,
    patient: PatientId,
    holder: Uuid,
    kind: ProxyKind,
    from: Date,
    until: Option<Date>,
) -> Result<Uuid, DomainError> {
    let id = Uuid::now_v7();
    sqlx::query(INSERT_PROXY)
        .bind(UuidText(id))
        .bind(patient)
        .bind(UuidText(holder))
        .bind(kind)
        .bind(Utc::start_of(from))
        .bind(until.map(Utc::start_of))
        .bind(Utc::now())
        .execute(conn)
        .await?;
    Ok(id)
}

pub async fn revoke_proxy(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
    actor: &Actor,
    ctx: &RequestContext,
    proxy: Uuid,
) -> Result<(), AccessError> {
    let revoke = Ending {
        statement: REVOKE_PROXY,
        action: "revoke power of attorney",
        resource: "proxy",
    };
    end_now(conn, grant, actor, ctx, &revoke, proxy).await
}
