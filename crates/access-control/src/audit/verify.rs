//! `portal audit verify`: walk every chain from its first event and recompute each link, check
//! each event's client address against the commitment its hash covers, and check the
//! transparency log against every signed checkpoint (`log::verify_log`).

use futures::TryStreamExt;
use records_domain::db::Statement;
use sqlx::{AnyConnection, Connection};

use super::log::{verify_log, LogReport};
use super::prune::{anchor_record, PRUNE_ACTION};
use super::{AuditEvent, EventRow, GENESIS_HASH};
use crate::AccessError;

const SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";
const HEADS: &str = "SELECT chain_key, last_seq, last_hash, pruned_through_seq, pruned_hash \
     FROM audit_chains ORDER BY chain_key";
const ORPHANS: &str = "SELECT e.chain_key, MIN(e.seq) FROM audit_events e \
     LEFT JOIN audit_chains c ON c.chain_key = e.chain_key \
     WHERE c.chain_key IS NULL GROUP BY e.chain_key";
const CHAIN: &str = concat!(
    "SELECT ",
    crate::audit_event_columns!(),
    " FROM audit_events WHERE chain_key = $1 ORDER BY seq"
);

/// `SNAPSHOT` is left out: SQLite has no such statement, and it runs on PostgreSQL only.
pub(crate) fn statements() -> Vec<Statement> {
    records_domain::statements!("audit::verify": HEADS, ORPHANS, CHAIN)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub chain_key: String,
    pub seq: i64,
    pub event_id: Option<String>,
    pub problem: String,
}

#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub chains: u64,
    pub events: u64,
    pub broken: Vec<BrokenLink>,
    pub log: LogReport,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.broken.is_empty() && self.log.problems.is_empty()
    }
}

/// What the transparency log is checked against: the log's public keys (the current one and
/// any retired ones) and signed checkpoints kept outside the database, such as a witness's.
/// Neither may come from the database itself: whoever could rewrite the log could rewrite them.
#[derive(Debug, Default, Clone)]
pub struct LogTrust {
    pub keys: Vec<transparency_log::VerifierKey>,
    pub outside: Vec<String>,
}

/// Check every chain against its head and the transparency log against its checkpoints, all
/// within one snapshot: appends that commit while the check runs (a live portal, or a killed
/// server's last commit) are not mistaken for tampering.
pub async fn verify_all(
    conn: &mut AnyConnection,
    trust: &LogTrust,
) -> Result<VerifyReport, AccessError> {
    let postgres = conn.backend_name() == "PostgreSQL";
    let mut snapshot = conn.begin().await?;
    if postgres {
        // PostgreSQL's default isolation takes a new snapshot per statement.
        sqlx::query(SNAPSHOT).execute(&mut *snapshot).await?;
    }
    let mut report = verify_snapshot(&mut snapshot).await?;
    report.log = verify_log(&mut snapshot, &trust.keys, &trust.outside).await?;
    snapshot.rollback().await?;
    Ok(report)
}

async fn verify_snapshot(conn: &mut AnyConnection) -> Result<VerifyReport, AccessError> {
    let heads: Vec<(String, i64, String, i64, String)> =
        sqlx::query_as(HEADS).fetch_all(&mut *conn).await?;
    let mut report = VerifyReport::default();
    for (key, last_seq, last_hash, pruned_through_seq, pruned_hash) in heads {
        let head = ChainHead {
            last_seq,
            last_hash,
            pruned_through_seq,
            pruned_hash,
        };
        let (events, broken) = verify_chain(conn, &key, &head).await?;
        report.chains += 1;
        report.events += events;
        report.broken.extend(broken);
    }
    let orphans: Vec<(String, i64)> = sqlx::query_as(ORPHANS).fetch_all(&mut *conn).await?;
    for (chain_key, seq) in orphans {
        report.broken.push(BrokenLink {
            chain_key,
            seq,
            event_id: None,
            problem: "events of a chain that has no head (chain head deleted)".into(),
        });
    }
    Ok(report)
}

/// What `audit_chains` says of a chain: its newest event and, if its oldest events were pruned
/// past retention, the last pruned one.
pub struct ChainHead {
    pub last_seq: i64,
    pub last_hash: String,
    pub pruned_through_seq: i64,
    pub pruned_hash: String,
}

/// Verify one chain; returns the number of events read and the first broken link, if any.
pub async fn verify_chain(
    conn: &mut AnyConnection,
    chain_key: &str,
    head: &ChainHead,
) -> Result<(u64, Option<BrokenLink>), AccessError> {
    let (head_seq, head_hash) = (head.last_seq, head.last_hash.as_str());
    let mut rows = sqlx::query_as::<_, EventRow>(CHAIN)
        .bind(chain_key)
        .fetch(conn);
    let mut expected_seq = head.pruned_through_seq + 1;
    let mut prev_hash = if head.pruned_through_seq == 0 {
        GENESIS_HASH.to_string()
    } else {
        head.pruned_hash.clone()
    };
    let anchor = anchor_record(chain_key, head.pruned_through_seq, &head.pruned_hash);
    let mut anchor_vouched = head.pruned_through_seq == 0;
    let mut count = 0;
    let broken = |seq: i64, event: Option<&AuditEvent>, problem: String| BrokenLink {
        chain_key: chain_key.to_string(),
        seq,
        event_id: event.map(|e| e.id.to_string()),
        problem,
    };
    while let Some(row) = rows.try_next().await? {
        let event = AuditEvent::from(row);
        count += 1;
        if event.seq != expected_seq {
            return Ok((
                count,
                Some(broken(
                    expected_seq,
                    Some(&event),
                    format!(
                        "event {expected_seq} is missing (next stored is {})",
                        event.seq
                    ),
                )),
            ));
        }
        if event.prev_hash != prev_hash {
            return Ok((
                count,
                Some(broken(
                    event.seq,
                    Some(&event),
                    "prev_hash does not match the previous event's hash".into(),
                )),
            ));
        }
        let recomputed = event.compute_hash();
        if recomputed != event.hash {
            return Ok((
                count,
                Some(broken(
                    event.seq,
                    Some(&event),
                    format!(
                        "content does not match its hash (stored {}, computed {})",
                        event.hash, recomputed
                    ),
                )),
            ));
        }
        if let Some(problem) = event.address_problem() {
            return Ok((count, Some(broken(event.seq, Some(&event), problem.into()))));
        }
        anchor_vouched |= event.action == PRUNE_ACTION && event.reason == anchor;
        prev_hash = event.hash;
        expected_seq += 1;
    }
    if !anchor_vouched {
        let problem = format!(
            "events 1 to {} were pruned, but no prune record in the chain vouches for that anchor",
            head.pruned_through_seq
        );
        return Ok((count, Some(broken(head.pruned_through_seq, None, problem))));
    }
    let last = expected_seq - 1;
    if last != head_seq || prev_hash != head_hash {
        let problem = if last > head_seq {
            format!("chain ends at event {last} but its head records event {head_seq}: events were added without the head")
        } else {
            format!("chain ends at event {last} but its head records event {head_seq}: events were removed from the end")
        };
        return Ok((count, Some(broken(last + 1, None, problem))));
    }
    Ok((count, None))
}
