//! The audit log: append-only (the database refuses UPDATE and DELETE) and tamper-evident
//! (one SHA-256 hash chain per patient, plus a system chain for events about no patient).
//!
//! This module is the only writer of `audit_events`.
//!
//! Canonical encoding (what the hash covers): the JSON array
//! `[seq, id, occurred_at, actor_id, actor_name, actor_role, actor_clinic_id, on_behalf_of,
//!   patient_id, action, resource_type, resource_id, basis, outcome, reason, client_addr]`
//! serialised without white space (absent values as `null`, seq as a number, the rest strings),
//! and `hash = hex(SHA-256(canonical || prev_hash))` where `prev_hash` is the previous event's
//! hash in the same chain as 64 lowercase hex characters (64 zeros for the first event).

pub mod prune;
pub mod query;
pub mod verify;
pub mod writer;

use records_domain::db::{ts, RowExt};
use records_domain::model::PatientId;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::actor::{Actor, RequestContext};
use crate::AccessError;

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
pub const SYSTEM_CHAIN: &str = "system";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Allowed,
    Denied,
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// What the caller says happened; the append fills in sequence, time and hashes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub actor_id: Option<Uuid>,
    pub actor_name: String,
    pub actor_role: String,
    pub actor_clinic_id: Option<Uuid>,
    pub on_behalf_of: Option<String>,
    pub patient_id: Option<PatientId>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub basis: String,
    pub outcome: Outcome,
    pub reason: String,
    pub client_addr: String,
}

impl NewEvent {
    pub fn by(actor: &Actor, ctx: &RequestContext, action: &str, outcome: Outcome) -> Self {
        Self {
            actor_id: Some(actor.user_id),
            actor_name: actor.name.clone(),
            actor_role: actor.role.as_str().into(),
            actor_clinic_id: actor.clinic_id,
            on_behalf_of: None,
            patient_id: None,
            action: action.into(),
            resource_type: String::new(),
            resource_id: None,
            basis: String::new(),
            outcome,
            reason: String::new(),
            client_addr: ctx.client_addr.clone(),
        }
    }

    /// An event with no signed-in actor, e.g. a failed login for an unknown user name.
    pub fn anonymous(name: &str, ctx: &RequestContext, action: &str, outcome: Outcome) -> Self {
        Self {
            actor_id: None,
            actor_name: name.into(),
            actor_role: "anonymous".into(),
            actor_clinic_id: None,
            on_behalf_of: None,
            patient_id: None,
            action: action.into(),
            resource_type: String::new(),
            resource_id: None,
            basis: String::new(),
            outcome,
            reason: String::new(),
            client_addr: ctx.client_addr.clone(),
        }
    }

    pub fn about(mut self, patient: PatientId) -> Self {
        self.patient_id = Some(patient);
        self
    }

    pub fn resource(mut self, kind: &str, id: Option<String>) -> Self {
        self.resource_type = kind.into();
        self.resource_id = id;
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    pub fn basis(mut self, basis: &str) -> Self {
        self.basis = basis.into();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub id: Uuid,
    pub chain_key: String,
    pub seq: i64,
    pub occurred_at: String,
    pub actor_id: Option<Uuid>,
    pub actor_name: String,
    pub actor_role: String,
    pub actor_clinic_id: Option<Uuid>,
    pub on_behalf_of: Option<String>,
    pub patient_id: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub basis: String,
    pub outcome: String,
    pub reason: String,
    pub client_addr: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    pub fn canonical(&self) -> String {
        serde_json::json!([
            self.seq,
            self.id.to_string(),
            self.occurred_at,
            self.actor_id.map(|u| u.to_string()),
            self.actor_name,
            self.actor_role,
            self.actor_clinic_id.map(|u| u.to_string()),
            self.on_behalf_of,
            self.patient_id.map(|u| u.to_string()),
            self.action,
            self.resource_type,
            self.resource_id,
            self.basis,
            self.outcome,
            self.reason,
            self.client_addr,
        ])
        .to_string()
    }

    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.canonical().as_bytes());
        hasher.update(self.prev_hash.as_bytes());
        hex::encode(hasher.finalize())
    }

    pub fn occurred_at(&self) -> Option<OffsetDateTime> {
        records_domain::db::parse_ts(&self.occurred_at).ok()
    }
}

pub fn chain_key(patient: Option<PatientId>) -> String {
    patient
        .map(|p| p.0.to_string())
        .unwrap_or_else(|| SYSTEM_CHAIN.to_string())
}

/// Append one event to its chain, inside the caller's transaction. Claiming the chain head
/// with an UPDATE first serialises appends to the same chain (a row lock on PostgreSQL, the
/// write lock on SQLite) while appends to other chains proceed.
pub async fn append(conn: &mut AnyConnection, event: NewEvent) -> Result<AuditEvent, AccessError> {
    append_at(conn, event, OffsetDateTime::now_utc()).await
}

