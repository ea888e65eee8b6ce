//! The records domain: what a patient record holds (patients, lab results, prescriptions,
//! treatment plans), how national IDs are validated, and how records are stored.
//!
//! Read in this order: `cpr` (the national ID), `model` (the record types), `store` (storage,
//! where every clinical read needs a permit from `access_control`), `db` (the pool and engines),
//! `demo` (the deterministic demo population).

pub mod cpr;
pub mod db;
pub mod demo;
mod error;
pub mod model;
pub mod store;

pub use cpr::{Cpr, CprError};
pub use db::{Db, Engine, PoolSettings, Tx};
pub use error::DomainError;
