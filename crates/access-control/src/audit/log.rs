//! The transparency log: one RFC 9162 Merkle tree over every audit event, signed checkpoints
//! of it, witness cosignatures, proofs, and the check that compares what is stored with what
//! was signed. The tree, the notes and the proofs are the `transparency-log` crate's; this
//! module keeps them in the database.
//!
//! An event's leaf is its canonical encoding (`AuditEvent::canonical`), the same bytes its
//! chain hash covers, so a patient's download shows what each event says.
//!
//! Sequencing is Trillian's: appending an event queues it (one more insert in the append's
//! own transaction), and `publish` moves queued events into the tree in batches and signs a
//! checkpoint of the new size. Appends never wait for one another on the tree; only `publish`
//! serialises, on the head row, so several instances may all run it.

use std::collections::HashMap;

use futures::TryStreamExt;
use records_domain::db::{ts, PortableQuery, Statement, UuidText};
use records_domain::model::PatientId;
use records_domain::{Db, DomainError};
use sqlx::AnyConnection;
use time::OffsetDateTime;
use transparency_log::{
    AuditDownload, Checkpoint, DownloadedEvent, Frontier, Hash, NodeId, ProofPlan, SignedNote,
    SignerKey, VerifierKey, DOWNLOAD_FORMAT,
};

use super::{AuditEvent, EventRow};
use crate::AccessError;

/// Events one `publish` moves into the tree; a longer queue takes several rounds. Small enough
/// that a round holds SQLite's write lock for milliseconds, not the audit writer's seconds.
pub const PUBLISH_BATCH: i64 = 2_000;
/// Rows per multi-row statement, far below both engines' limits on bound values.
const ROWS: usize = 256;

const PENDING: &str =
    "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM audit_log_queue LIMIT 1) AS q), \
     (SELECT size FROM audit_log_head WHERE id = 1), \
     (SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints)";
