//! One consumer of the event stream at a time per store. On SQLite the
//! store has one collector: the lease is always held. On PostgreSQL, any
//! number of collectors share the store: the lease is a session advisory
//! lock keyed by the consumer's name, held on a connection of its own, so
//! that it is released exactly when that connection (or its collector)
//! dies; the other collectors try again every few seconds and take over.

use crate::config::StorageSection;
use std::time::Duration;

/// How often a collector without the lease tries to take it.
const RETRY: Duration = Duration::from_secs(2);

/// The right to run one consumer (a sink's forwarder, the alerts).
pub(crate) enum Lease {
    /// SQLite: one collector per store.
    Local,
    /// PostgreSQL: an advisory lock on a dedicated connection.
    Postgres {
        cfg: Box<crate::config::PostgresSection>,
        key: i64,
        consumer: String,
        /// The dedicated connection, kept between attempts (boxed: the
        /// SQLite variant is empty).
        client: Option<Box<tokio_postgres::Client>>,
        /// Whether the lock is held on `client`.
        held: bool,
    },
}

/// The advisory lock key of `consumer`: the first 8 bytes of SHA-256 of
/// "plumb-forward:" and its name (the store's own locks are small numbers).
fn lock_key(consumer: &str) -> i64 {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("plumb-forward:{consumer}").as_bytes(),
    );
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(b)
}

impl Lease {
    /// The lease of `consumer` in the store `cfg` names.
    pub(crate) fn new(cfg: &StorageSection, consumer: &str) -> Lease {
        if cfg.backend == "postgres" {
            Lease::Postgres {
                cfg: Box::new(cfg.postgres.clone()),
                key: lock_key(consumer),
                consumer: consumer.to_string(),
                client: None,
                held: false,
            }
        } else {
            Lease::Local
        }
    }

    /// Waits until this collector holds the lease.
    pub(crate) async fn acquire(&mut self) {
        let Lease::Postgres {
            cfg,
            key,
            consumer,
            client,
            held,
        } = self
        else {
            return;
        };
        let mut waiting_logged = false;
        loop {
            if client.as_ref().is_some_and(|c| c.is_closed()) {
                *client = None;
                *held = false;
            }
            if *held {
                return;
            }
            if client.is_none() {
                match crate::storage::postgres::dedicated_connection(cfg).await {
                    Ok((c, _)) => *client = Some(Box::new(c)),
                    Err(e) => tracing::warn!("{consumer}: lock connection: {e}"),
                }
            }
            if let Some(c) = client.as_ref() {
                match c
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&*key])
                    .await
                {
                    Ok(row) if row.get::<_, bool>(0) => {
                        tracing::info!("{consumer}: this collector runs it (lock taken)");
                        *held = true;
                        return;
                    }
                    Ok(_) => {
                        if !waiting_logged {
                            tracing::info!(
                                "{consumer}: another collector runs it; taking over if it stops"
                            );
                            waiting_logged = true;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("{consumer}: taking the lock: {e}");
                        *client = None;
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Whether the lease is still held (PostgreSQL: its connection answers).
    pub(crate) async fn held(&mut self) -> bool {
        let Lease::Postgres {
            client,
            consumer,
            held,
            ..
        } = self
        else {
            return true;
        };
        if !*held {
            return false;
        }
        let alive = match client {
            Some(c) => !c.is_closed() && c.simple_query("SELECT 1").await.is_ok(),
            None => false,
        };
        if !alive {
            tracing::warn!(
                "{consumer}: lost the lock connection; stopping until it is taken again"
            );
            // Dropping the connection releases whatever it still held.
            *client = None;
            *held = false;
        }
        alive
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_differ_per_consumer_and_are_stable() {
        assert_ne!(super::lock_key("forward:a"), super::lock_key("forward:b"));
        assert_eq!(super::lock_key("alerts"), super::lock_key("alerts"));
    }
}
