//! The [`Hedge`] as a tower middleware. Requests must be `Clone` to be sent twice, and
//! the service `Clone` to have a second instance to send the hedge through.
//!
//! The response future is a hand-written state machine (the same race as
//! [`Hedge::execute`](super::Hedge)), not boxed. A call that may not be hedged costs no
//! clone of the service or the request and no timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Hedge, Race, is_idempotent};
use crate::Error;
use crate::error::IntoPolicyError;
use crate::outcome::{Classify, DefaultClassifier, classify_result};
use crate::pipeline::IntoLayer;

/// Decides whether a request may be sent twice (when the hedge is `idempotent_only`).
///
/// Implemented by [`Marked`] (the default) and by any `Fn(&Req) -> bool`.
pub trait Idempotency<Req> {
    /// True if `request` is safe to send twice.
    fn is_idempotent(&self, request: &Req) -> bool;
}

/// Requests are idempotent when the call runs inside [`idempotent`](super::idempotent).
#[derive(Clone, Copy, Debug, Default)]
pub struct Marked;

impl<Req> Idempotency<Req> for Marked {
    fn is_idempotent(&self, _request: &Req) -> bool {
        is_idempotent()
    }
}

impl<Req, F: Fn(&Req) -> bool> Idempotency<Req> for F {
    fn is_idempotent(&self, request: &Req) -> bool {
        self(request)
    }
}

/// Applies a [`Hedge`] to a service, classifying responses with `C` and judging
/// requests' idempotency with `I`.
#[derive(Clone, Debug)]
pub struct HedgeLayer<C = DefaultClassifier, I = Marked> {
    hedge: Hedge,
    classifier: C,
    idempotency: I,
}

/// A service whose slow calls are hedged.
#[derive(Clone, Debug)]
pub struct HedgeService<S, C = DefaultClassifier, I = Marked> {
    inner: S,
    hedge: Hedge,
    classifier: C,
    idempotency: I,
}

pin_project! {
    /// The response future of [`HedgeService`].
    pub struct ResponseFuture<S, Req, F, C> {
        // The service and request for the hedge; `None` when the call may not be hedged.
        service: Option<S>,
        request: Option<Req>,
        classifier: C,
        hedge: Hedge,
        #[pin]
        race: Race<Lift<F>>,
    }
}

pin_project! {
    /// An attempt, its error made Palisade's.
    struct Lift<F> {
        #[pin]
        inner: F,
    }
}

impl Hedge {
    /// This policy as a tower layer, with the default classifier and [`Marked`]
    /// idempotency.
    pub fn layer(&self) -> HedgeLayer {
        self.layer_with(DefaultClassifier)
    }

    /// This policy as a tower layer classifying responses with `classifier`.
    pub fn layer_with<C: Clone>(&self, classifier: C) -> HedgeLayer<C> {
        HedgeLayer {
            hedge: self.clone(),
            classifier,
            idempotency: Marked,
        }
    }
}

impl<C, I> HedgeLayer<C, I> {
    /// Judges each request's idempotency with `predicate` instead of the task-local
    /// mark, e.g. `|req: &http::Request<_>| req.method().is_idempotent()`.
    pub fn idempotent_when<P>(self, predicate: P) -> HedgeLayer<C, P> {
        HedgeLayer {
            hedge: self.hedge,
            classifier: self.classifier,
            idempotency: predicate,
        }
    }
}

impl<S, C: Clone, I: Clone> Layer<S> for HedgeLayer<C, I> {
    type Service = HedgeService<S, C, I>;

    fn layer(&self, inner: S) -> Self::Service {
        HedgeService {
            inner,
            hedge: self.hedge.clone(),
            classifier: self.classifier.clone(),
            idempotency: self.idempotency.clone(),
        }
    }
}

impl<C: Clone> IntoLayer<C> for Hedge {
    type Layer = HedgeLayer<C>;
    fn to_layer(&self, classifier: &C) -> Self::Layer {
        self.layer_with(classifier.clone())
    }
}

impl<S, C, I, Req> Service<Req> for HedgeService<S, C, I>
where
    S: Service<Req> + Clone,
    S::Error: IntoPolicyError,
    C: Classify<S::Response, <S::Error as IntoPolicyError>::Inner> + Clone,
    I: Idempotency<Req>,
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

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let delay = self
            .hedge
            .begin(|| self.idempotency.is_idempotent(&request));
        let (service, request, first) = match delay {
            None => (None, None, self.inner.call(request)),
            Some(_) => {
                // Keep the instance driven ready for this call; hedge through a clone.
                let clone = self.inner.clone();
                let mut service = std::mem::replace(&mut self.inner, clone);
                let first = service.call(request.clone());
                (Some(service), Some(request), first)
            }
        };
        ResponseFuture {
            race: Race::new(&self.hedge, Lift { inner: first }, delay),
            service,
            request,
            classifier: self.classifier.clone(),
            hedge: self.hedge.clone(),
        }
    }
}

impl<S, Req, F, C, T, E, I> Future for ResponseFuture<S, Req, F, C>
where
    S: Service<Req, Future = F, Error = E>,
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError<Inner = I>,
    C: Classify<T, I>,
    Req: Clone,
{
    type Output = Result<T, Error<I>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (service, request, classifier) = (this.service, this.request, this.classifier);
        this.race.poll_race(
            cx,
            this.hedge,
            |result| classify_result(classifier, result).is_success(),
            |cx| {
                let (Some(service), Some(request)) = (service.as_mut(), request.as_ref()) else {
                    return Poll::Ready(None);
                };
                // A service that fails to become ready is not hedged through.
                match ready!(service.poll_ready(cx)) {
                    Ok(()) => Poll::Ready(Some(Lift {
                        inner: service.call(request.clone()),
                    })),
                    Err(_) => Poll::Ready(None),
                }
            },
        )
    }
}

impl<F, T, E> Future for Lift<F>
where
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError,
{
    type Output = Result<T, Error<E::Inner>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }
}
