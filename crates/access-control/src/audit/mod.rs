//! The audit log: append-only (the database refuses UPDATE and DELETE) and tamper-evident
//! (one SHA-256 hash chain per patient, plus a system chain for events about no patient).
//!
//! This module is the only writer of `audit_events`.
//!
//! Canonical encoding (what the hash covers): the JSON array
//! `[2, seq, id, occurred_at, actor_id, actor_name, actor_role, actor_clinic_id, on_behalf_of,
//!   patient_id, action, resource_type, resource_id, basis, outcome, reason,
//!   client_addr_commitment]`
//! serialised without white space (absent values as `null`, the leading encoding number and
//! seq as numbers, the rest strings), and `hash = hex(SHA-256(canonical || prev_hash))` where
//! `prev_hash` is the previous event's hash in the same chain as 64 lowercase hex characters
//! (64 zeros for the first event).
//!
//! The client address itself is not hashed, so that a patient's copy of their chain verifies
//! without showing staff network addresses: the hash covers
//! `client_addr_commitment = hex(HMAC-SHA256(key, client_addr))`, with a random 16-byte key per
//! event (`client_addr_key`, hex) that stays in the database beside the address. An auditor who
//! hands a patient an event's address and key lets them check it against their chain; no one
//! without the key can test guesses (all IPv4 addresses are only 2^32). A key per event rather
//! than one server key: nothing to configure, lose or rotate, and a patient cannot tell that two
//! events came from the same address. `portal audit verify` checks every commitment against the
//! stored address, so the address is as tamper-evident as the rest.
//!
//! Events stored before the commitment (encoding 1: no key, no commitment) keep the encoding
//! their hash was made with, `[seq, id, ..., reason, client_addr]` (16 elements, no leading 2):
//! a hash cannot be re-made without breaking the chain. The two encodings differ in length, so
//! a new event cannot be passed off as an old one by moving the commitment into `client_addr`.

pub mod log;
pub mod prune;
pub mod query;
pub mod statistics;
pub mod verify;
pub mod writer;

use hmac::{Hmac, Mac};
use rand::RngCore;
use std::collections::BTreeMap;

use records_domain::db::{ts, PortableQuery, Statement, UuidText};
use records_domain::model::PatientId;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::actor::{Actor, RequestContext};
use crate::AccessError;

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
pub const SYSTEM_CHAIN: &str = "system";
/// The canonical encoding of events appended now (see the module documentation).
pub const ENCODING: u8 = 2;
const ADDRESS_KEY_BYTES: usize = 16;