/// Taken first, so that two publishers (two instances) wait for each other on PostgreSQL;
/// SQLite's write transaction already excludes the other.
const LOCK_HEAD: &str = "UPDATE audit_log_head SET size = size WHERE id = 1";
const HEAD: &str = "SELECT size, frontier FROM audit_log_head WHERE id = 1";
const QUEUED: &str = concat!(
    "SELECT ",
    crate::audit_event_columns!(),
    " FROM audit_log_queue JOIN audit_events ON audit_events.id = audit_log_queue.event_id \
     ORDER BY audit_log_queue.event_id LIMIT $1"
);
const MOVE_HEAD: &str = "UPDATE audit_log_head SET size = $1, frontier = $2 WHERE id = 1";
const LATEST_SIZE: &str = "SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints";
const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (size, root, note, signed_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING";
const CHECKPOINTS: &str =
    "SELECT size, root, note, signed_at FROM audit_checkpoints ORDER BY size DESC LIMIT $1";
const CHECKPOINT_AT: &str =
    "SELECT size, root, note, signed_at FROM audit_checkpoints WHERE size = $1";
const ALL_CHECKPOINTS: &str =
    "SELECT size, root, note, signed_at FROM audit_checkpoints ORDER BY size";
const COSIGNATURES: &str =
    "SELECT witness, signature FROM audit_checkpoint_cosignatures WHERE size = $1 ORDER BY witness";
const LATEST_COSIGNED: &str = "SELECT MAX(size) FROM audit_checkpoint_cosignatures";
const INSERT_COSIGNATURE: &str =
    "INSERT INTO audit_checkpoint_cosignatures (size, witness, signature) \
     VALUES ($1, $2, $3) ON CONFLICT (size, witness) DO NOTHING";
const PATIENT_LEAVES: &str = concat!(
    "SELECT leaf_index, ",
    crate::audit_event_columns!(),
    " FROM audit_events JOIN (SELECT event_id, leaf_index FROM audit_log_leaves) AS l \
     ON l.event_id = audit_events.id WHERE patient_id = $1 AND leaf_index < $2 \
     ORDER BY leaf_index"
);
const EVENT_LEAF: &str = concat!(
    "SELECT leaf_index, ",
    crate::audit_event_columns!(),
    " FROM audit_events JOIN (SELECT event_id, leaf_index FROM audit_log_leaves) AS l \
     ON l.event_id = audit_events.id WHERE id = $1"
);
const LEAF_HASHES: &str =
    "SELECT node_index, hash FROM audit_log_nodes WHERE level = 0 ORDER BY node_index";
const LOGGED_EVENTS: &str = concat!(
    "SELECT leaf_index, leaf_hash, ",
    crate::audit_event_columns!(),
    " FROM audit_events JOIN (SELECT audit_log_leaves.event_id, audit_log_leaves.leaf_index, \
     audit_log_nodes.hash AS leaf_hash FROM audit_log_leaves JOIN audit_log_nodes \
     ON audit_log_nodes.level = 0 AND audit_log_nodes.node_index = audit_log_leaves.leaf_index) AS l \
     ON l.event_id = audit_events.id ORDER BY leaf_index"
);
/// Leaves whose event is gone although its chain was not pruned past it.
const VANISHED: &str = "SELECT l.leaf_index, l.chain_key, l.seq FROM audit_log_leaves l \
     LEFT JOIN audit_events e ON e.id = l.event_id \
     LEFT JOIN audit_chains c ON c.chain_key = l.chain_key \
     WHERE e.id IS NULL AND (c.chain_key IS NULL OR l.seq > c.pruned_through_seq) \
     ORDER BY l.leaf_index";
/// Leaves of the tree that no longer say which event they are: an event deleted together with
/// its leaf row (and perhaps queued again to be logged anew, changed).
const UNNAMED_LEAVES: &str = "SELECT n.node_index FROM audit_log_nodes n \
     LEFT JOIN audit_log_leaves l ON l.leaf_index = n.node_index \
     WHERE n.level = 0 AND l.leaf_index IS NULL ORDER BY n.node_index LIMIT 100";
/// Queued events that no longer exist (pruned before they were logged): they would keep the
/// publisher's fast path from ever applying. Swept by the round that drains the queue, when
/// they are all that is left of it: an anti-join of a backlog of millions on every round
/// spilled to disk and took minutes each.
const ORPHANED_QUEUE: &str = "DELETE FROM audit_log_queue WHERE NOT EXISTS \
     (SELECT 1 FROM audit_events e WHERE e.id = audit_log_queue.event_id)";
/// Events that are neither in the tree nor waiting for it: written behind the log's back.
const UNLOGGED: &str = "SELECT e.id, e.chain_key, e.seq FROM audit_events e \
     WHERE NOT EXISTS (SELECT 1 FROM audit_log_leaves l WHERE l.event_id = e.id) \
     AND NOT EXISTS (SELECT 1 FROM audit_log_queue q WHERE q.event_id = e.id) \
     ORDER BY e.chain_key, e.seq";

pub(crate) fn statements() -> Vec<Statement> {
    let mut all = records_domain::statements!("audit::log":
        PENDING, LOCK_HEAD, HEAD, QUEUED, MOVE_HEAD, LATEST_SIZE, INSERT_CHECKPOINT, CHECKPOINTS,
        CHECKPOINT_AT, ALL_CHECKPOINTS, COSIGNATURES, LATEST_COSIGNED, INSERT_COSIGNATURE,
        PATIENT_LEAVES, EVENT_LEAF, LEAF_HASHES, LOGGED_EVENTS, VANISHED, UNNAMED_LEAVES, ORPHANED_QUEUE, UNLOGGED);
    let two = [UuidText(uuid::Uuid::nil()), UuidText(uuid::Uuid::max())];
    all.push(Statement::new(
        "audit::log::queue",
        queue(&two).sql().to_string(),
    ));
    all.push(Statement::new(
        "audit::log::dequeue",
        dequeue(&two).sql().to_string(),
    ));
    let leaf = Leaf {
        index: 0,
        event_id: two[0],
        chain_key: "system".into(),
        seq: 1,
    };
    all.push(Statement::new(
        "audit::log::insert_leaves",
        insert_leaves(&[leaf.clone(), leaf]).sql().to_string(),
    ));
    let node = (NodeId { level: 0, index: 0 }, Hash::empty());
    all.push(Statement::new(
        "audit::log::insert_nodes",
        insert_nodes(&[node, node]).sql().to_string(),
    ));
    all.push(Statement::new(
        "audit::log::nodes",
        select_nodes(&[node.0, node.0]).sql().to_string(),
    ));
    all
}

/// The leaf of an event: the bytes its chain hash covers.
pub fn leaf_data(event: &AuditEvent) -> Vec<u8> {
    event.canonical().into_bytes()
}

/// Queue appended events for the tree, inside the append's transaction.
pub(super) async fn enqueue(
    conn: &mut AnyConnection,
    events: &[AuditEvent],
) -> Result<(), AccessError> {
    let ids: Vec<UuidText> = events.iter().map(|e| UuidText(e.id)).collect();
    for chunk in ids.chunks(ROWS) {
        queue(chunk).build()?.execute(&mut *conn).await?;
    }
    Ok(())
}

fn queue(ids: &[UuidText]) -> PortableQuery<'static> {
    let mut query = PortableQuery::new("INSERT INTO audit_log_queue (event_id) VALUES ");
    for (i, id) in ids.iter().enumerate() {
        query
            .push_bind(if i == 0 { "(" } else { ", (" }, *id)
            .push(")");
    }
    query
}

