//! A transaction and the grant its access decision made, held together. The grant is the
//! permit the record store demands; its audit event lives in this transaction (or, for reads,
//! was made durable before it was handed out). Lending the two only together means a grant
//! cannot be used on another connection or after its transaction ended, and the value being
//! `#[must_use]` with `commit(self)` as the way to keep the work means a handler cannot forget
//! to finish what it started without the compiler saying so.

use records_domain::{DomainError, Tx};
use sqlx::AnyConnection;

use crate::AccessError;

#[must_use = "commit it: an access or change that is not committed is rolled back"]
#[derive(Debug)]
pub struct Audited<G> {
    tx: Tx,
    grant: G,
}

impl<G> Audited<G> {
    pub(crate) fn new(tx: Tx, grant: G) -> Self {
        Self { tx, grant }
    }

    /// The connection and the grant, lent together for store calls that need the permit.
    pub fn parts(&mut self) -> (&mut AnyConnection, &G) {
        (&mut self.tx, &self.grant)
    }

    /// The connection alone, for what needs no permit in the same transaction (the patient's
    /// name on the banner, the clinician's own override).
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), AccessError> {
        self.tx.commit().await.map_err(DomainError::from)?;
        Ok(())
    }

    /// Undo the work and, for a change, its audit event: what was not done was not done.
    pub async fn rollback(self) -> Result<(), AccessError> {
        self.tx.rollback().await.map_err(DomainError::from)?;
        Ok(())
    }
}
