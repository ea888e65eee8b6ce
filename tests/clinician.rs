//! clinician journeys over HTTP, on both engines.

mod support;