fn dequeue(ids: &[UuidText]) -> PortableQuery<'static> {
    let mut query = PortableQuery::new("DELETE FROM audit_log_queue WHERE event_id IN (");
    for (i, id) in ids.iter().enumerate() {
        query.push_bind(if i == 0 { "" } else { ", " }, *id);
    }
    query.push(")");
    query
}

#[derive(Clone)]
struct Leaf {
    index: u64,
    event_id: UuidText,
    chain_key: String,
    seq: i64,
}

fn insert_leaves(leaves: &[Leaf]) -> PortableQuery<'static> {
    let mut query = PortableQuery::new(
        "INSERT INTO audit_log_leaves (leaf_index, event_id, chain_key, seq) VALUES ",
    );
    for (i, leaf) in leaves.iter().enumerate() {
        query
            .push_bind(if i == 0 { "(" } else { ", (" }, as_i64(leaf.index))
            .push_bind(", ", leaf.event_id)
            .push_bind(", ", leaf.chain_key.clone())
            .push_bind(", ", leaf.seq)
            .push(")");
    }
    query
}

fn insert_nodes(nodes: &[(NodeId, Hash)]) -> PortableQuery<'static> {
    let mut query =
        PortableQuery::new("INSERT INTO audit_log_nodes (level, node_index, hash) VALUES ");
    for (i, (id, hash)) in nodes.iter().enumerate() {
        query
            .push_bind(if i == 0 { "(" } else { ", (" }, i64::from(id.level))
            .push_bind(", ", as_i64(id.index))
            .push_bind(", ", hash.to_hex())
            .push(")");
    }
    query
}

fn select_nodes(ids: &[NodeId]) -> PortableQuery<'static> {
    let mut query =
        PortableQuery::new("SELECT level, node_index, hash FROM audit_log_nodes WHERE ");
    for (i, id) in ids.iter().enumerate() {
        query
            .push_bind(
                if i == 0 { "(level = " } else { " OR (level = " },
                i64::from(id.level),
            )
            .push_bind(" AND node_index = ", as_i64(id.index))
            .push(")");
    }
    query
}

/// Tree sizes and indexes are u64 in the crate and BIGINT in the database; a tree of 2^63
/// events is not a case to handle.
fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn as_u64(n: i64) -> Result<u64, AccessError> {
    u64::try_from(n).map_err(|_| AccessError::AuditUnavailable(format!("negative tree index {n}")))
}

fn hash_from_hex(text: &str) -> Result<Hash, AccessError> {
    let bytes = hex::decode(text)
        .map_err(|_| AccessError::AuditUnavailable(format!("stored hash {text:?} is not hex")))?;
    Ok(Hash::from_slice(&bytes)?)
}

/// What one `publish` round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The tree's size afterwards.
    pub size: u64,
    /// The size of the checkpoint it signed, if it signed one.
    pub signed: Option<u64>,
    /// Whether events are still queued (the round took a full batch).
    pub more: bool,
}