/// `hex(HMAC-SHA256(key, address))` for a hex key; `None` if the key is not hex.
pub fn address_commitment(key_hex: &str, address: &str) -> Option<String> {
    let key = hex::decode(key_hex).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(address.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

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

/// A stored event. Not `Serialize`: it holds the address and its key, which only auditors see;
/// what a patient downloads is `for_patient`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The per-event HMAC key of the address commitment (hex); `None` on encoding-1 events.
    pub client_addr_key: Option<String>,
    /// `hex(HMAC-SHA256(client_addr_key, client_addr))`, what the hash covers instead of the
    /// address; `None` on encoding-1 events.
    pub client_addr_commitment: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// The encoding this event's hash was made with: 2, or 1 for events stored before the
    /// address commitment.
    pub fn encoding(&self) -> u8 {
        if self.client_addr_commitment.is_some() {
            ENCODING
        } else {
            1
        }
    }

    pub fn canonical(&self) -> String {
        let fields = self.fields_both_encodings_cover();
        let array: Vec<Value> = match &self.client_addr_commitment {
            Some(commitment) => std::iter::once(json!(ENCODING))
                .chain(fields)
                .chain([json!(commitment)])
                .collect(),
            None => fields
                .into_iter()
                .chain([json!(self.client_addr)])
                .collect(),
        };
        Value::Array(array).to_string()
    }

    /// Encoding 2 puts its number before these and the address's commitment after them;
    /// encoding 1 has no number and puts the address itself after them.
    fn fields_both_encodings_cover(&self) -> [Value; 15] {
        [
            json!(self.seq),
            json!(self.id.to_string()),
            json!(self.occurred_at),
            json!(self.actor_id.map(|u| u.to_string())),
            json!(self.actor_name),
            json!(self.actor_role),
            json!(self.actor_clinic_id.map(|u| u.to_string())),
            json!(self.on_behalf_of),
            json!(self.patient_id.map(|u| u.to_string())),
            json!(self.action),
            json!(self.resource_type),
            json!(self.resource_id),
            json!(self.basis),
            json!(self.outcome),
            json!(self.reason),
        ]
    }

    /// What is wrong with the address's commitment, if anything: it must be the HMAC of the
    /// stored address under the stored key (encoding 2), or both must be absent (encoding 1).
    pub fn address_problem(&self) -> Option<&'static str> {
        match (&self.client_addr_key, &self.client_addr_commitment) {
            (None, None) => None,
            (Some(key), Some(commitment)) => (address_commitment(key, &self.client_addr).as_ref()
                != Some(commitment))
            .then_some("the client address does not match its commitment"),
            _ => Some("the client address has a commitment without a key, or a key without one"),
        }
    }

    /// The event as the patient downloads it with their chain: everything the hash covers,
    /// the commitment instead of the address, and never the key. Encoding-1 events are shown
    /// without their address; their hash covers it, so only an auditor can recompute it.
    pub fn for_patient(&self) -> Value {
        json!({
            "encoding": self.encoding(),
            "seq": self.seq,
            "id": self.id,
            "occurred_at": self.occurred_at,
            "actor_id": self.actor_id,
            "actor_name": self.actor_name,
            "actor_role": self.actor_role,
            "actor_clinic_id": self.actor_clinic_id,
            "on_behalf_of": self.on_behalf_of,
            "patient_id": self.patient_id,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "basis": self.basis,
            "outcome": self.outcome,
            "reason": self.reason,
            "client_addr_commitment": self.client_addr_commitment,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        })
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

/// Append one event to its chain, inside the caller's transaction.
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
    let mut stored = append_all(conn, vec![(event, occurred_at)]).await?;
    stored
        .pop()
        .ok_or_else(|| AccessError::AuditUnavailable("an append stored no event".into()))
}

/// Append events in the order given, inside the caller's transaction, in at most five
/// statements however many there are (the group-committing writer hands over hundreds at once):
/// claim the sequence numbers each chain needs and learn its head, insert every event, move the
/// heads, count clinicians' accesses into the statistics rollup, and queue the events for the
/// transparency log (`log::publish` takes them from there). Claiming serialises appends to the
/// same chain (a row lock on PostgreSQL, the write lock on SQLite) while other chains proceed;
/// chains are claimed in key order, so two instances' batches never wait on each other in a
/// cycle.
pub async fn append_all(
    conn: &mut AnyConnection,
    events: Vec<(NewEvent, OffsetDateTime)>,
) -> Result<Vec<AuditEvent>, AccessError> {
    let mut claims: BTreeMap<String, i64> = BTreeMap::new();
    for (event, _) in &events {
        *claims.entry(chain_key(event.patient_id)).or_default() += 1;
    }
    let mut heads = claim_heads(conn, &claims).await?;
    let stored: Vec<AuditEvent> = events
        .into_iter()
        .map(|(event, occurred_at)| {
            let chain = chain_key(event.patient_id);
            let head = heads.get_mut(&chain).ok_or_else(|| {
                AccessError::AuditUnavailable(format!("chain {chain} was not claimed"))
            })?;
            let stored = sealed(event, chain, head.next_seq, head.hash.clone(), occurred_at);
            head.next_seq += 1;
            head.hash.clone_from(&stored.hash);
            Ok(stored)
        })
        .collect::<Result<_, AccessError>>()?;
    for rows in stored.chunks(INSERT_ROWS) {
        insert_events(rows).build()?.execute(&mut *conn).await?;
    }
    set_heads(&heads).build()?.execute(&mut *conn).await?;
    statistics::add(conn, &stored).await?;
    log::enqueue(conn, &stored).await?;
    Ok(stored)
}

/// Rows per INSERT: 21 values each stays far below both engines' limit on bound values.
const INSERT_ROWS: usize = 256;

/// Where a chain stands while a batch is appended to it.
struct Head {
    next_seq: i64,
    hash: String,
}

/// Take `count` sequence numbers in each chain (creating chains not seen before) and return
/// the first number and the hash to chain from. The upsert returns the head's hash as it was,
/// since it changes only `last_seq`.
async fn claim_heads(
    conn: &mut AnyConnection,
    claims: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, Head>, AccessError> {
    let claimed: Vec<(String, i64, String)> = claim_query(claims)
        .build_query_as()?
        .fetch_all(&mut *conn)
        .await?;
    claimed
        .into_iter()
        .map(|(chain, last_seq, hash)| {
            let count = claims.get(&chain).copied().unwrap_or_default();
            let head = Head {
                next_seq: last_seq - count + 1,
                hash,
            };
            Ok((chain, head))
        })
        .collect()
}

fn claim_query(claims: &BTreeMap<String, i64>) -> PortableQuery<'static> {
    let mut query =
        PortableQuery::new("INSERT INTO audit_chains (chain_key, last_seq, last_hash) VALUES ");
    for (i, (chain, count)) in claims.iter().enumerate() {
        query
            .push(if i == 0 { "(" } else { ", (" })
            .push_bind("", chain.clone())
            .push_bind(", ", *count)
            .push_bind(", ", GENESIS_HASH)
            .push(")");
    }
    query.push(
        " ON CONFLICT (chain_key) DO UPDATE SET last_seq = audit_chains.last_seq + excluded.last_seq \
         RETURNING chain_key, last_seq, last_hash",
    );
    query
}

/// The event as it will be stored: its place in the chain, a fresh address key and commitment,
/// and its hash.
fn sealed(
    event: NewEvent,
    chain: String,
    seq: i64,
    prev_hash: String,
    occurred_at: OffsetDateTime,
) -> AuditEvent {
    let mut key = [0u8; ADDRESS_KEY_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let key = hex::encode(key);
    let commitment = address_commitment(&key, &event.client_addr);
    let mut stored = AuditEvent {
        id: Uuid::now_v7(),
        chain_key: chain,
        seq,
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
        client_addr_key: Some(key),
        client_addr_commitment: commitment,
        prev_hash,
        hash: String::new(),
    };
    stored.hash = stored.compute_hash();
    stored
}

fn insert_events(events: &[AuditEvent]) -> PortableQuery<'static> {
    let mut query = PortableQuery::new(concat!(
        "INSERT INTO audit_events (",
        crate::audit_event_columns!(),
        ") VALUES "
    ));
    for (i, e) in events.iter().enumerate() {
        query
            .push(if i == 0 { "(" } else { ", (" })
            .push_bind("", UuidText(e.id))
            .push_bind(", ", e.chain_key.clone())
            .push_bind(", ", e.seq)
            .push_bind(", ", e.occurred_at.clone())
            .push_bind(", ", e.actor_id.map(UuidText))
            .push_bind(", ", e.actor_name.clone())
            .push_bind(", ", e.actor_role.clone())
            .push_bind(", ", e.actor_clinic_id.map(UuidText))
            .push_bind(", ", e.on_behalf_of.clone())
            .push_bind(", ", e.patient_id.map(UuidText))
            .push_bind(", ", e.action.clone())
            .push_bind(", ", e.resource_type.clone())
            .push_bind(", ", e.resource_id.clone())
            .push_bind(", ", e.basis.clone())
            .push_bind(", ", e.outcome.clone())
            .push_bind(", ", e.reason.clone())
            .push_bind(", ", e.client_addr.clone())
            .push_bind(", ", e.client_addr_key.clone())
            .push_bind(", ", e.client_addr_commitment.clone())
            .push_bind(", ", e.prev_hash.clone())
            .push_bind(", ", e.hash.clone())
            .push(")");
    }
    query
}

/// Move every claimed chain's head to its last new event. Each chain exists (claimed in this
/// transaction), so the upsert only ever updates.
fn set_heads(heads: &BTreeMap<String, Head>) -> PortableQuery<'static> {
    let mut query =
        PortableQuery::new("INSERT INTO audit_chains (chain_key, last_seq, last_hash) VALUES ");
    for (i, (chain, head)) in heads.iter().enumerate() {
        query
            .push(if i == 0 { "(" } else { ", (" })
            .push_bind("", chain.clone())
            .push_bind(", ", head.next_seq - 1)
            .push_bind(", ", head.hash.clone())
            .push(")");
    }
    query.push(" ON CONFLICT (chain_key) DO UPDATE SET last_hash = excluded.last_hash");
    query
}

