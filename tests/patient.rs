//! patient journeys over HTTP, on both engines.

mod support;