/// Move queued events into the tree and sign a checkpoint of the new size. Does nothing, and
/// takes no write lock, when no event is queued and the current size is signed.
pub async fn publish(db: &Db, key: &SignerKey) -> Result<Published, AccessError> {
    let (queued, size, signed): (i64, i64, i64) = {
        let mut conn = db.pool().acquire().await?;
        sqlx::query_as(PENDING).fetch_one(&mut *conn).await?
    };
    if queued == 0 && size == signed {
        return Ok(Published {
            size: as_u64(size)?,
            signed: None,
            more: false,
        });
    }
    let mut tx = db.begin_write().await?;
    sqlx::query(LOCK_HEAD).execute(&mut *tx).await?;
    let mut frontier = head(&mut tx).await?;
    let events: Vec<AuditEvent> = sqlx::query_as::<_, EventRow>(QUEUED)
        .bind(PUBLISH_BATCH)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(AuditEvent::from)
        .collect();
    integrate(&mut tx, &mut frontier, &events).await?;
    let more = events.len() as i64 == PUBLISH_BATCH;
    if !more {
        sqlx::query(ORPHANED_QUEUE).execute(&mut *tx).await?;
    }
    let signed = sign_if_grown(&mut tx, &frontier, key).await?;
    tx.commit().await.map_err(DomainError::from)?;
    Ok(Published {
        size: frontier.size(),
        signed,
        more,
    })
}

async fn head(conn: &mut AnyConnection) -> Result<Frontier, AccessError> {
    let (size, frontier): (i64, String) = sqlx::query_as(HEAD).fetch_one(&mut *conn).await?;
    let bytes = hex::decode(&frontier)
        .map_err(|_| AccessError::AuditUnavailable("the tree's frontier is not hex".into()))?;
    Ok(Frontier::from_bytes(as_u64(size)?, &bytes)?)
}

