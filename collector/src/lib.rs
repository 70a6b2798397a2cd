//! Plumbline collector: receives the agents' events over mutual TLS, stores
//! them, and answers the ops team's queries. The binary `plumb-collector`
//! only parses flags and calls into these modules.

pub mod alert;
pub mod baselines;
pub mod config;
pub mod console;
pub mod forward;
/// Entry points for the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md);
/// only with the `fuzzing` feature, which no shipped build enables.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod metrics;
pub mod pki;
pub mod queries;
pub mod remote;
pub mod revocation;
pub mod server;
pub mod storage;
pub mod tls;
