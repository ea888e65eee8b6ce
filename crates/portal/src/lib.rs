//! The patient-record portal: the HTTP server (axum, maud), sessions and login, and the
//! `portal` command line. It writes no SQL of its own for records: they come from
//! `records_domain`, every access decision and audit event from `access_control`. The one
//! exception is `sessions`: tower-sessions' SQL stores keep sessions in the portal's database,
//! and `sessions` creates their table and probes it itself.
//!
//! Read in this order: `config`, `app` (router and layers), `auth` (login, sessions, CSRF),
//! `routes` (one module per area), `views`, `problem` (what went wrong, classified once) and
//! `error` (how a page says it; `fhir::error` is how the FHIR API says it).

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod fhir;
pub mod forms;
pub mod import;
pub mod ops;
pub mod problem;
pub mod routes;
pub mod seed;
pub mod sessions;
pub mod transparency;
pub mod views;
