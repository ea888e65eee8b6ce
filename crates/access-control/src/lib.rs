//! Who may see what, and the record of who did.
//!
//! Read in this order: `actor` (who is asking), `policy` (the pure decision and its reasons),
//! `gate` (the only way to a patient's data: decide, audit, grant), `audited` (the grant held
//! together with its transaction), `audit` (the hash-chained
//! log), then the facts the policy works from: `consent` (blocks, proxies), `care` (care
//! relationships, emergency override) and `accounts` (users and credentials).

pub mod accounts;
pub mod actor;
pub mod audit;
mod audited;
pub mod care;
pub mod consent;
mod error;
pub mod gate;
pub mod policy;
pub mod tokens;

pub use actor::{Actor, Reach, RequestContext, Role};
pub use audited::Audited;
pub use error::AccessError;
pub use gate::{
    BatchGrants, ConsentGrant, Gate, ReadGrant, Refusal, RegisterGrant, RenewalGrant, Request,
    WriteGrant,
};
pub use policy::{Action, Basis, Decision, Denial, PolicySettings};

/// Every SQL statement this crate sends, for the test that prepares each on both engines.
pub fn statements() -> Vec<records_domain::db::Statement> {
    let mut all = audit::statements();
    all.extend(tokens::statements());
    all.extend(consent::statements());
    all.extend(care::statements());
    all.extend(gate::statements());
    all.extend(accounts::statements());
    all
}
