//! How much a call matters when there is not enough capacity for all (Google SRE's
//! criticality classes).
//!
//! | class | meaning |
//! |---|---|
//! | `critical-plus` | the most important: failure is user-visible and severe |
//! | `critical` | the default for user-facing requests |
//! | `sheddable-plus` | may fail partially; retried later (batch, prefetch) |
//! | `sheddable` | may fail often; best effort |
//!
//! Under pressure, load shedding drops the lowest class first, and an adaptive limiter's
//! partitions reserve capacity per class. A call's class travels with it like its
//! deadline: set it with [`scope`]; read it with [`current`] (`critical` when unset).
//!
//! ```
//! use palisade::criticality::{self, Criticality};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! criticality::scope(Criticality::Sheddable, async {
//!     assert_eq!(criticality::current(), Criticality::Sheddable);
//! }).await;
//! assert_eq!(criticality::current(), Criticality::Critical);
//! assert_eq!("critical_plus".parse::<Criticality>(), Ok(Criticality::CriticalPlus));
//! # }
//! ```

use std::cell::Cell;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::context;

/// A criticality class, ordered from least to most important.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criticality {
    /// Best effort.
    Sheddable,
    /// May fail partially.
    SheddablePlus,
    /// The default.
    Critical,
    /// The most important.
    CriticalPlus,
}

impl Criticality {
    /// Every class, least important first.
    pub const ALL: [Criticality; 4] = [
        Criticality::Sheddable,
        Criticality::SheddablePlus,
        Criticality::Critical,
        Criticality::CriticalPlus,
    ];

    /// Its name (`"sheddable-plus"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Criticality::Sheddable => "sheddable",
            Criticality::SheddablePlus => "sheddable-plus",
            Criticality::Critical => "critical",
            Criticality::CriticalPlus => "critical-plus",
        }
    }

    /// Its rank, 0 (sheddable) to 3 (critical-plus).
    pub const fn rank(self) -> usize {
        self as usize
    }
}

/// A class name that is not one of the four.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a criticality; allowed: critical-plus, critical, sheddable-plus, sheddable")]
pub struct UnknownCriticality(pub String);

impl std::str::FromStr for Criticality {
    type Err = UnknownCriticality;

    /// Accepts `critical-plus`, `critical_plus` and `CRITICAL_PLUS` alike.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let normal = text.trim().to_ascii_lowercase().replace('_', "-");
        Criticality::ALL
            .into_iter()
            .find(|c| c.as_str() == normal)
            .ok_or_else(|| UnknownCriticality(text.to_owned()))
    }
}

std::thread_local! {
    static CRITICALITY: Cell<Option<Criticality>> = const { Cell::new(None) };
}

/// Runs `future` with `criticality`.
pub fn scoped<F: Future>(criticality: Criticality, future: F) -> context::Scoped<F, Criticality> {
    context::Scoped::new(&CRITICALITY, criticality, future)
}

/// Runs `future` with `criticality`.
///
/// The same as [`scoped`]: a plain function returning the wrapping future, not an
/// `async fn`, so that the future is not stored twice (an `async fn` keeps its argument
/// and the future it awaits side by side, doubling the size of everything it wraps).
#[inline]
pub fn scope<F: Future>(criticality: Criticality, future: F) -> context::Scoped<F, Criticality> {
    scoped(criticality, future)
}

/// The criticality of the future being polled: `Critical` when none was set.
#[inline]
pub fn current() -> Criticality {
    context::get(&CRITICALITY).unwrap_or(Criticality::Critical)
}