/// The columns `EventRow` reads, in a macro so that statements can `concat!` them.
#[macro_export]
#[doc(hidden)]
macro_rules! audit_event_columns {
    () => {
        "id, chain_key, seq, occurred_at, actor_id, actor_name, actor_role, actor_clinic_id, \
         on_behalf_of, patient_id, action, resource_type, resource_id, basis, outcome, reason, \
         client_addr, client_addr_key, client_addr_commitment, prev_hash, hash"
    };
}

/// The batch statements as a batch of two events in two chains (one with a patient, one
/// without: every optional column bound both ways) sends them.
fn batch_statements() -> Vec<Statement> {
    let event = |patient_id| NewEvent {
        actor_id: Some(Uuid::nil()),
        actor_name: "statement check".into(),
        actor_role: "system".into(),
        actor_clinic_id: None,
        on_behalf_of: None,
        patient_id,
        action: "read".into(),
        resource_type: "patient".into(),
        resource_id: None,
        basis: String::new(),
        outcome: Outcome::Allowed,
        reason: String::new(),
        client_addr: "unknown".into(),
    };
    let now = OffsetDateTime::UNIX_EPOCH;
    let events = [Some(PatientId(Uuid::nil())), None].map(|patient| {
        let chain = chain_key(patient);
        sealed(event(patient), chain, 1, GENESIS_HASH.into(), now)
    });
    let claims = events.iter().map(|e| (e.chain_key.clone(), 1)).collect();
    let heads = events
        .iter()
        .map(|e| {
            let head = Head {
                next_seq: 2,
                hash: e.hash.clone(),
            };
            (e.chain_key.clone(), head)
        })
        .collect();
    vec![
        Statement::new("audit::claim_heads", claim_query(&claims).sql().to_string()),
        Statement::new(
            "audit::insert_events",
            insert_events(&events).sql().to_string(),
        ),
        Statement::new("audit::set_heads", set_heads(&heads).sql().to_string()),
    ]
}

