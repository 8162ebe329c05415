//! Tower integration: every policy's layer, in one place, and the glue they share.
//!
//! Each policy has a `layer()` method returning its tower [`Layer`]; the layers are
//! re-exported here. Their services are `Clone` and share the policy's state, so a stack
//! can be cloned into every connection of a server without a `Buffer`.
//!
//! Errors stay flat: a Palisade service returns `Error<E>` and, wrapping another Palisade
//! service, passes that service's rejections through (see
//! [`IntoPolicyError`](crate::error::IntoPolicyError)). A service failing with its own
//! error type is first wrapped with [`LiftLayer`].
//!
//! Every service's `call` is `#[inline(always)]`. Its response future is a small enum
//! built from several narrow fields; returned from an out-of-line `call`, the caller
//! copies it with wide loads straight after the callee's narrow stores, a
//! store-forwarding stall that cost the bulkhead layer about 10 ns per call (more than
//! the bulkhead itself). Inlined, the future is built where the caller keeps it.

mod deferred;
mod lift;
mod policy;

pub use deferred::{Admission, Deferred};
pub use lift::{LiftLayer, LiftService};
pub use policy::{PolicyFuture, PolicyLayer, PolicyService};

pub use crate::pipeline::PipelineLayer;
pub use crate::policy::adaptive_timeout::{AdaptiveTimeoutLayer, AdaptiveTimeoutService};
pub use crate::policy::bulkhead::{BulkheadLayer, BulkheadService};
pub use crate::policy::circuit_breaker::{CircuitBreakerLayer, CircuitBreakerService};
pub use crate::policy::fallback::{FallbackLayer, FallbackService};
pub use crate::policy::hedge::{HedgeLayer, HedgeService};
pub use crate::policy::rate_limit::{RateLimitLayer, RateLimitService};
pub use crate::policy::retry::{RetryLayer, RetryService};
pub use crate::policy::timeout::{TimeoutLayer, TimeoutService};

pub use tower_layer::Layer;
