//! The [`RateLimiter`] as a tower middleware.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::RateLimiter;
use super::gcra::Decision;
use crate::Error;
use crate::error::IntoPolicyError;
use crate::layer::Deferred;

/// Applies a [`RateLimiter`] to a service. Clones share the one bucket (unlike tower's
/// `RateLimit`, whose clones each get their own).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

/// A rate-limited service.
#[derive(Clone, Debug)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: RateLimiter,
}

impl RateLimiter {
    /// This limiter as a tower layer.
    pub fn layer(&self) -> RateLimitLayer {
        RateLimitLayer {
            limiter: self.clone(),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

impl<S, Req> Service<Req> for RateLimitService<S>
where
    S: Service<Req> + Clone,
    S::Error: IntoPolicyError,
    <S::Error as IntoPolicyError>::Inner: Send + 'static,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future = Deferred<S, Req, S::Future, <S::Error as IntoPolicyError>::Inner, ()>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        match self.limiter.decide() {
            Decision::Allowed => Deferred::running(self.inner.call(request), ()),
            Decision::AllowedAfter(wait) => Deferred::waiting(
                Box::pin(async move {
                    tokio::time::sleep(wait).await;
                    Ok(())
                }),
                self.inner.clone(),
                request,
            ),
            Decision::Limited(after) => Deferred::refused(self.limiter.rejection(after)),
        }
    }
}
