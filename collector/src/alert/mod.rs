//! Alerts: `[[alert]]` rules in `collector.toml` turn what ops must act on
//! into a webhook call at once: a FIM database tampered with, a rule going
//! to `fail` at or above a severity, a host stale for longer than a
//! threshold, a baseline refused by an agent. Alerts read the same durable
//! event stream as the forwarding sinks (their own cursor, `alerts`; on
//! PostgreSQL one collector at a time), plus a periodic stale check.
//!
//! Modules: `rule` (configuration and what matches), `webhook` (body,
//! template, HMAC signature, delivery), `task` (the stream, the stale
//! check, de-duplication).

pub mod rule;
mod task;
pub mod webhook;

pub use rule::{AlertOn, AlertRule};
pub use task::spawn;
