//! The alert runner: reads the event stream past its cursor (`alerts`),
//! fires the rules each event matches, checks for stale hosts every few
//! seconds, drops an alert already fired for the same (alert, host, rule)
//! within the rule's window, and calls the webhooks (concurrently within a
//! batch). The cursor moves once every alert of a batch was sent or failed
//! for good; each outcome is logged and counted.

use super::rule::{AlertOn, AlertRule, Fired};
use super::webhook::{self, Webhook};
use crate::config::Config;
use crate::forward::cursor::Cursor;
use crate::forward::lease::Lease;
use crate::forward::{Backoff, ForwardError, ForwardMetrics};
use crate::storage::{self, Queries};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::{JoinHandle, JoinSet};

/// Events read per round.
const BATCH: usize = 1000;
/// Wait between rounds once the stream is caught up.
const POLL: Duration = Duration::from_millis(500);

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Starts the alert runner when `cfg` has `[[alert]]` rules.
pub async fn spawn(
    cfg: &Config,
    metrics: Arc<ForwardMetrics>,
) -> Result<Option<JoinHandle<()>>, ForwardError> {
    if cfg.alert.is_empty() {
        return Ok(None);
    }
    let mut rules = Vec::new();
    for r in &cfg.alert {
        rules.push((r.clone(), Arc::new(Webhook::new(r)?)));
    }
    let storage_cfg = cfg.storage.clone();
    let (store, reads) = tokio::task::spawn_blocking(move || {
        Ok::<_, storage::StorageError>((
            storage::open_cursors(&storage_cfg)?,
            storage::open_read_only(&storage_cfg)?,
        ))
    })
    .await
    .map_err(|e| ForwardError::Config(format!("opening the store: {e}")))??;
    let cursor = Cursor::new(store, "alerts".into());
    let reads: Arc<dyn Queries> = Arc::from(reads);
    let storage = cfg.storage.clone();
    tracing::info!("alerts: {} rules", cfg.alert.len());
    Ok(Some(crate::forward::supervised(
        "alerts".into(),
        move || {
            Runner {
                rules: rules.clone(),
                cursor: cursor.clone(),
                lease: Lease::new(&storage, "alerts"),
                reads: reads.clone(),
                metrics: metrics.clone(),
                fired: HashMap::new(),
            }
            .run()
        },
    )))
}

struct Runner {
    rules: Vec<(AlertRule, Arc<Webhook>)>,
    cursor: Cursor,
    lease: Lease,
    reads: Arc<dyn Queries>,
    metrics: Arc<ForwardMetrics>,
    /// When each (alert, host, rule) last fired (unix time).
    fired: HashMap<(String, String, String), i64>,
}

impl Runner {
    async fn run(mut self) {
        let stale_every = self
            .rules
            .iter()
            .filter_map(|(r, _)| r.stale_after_secs)
            .map(|s| Duration::from_secs((s / 4).clamp(1, 60)))
            .min();
        let mut last_stale_check: Option<Instant> = None;
        let mut backoff = Backoff::new(Duration::from_secs(30));
        loop {
            self.lease.acquire().await;
            if let Some(every) = stale_every {
                if last_stale_check.is_none_or(|t| t.elapsed() >= every) {
                    last_stale_check = Some(Instant::now());
                    self.check_stale().await;
                }
            }
            let pending = match self.cursor.pending(BATCH).await {
                Ok(p) => p,
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::warn!("alerts: reading events: {e}; again in {wait:?}");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            if pending.events.is_empty() && pending.gone.is_empty() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            let now = now();
            let mut fired = Vec::new();
            for e in &pending.events {
                for (rule, hook) in &self.rules {
                    if e.received_at + rule.max_event_age_secs as i64 <= now {
                        continue;
                    }
                    if let Some(f) = rule.fired_by(e) {
                        fired.push((rule.clone(), hook.clone(), f));
                    }
                }
            }
            self.dispatch(fired).await;
            while let Err(e) = self.cursor.advance_past(&pending).await {
                let wait = backoff.next_wait();
                tracing::warn!("alerts: moving the cursor: {e}; again in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            backoff.reset();
        }
    }

    /// Fires `host_stale` rules for hosts unheard of for too long.
    async fn check_stale(&mut self) {
        let reads = self.reads.clone();
        // Only `last_seen` is read: drift is asked from now on (nothing to
        // count), not over every host's whole history.
        let since = now();
        let hosts = match tokio::task::spawn_blocking(move || reads.hosts(since)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!("alerts: reading hosts: {e}");
                return;
            }
            Err(_) => return,
        };
        let now = now();
        let mut fired = Vec::new();
        for (rule, hook) in &self.rules {
            let (AlertOn::HostStale, Some(after)) = (rule.on, rule.stale_after_secs) else {
                continue;
            };
            for h in &hosts {
                let silent = now - h.last_seen;
                if silent <= after as i64 || !storage::host_matches(&rule.hosts, &h.host) {
                    continue;
                }
                fired.push((
                    rule.clone(),
                    hook.clone(),
                    Fired {
                        host: h.host.clone(),
                        rule: String::new(),
                        severity: "high".into(),
                        summary: format!(
                            "{}: no news for {silent} s (stale after {after} s)",
                            h.host
                        ),
                        time: h.last_seen,
                        event: None,
                    },
                ));
            }
        }
        self.dispatch(fired).await;
    }

    /// Sends what was fired, except what fired within its window already;
    /// returns once each was sent or failed.
    async fn dispatch(&mut self, fired: Vec<(AlertRule, Arc<Webhook>, Fired)>) {
        let now = now();
        let mut sends = JoinSet::new();
        for (rule, hook, f) in fired {
            let key = (rule.name.clone(), f.host.clone(), f.rule.clone());
            if let Some(&at) = self.fired.get(&key) {
                if now - at < rule.dedup_window_secs as i64 {
                    tracing::debug!(
                        "alert {}: {} already sent within its window",
                        rule.name,
                        f.summary
                    );
                    self.metrics.alert(&rule.name, "deduplicated");
                    continue;
                }
            }
            self.fired.insert(key, now);
            let body = match webhook::body(&rule, &f) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("alert {}: body: {e}", rule.name);
                    self.metrics.alert(&rule.name, "failed");
                    continue;
                }
            };
            let metrics = self.metrics.clone();
            sends.spawn(async move {
                match hook.send(body).await {
                    Ok(attempts) => {
                        tracing::info!(
                            "alert {} sent ({} attempts): {}",
                            rule.name,
                            attempts,
                            f.summary
                        );
                        metrics.alert(&rule.name, "sent");
                    }
                    Err(e) => {
                        tracing::warn!("alert {} failed: {}: {e}", rule.name, f.summary);
                        metrics.alert(&rule.name, "failed");
                    }
                }
            });
        }
        while sends.join_next().await.is_some() {}
        // Forget what can no longer suppress anything.
        let longest = self
            .rules
            .iter()
            .map(|(r, _)| r.dedup_window_secs as i64)
            .max()
            .unwrap_or(0);
        self.fired.retain(|_, at| now - *at < longest);
    }
}
