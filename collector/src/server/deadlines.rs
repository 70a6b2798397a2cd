//! The time an authenticated connection may take, phase by phase:
//!
//! - **idle** (no request under way): `idle_timeout_secs`, then it closes;
//! - **head**: from the first byte of a request, its head (and then its
//!   body, which the handler reads against the same deadline) must arrive
//!   within `request_timeout_secs`: a peer trickling a header one byte at a
//!   time is cut then, not after the idle timeout;
//! - **busy** (the request is being handled): no connection deadline (the
//!   handler bounds its body read; storage answers or fails);
//! - and in every phase, an answer the peer does not read for
//!   `request_timeout_secs` (writes blocked) closes the connection.
//!
//! hyper's own `header_read_timeout` cannot do this: it starts when hyper
//! begins to wait for a head, so idle time counts against it. Here the
//! connection's stream is wrapped ([`Timed`]): a read while idle starts the
//! head phase, the request handler marks the busy phase ([`Clock::begin_request`]),
//! and a [`Watchdog`] beside the connection fires at the earliest deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// No request for `idle_timeout_secs`.
    Idle,
    /// A request head not complete within `request_timeout_secs`.
    Head,
    /// The peer did not read our answer for `request_timeout_secs`.
    Send,
}

impl Expired {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Expired::Idle => "idle timeout",
            Expired::Head => "request head not received within request_timeout_secs",
            Expired::Send => "peer not reading the answer within request_timeout_secs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Head,
    Busy,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    since: Instant,
    write_blocked_since: Option<Instant>,
}

/// One connection's phase and when it began.
#[derive(Debug)]
pub(super) struct Clock {
    state: Mutex<State>,
    idle: Duration,
    request: Duration,
}

/// Further than any deadline (a busy connection has none).
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

impl Clock {
    pub(super) fn new(idle: Duration, request: Duration) -> Arc<Clock> {
        Arc::new(Clock {
            state: Mutex::new(State {
                phase: Phase::Idle,
                since: Instant::now(),
                write_blocked_since: None,
            }),
            idle,
            request,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain data, consistent after every statement: a panic elsewhere
        // leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn on_read(&self) {
        let mut s = self.state();
        if s.phase == Phase::Idle {
            s.phase = Phase::Head;
            s.since = Instant::now();
        }
    }

    /// A write (or flush) could not proceed (`blocked`) or did.
    fn on_write(&self, blocked: bool) {
        let mut s = self.state();
        if blocked {
            s.write_blocked_since.get_or_insert_with(Instant::now);
        } else {
            s.write_blocked_since = None;
        }
    }

    /// A request's head is complete: the handler runs until the guard drops.
    /// The guard's deadline is the request's: `request_timeout` from its
    /// first byte.
    pub(super) fn begin_request(self: &Arc<Self>) -> RequestGuard {
        let mut s = self.state();
        let now = Instant::now();
        let started = if s.phase == Phase::Head { s.since } else { now };
        s.phase = Phase::Busy;
        s.since = now;
        RequestGuard {
            clock: self.clone(),
            deadline: started + self.request,
        }
    }

    fn end_request(&self) {
        let mut s = self.state();
        s.phase = Phase::Idle;
        s.since = Instant::now();
    }

    /// Whether a request is being handled (its answer not yet sent).
    pub(super) fn busy(&self) -> bool {
        self.state().phase == Phase::Busy
    }

    /// The earliest deadline now, and which it is.
    fn deadline(&self) -> (Instant, Expired) {
        let s = self.state();
        let phase = match s.phase {
            Phase::Idle => (s.since + self.idle, Expired::Idle),
            Phase::Head => (s.since + self.request, Expired::Head),
            Phase::Busy => (s.since + NEVER, Expired::Idle),
        };
        match s.write_blocked_since {
            Some(t) if t + self.request < phase.0 => (t + self.request, Expired::Send),
            _ => phase,
        }
    }
}

/// A request being handled; the connection is idle again when it drops.
#[derive(Debug)]
pub(super) struct RequestGuard {
    clock: Arc<Clock>,
    deadline: Instant,
}

impl RequestGuard {
    /// When the whole request (head and body) must have arrived.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.clock.end_request();
    }
}

/// Fires when the connection's earliest deadline passes; follows the clock
/// as it moves.
pub(super) struct Watchdog {
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
}

impl Watchdog {
    pub(super) fn new(clock: Arc<Clock>) -> Watchdog {
        let (deadline, _) = clock.deadline();
        Watchdog {
            clock,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Ready with the deadline that passed.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Expired> {
        loop {
            let (deadline, why) = self.clock.deadline();
            if self.sleep.deadline() != deadline {
                self.sleep.as_mut().reset(deadline);
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= deadline => return Poll::Ready(why),
                // The clock moved on between the reset and now: look again.
                Poll::Ready(()) => {}
            }
        }
    }
}

/// A stream whose reads and writes move its [`Clock`].
pub(super) struct Timed<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S> Timed<S> {
    pub(super) fn new(inner: S, clock: Arc<Clock>) -> Timed<S> {
        Timed { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.on_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> Timed<S> {
    fn track<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.clock.on_write(r.is_pending());
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The watchdog's verdict within `within`, if any.
    async fn expires(w: &mut Watchdog, within: Duration) -> Option<Expired> {
        tokio::time::timeout(within, std::future::poll_fn(|cx| w.poll_expired(cx)))
            .await
            .ok()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn idle_is_long_a_started_head_is_short_and_busy_has_no_deadline() {
        let clock = Clock::new(ms(1500), ms(300));
        let (a, mut b) = tokio::io::duplex(64);
        let mut timed = Timed::new(a, clock.clone());
        let mut w = Watchdog::new(clock.clone());
        // Idle: nothing fires within the head's budget.
        assert_eq!(expires(&mut w, ms(500)).await, None);
        // One byte of a head: the request budget runs from it.
        b.write_all(b"P").await.unwrap();
        let mut buf = [0u8; 8];
        let _ = timed.read(&mut buf).await.unwrap();
        let head = Instant::now();
        assert_eq!(expires(&mut w, ms(5000)).await, Some(Expired::Head));
        assert!(head.elapsed() >= ms(290), "{:?}", head.elapsed());
        // The head completes: the handler runs without a connection
        // deadline (its own counts from the head's first byte).
        let guard = clock.begin_request();
        assert!(guard.deadline() <= Instant::now());
        assert_eq!(expires(&mut w, ms(800)).await, None);
        // Done: idle again, for the idle timeout.
        drop(guard);
        let idle = Instant::now();
        assert_eq!(expires(&mut w, ms(5000)).await, Some(Expired::Idle));
        assert!(idle.elapsed() >= ms(1490), "{:?}", idle.elapsed());
    }

    #[tokio::test]
    async fn an_answer_nobody_reads_expires() {
        let clock = Clock::new(ms(60_000), ms(300));
        let (a, _b) = tokio::io::duplex(16);
        let mut timed = Timed::new(a, clock.clone());
        let _busy = clock.begin_request();
        let mut w = Watchdog::new(clock.clone());
        // The peer reads nothing: the write blocks once the pipe is full.
        let write = tokio::time::timeout(ms(100), timed.write_all(&[0u8; 64])).await;
        assert!(write.is_err());
        assert_eq!(expires(&mut w, ms(5000)).await, Some(Expired::Send));
    }
}
