//! Plumbline's end-to-end suite, one test binary (linking one binary instead
//! of sixteen is most of a clean test build's time). Each module of `suite`
//! is one area; `common` holds the fixtures they share. The tests run the
//! real `plumb` and `plumb-collector` binaries: `cargo test --workspace`
//! builds both (see `common::collector_bin`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod suite {
    mod agent_daemon;
    mod agent_fim;
    mod agent_sender;
    mod check_cli;
    mod checks_a;
    mod checks_b;
    mod checks_c;
    mod collector_baselines;
    mod collector_cli;
    mod collector_frontdoor;
    mod collector_postgres;
    mod collector_server;
    mod config_semantics;
    mod console;
    mod coverage;
    mod daemon_remediation;
    mod debian12_root;
    mod distribution;
    mod failover;
    mod fim_cli;
    mod fim_packages;
    mod forward;
    pub(crate) mod metrics;
    mod remediate;
    mod shipped_baseline;
    mod signing;
    mod sshd_oracle;
    mod storage_migrate;
    mod systemd_oracle;
}
