//! The forms of the pages as they are sent, kept as text so that a refused form comes back as
//! it was typed, and their checks. Here rather than beside the handlers because the views
//! render them too: both sides depend on this module, neither on the other.

mod audit_filter;
pub mod fields;
mod lookup;
mod plan;
mod prescription;

pub use audit_filter::FilterForm;
pub use lookup::LookupForm;
pub use plan::PlanForm;
pub use prescription::PrescriptionForm;
