//! The transparency log as the portal runs it: the publisher that moves audit events into the
//! tree and signs checkpoints, the public endpoints that serve checkpoints and consistency
//! proofs and take witnesses' cosignatures, and `portal witness`, the process another
//! organisation runs to hold the log to its history. The tree and its storage are
//! `access_control::audit::log`; the formats are the `transparency-log` crate's.

pub mod commands;
pub mod proofs;
pub mod publisher;
pub mod routes;
pub mod witness;
