//! What every policy is built with beside its own config: its name, the clock it reads
//! and the listener its events go to, given once for all the policies of a service.
//!
//! Every policy has one construction shape: `Builder::from_config(config)`, then
//! [`settings`](Settings) for the three shared settings (or `name`, `clock`, `on_event`
//! one by one), then `build()`, which validates. A service that builds many policies
//! from one file — the sidecar builds a dozen per upstream — names its settings once
//! and derives each policy's from them, so no policy is left on another clock:
//!
//! ```
//! use palisade::clock::Clock;
//! use palisade::settings::Settings;
//! use palisade::policy::retry::{RetryBuilder, RetryConfig};
//! use palisade::policy::timeout::{TimeoutBuilder, TimeoutConfig};
//!
//! let upstream = Settings::named("payments").clock(Clock::tokio());
//! let retry = RetryBuilder::from_config(RetryConfig::default())
//!     .settings(&upstream)
//!     .build()
//!     .unwrap();
//! let per_try = TimeoutBuilder::from_config(TimeoutConfig::default())
//!     .settings(&upstream.part("per_try"))
//!     .build()
//!     .unwrap();
//! assert_eq!(retry.name().as_ref(), "payments");
//! assert_eq!(per_try.name().as_ref(), "payments/per_try");
//! ```

use crate::clock::Clock;
use crate::events::Listener;

/// A policy's name, clock and listener (see the [module docs](self)).
#[derive(Clone, Default)]
pub struct Settings {
    pub(crate) name: String,
    pub(crate) clock: Option<Clock>,
    pub(crate) listener: Option<Listener>,
}

// === impl Settings ===

impl Settings {
    /// Settings naming a policy `name`, on tokio's clock, without a listener.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            clock: None,
            listener: None,
        }
    }

    /// Reads time from `clock` (default: tokio's).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sends every event to `listener` (default: none).
    #[must_use]
    pub fn listener(mut self, listener: Option<Listener>) -> Self {
        self.listener = listener;
        self
    }

    /// The same settings for a part of this policy's owner, named `{name}/{part}`.
    #[must_use]
    pub fn part(&self, part: &str) -> Self {
        Self {
            name: format!("{}/{part}", self.name),
            ..self.clone()
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("clock", &self.clock.is_some())
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

/// Gives a builder (with `config.name`, `clock` and `listener` fields) its `settings`
/// method.
macro_rules! settings_method {
    ($builder:ty) => {
        impl $builder {
            /// Takes the name, clock and listener from `settings` (see
            /// [`Settings`](crate::settings::Settings)).
            #[must_use]
            pub fn settings(mut self, settings: &$crate::settings::Settings) -> Self {
                self.config.name.clone_from(&settings.name);
                if let Some(clock) = &settings.clock {
                    self.clock = Some(clock.clone());
                }
                if settings.listener.is_some() {
                    self.listener.clone_from(&settings.listener);
                }
                self
            }
        }
    };
}
pub(crate) use settings_method;

/// Gives a builder (with `config.name`, `clock` and `listener` fields) its `name`,
/// `clock` and `on_event` methods, and `settings` (see [`settings_method`]).
macro_rules! builder_methods {
    ($builder:ty) => {
        impl $builder {
            /// Sets the name used in events and metrics.
            #[must_use]
            pub fn name(mut self, name: impl Into<String>) -> Self {
                self.config.name = name.into();
                self
            }

            /// Reads time from `clock` (default: tokio's).
            #[must_use]
            pub fn clock(mut self, clock: $crate::clock::Clock) -> Self {
                self.clock = Some(clock);
                self
            }

            /// Receives every event of the policy.
            #[must_use]
            pub fn on_event(
                mut self,
                listener: impl Fn(&$crate::events::Event) + Send + Sync + 'static,
            ) -> Self {
                self.listener = Some(std::sync::Arc::new(listener));
                self
            }
        }

        $crate::settings::settings_method!($builder);
    };
}
pub(crate) use builder_methods;
