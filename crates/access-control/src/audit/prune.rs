//! Deleting audit events past the retention period while every chain stays verifiable.
//!
//! Per chain the oldest events are removed as a prefix: up to (not including) the first event
//! that is still inside the retention period. The chain keeps the hash of its last removed event
//! as its anchor (`audit_chains.pruned_through_seq`, `pruned_hash`), verification starts there,
//! and the prune is itself appended to the pruned chain, naming sequence and anchor: hashed
//! into the chain after the cut, it survives this prune, so an anchor changed afterwards shows
//! up as a broken link. The database refuses to delete anything younger than ten years
//! whatever this code is asked to do.

use records_domain::db::{Statement, Utc};
use records_domain::model::PatientId;
use records_domain::DomainError;
use sqlx::AnyConnection;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{append, NewEvent, Outcome, SYSTEM_CHAIN};
use crate::actor::{Actor, RequestContext};
use crate::AccessError;

/// The shortest retention the database itself enforces.
pub const MINIMUM_RETENTION_YEARS: i64 = 10;
pub const PRUNE_ACTION: &str = "prune audit log";

const CLEAR_WINDOW: &str = "DELETE FROM audit_prune_window";
const OPEN_WINDOW: &str = "INSERT INTO audit_prune_window (id, before) VALUES (1, $1)";
const CHAINS: &str =
    "SELECT chain_key, last_seq, pruned_through_seq FROM audit_chains ORDER BY chain_key";
const FIRST_KEPT: &str =
    "SELECT MIN(seq) FROM audit_events WHERE chain_key = $1 AND occurred_at >= $2";
const ANCHOR: &str = "SELECT hash FROM audit_events WHERE chain_key = $1 AND seq = $2";
const DELETE_CLOSURES: &str = "DELETE FROM audit_review_closures WHERE review_id IN \
     (SELECT r.id FROM audit_reviews r JOIN audit_events e ON e.id = r.event_id \
     WHERE e.chain_key = $1 AND e.seq <= $2)";
const DELETE_REVIEWS: &str = "DELETE FROM audit_reviews WHERE event_id IN \
     (SELECT id FROM audit_events WHERE chain_key = $1 AND seq <= $2)";
const DELETE_EVENTS: &str = "DELETE FROM audit_events WHERE chain_key = $1 AND seq <= $2";
const SET_ANCHOR: &str =
    "UPDATE audit_chains SET pruned_through_seq = $1, pruned_hash = $2 WHERE chain_key = $3";

pub(crate) fn statements() -> Vec<Statement> {
    records_domain::statements!("audit::prune": CLEAR_WINDOW, OPEN_WINDOW, CHAINS, FIRST_KEPT,
        ANCHOR, DELETE_CLOSURES, DELETE_REVIEWS, DELETE_EVENTS, SET_ANCHOR)
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub chains: u64,
    pub events: u64,
}

/// The text of the system event that vouches for a chain's anchor.
pub fn anchor_record(chain_key: &str, through_seq: i64, hash: &str) -> String {
    format!("chain={chain_key} through={through_seq} hash={hash}")
}

/// Remove events older than `retention_years` (at least ten) from every chain, in one
/// transaction on `conn`.
pub async fn prune(
    conn: &mut AnyConnection,
    actor: &Actor,
    ctx: &RequestContext,
    retention_years: i64,
    now: OffsetDateTime,
) -> Result<PruneReport, AccessError> {
    if retention_years < MINIMUM_RETENTION_YEARS {
        return Err(AccessError::invalid(format!(
            "Audit events are kept at least {MINIMUM_RETENTION_YEARS} years."
        )));
    }
    let before = Utc(now - Duration::days(365 * retention_years + retention_years / 4 + 1));
    sqlx::query(CLEAR_WINDOW).execute(&mut *conn).await?;
    sqlx::query(OPEN_WINDOW)
        .bind(before)
        .execute(&mut *conn)
        .await?;
    let chains: Vec<(String, i64, i64)> = sqlx::query_as(CHAINS).fetch_all(&mut *conn).await?;
    let mut report = PruneReport::default();
    for (key, last_seq, pruned_through_seq) in chains {
        let first_kept: Option<i64> = sqlx::query_scalar(FIRST_KEPT)
            .bind(&key)
            .bind(before)
            .fetch_one(&mut *conn)
            .await?;
        let through = first_kept.map_or(last_seq, |s| s - 1);
        if through <= pruned_through_seq {
            continue;
        }
        let removed = prune_chain(conn, &key, through).await?;
        // No resource type: the record vouches for the chain, it is not an access to show.
        let mut record = NewEvent::by(actor, ctx, PRUNE_ACTION, Outcome::Success)
            .reason(anchor_record(&key, through, &removed.1));
        if key != SYSTEM_CHAIN {
            let patient = Uuid::parse_str(&key).map_err(|_| {
                AccessError::Domain(DomainError::Corrupt(format!("chain key {key:?}")))
            })?;
            record = record.about(PatientId(patient));
        }
        append(conn, record).await?;
        report.chains += 1;
        report.events += removed.0;
    }
    sqlx::query(CLEAR_WINDOW).execute(&mut *conn).await?;
    Ok(report)
}

/// Delete events 1..=`through` of one chain and anchor the chain at the last one's hash.
async fn prune_chain(
    conn: &mut AnyConnection,
    key: &str,
    through: i64,
) -> Result<(u64, String), AccessError> {
    let anchor: String = sqlx::query_scalar(ANCHOR)
        .bind(key)
        .bind(through)
        .fetch_one(&mut *conn)
        .await?;
    // Reviews of the removed events go with them, answers first (they refer to the reviews).
    sqlx::query(DELETE_CLOSURES)
        .bind(key)
        .bind(through)
        .execute(&mut *conn)
        .await?;
    sqlx::query(DELETE_REVIEWS)
        .bind(key)
        .bind(through)
        .execute(&mut *conn)
        .await?;
    let deleted = sqlx::query(DELETE_EVENTS)
        .bind(key)
        .bind(through)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query(SET_ANCHOR)
        .bind(through)
        .bind(&anchor)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok((deleted, anchor))
}
