//! Server-rendered pages (maud escapes every value). One module per area; `layout` is the
//! frame every page shares, `components` the pieces several pages use (result tables, charts).

pub mod account;
pub mod admin;
pub mod audit;
pub mod clinician;
pub mod clock;
pub mod components;
pub mod entries;
pub mod layout;
pub mod patient;
pub mod timeline;
