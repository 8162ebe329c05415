//! The [`Bulkhead`] as a tower middleware.
//!
//! With a free slot the call goes straight through, holding an owned permit until its
//! response future completes; otherwise it waits in the bulkhead's queue first (see
//! [`Deferred`]).

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::{Bulkhead, OwnedBulkheadPermit};
use crate::Error;
use crate::error::IntoPolicyError;
use crate::layer::Deferred;

/// Applies a [`Bulkhead`] to a service.
#[derive(Clone, Debug)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

/// A service whose calls hold a [`Bulkhead`] slot.
#[derive(Clone, Debug)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

impl Bulkhead {
    /// This bulkhead as a tower layer.
    pub fn layer(&self) -> BulkheadLayer {
        BulkheadLayer {
            bulkhead: self.clone(),
        }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req> + Clone,
    S::Error: IntoPolicyError,
    <S::Error as IntoPolicyError>::Inner: Send + 'static,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future =
        Deferred<S, Req, S::Future, <S::Error as IntoPolicyError>::Inner, OwnedBulkheadPermit>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(permit) = self.bulkhead.try_acquire_owned() {
            return Deferred::running(self.inner.call(request), permit);
        }
        let bulkhead = self.bulkhead.clone();
        // The clone takes this request; `self.inner` keeps its readiness for the next.
        Deferred::waiting(
            Box::pin(async move { bulkhead.acquire_owned().await }),
            self.inner.clone(),
            request,
        )
    }
}
