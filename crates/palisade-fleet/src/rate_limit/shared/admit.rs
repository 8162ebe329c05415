//! What a fleet rate limit decided ([`Admit`]) and what decided it ([`Counting`]: the
//! fleet's count in Redis, or the fallback in use while Redis fails).

use std::fmt;
use std::time::Duration;

use super::OnStoreDown;

/// What decides a request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counting {
    /// Redis: the fleet's one count (exact mode, or a lease it granted).
    Shared,
    /// This instance's share of the limit, locally (Redis failing, `local_share`).
    LocalShare,
    /// Nothing: every request admitted (Redis failing, `open`).
    Open,
    /// Nothing: every request refused (Redis failing, `closed`).
    Closed,
}

impl Counting {
    /// All four, in the order of their gauges.
    pub const ALL: [Counting; 4] = [
        Counting::Shared,
        Counting::LocalShare,
        Counting::Open,
        Counting::Closed,
    ];

    /// `shared`, `local_share`, `open` or `closed` (metrics labels, logs, headers).
    pub fn as_str(&self) -> &'static str {
        match self {
            Counting::Shared => "shared",
            Counting::LocalShare => "local_share",
            Counting::Open => "open",
            Counting::Closed => "closed",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Counting::Shared => 0,
            Counting::LocalShare => 1,
            Counting::Open => 2,
            Counting::Closed => 3,
        }
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<OnStoreDown> for Counting {
    fn from(down: OnStoreDown) -> Self {
        match down {
            OnStoreDown::LocalShare => Counting::LocalShare,
            OnStoreDown::Open => Counting::Open,
            OnStoreDown::Closed => Counting::Closed,
        }
    }
}

/// What [`SharedRateLimit::acquire`](super::SharedRateLimit::acquire) decided, and by what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Admitted; counted by `counting`.
    Admitted {
        /// What decided.
        counting: Counting,
    },
    /// Refused.
    Refused {
        /// How long until a request would be admitted, if no one else comes first (for
        /// `Retry-After`): the server's arithmetic, the local share's, or for `closed`
        /// the store breaker's wait ([`CLOSED_RETRY_AFTER`], 1 s, when the error carries
        /// none).
        retry_after: Duration,
        /// What decided.
        counting: Counting,
    },
}

impl Admit {
    /// True when admitted.
    pub fn is_admitted(&self) -> bool {
        matches!(self, Admit::Admitted { .. })
    }

    /// What decided.
    pub fn counting(&self) -> Counting {
        match self {
            Admit::Admitted { counting } | Admit::Refused { counting, .. } => *counting,
        }
    }
}

/// How long `closed` tells a refused caller to wait when the store's error says nothing.
pub const CLOSED_RETRY_AFTER: Duration = Duration::from_secs(1);
