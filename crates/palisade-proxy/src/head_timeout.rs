//! The header timeout of HTTP/1 client connections: a client must send each request head
//! within `header_timeout` of the connection starting to wait for one (when it opens, and
//! each time a response has ended). One that does not, idle or slow, is cut off.
//!
//! hyper can do this itself, but it arms a timer for every request head: a boxed sleep,
//! a clock read, and an insertion into tokio's timer wheel that is removed again
//! microseconds later, when the head arrives (about 2.5% of the sidecar's CPU per
//! proxied request in user space). Here each connection has one [`Waiting`] mark that
//! the request path sets with a plain store — "a request is in flight", or "waiting
//! since t" — and one timer, [`expired`], which wakes at most once per `header_timeout`
//! and then reads the mark: still waiting past the limit ends the connection; otherwise
//! it sleeps until the limit counted from the mark.
//!
//! The mark reads the CPU's time-stamp counter ([`Clock::fast`]); the timer is tokio's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade::clock::{Clock, Nanos};
use tokio::time::Instant;

/// The mark while a request is in flight.
const BUSY: Nanos = Nanos::MAX;

/// Whether a connection is waiting for a request head, and since when.
pub struct Waiting {
    clock: Clock,
    /// [`BUSY`], or the clock's reading when the wait began.
    since: AtomicU64,
}

impl Waiting {
    /// A connection that starts waiting now (it has just been accepted).
    pub fn new(clock: Clock) -> Self {
        let since = AtomicU64::new(clock.now());
        Self { clock, since }
    }

    /// A request head has arrived: the connection is busy until its response ends.
    pub fn busy(&self) {
        self.since.store(BUSY, Ordering::Relaxed);
    }

    /// The response has ended (or was dropped): the wait for the next head begins.
    pub fn idle(&self) {
        self.since.store(self.clock.now(), Ordering::Relaxed);
    }

    /// How long the connection has waited for a head; `None` while a request is in
    /// flight.
    fn waited(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            BUSY => None,
            since => Some(self.clock.elapsed_since(since)),
        }
    }
}

/// Resolves once the connection has waited `limit` for a request head.
pub async fn expired(waiting: &Waiting, limit: Duration) {
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let next = match waiting.waited() {
            Some(waited) if waited >= limit => return,
            Some(waited) => limit - waited,
            None => limit,
        };
        sleep.as_mut().reset(Instant::now() + next);
        sleep.as_mut().await;
    }
}

/// Marks its connection idle when dropped: held by a relayed response's body, which is
/// dropped when it ends or when hyper gives up on it.
pub struct IdleOnDrop(pub Arc<Waiting>);

impl Drop for IdleOnDrop {
    fn drop(&mut self) {
        self.0.idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_waiting_past_the_limit_expires_and_a_busy_one_does_not() {
        let (clock, hand) = Clock::manual();
        let waiting = Waiting::new(clock);
        let limit = Duration::from_secs(10);
        let watch = expired(&waiting, limit);
        tokio::pin!(watch);

        // A request arrives after 4 s and takes 30 s: never cut meanwhile.
        hand.advance(Duration::from_secs(4));
        waiting.busy();
        for _ in 0..6 {
            hand.advance(Duration::from_secs(5));
            tokio::time::advance(Duration::from_secs(5)).await;
            assert!(
                futures_poll(watch.as_mut()).is_pending(),
                "cut while a request was in flight"
            );
        }
        // Its response ends; 9 s of waiting is within the limit, 10 s is not.
        waiting.idle();
        hand.advance(Duration::from_secs(9));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(futures_poll(watch.as_mut()).is_pending(), "cut after 9 s");
        hand.advance(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            futures_poll(watch.as_mut()).is_ready(),
            "not cut after 10 s"
        );
    }

    #[test]
    fn dropping_the_guard_starts_the_wait() {
        let (clock, hand) = Clock::manual();
        let waiting = Arc::new(Waiting::new(clock));
        waiting.busy();
        assert_eq!(waiting.waited(), None);
        hand.advance(Duration::from_secs(3));
        drop(IdleOnDrop(waiting.clone()));
        hand.advance(Duration::from_secs(2));
        assert_eq!(waiting.waited(), Some(Duration::from_secs(2)));
    }

    /// Polls `future` once with a no-op waker.
    fn futures_poll<F: std::future::Future>(
        future: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut cx)
    }
}
