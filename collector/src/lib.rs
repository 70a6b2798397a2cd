//! Plumbline collector: receives the agents' events over mutual TLS, stores
//! them, and answers the ops team's queries. The binary `plumb-collector`
//! only parses flags and calls into these modules.

pub mod baselines;
pub mod config;
pub mod pki;
pub mod queries;
pub mod revocation;
pub mod server;
pub mod storage;
pub mod tls;
