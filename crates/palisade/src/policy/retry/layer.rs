//! The [`Retry`] as a tower middleware. Requests must be `Clone` to be replayed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use super::{Attempts, Next, Retry, describe, exhausted};
use crate::Error;
use crate::error::IntoPolicyError;
use crate::outcome::{Classify, DefaultClassifier, classify_result};

/// Applies a [`Retry`] to a service, classifying responses with `C`.
#[derive(Clone, Debug)]
pub struct RetryLayer<C = DefaultClassifier> {
    retry: Retry,
    classifier: C,
}

/// A service whose failed calls are retried.
#[derive(Clone, Debug)]
pub struct RetryService<S, C = DefaultClassifier> {
    inner: S,
    retry: Retry,
    classifier: C,
}

pin_project! {
    /// The response future of [`RetryService`].
    pub struct ResponseFuture<S, Req, F, C> {
        service: S,
        request: Req,
        retry: Retry,
        classifier: C,
        attempts: Attempts,
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Sleeping { #[pin] sleep: Sleep },
        Readying,
    }
}

impl Retry {
    /// This policy as a tower layer, with the default classifier.
    pub fn layer(&self) -> RetryLayer {
        self.layer_with(DefaultClassifier)
    }

    /// This policy as a tower layer classifying responses with `classifier`.
    pub fn layer_with<C: Clone>(&self, classifier: C) -> RetryLayer<C> {
        RetryLayer {
            retry: self.clone(),
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = RetryService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            retry: self.retry.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, C, Req> Service<Req> for RetryService<S, C>
where
    S: Service<Req> + Clone,
    S::Error: IntoPolicyError,
    <S::Error as IntoPolicyError>::Inner: fmt::Debug,
    C: Classify<S::Response, <S::Error as IntoPolicyError>::Inner> + Clone,
    Req: Clone,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future = ResponseFuture<S, Req, S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        // Keep the instance that was driven ready for this call; leave a clone behind.
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let future = service.call(request.clone());
        ResponseFuture {
            service,
            request,
            retry: self.retry.clone(),
            classifier: self.classifier.clone(),
            attempts: self.retry.begin(),
            state: State::Calling { future },
        }
    }
}

impl<S, Req, F, C, T, E, I> Future for ResponseFuture<S, Req, F, C>
where
    S: Service<Req, Future = F, Error = E>,
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError<Inner = I>,
    I: fmt::Debug,
    C: Classify<T, I>,
    Req: Clone,
{
    type Output = Result<T, Error<I>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result =
                        ready!(future.poll(cx)).map_err(IntoPolicyError::into_policy_error);
                    let outcome = classify_result(this.classifier, &result);
                    match this
                        .retry
                        .next(this.attempts, &outcome, || describe(&result))
                    {
                        Next::Return => return Poll::Ready(result),
                        Next::GiveUp => {
                            return Poll::Ready(exhausted(this.attempts.made(), result));
                        }
                        Next::RetryAfter(delay) => this.state.set(State::Sleeping {
                            sleep: tokio::time::sleep(delay),
                        }),
                    }
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into_policy_error()));
                    }
                    let future = this.service.call(this.request.clone());
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}
