//! The forwarder of one sink: take the lease, read the events past the
//! cursor, keep those the filter accepts, deliver them (retrying with
//! backoff until the receiver acknowledges), then move the cursor past the
//! whole batch. The cursor moves only after the acknowledgement: a crash
//! in between sends the batch again (at least once, never lost).

use super::cursor::Cursor;
use super::http::HttpSink;
use super::lease::Lease;
use super::sink::{SinkConfig, SinkKind, split_host_port};
use super::syslog::SyslogSink;
use super::{Backoff, ForwardError, ForwardMetrics, client, read_secret};
use crate::config::Config;
use crate::storage::{self, EventRow};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Where one sink delivers.
enum Receiver {
    Syslog(SyslogSink),
    Http(HttpSink),
}

impl Receiver {
    async fn deliver(&self, events: &[&EventRow]) -> Result<(), ForwardError> {
        match self {
            Receiver::Syslog(s) => s.deliver(events).await,
            Receiver::Http(h) => h.deliver(events).await,
        }
    }
}

/// The receiver of a configured sink (its TLS files and token read now).
fn receiver(s: &SinkConfig) -> Result<Receiver, ForwardError> {
    let name = |what: &str| ForwardError::Config(format!("forward {}: {what}", s.name));
    let server_name = s.tls_name().ok_or_else(|| name("no receiver host"))?;
    let tls = match &s.ca {
        Some(ca) => Some(client::tls_config(
            ca,
            s.client_cert.as_deref().zip(s.client_key.as_deref()),
        )?),
        None => None,
    };
    let timeout = Duration::from_secs(s.timeout_secs);
    Ok(match s.kind {
        SinkKind::Syslog => {
            let addr = s.address.as_deref().ok_or_else(|| name("no address"))?;
            let (host, port) = split_host_port(addr).ok_or_else(|| name("address"))?;
            let tls = tls.ok_or_else(|| name("syslog needs ca"))?;
            Receiver::Syslog(SyslogSink::new(
                host,
                port,
                tls,
                server_name,
                s.facility,
                timeout,
            ))
        }
        SinkKind::Http => {
            let url = s.url.as_deref().ok_or_else(|| name("no url"))?;
            let endpoint = client::Endpoint::parse(url).map_err(|e| name(&e.to_string()))?;
            let scheme = match s.format {
                super::HttpFormat::SplunkHec => "Splunk",
                _ => "Bearer",
            };
            let authorization = s
                .token_file
                .as_deref()
                .map(read_secret)
                .transpose()?
                .map(|t| format!("{scheme} {t}"));
            Receiver::Http(HttpSink {
                endpoint,
                tls,
                server_name,
                format: s.format,
                index: s.index.clone(),
                authorization,
                timeout,
            })
        }
    })
}

/// Starts one forwarder per `[[forward]]` sink of `cfg`. Every sink is set
/// up first (TLS files, tokens, its store connection): one that cannot be
/// is an error, and nothing starts.
pub async fn spawn(
    cfg: &Config,
    metrics: Arc<ForwardMetrics>,
) -> Result<Vec<JoinHandle<()>>, ForwardError> {
    let mut ready = Vec::new();
    for s in &cfg.forward {
        let r = receiver(s)?;
        let storage_cfg = cfg.storage.clone();
        let store = tokio::task::spawn_blocking(move || storage::open_cursors(&storage_cfg))
            .await
            .map_err(|e| ForwardError::Config(format!("opening the store: {e}")))??;
        let consumer = format!("forward:{}", s.name);
        ready.push((s.clone(), Arc::new(r), Cursor::new(store, consumer)));
    }
    Ok(ready
        .into_iter()
        .map(|(s, r, cursor)| {
            tracing::info!(
                "forward {}: {} sink started",
                s.name,
                match s.kind {
                    SinkKind::Syslog => "syslog",
                    SinkKind::Http => "http",
                }
            );
            let (storage, metrics) = (cfg.storage.clone(), metrics.clone());
            super::supervised(format!("forward {}", s.name), move || {
                let lease = Lease::new(&storage, &cursor.consumer);
                run(s.clone(), r.clone(), cursor.clone(), lease, metrics.clone())
            })
        })
        .collect())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn run(
    sink: SinkConfig,
    receiver: Arc<Receiver>,
    cursor: Cursor,
    mut lease: Lease,
    metrics: Arc<ForwardMetrics>,
) {
    let label = ForwardMetrics::sink(&sink.name);
    let lag = metrics.lag.get_or_create(&label).clone();
    let mut backoff = Backoff::new(Duration::from_secs(sink.max_backoff_secs));
    let poll = Duration::from_millis(sink.poll_interval_ms);
    'batches: loop {
        lease.acquire().await;
        let pending = match cursor.pending(sink.batch_events).await {
            Ok(p) => p,
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(
                    "forward {}: reading events: {e}; again in {wait:?}",
                    sink.name
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        if pending.events.is_empty() && pending.gone.is_empty() {
            lag.set(0.0);
            tokio::time::sleep(poll).await;
            continue;
        }
        let oldest = pending.events.iter().map(|e| e.received_at).min();
        let show_lag = || {
            if let Some(t) = oldest {
                lag.set((now() - t).max(0) as f64);
            }
        };
        show_lag();
        for (host, seq) in &pending.gone {
            tracing::warn!(
                "forward {}: events of {host} up to seq {seq} were deleted by retention before they were forwarded",
                sink.name
            );
        }
        let chosen: Vec<&EventRow> = pending.events.iter().filter(|e| sink.accepts(e)).collect();
        let mut attempt = 0u32;
        while !chosen.is_empty() {
            if !lease.held().await {
                continue 'batches;
            }
            attempt += 1;
            show_lag();
            match receiver.deliver(&chosen).await {
                Ok(()) => break,
                Err(e) => {
                    metrics.failures.get_or_create(&label).inc();
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        "forward {}: {} events not delivered (attempt {attempt}): {e}; again in {wait:?}",
                        sink.name,
                        chosen.len()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if attempt > 1 {
            tracing::info!("forward {}: delivered after {attempt} attempts", sink.name);
        }
        backoff.reset();
        metrics
            .forwarded
            .get_or_create(&label)
            .inc_by(chosen.len() as u64);
        metrics
            .filtered
            .get_or_create(&label)
            .inc_by((pending.events.len() - chosen.len()) as u64);
        // Acknowledged: the cursor moves. Until it has, nothing new is read
        // (the same batch would be sent again).
        let mut store_backoff = Backoff::new(Duration::from_secs(sink.max_backoff_secs));
        while let Err(e) = cursor.advance_past(&pending).await {
            let wait = store_backoff.next_wait();
            tracing::warn!(
                "forward {}: moving the cursor: {e}; again in {wait:?}",
                sink.name
            );
            tokio::time::sleep(wait).await;
        }
    }
}