pub(crate) fn statements() -> Vec<Statement> {
    let mut all = batch_statements();
    all.extend(query::statements());
    all.extend(statistics::statements());
    all.extend(prune::statements());
    all.extend(verify::statements());
    all.extend(log::statements());
    all
}

/// A stored event as read. Times and the texts the hash covers stay as stored: the hash is
/// recomputed from exactly these characters.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: UuidText,
    chain_key: String,
    seq: i64,
    occurred_at: String,
    actor_id: Option<UuidText>,
    actor_name: String,
    actor_role: String,
    actor_clinic_id: Option<UuidText>,
    on_behalf_of: Option<String>,
    patient_id: Option<UuidText>,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    basis: String,
    outcome: String,
    reason: String,
    client_addr: String,
    client_addr_key: Option<String>,
    client_addr_commitment: Option<String>,
    prev_hash: String,
    hash: String,
}

impl From<EventRow> for AuditEvent {
    fn from(row: EventRow) -> Self {
        AuditEvent {
            id: row.id.0,
            chain_key: row.chain_key,
            seq: row.seq,
            occurred_at: row.occurred_at,
            actor_id: row.actor_id.map(Uuid::from),
            actor_name: row.actor_name,
            actor_role: row.actor_role,
            actor_clinic_id: row.actor_clinic_id.map(Uuid::from),
            on_behalf_of: row.on_behalf_of,
            patient_id: row.patient_id.map(Uuid::from),
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            basis: row.basis,
            outcome: row.outcome,
            reason: row.reason,
            client_addr: row.client_addr,
            client_addr_key: row.client_addr_key,
            client_addr_commitment: row.client_addr_commitment,
            prev_hash: row.prev_hash,
            hash: row.hash,
        }
    }
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
            client_addr_key: None,
            client_addr_commitment: None,
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    fn event_v2() -> AuditEvent {
        let key = "000102030405060708090a0b0c0d0e0f".to_string();
        AuditEvent {
            client_addr_commitment: address_commitment(&key, "127.0.0.1"),
            client_addr_key: Some(key),
            ..event()
        }
    }

    #[test]
    fn canonical_encoding_covers_the_commitment_not_the_address() {
        let e = event_v2();
        let commitment = e.client_addr_commitment.clone().unwrap();
        assert_eq!(
            e.canonical(),
            format!(
                r#"[2,1,"00000000-0000-0000-0000-000000000007","2026-11-25T12:00:00.000000Z",null,"x","anonymous",null,null,null,"login","",null,"","failure","wrong password","{commitment}"]"#
            )
        );
        assert!(!e.canonical().contains("127.0.0.1"));
        assert_eq!(e.address_problem(), None);
        let mut moved = e.clone();
        moved.client_addr = "10.9.8.7".into();
        assert_eq!(
            moved.compute_hash(),
            e.compute_hash(),
            "the hash alone does not see it"
        );
        assert!(moved.address_problem().is_some(), "the commitment does");
        let mut passed_off_as_old = e.clone();
        passed_off_as_old.client_addr = commitment;
        passed_off_as_old.client_addr_key = None;
        passed_off_as_old.client_addr_commitment = None;
        assert_ne!(passed_off_as_old.compute_hash(), e.compute_hash());
    }

    #[test]
    fn the_patients_copy_has_the_commitment_never_the_address_or_key() {
        for e in [event(), event_v2()] {
            let copy = e.for_patient();
            let text = copy.to_string();
            assert!(!text.contains("127.0.0.1") && !text.contains("client_addr_key"));
            assert_eq!(copy["encoding"], e.encoding());
            assert_eq!(
                copy["client_addr_commitment"].as_str(),
                e.client_addr_commitment.as_deref()
            );
        }
        assert_eq!(event().encoding(), 1);
        assert_eq!(event_v2().encoding(), 2);
    }

    #[test]
    fn the_commitment_is_hmac_sha256_of_the_address() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            address_commitment(&hex::encode("Jefe"), "what do ya want for nothing?").unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(address_commitment("not hex", "127.0.0.1"), None);
    }

    /// Events stored before the address commitment keep verifying as they were hashed.
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
