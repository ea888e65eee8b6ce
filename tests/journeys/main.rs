//! The end-to-end journeys, one module per user or concern, in one test binary. Names read as
//! journeys: `patient::blocks_hold_until_revoked::sqlite`, `clinician::…::postgres`.

#[macro_use]
mod support;

mod account;
mod admin;
mod attacks;
mod audit;
mod clinician;
mod crash;
mod fhir;
mod foundation;
mod health_record;
mod operations;
mod patient;
mod renewals;
mod scale_out;
mod security;
mod transparency;
