//! `portal-bench`: the benchmark harness of the portal. It loads a synthetic population of a
//! chosen size, starts the real `portal serve` as a separate process against it, drives each
//! scenario over HTTP at a chosen concurrency, measures a bare axum handler in the same run as
//! the machine's ceiling, and reports req/s, latency percentiles, the ratio to the ceiling and
//! the server's peak memory. It is a workspace member of its own so that nothing it needs
//! (an HTTP client, a histogram) reaches the portal's binary.
//!
//! Read in this order: `population` (what is loaded), `rows` and `load` (how), `http` (clients
//! and sign-ins), `scenarios` (what each connection does), `drive` (the load generator),
//! `server` and `ceiling` (the processes under test), `run` and `report`.

pub mod ceiling;
pub mod drive;
pub mod http;
pub mod load;
pub mod population;
pub mod report;
pub mod rows;
pub mod run;
pub mod scenarios;
pub mod server;