/// Append `events` to the tree: their leaves, the subtrees they complete, the new head, and
/// take them off the queue.
async fn integrate(
    conn: &mut AnyConnection,
    frontier: &mut Frontier,
    events: &[AuditEvent],
) -> Result<(), AccessError> {
    let mut leaves = Vec::with_capacity(events.len());
    let mut nodes = Vec::with_capacity(events.len() * 2);
    for event in events {
        leaves.push(Leaf {
            index: frontier.size(),
            event_id: UuidText(event.id),
            chain_key: event.chain_key.clone(),
            seq: event.seq,
        });
        nodes.extend(frontier.append(Hash::leaf(&leaf_data(event))));
    }
    for chunk in leaves.chunks(ROWS) {
        insert_leaves(chunk).build()?.execute(&mut *conn).await?;
    }
    for chunk in nodes.chunks(ROWS) {
        insert_nodes(chunk).build()?.execute(&mut *conn).await?;
    }
    let ids: Vec<UuidText> = leaves.iter().map(|l| l.event_id).collect();
    for chunk in ids.chunks(ROWS) {
        dequeue(chunk).build()?.execute(&mut *conn).await?;
    }
    sqlx::query(MOVE_HEAD)
        .bind(as_i64(frontier.size()))
        .bind(hex::encode(frontier.to_bytes()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn sign_if_grown(
    conn: &mut AnyConnection,
    frontier: &Frontier,
    key: &SignerKey,
) -> Result<Option<u64>, AccessError> {
    let latest: i64 = sqlx::query_scalar(LATEST_SIZE)
        .fetch_one(&mut *conn)
        .await?;
    let size = frontier.size();
    if size == 0 || size <= as_u64(latest)? {
        return Ok(None);
    }
    let root = frontier.root();
    let note = Checkpoint::new(key.name(), size, root).sign(key)?;
    sqlx::query(INSERT_CHECKPOINT)
        .bind(as_i64(size))
        .bind(root.to_hex())
        .bind(note.to_string())
        .bind(ts(OffsetDateTime::now_utc()))
        .execute(&mut *conn)
        .await?;
    Ok(Some(size))
}

/// A signed checkpoint as stored, with the cosignatures witnesses sent for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub signed_at: String,
    /// The signed note with every stored cosignature line: what is served and downloaded.
    pub note: String,
    /// The witnesses whose cosignature lines `note` carries.
    pub witnesses: Vec<String>,
}

type CheckpointRow = (i64, String, String, String);

async fn with_cosignatures(
    conn: &mut AnyConnection,
    (size, root, note, signed_at): CheckpointRow,
) -> Result<StoredCheckpoint, AccessError> {
    let lines: Vec<(String, String)> = sqlx::query_as(COSIGNATURES)
        .bind(size)
        .fetch_all(&mut *conn)
        .await?;
    let mut note = note;
    let mut witnesses = Vec::with_capacity(lines.len());
    for (witness, line) in lines {
        note.push_str(&line);
        witnesses.push(witness);
    }
    Ok(StoredCheckpoint {
        size: as_u64(size)?,
        root: hash_from_hex(&root)?,
        signed_at,
        note,
        witnesses,
    })
}

/// The newest checkpoints, newest first.
pub async fn checkpoints(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<StoredCheckpoint>, AccessError> {
    let rows: Vec<CheckpointRow> = sqlx::query_as(CHECKPOINTS)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let mut all = Vec::with_capacity(rows.len());
    for row in rows {
        all.push(with_cosignatures(conn, row).await?);
    }
    Ok(all)
}

pub async fn checkpoint_at(
    conn: &mut AnyConnection,
    size: u64,
) -> Result<Option<StoredCheckpoint>, AccessError> {
    let row: Option<CheckpointRow> = sqlx::query_as(CHECKPOINT_AT)
        .bind(as_i64(size))
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(Some(with_cosignatures(conn, row).await?)),
        None => Ok(None),
    }
}

/// The checkpoint a patient's proofs should lead to: the newest a witness cosigned, as a
/// patient cannot tell a forked log from the real one by the log's signature alone; the newest
/// of all while no witness has cosigned any.
pub async fn preferred_checkpoint(
    conn: &mut AnyConnection,
) -> Result<Option<StoredCheckpoint>, AccessError> {
    let cosigned: Option<i64> = sqlx::query_scalar(LATEST_COSIGNED)
        .fetch_one(&mut *conn)
        .await?;
    match cosigned {
        Some(size) => checkpoint_at(conn, as_u64(size)?).await,
        None => Ok(checkpoints(conn, 1).await?.pop()),
    }
}

/// Fetch the stored nodes `ids` names, a few statements for any number.
async fn nodes(
    conn: &mut AnyConnection,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, AccessError> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS) {
        let rows: Vec<(i64, i64, String)> = select_nodes(chunk)
            .build_query_as()?
            .fetch_all(&mut *conn)
            .await?;
        for (level, index, hash) in rows {
            let id = NodeId {
                level: u8::try_from(level).map_err(|_| {
                    AccessError::AuditUnavailable(format!("stored node level {level}"))
                })?,
                index: as_u64(index)?,
            };
            found.insert(id, hash_from_hex(&hash)?);
        }
    }
    Ok(found)
}

/// The RFC 9162 consistency proof from the tree of `old` leaves to the tree of `new`.
pub async fn consistency_proof(
    conn: &mut AnyConnection,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, AccessError> {
    let plan = ProofPlan::consistency(old, new)?;
    let found = nodes(conn, &plan.nodes()).await?;
    Ok(plan.assemble(|id| found.get(&id).copied())?)
}

#[derive(sqlx::FromRow)]
struct LeafEventRow {
    leaf_index: i64,
    #[sqlx(flatten)]
    event: EventRow,
}

/// A patient's download: each of their events in the signed log, with its inclusion proof,
/// against the newest witnessed checkpoint if it covers every access by others than `owner`
/// (the patient's user), else the newest. Events stored before the address commitment (encoding 1) are left out: their
/// canonical bytes hold a staff member's network address, which is not the patient's to see.
pub async fn download_for(
    conn: &mut AnyConnection,
    patient: PatientId,
    owner: uuid::Uuid,
    keys: &DownloadKeys<'_>,
) -> Result<Option<AuditDownload>, AccessError> {
    let Some(newest) = checkpoints(conn, 1).await?.pop() else {
        return Ok(None);
    };
    let rows: Vec<LeafEventRow> = sqlx::query_as(PATIENT_LEAVES)
        .bind(UuidText(patient.0))
        .bind(as_i64(newest.size))
        .fetch_all(&mut *conn)
        .await?;
    // A witnessed checkpoint is the stronger evidence, but only if it covers every access by
    // anyone but the owner (whose own latest action is this download): a witness that fell
    // behind must not hide recent accesses.
    let last_leaf = rows
        .iter()
        .filter(|r| r.event.actor_id.map(|id| id.0) != Some(owner))
        .map(|r| r.leaf_index)
        .max()
        .unwrap_or(-1);
    let checkpoint = match preferred_checkpoint(conn).await? {
        Some(witnessed) if as_i64(witnessed.size) > last_leaf => witnessed,
        _ => newest,
    };
    let events = rows
        .into_iter()
        .filter(|row| row.leaf_index < as_i64(checkpoint.size))
        .map(|row| Ok((as_u64(row.leaf_index)?, AuditEvent::from(row.event))))
        .filter(|e: &Result<(u64, AuditEvent), AccessError>| {
            e.as_ref()
                .map_or(true, |(_, event)| event.encoding() == super::ENCODING)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(download(conn, checkpoint, events, keys).await?))
}

/// One event's proof, in the download format: what an auditor hands someone to show that
/// this event is in the log. Against the checkpoint a patient would get if it covers the
/// event, else the newest; `None` while the event is not yet in a signed tree.
pub async fn download_of_event(
    conn: &mut AnyConnection,
    event: uuid::Uuid,
    keys: &DownloadKeys<'_>,
) -> Result<Option<AuditDownload>, AccessError> {
    let row: Option<LeafEventRow> = sqlx::query_as(EVENT_LEAF)
        .bind(UuidText(event))
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let index = as_u64(row.leaf_index)?;
    let covering = match preferred_checkpoint(conn).await? {
        Some(c) if c.size > index => Some(c),
        _ => checkpoints(conn, 1).await?.pop().filter(|c| c.size > index),
    };
    let Some(checkpoint) = covering else {
        return Ok(None);
    };
    let events = vec![(index, AuditEvent::from(row.event))];
    Ok(Some(download(conn, checkpoint, events, keys).await?))
}

/// The keys a download names: the log's, and the witnesses' the portal trusts.
pub struct DownloadKeys<'a> {
    pub log: VerifierKey,
    pub witnesses: &'a [VerifierKey],
}

async fn download(
    conn: &mut AnyConnection,
    checkpoint: StoredCheckpoint,
    events: Vec<(u64, AuditEvent)>,
    keys: &DownloadKeys<'_>,
) -> Result<AuditDownload, AccessError> {
    let mut plans = Vec::with_capacity(events.len());
    let mut wanted = Vec::new();
    for (index, event) in events {
        let plan = ProofPlan::inclusion(index, checkpoint.size)?;
        wanted.extend(plan.nodes());
        plans.push((index, event, plan));
    }
    wanted.sort_unstable();
    wanted.dedup();
    let found = nodes(conn, &wanted).await?;
    let mut downloaded = Vec::with_capacity(plans.len());
    for (leaf_index, event, plan) in plans {
        downloaded.push(DownloadedEvent {
            leaf_index,
            entry: base64_of(&leaf_data(&event)),
            inclusion_proof: plan.assemble(|id| found.get(&id).copied())?,
        });
    }
    let witness_keys = keys
        .witnesses
        .iter()
        .filter(|key| checkpoint.witnesses.iter().any(|name| name == key.name()))
        .map(ToString::to_string)
        .collect();
    Ok(AuditDownload {
        format: DOWNLOAD_FORMAT.to_string(),
        log_key: keys.log.to_string(),
        witness_keys,
        checkpoint: checkpoint.note,
        events: downloaded,
    })
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Keep the cosignatures of configured witnesses on one of this log's checkpoints. Returns
/// how many were new. Anyone may send one; only a line that verifies with a configured
/// witness key on a checkpoint the portal signed is stored, once per witness and checkpoint.
pub async fn add_cosignatures(
    db: &Db,
    cosigned: &str,
    log_key: &VerifierKey,
    witness_keys: &[VerifierKey],
) -> Result<usize, AccessError> {
    let note = SignedNote::parse(cosigned)?;
    let checkpoint = Checkpoint::open(&note, log_key)?;
    // Every check that needs no database first, and no write lock at all: anyone may send this.
    let lines: Vec<(&VerifierKey, String)> = witness_keys
        .iter()
        .filter(|key| matches!(note.verify(key), Ok(Some(_))))
        .flat_map(|key| {
            note.signature_lines_of(key)
                .into_iter()
                .map(move |l| (key, l))
        })
        .collect();
    if lines.is_empty() {
        return Err(AccessError::invalid(
            "the note carries no cosignature of a witness this portal trusts",
        ));
    }
    let mut conn = db.pool().acquire().await?;
    let stored = checkpoint_at(&mut conn, checkpoint.size).await?;
    if stored.is_none_or(|stored| stored.root != checkpoint.root) {
        return Err(AccessError::invalid(
            "the log never signed a checkpoint of that size and root",
        ));
    }
    let mut added = 0;
    for (key, line) in lines {
        added += sqlx::query(INSERT_COSIGNATURE)
            .bind(as_i64(checkpoint.size))
            .bind(key.name().to_string())
            .bind(line)
            .execute(&mut *conn)
            .await?
            .rows_affected() as usize;
    }
    Ok(added)
}

/// What `verify_log` found.
#[derive(Debug, Default, Clone)]
pub struct LogReport {
    /// Leaves in the stored tree.
    pub size: u64,
    /// Checkpoints checked, stored and given from outside.
    pub checkpoints: u64,
    pub problems: Vec<String>,
}

/// Check the stored log against every signed checkpoint, stored or handed in from outside (a
/// witness's copy): each signature, the tree rebuilt from the stored leaves against each
/// checkpoint's root, each logged event against its leaf, and no event vanished from or
/// slipped past the log. Run inside the caller's snapshot.
pub async fn verify_log(
    conn: &mut AnyConnection,
    log_keys: &[VerifierKey],
    outside: &[String],
) -> Result<LogReport, AccessError> {
    let mut report = LogReport::default();
    let signed = signed_checkpoints(conn, log_keys, outside, &mut report).await?;
    rebuild_against(conn, &signed, &mut report).await?;
    check_events_against_leaves(conn, &mut report).await?;
    Ok(report)
}

/// Every checkpoint whose signature verifies, by size (a size signed with two roots is a fork,
/// reported and kept both times).
async fn signed_checkpoints(
    conn: &mut AnyConnection,
    log_keys: &[VerifierKey],
    outside: &[String],
    report: &mut LogReport,
) -> Result<Vec<(Checkpoint, String)>, AccessError> {
    let stored: Vec<CheckpointRow> = sqlx::query_as(ALL_CHECKPOINTS).fetch_all(conn).await?;
    let notes = stored
        .into_iter()
        .map(|(size, _, note, signed_at)| (note, format!("checkpoint {size} signed {signed_at}")))
        .chain(
            outside
                .iter()
                .enumerate()
                .map(|(i, note)| (note.clone(), format!("outside checkpoint {}", i + 1))),
        );
    let mut signed: Vec<(Checkpoint, String)> = Vec::new();
    for (note, label) in notes {
        report.checkpoints += 1;
        let opened = SignedNote::parse(&note)
            .map_err(AccessError::from)
            .and_then(|note| {
                log_keys
                    .iter()
                    .find_map(|key| Checkpoint::open(&note, key).ok())
                    .ok_or_else(|| AccessError::invalid("no log key verifies its signature"))
            });
        match opened {
            Ok(checkpoint) => {
                if let Some((other, other_label)) = signed
                    .iter()
                    .find(|(c, _)| c.size == checkpoint.size && c.root != checkpoint.root)
                {
                    report.problems.push(format!(
                        "{label} and {other_label} sign two different trees of size {} (the log was forked)",
                        other.size
                    ));
                }
                signed.push((checkpoint, label));
            }
            Err(e) => report.problems.push(format!("{label}: {e}")),
        }
    }
    signed.sort_by_key(|(c, _)| c.size);
    Ok(signed)
}

/// Rebuild the tree from the stored leaf hashes, in order, and compare its root at each
/// checkpoint's size with the signed one.
async fn rebuild_against(
    conn: &mut AnyConnection,
    signed: &[(Checkpoint, String)],
    report: &mut LogReport,
) -> Result<(), AccessError> {
    let mut frontier = Frontier::new();
    let mut pending = signed.iter().peekable();
    let mut last_good = 0u64;
    let mut compare = |frontier: &Frontier, report: &mut LogReport, last_good: &mut u64| {
        while let Some((checkpoint, label)) = pending.next_if(|(c, _)| c.size == frontier.size()) {
            if checkpoint.root == frontier.root() {
                *last_good = checkpoint.size;
            } else {
                report.problems.push(format!(
                    "the stored tree of size {} differs from {label}: an event among leaves {} to {} was changed or removed after it was signed",
                    checkpoint.size,
                    *last_good,
                    checkpoint.size.saturating_sub(1)
                ));
            }
        }
    };
    {
        let mut rows = sqlx::query_as::<_, (i64, String)>(LEAF_HASHES).fetch(&mut *conn);
        while let Some((index, hash)) = rows.try_next().await? {
            if as_u64(index)? != frontier.size() {
                report.problems.push(format!(
                    "leaf {} is missing from the stored tree (next stored is {index})",
                    frontier.size()
                ));
                break;
            }
            frontier.append(hash_from_hex(&hash)?);
            compare(&frontier, report, &mut last_good);
        }
    }
    report.size = frontier.size();
    for (checkpoint, label) in pending {
        report.problems.push(format!(
            "{label} covers {} events, but the stored tree holds {}: events {} to {} were removed from the log",
            checkpoint.size,
            frontier.size(),
            frontier.size(),
            checkpoint.size.saturating_sub(1)
        ));
    }
    let stored_head = head(conn).await?;
    if stored_head != frontier {
        report.problems.push(format!(
            "the tree's head (size {}) is not the tree its leaves make (size {})",
            stored_head.size(),
            frontier.size()
        ));
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct LoggedEventRow {
    leaf_index: i64,
    leaf_hash: String,
    #[sqlx(flatten)]
    event: EventRow,
}

/// Each logged event must still be the leaf it was; no leaf's event may vanish unpruned; no
/// event may bypass the log.
async fn check_events_against_leaves(
    conn: &mut AnyConnection,
    report: &mut LogReport,
) -> Result<(), AccessError> {
    {
        let mut rows = sqlx::query_as::<_, LoggedEventRow>(LOGGED_EVENTS).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let event = AuditEvent::from(row.event);
            if Hash::leaf(&leaf_data(&event)).to_hex() != row.leaf_hash {
                report.problems.push(format!(
                    "event {} (chain {}, seq {}) is not what leaf {} logged: it was changed",
                    event.id, event.chain_key, event.seq, row.leaf_index
                ));
            }
        }
    }
    let unnamed: Vec<i64> = sqlx::query_scalar(UNNAMED_LEAVES)
        .fetch_all(&mut *conn)
        .await?;
    for leaf in unnamed {
        report.problems.push(format!(
            "leaf {leaf} of the tree names no event any more: its event and leaf row were deleted"
        ));
    }
    let vanished: Vec<(i64, String, i64)> = sqlx::query_as(VANISHED).fetch_all(&mut *conn).await?;
    for (leaf, chain, seq) in vanished {
        report.problems.push(format!(
            "event {seq} of chain {chain} (leaf {leaf}) is logged but no longer stored: it was deleted"
        ));
    }
    let unlogged: Vec<(UuidText, String, i64)> = sqlx::query_as(UNLOGGED).fetch_all(conn).await?;
    for (id, chain, seq) in unlogged {
        report.problems.push(format!(
            "event {} (chain {chain}, seq {seq}) was never logged: it was added behind the log",
            id.0
        ));
    }
    Ok(())
}
