//! A response future that may first have to wait for admission.
//!
//! Bulkheads and rate limiters usually admit a call at once; then the response future
//! holds a guard (a permit, or nothing) and polls the inner call. When the call must wait
//! (a bulkhead queue, a rate limiter's reservation), the wait is a boxed future — the one
//! allocation, on the waiting path only — after which a clone of the inner service is
//! driven to readiness and called. `poll_ready` never waits for admission, so a refusal
//! comes back from `call` as an error instead of stalling the caller.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::Error;
use crate::error::IntoPolicyError;

/// The wait for admission, yielding the guard to hold while the call runs.
pub type Admission<G, I> = Pin<Box<dyn Future<Output = Result<G, Error<I>>> + Send>>;

pin_project! {
    /// The response future of a service that may wait for admission holding `G`.
    #[project = DeferredProj]
    #[allow(missing_docs)] // variants are documented; fields are internal
    pub enum Deferred<S, Req, F, I, G> {
        /// Waiting for admission.
        Waiting {
            admission: Admission<G, I>,
            service: Option<S>,
            request: Option<Req>,
        },
        /// Admitted; waiting for the inner service to be ready.
        Readying {
            guard: Option<G>,
            service: Option<S>,
            request: Option<Req>,
        },
        /// Admitted and running.
        Running {
            #[pin]
            inner: F,
            guard: Option<G>,
        },
        /// Refused before running.
        Refused { error: Option<Error<I>> },
    }
}

impl<S, Req, F, I, G> Deferred<S, Req, F, I, G> {
    /// A call admitted at once.
    pub fn running(inner: F, guard: G) -> Self {
        Deferred::Running {
            inner,
            guard: Some(guard),
        }
    }

    /// A call that must first wait for `admission`, then run on `service`.
    pub fn waiting(admission: Admission<G, I>, service: S, request: Req) -> Self {
        Deferred::Waiting {
            admission,
            service: Some(service),
            request: Some(request),
        }
    }

    /// A call refused with `error`.
    pub fn refused(error: Error<I>) -> Self {
        Deferred::Refused { error: Some(error) }
    }
}

impl<S, Req, F, T, E, I, G> Future for Deferred<S, Req, F, I, G>
where
    S: Service<Req, Future = F, Error = E>,
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError<Inner = I>,
{
    type Output = Result<T, Error<I>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The admitted call is by far the most common state: test for it alone first, so
        // the hot path is one compare and branch rather than a jump through a table.
        if let DeferredProj::Running { inner, guard } = self.as_mut().project() {
            let result = ready!(inner.poll(cx));
            drop(guard.take());
            return Poll::Ready(result.map_err(IntoPolicyError::into_policy_error));
        }
        self.poll_admission(cx)
    }
}

impl<S, Req, F, T, E, I, G> Deferred<S, Req, F, I, G>
where
    S: Service<Req, Future = F, Error = E>,
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError<Inner = I>,
{
    /// Every state but the hot one: waiting, readying, refused (and running again after a
    /// transition).
    #[cold]
    fn poll_admission(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error<I>>> {
        loop {
            match self.as_mut().project() {
                DeferredProj::Waiting {
                    admission,
                    service,
                    request,
                } => {
                    let guard = ready!(admission.as_mut().poll(cx))?;
                    let next = Deferred::Readying {
                        guard: Some(guard),
                        service: service.take(),
                        request: request.take(),
                    };
                    self.set(next);
                }
                DeferredProj::Readying {
                    guard,
                    service,
                    request,
                } => {
                    // Service and request are present until the transition below; only a
                    // poll after completion finds them gone.
                    let Some(svc) = service.as_mut() else {
                        return Poll::Ready(Err(Error::DeadlineExceeded));
                    };
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into_policy_error()));
                    }
                    let Some(req) = request.take() else {
                        return Poll::Ready(Err(Error::DeadlineExceeded));
                    };
                    let next = Deferred::Running {
                        inner: svc.call(req),
                        guard: guard.take(),
                    };
                    self.set(next);
                }
                DeferredProj::Running { inner, guard } => {
                    let result = ready!(inner.poll(cx));
                    drop(guard.take());
                    return Poll::Ready(result.map_err(IntoPolicyError::into_policy_error));
                }
                DeferredProj::Refused { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or(Error::DeadlineExceeded)));
                }
            }
        }
    }
}
