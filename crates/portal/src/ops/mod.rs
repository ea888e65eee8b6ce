//! Running the portal as a service: stopping without losing work, and metrics for Prometheus.

pub mod metrics;
pub mod shutdown;
