//! The patient's say over who sees their record: blocks ("negative consent") of a named
//! clinician or a whole clinic, and powers of attorney. Guardianships come from the population
//! register (here: the seed) and end by themselves at the child's 15th birthday.
//! Every change is audited in the same transaction.

use records_domain::db::{ts, RowExt};
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
        BlockTarget::Clinician(id) => (
            Some(id),
            None,
            "SELECT id FROM users WHERE id = $1 AND role = 'clinician'",
        ),
        BlockTarget::Clinic(id) => (None, Some(id), "SELECT id FROM clinics WHERE id = $1"),
    };
    let target_id = clinician.or(clinic).unwrap_or_default();
    if sqlx::query(table)
        .bind(target_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .is_none()
    {
        return Err(AccessError::invalid(
            "Choose a clinician or clinic from the list.",
        ));
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO blocks (id, patient_id, clinician_id, clinic_id, valid_from, valid_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, $5)",
    )
    .bind(id.to_string())
    .bind(grant.patient().0.to_string())
    .bind(clinician.map(|c| c.to_string()))
    .bind(clinic.map(|c| c.to_string()))
    .bind(ts(now))
    .bind(until.map(|u| ts(u.midnight().assume_utc())))
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
    let done = sqlx::query(
        "UPDATE blocks SET lifted_at = $1 WHERE id = $2 AND patient_id = $3 AND lifted_at IS NULL",
    )
    .bind(ts(OffsetDateTime::now_utc()))
    .bind(block.to_string())
    .bind(grant.patient().0.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AccessError::Domain(DomainError::NotFound));
    }
    audit::append(
        conn,
        NewEvent::by(actor, ctx, "lift block", Outcome::Success)
            .about(grant.patient())
            .resource("block", Some(block.to_string())),
    )
    .await?;
    Ok(())
}

pub async fn blocks(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
) -> Result<Vec<Block>, AccessError> {
    let rows = sqlx::query(
        "SELECT b.*, COALESCE(u.display_name, c.name, '') AS target_name FROM blocks b \
         LEFT JOIN users u ON u.id = b.clinician_id LEFT JOIN clinics c ON c.id = b.clinic_id \
         WHERE b.patient_id = $1 ORDER BY b.created_at DESC",
    )
    .bind(grant.patient().0.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let target = match (r.opt_uuid("clinician_id")?, r.opt_uuid("clinic_id")?) {
                (Some(u), _) => BlockTarget::Clinician(u),
                (None, Some(c)) => BlockTarget::Clinic(c),
                (None, None) => {
                    return Err(AccessError::Domain(DomainError::Corrupt(
                        "block without target".into(),
                    )))
                }
            };
            Ok(Block {
                id: r.uuid("id")?,
                target,
                target_name: r.text("target_name")?,
                valid_from: r.time("valid_from")?,
                valid_until: r.opt_time("valid_until")?,
                lifted_at: r.opt_time("lifted_at")?,
            })
        })
        .collect()
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

const PROXY_SELECT: &str = "SELECT x.*, p.given_name || ' ' || p.family_name AS patient_name, p.birth_date, \
     u.display_name AS proxy_name FROM proxies x JOIN patients p ON p.id = x.patient_id JOIN users u ON u.id = x.proxy_user_id";

/// Proxies the user holds for other people's records (whose record can they switch to).
pub async fn held_by(conn: &mut AnyConnection, user: Uuid) -> Result<Vec<Proxy>, AccessError> {
    let rows = sqlx::query(&format!(
        "{PROXY_SELECT} WHERE x.proxy_user_id = $1 ORDER BY patient_name"
    ))
    .bind(user.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(proxy_from_row).collect()
}

/// Proxies others hold for this patient's record.
pub async fn granted_for(
    conn: &mut AnyConnection,
    grant: &ConsentGrant,
) -> Result<Vec<Proxy>, AccessError> {
    let rows = sqlx::query(&format!(
        "{PROXY_SELECT} WHERE x.patient_id = $1 ORDER BY x.created_at DESC"
    ))
    .bind(grant.patient().0.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(proxy_from_row).collect()
}

fn proxy_from_row(r: &sqlx::any::AnyRow) -> Result<Proxy, AccessError> {
    Ok(Proxy {
        id: r.uuid("id")?,
        patient_id: PatientId(r.uuid("patient_id")?),
        patient_name: r.text("patient_name")?,
        patient_birth_date: r.text("birth_date")?,
        proxy_user_id: r.uuid("proxy_user_id")?,
        proxy_name: r.text("proxy_name")?,
        kind: ProxyKind::parse(&r.text("kind")?)
            .ok_or_else(|| AccessError::invalid("unknown proxy kind"))?,
        valid_from: r.time("valid_from")?,
        valid_until: r.opt_time("valid_until")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
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
    let holder = sqlx::query("SELECT id, patient_id FROM users WHERE username = $1 AND role = 'patient' AND disabled = 0")
        .bind(holder_username.trim())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| AccessError::invalid("There is no citizen user with that user name."))?;
    let holder_id = holder.uuid("id")?;
    if holder.opt_uuid("patient_id")? == Some(grant.patient().0) {
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
    sqlx::query(
        "INSERT INTO proxies (id, patient_id, proxy_user_id, kind, valid_from, valid_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(patient.0.to_string())
    .bind(holder.to_string())
    .bind(kind.as_str())
    .bind(ts(from.midnight().assume_utc()))
    .bind(until.map(|u| ts(u.midnight().assume_utc())))
    .bind(ts(OffsetDateTime::now_utc()))
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
    let done = sqlx::query(
        "UPDATE proxies SET revoked_at = $1 WHERE id = $2 AND patient_id = $3 AND kind = 'power_of_attorney' AND revoked_at IS NULL",
    )
    .bind(ts(OffsetDateTime::now_utc()))
    .bind(proxy.to_string())
    .bind(grant.patient().0.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AccessError::Domain(DomainError::NotFound));
    }
    audit::append(
        conn,
        NewEvent::by(actor, ctx, "revoke power of attorney", Outcome::Success)
            .about(grant.patient())
            .resource("proxy", Some(proxy.to_string())),
    )
    .await?;
    Ok(())
}