/// Append with a given time: for taking over an earlier system's log with its original times.
/// Within one chain times must not go backwards, or pruning by age would cut the chain wrongly.
pub async fn append_at(
    conn: &mut AnyConnection,
    event: NewEvent,
    occurred_at: OffsetDateTime,
) -> Result<AuditEvent, AccessError> {
    let chain = chain_key(event.patient_id);
    sqlx::query("INSERT INTO audit_chains (chain_key, last_seq, last_hash) VALUES ($1, 0, $2) ON CONFLICT (chain_key) DO NOTHING")
        .bind(&chain)
        .bind(GENESIS_HASH)
        .execute(&mut *conn)
        .await?;
    let head = sqlx::query("UPDATE audit_chains SET last_seq = last_seq + 1 WHERE chain_key = $1 RETURNING last_seq, last_hash")
        .bind(&chain)
        .fetch_one(&mut *conn)
        .await?;
    let mut stored = AuditEvent {
        id: Uuid::now_v7(),
        chain_key: chain,
        seq: head.int("last_seq")?,
        occurred_at: ts(occurred_at),
        actor_id: event.actor_id,
        actor_name: event.actor_name,
        actor_role: event.actor_role,
        actor_clinic_id: event.actor_clinic_id,
        on_behalf_of: event.on_behalf_of,
        patient_id: event.patient_id.map(|p| p.0),
        action: event.action,
        resource_type: event.resource_type,
        resource_id: event.resource_id,
        basis: event.basis,
        outcome: event.outcome.as_str().into(),
        reason: event.reason,
        client_addr: event.client_addr,
        prev_hash: head.text("last_hash")?,
        hash: String::new(),
    };
    stored.hash = stored.compute_hash();
    sqlx::query(
        "INSERT INTO audit_events (id, chain_key, seq, occurred_at, actor_id, actor_name, actor_role, \
         actor_clinic_id, on_behalf_of, patient_id, action, resource_type, resource_id, basis, outcome, \
         reason, client_addr, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(stored.id.to_string())
    .bind(&stored.chain_key)
    .bind(stored.seq)
    .bind(&stored.occurred_at)
    .bind(stored.actor_id.map(|u| u.to_string()))
    .bind(&stored.actor_name)
    .bind(&stored.actor_role)
    .bind(stored.actor_clinic_id.map(|u| u.to_string()))
    .bind(stored.on_behalf_of.as_deref())
    .bind(stored.patient_id.map(|u| u.to_string()))
    .bind(&stored.action)
    .bind(&stored.resource_type)
    .bind(stored.resource_id.as_deref())
    .bind(&stored.basis)
    .bind(&stored.outcome)
    .bind(&stored.reason)
    .bind(&stored.client_addr)
    .bind(&stored.prev_hash)
    .bind(&stored.hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_chains SET last_hash = $1 WHERE chain_key = $2")
        .bind(&stored.hash)
        .bind(&stored.chain_key)
        .execute(&mut *conn)
        .await?;
    Ok(stored)
}

pub(crate) fn from_row(row: &AnyRow) -> Result<AuditEvent, AccessError> {
    Ok(AuditEvent {
        id: row.uuid("id")?,
        chain_key: row.text("chain_key")?,
        seq: row.int("seq")?,
        occurred_at: row.text("occurred_at")?,
        actor_id: row.opt_uuid("actor_id")?,
        actor_name: row.text("actor_name")?,
        actor_role: row.text("actor_role")?,
        actor_clinic_id: row.opt_uuid("actor_clinic_id")?,
        on_behalf_of: row.opt_text("on_behalf_of")?,
        patient_id: row.opt_uuid("patient_id")?,
        action: row.text("action")?,
        resource_type: row.text("resource_type")?,
        resource_id: row.opt_text("resource_id")?,
        basis: row.text("basis")?,
        outcome: row.text("outcome")?,
        reason: row.text("reason")?,
        client_addr: row.text("client_addr")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            id: Uuid::from_u128(7),
            chain_key: SYSTEM_CHAIN.into(),
            seq: 1,
            occurred_at: "2026-11-25T12:00:00.000000Z".into(),
            actor_id: None,
            actor_name: "x".into(),
            actor_role: "anonymous".into(),
            actor_clinic_id: None,
            on_behalf_of: None,
            patient_id: None,
            action: "login".into(),
            resource_type: String::new(),
            resource_id: None,
            basis: String::new(),
            outcome: "failure".into(),
            reason: "wrong password".into(),
            client_addr: "127.0.0.1".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn canonical_encoding_is_stable() {
        assert_eq!(
            event().canonical(),
            r#"[1,"00000000-0000-0000-0000-000000000007","2026-11-25T12:00:00.000000Z",null,"x","anonymous",null,null,null,"login","",null,"","failure","wrong password","127.0.0.1"]"#
        );
    }

    #[test]
    fn any_change_changes_the_hash() {
        let base = event().compute_hash();
        let mut changed = event();
        changed.reason.push('!');
        assert_ne!(changed.compute_hash(), base);
        let mut relinked = event();
        relinked.prev_hash = "1".repeat(64);
        assert_ne!(relinked.compute_hash(), base);
    }
}
