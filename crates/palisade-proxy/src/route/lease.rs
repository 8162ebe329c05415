//! A lease on a route's fault: a fault set with a lease holds until the lease runs out,
//! then the route's fault goes back to the one its config gave.
//!
//! A game day sets its route faults with a lease and renews it while it runs, so a
//! runner killed outright (SIGKILL, which runs no cleanup) leaves no fault behind once
//! its lease is over. At most one lease is held per route, and with it one watcher
//! task: granting a lease aborts the watcher of the one before, and setting a fault
//! without a lease cancels it. Every lease has a generation unique in the process, so a
//! watcher that wakes after a reload (its route replaced by a new one, perhaps leased
//! again) can never end a lease it was not made for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Shortest lease the admin API grants.
pub const MIN_LEASE: Duration = Duration::from_millis(100);
/// Longest lease the admin API grants.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// Generations of leases, unique across every route of the process.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// A route's lease, if one is held.
#[derive(Debug, Default)]
pub struct FaultLease {
    held: Mutex<Option<Held>>,
}

#[derive(Debug)]
struct Held {
    generation: u64,
    until: Instant,
    watcher: Option<AbortHandle>,
}

// === impl FaultLease ===

impl FaultLease {
    /// Grants a lease until `until`, replacing any lease held; `watch` is given the
    /// lease's generation and starts the task that ends it (see [`expire`](Self::expire)).
    pub fn grant(&self, until: Instant, watch: impl FnOnce(u64) -> AbortHandle) -> u64 {
        let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        let mut held = self.lock();
        if let Some(old) = held.take() {
            old.stop_watching();
        }
        *held = Some(Held {
            generation,
            until,
            watcher: Some(watch(generation)),
        });
        generation
    }

    /// Drops the lease held, if any (a fault set without a lease is permanent).
    pub fn cancel(&self) {
        if let Some(old) = self.lock().take() {
            old.stop_watching();
        }
    }

    /// Ends lease `generation` when it is the one held and its time is over at `now`;
    /// true when it did (the caller then puts the configured fault back).
    pub fn expire(&self, generation: u64, now: Instant) -> bool {
        let mut held = self.lock();
        match &*held {
            Some(lease) if lease.generation == generation && now >= lease.until => {
                *held = None;
                true
            }
            _ => false,
        }
    }

    /// How long the lease held has left at `now`; none without a lease.
    pub fn left(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .as_ref()
            .map(|lease| lease.until.saturating_duration_since(now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Held ===

impl Held {
    fn stop_watching(self) {
        if let Some(watcher) = self.watcher {
            watcher.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A watcher as the admin API starts one: it sleeps out the lease, then expires it.
    fn watcher(
        lease: &Arc<FaultLease>,
        ended: &Arc<AtomicUsize>,
        until: Instant,
    ) -> impl FnOnce(u64) -> AbortHandle {
        let (lease, ended) = (lease.clone(), ended.clone());
        move |generation| {
            tokio::spawn(async move {
                tokio::time::sleep_until(until).await;
                if lease.expire(generation, Instant::now()) {
                    ended.fetch_add(1, Ordering::SeqCst);
                }
            })
            .abort_handle()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_not_renewed_ends_at_its_time() {
        let (lease, ended) = (Arc::new(FaultLease::default()), Arc::default());
        let until = Instant::now() + Duration::from_secs(2);
        lease.grant(until, watcher(&lease, &ended, until));
        tokio::time::sleep(Duration::from_millis(1999)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 0, "not before its time");
        assert_eq!(lease.left(Instant::now()), Some(Duration::from_millis(1)));
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 1);
        assert_eq!(lease.left(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewed_lease_holds_and_ends_once_renewals_stop() {
        let (lease, ended) = (
            Arc::new(FaultLease::default()),
            Arc::<AtomicUsize>::default(),
        );
        for _ in 0..10 {
            let until = Instant::now() + Duration::from_secs(1);
            lease.grant(until, watcher(&lease, &ended, until));
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_eq!(ended.load(Ordering::SeqCst), 0, "renewed every 400 ms");
        tokio::time::sleep(Duration::from_millis(601)).await;
        assert_eq!(
            ended.load(Ordering::SeqCst),
            1,
            "ended once, by the last lease"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_lease_replaces_a_longer_one() {
        let (lease, ended) = (
            Arc::new(FaultLease::default()),
            Arc::<AtomicUsize>::default(),
        );
        let long = Instant::now() + Duration::from_secs(3600);
        lease.grant(long, watcher(&lease, &ended, long));
        let short = Instant::now() + Duration::from_secs(1);
        lease.grant(short, watcher(&lease, &ended, short));
        tokio::time::sleep(Duration::from_millis(1001)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_lease_never_ends_the_fault() {
        let (lease, ended) = (
            Arc::new(FaultLease::default()),
            Arc::<AtomicUsize>::default(),
        );
        let until = Instant::now() + Duration::from_secs(1);
        lease.grant(until, watcher(&lease, &ended, until));
        lease.cancel();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 0);
        assert_eq!(lease.left(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watcher_cannot_end_another_routes_lease() {
        let (old, new) = (FaultLease::default(), FaultLease::default());
        let until = Instant::now();
        let stale = old.grant(until, |_| tokio::spawn(async {}).abort_handle());
        let current = new.grant(until, |_| tokio::spawn(async {}).abort_handle());
        assert!(
            !new.expire(stale, Instant::now()),
            "a generation of another lease"
        );
        assert!(new.expire(current, Instant::now()));
        assert!(!new.expire(current, Instant::now()), "ended once");
    }
}
