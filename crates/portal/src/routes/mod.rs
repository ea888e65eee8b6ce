//! Request handlers, one module per area. Each handler reads as the story of the request:
//! who is asking, the decision (via the gate), the read or write, the page.

pub mod admin;
pub mod audit;
mod banner;
pub mod checkpoints;
pub mod clinician;
pub mod health;
mod open;
pub mod patient;
