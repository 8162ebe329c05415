//! Wraps a service's own error type in [`Error::Inner`](crate::Error::Inner).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::Error;

/// Makes any service's errors `palisade::Error<E>`, so Palisade layers can wrap it.
///
/// ```
/// use palisade::layer::LiftLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// #[derive(Debug)]
/// struct MyError;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = LiftLayer.layer(service_fn(|_: ()| async { Err::<(), _>(MyError) }));
/// let err = svc.oneshot(()).await.unwrap_err();
/// assert!(matches!(err, palisade::Error::Inner(MyError)));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LiftLayer;

/// See [`LiftLayer`].
#[derive(Clone, Copy, Debug)]
pub struct LiftService<S> {
    inner: S,
}

pin_project! {
    /// The response future of [`LiftService`].
    pub struct LiftFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<S> Layer<S> for LiftLayer {
    type Service = LiftService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LiftService { inner }
    }
}

impl<S, Req> Service<Req> for LiftService<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = LiftFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        LiftFuture {
            inner: self.inner.call(request),
        }
    }
}

impl<F, T, E> Future for LiftFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(Error::Inner))
    }
}
