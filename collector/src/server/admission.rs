//! Who gets a slot. Two pools, so that peers who have not proved who they
//! are can never take the place of agents who have:
//!
//! - **handshakes**: at most `max_handshakes` in progress, at most
//!   `max_handshakes_per_address` from one source address (an IPv4 address,
//!   or an IPv6 /64: one machine gets a whole /64), each bounded by
//!   `handshake_timeout_secs`. A connection beyond a cap is closed at once,
//!   before any TLS. A silent or half-open peer holds one handshake slot for
//!   the handshake timeout at most, and one address cannot fill the pool.
//! - **authenticated connections**: at most `max_connections`, and at most
//!   `max_connections_per_agent` for one certificate identity, where the
//!   newest wins (it closes the identity's oldest: an agent that reconnects
//!   after a network cut must not be locked out by its own dead connections,
//!   and one agent certificate cannot take more than its share).
//!
//! Every refusal is counted ([`ConnectionCounters`]).

use super::counters::{ConnectionCounters, Gauge, Refused};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The caps (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Caps {
    pub(super) handshakes: usize,
    pub(super) handshakes_per_address: usize,
    pub(super) connections: usize,
    pub(super) connections_per_agent: usize,
}

/// One agent's open connections, oldest first.
type Open = VecDeque<(u64, Arc<Notify>)>;

/// The two pools.
pub(super) struct Admission {
    caps: Caps,
    handshakes: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    connections: Arc<Semaphore>,
    per_agent: Mutex<HashMap<Arc<str>, Open>>,
    next_id: AtomicU64,
    counters: Arc<ConnectionCounters>,
}

/// The address a handshake cap counts: IPv4 as is, IPv6 by its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold counts only; a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Admission {
    pub(super) fn new(caps: Caps, counters: Arc<ConnectionCounters>) -> Arc<Admission> {
        Arc::new(Admission {
            caps,
            handshakes: Arc::new(Semaphore::new(caps.handshakes)),
            per_address: Mutex::new(HashMap::new()),
            connections: Arc::new(Semaphore::new(caps.connections)),
            per_agent: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            counters,
        })
    }

    /// A handshake slot for a connection from `ip`, or why there is none
    /// (counted).
    pub(super) fn begin_handshake(self: &Arc<Self>, ip: IpAddr) -> Result<HandshakeSlot, Refused> {
        let key = source_key(ip);
        {
            let mut per = lock(&self.per_address);
            let n = per.entry(key).or_insert(0);
            if *n >= self.caps.handshakes_per_address {
                drop(per);
                self.counters.count(Refused::AddressCap);
                return Err(Refused::AddressCap);
            }
            *n += 1;
        }
        let Ok(permit) = self.handshakes.clone().try_acquire_owned() else {
            self.release_address(key);
            self.counters.count(Refused::HandshakeCap);
            return Err(Refused::HandshakeCap);
        };
        Ok(HandshakeSlot {
            admission: self.clone(),
            key,
            _permit: permit,
            _gauge: self.counters.handshaking(),
        })
    }

    fn release_address(&self, key: IpAddr) {
        let mut per = lock(&self.per_address);
        if let Some(n) = per.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&key);
            }
        }
    }

    /// A slot for an authenticated connection of `identity`, or why there
    /// is none (counted). When the identity has its share already, its
    /// oldest connection is told to close ([`ConnectionSlot::replaced`]).
    pub(super) fn authenticate(
        self: &Arc<Self>,
        identity: &str,
    ) -> Result<ConnectionSlot, Refused> {
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            self.counters.count(Refused::ConnectionLimit);
            return Err(Refused::ConnectionLimit);
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = Arc::new(Notify::new());
        let identity: Arc<str> = identity.into();
        {
            let mut per = lock(&self.per_agent);
            let open = per.entry(identity.clone()).or_default();
            while open.len() >= self.caps.connections_per_agent {
                if let Some((_, oldest)) = open.pop_front() {
                    oldest.notify_one();
                }
            }
            open.push_back((id, replaced.clone()));
        }
        Ok(ConnectionSlot {
            admission: self.clone(),
            identity,
            id,
            replaced,
            _permit: permit,
            _gauge: self.counters.authenticated(),
        })
    }
}

/// A handshake in progress; its slots are given back when dropped.
pub(super) struct HandshakeSlot {
    admission: Arc<Admission>,
    key: IpAddr,
    _permit: OwnedSemaphorePermit,
    _gauge: Gauge,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.admission.release_address(self.key);
    }
}

/// An authenticated connection's place; given back when dropped.
pub(super) struct ConnectionSlot {
    admission: Arc<Admission>,
    identity: Arc<str>,
    id: u64,
    replaced: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
    _gauge: Gauge,
}

impl ConnectionSlot {
    /// Completes when a newer connection of the same identity took this
    /// one's place.
    pub(super) async fn replaced(&self) {
        self.replaced.notified().await;
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per = lock(&self.admission.per_agent);
        if let Some(open) = per.get_mut(&self.identity) {
            open.retain(|(id, _)| *id != self.id);
            if open.is_empty() {
                per.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(per_address: usize, total: usize) -> Arc<Admission> {
        Admission::new(
            Caps {
                handshakes: total,
                handshakes_per_address: per_address,
                connections: 3,
                connections_per_agent: 2,
            },
            Arc::new(ConnectionCounters::default()),
        )
    }

    #[test]
    fn handshakes_are_capped_per_address_and_in_total() {
        let a = admission(2, 3);
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let y: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = a.begin_handshake(x).unwrap();
        let _s2 = a.begin_handshake(x).unwrap();
        assert_eq!(a.begin_handshake(x).err(), Some(Refused::AddressCap));
        let _s3 = a.begin_handshake(y).unwrap();
        assert_eq!(a.begin_handshake(y).err(), Some(Refused::HandshakeCap));
        drop(s1);
        let _s4 = a.begin_handshake(y).unwrap();
        // The refused total-cap attempt gave its address count back.
        assert_eq!(lock(&a.per_address).get(&y), Some(&2));
        let snap = a.counters.snapshot();
        assert_eq!(snap.handshaking, 3);
        let count = |l| snap.refused.iter().find(|(n, _)| *n == l).unwrap().1;
        assert_eq!(count("per-address handshake cap"), 1);
        assert_eq!(count("handshake cap"), 1);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        let a = admission(1, 10);
        let _s = a.begin_handshake("2001:db8::1".parse().unwrap()).unwrap();
        assert!(
            a.begin_handshake("2001:db8::ffff:2".parse().unwrap())
                .is_err()
        );
        assert!(
            a.begin_handshake("2001:db8:0:1::1".parse().unwrap())
                .is_ok()
        );
        // An IPv4-mapped address counts as the IPv4 address.
        let _v4 = a
            .begin_handshake("::ffff:192.0.2.9".parse().unwrap())
            .unwrap();
        assert!(a.begin_handshake("192.0.2.9".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn the_newest_connection_of_an_agent_replaces_its_oldest() {
        let a = admission(10, 10);
        let first = a.authenticate("web-1").unwrap();
        let _second = a.authenticate("web-1").unwrap();
        let _third = a.authenticate("web-1").unwrap();
        // The first was told to go (the notification is kept until awaited).
        tokio::time::timeout(std::time::Duration::from_secs(1), first.replaced())
            .await
            .unwrap();
        // The pool is full (3) until the replaced connection closes.
        assert_eq!(a.authenticate("db-1").err(), Some(Refused::ConnectionLimit));
        drop(first);
        let _db = a.authenticate("db-1").unwrap();
        assert_eq!(a.counters.snapshot().authenticated, 3);
    }
}
