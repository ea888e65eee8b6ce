//! The publishing loop: every few seconds, queued audit events join the tree and a checkpoint
//! of the new size is signed. Every instance runs one; they take turns on the tree's head row.

use access_control::audit::log::{self, Published};
use access_control::AccessError;
use records_domain::Db;
use transparency_log::SignerKey;

use crate::config::LogSettings;

/// Publish until the queue is empty (a backlog, such as the events of before the log, takes
/// several rounds).
pub async fn publish_all(db: &Db, key: &SignerKey) -> Result<Published, AccessError> {
    loop {
        let published = log::publish(db, key).await?;
        if !published.more {
            return Ok(published);
        }
    }
}

/// Run the loop on the current runtime until the process ends. A failed round is logged and
/// the next one retries: the events stay queued, nothing is lost.
pub fn spawn(db: Db, settings: LogSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match publish_all(&db, &settings.signer).await {
                Ok(published) => {
                    metrics::gauge!("portal_transparency_log_size").set(published.size as f64);
                    if let Some(size) = published.signed {
                        metrics::counter!("portal_transparency_checkpoints_total").increment(1);
                        tracing::debug!(size, "signed a checkpoint");
                    }
                }
                Err(e) => {
                    metrics::counter!("portal_transparency_failures_total").increment(1);
                    tracing::warn!(error = %e, "transparency log round failed");
                }
            }
        }
    })
}
