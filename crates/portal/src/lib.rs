//! The patient-record portal: the HTTP server (axum, maud), sessions and login, and the
//! `portal` command line. It knows nothing of SQL: records come from `records_domain`, every
//! access decision and audit event from `access_control`.
//!
//! Read in this order: `config`, `app` (router and layers), `auth` (login, sessions, CSRF),
//! `routes` (one module per area), `views`, `error` (the one mapping of errors to responses).

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod fhir;
pub mod import;
pub mod ops;
pub mod routes;
pub mod seed;
pub mod sessions;
pub mod views;
