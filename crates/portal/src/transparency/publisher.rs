//! The publishing loop: every few seconds, queued audit events join the tree and a checkpoint
//! of the new size is signed. Every instance runs one; they take turns on the tree's head row.

use std::time::{Duration, Instant};

use access_control::audit::log;
use records_domain::Db;
use transparency_log::SignerKey;

use crate::config::LogSettings;

/// Run the loop on the current runtime until the process ends. A failed round is logged and
/// the next one retries: the events stay queued, nothing is lost.
pub fn spawn(db: Db, settings: LogSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            while let Some(held) = publish_round(&db, &settings.signer).await {
                // A backlog (10 M loaded events took 5,000 rounds) is worked off with the
                // write lock left free between rounds for as long as a round held it: on
                // SQLite, waiters retry at intervals, and a writer taking the lock straight
                // back won every time, so sign-ins and audit appends timed out ("database is
                // locked") until the whole backlog was in.
                tokio::time::sleep(held).await;
            }
        }
    })
}

/// One round; how long it took if more events are waiting.
async fn publish_round(db: &Db, signer: &SignerKey) -> Option<Duration> {
    let started = Instant::now();
    match log::publish(db, signer).await {
        Ok(published) => {
            metrics::gauge!("portal_transparency_log_size").set(published.size as f64);
            if let Some(size) = published.signed {
                metrics::counter!("portal_transparency_checkpoints_total").increment(1);
                tracing::debug!(size, "signed a checkpoint");
            }
            published.more.then(|| started.elapsed())
        }
        Err(e) => {
            metrics::counter!("portal_transparency_failures_total").increment(1);
            tracing::warn!(error = %e, "transparency log round failed");
            None
        }
    }
}
