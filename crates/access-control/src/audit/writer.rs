//! Group commit for the audit events of reads. Every page view appends an event that must be
//! durable before the page is shown; committing each on its own costs one fsync per view and,
//! on SQLite, holds the single writer lock for the whole request. Instead, requests hand their
//! events to one writer task, which appends whatever has queued up (in chain order, so that
//! several instances never take chain heads in opposite orders) in one transaction, commits
//! once, and then answers every waiting request. Chains and hashes are exactly those of
//! `audit::append`. If the commit fails, every request of the batch gets the error: no audit,
//! no access.

use std::sync::Arc;

use records_domain::Db;
use tokio::sync::{mpsc, oneshot, watch};

use time::OffsetDateTime;

use super::{append_all, AuditEvent, NewEvent};
use crate::AccessError;

/// Enough to amortise a commit, small enough that one batch's transaction stays short.
const MAX_BATCH: usize = 256;
/// Requests waiting beyond this wait for room in the queue (backpressure, not memory growth).
const QUEUE: usize = 4096;

struct Pending {
    event: NewEvent,
    done: oneshot::Sender<Result<AuditEvent, Arc<AccessError>>>,
}

/// A handle to the writer task; cheap to clone. The task ends when the last handle is dropped,
/// after writing what was queued.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
    /// Its sender lives as long as the task, so `changed()` fails exactly when the task is done.
    running: watch::Receiver<()>,
}

impl AuditWriter {
    /// Start the writer task on the current tokio runtime, with a connection of its own:
    /// requests hold their read transactions while they wait for it, so it must never wait
    /// for one of theirs.
    pub async fn start(db: &Db) -> Result<Self, AccessError> {
        let own = db.dedicated().await?;
        let (queue, requests) = mpsc::channel(QUEUE);
        let (alive, running) = watch::channel(());
        tokio::spawn(async move {
            run(&own, requests).await;
            // Its connection ends now rather than whenever the pool is dropped: a database
            // cannot be copied as a template (tests, the seeded demo) while one is open.
            own.close().await;
            drop(alive);
        });
        Ok(Self { queue, running })
    }

    /// Drop this handle and wait until the task has committed everything queued and stopped,
    /// which it does once every other handle is gone too (a server shutting down drops its
    /// routes' handles first).
    pub async fn close(self) {
        let Self { queue, mut running } = self;
        drop(queue);
        while running.changed().await.is_ok() {}
    }

    /// Append `event` and return once it is durable.
    pub async fn append(&self, event: NewEvent) -> Result<AuditEvent, AccessError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { event, done })
            .await
            .map_err(|_| AccessError::AuditUnavailable("the audit writer has stopped".into()))?;
        match answer.await {
            Ok(Ok(stored)) => Ok(stored),
            Ok(Err(e)) => Err(AccessError::AuditUnavailable(e.to_string())),
            Err(_) => Err(AccessError::AuditUnavailable(
                "the audit writer stopped before answering".into(),
            )),
        }
    }
}

async fn run(db: &Db, mut requests: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit(db, std::mem::take(&mut batch)).await;
    }
}

async fn commit(db: &Db, mut batch: Vec<Pending>) {
    batch.sort_by_cached_key(|p| super::chain_key(p.event.patient_id));
    let events: Vec<NewEvent> = batch.iter().map(|p| p.event.clone()).collect();
    metrics::histogram!("portal_audit_batch_size").record(events.len() as f64);
    match write(db, events).await {
        Ok(stored) => {
            metrics::counter!("portal_audit_appends_total").increment(stored.len() as u64);
            for (pending, event) in batch.into_iter().zip(stored) {
                // A request that gave up waiting has nothing to be told.
                let _ = pending.done.send(Ok(event));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, events = batch.len(), "audit batch failed");
            let e = Arc::new(e);
            for pending in batch {
                let _ = pending.done.send(Err(e.clone()));
            }
        }
    }
}

async fn write(db: &Db, events: Vec<NewEvent>) -> Result<Vec<AuditEvent>, AccessError> {
    let now = OffsetDateTime::now_utc();
    let mut tx = db.begin_write().await?;
    let stored = append_all(&mut tx, events.into_iter().map(|e| (e, now)).collect()).await?;
    tx.commit()
        .await
        .map_err(records_domain::DomainError::from)?;
    Ok(stored)
}
