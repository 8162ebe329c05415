//! Any single-attempt policy as a tower layer, by running its own `execute`.
//!
//! Admission policies — adaptive concurrency, load shedding, client throttling, fault
//! injection — decide before a call and look at its outcome after it; they never run the
//! operation twice. [`PolicyLayer`] wraps such a policy around a service by calling the
//! policy's [`Policy::execute`] with an operation that sends the request once, so the
//! tower form and the call form share one implementation. The response future is boxed
//! (one allocation per call); the hand-written layers of the core policies avoid that.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::Error;
use crate::error::IntoPolicyError;
use crate::outcome::Classify;
use crate::policy::Policy;

/// Applies policy `P` to a service, classifying responses with `C`.
#[derive(Clone, Debug)]
pub struct PolicyLayer<P, C> {
    policy: P,
    classifier: C,
}

/// A service run under a single-attempt policy.
#[derive(Clone, Debug)]
pub struct PolicyService<S, P, C> {
    inner: S,
    policy: P,
    classifier: C,
}

/// The boxed response future of [`PolicyService`].
pub type PolicyFuture<T, I> = Pin<Box<dyn Future<Output = Result<T, Error<I>>> + Send>>;

impl<P, C> PolicyLayer<P, C> {
    /// A layer applying `policy`.
    pub fn new(policy: P, classifier: C) -> Self {
        Self { policy, classifier }
    }
}

impl<S, P: Clone, C: Clone> Layer<S> for PolicyLayer<P, C> {
    type Service = PolicyService<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyService {
            inner,
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, P, C, Req> Service<Req> for PolicyService<S, P, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: IntoPolicyError,
    <S::Error as IntoPolicyError>::Inner: Send + fmt::Debug + 'static,
    P: Policy<S::Response, <S::Error as IntoPolicyError>::Inner>,
    C: Classify<S::Response, <S::Error as IntoPolicyError>::Inner> + Clone + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future = PolicyFuture<S::Response, <S::Error as IntoPolicyError>::Inner>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // The instance driven ready takes this request; a clone stays for the next.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let (policy, classifier) = (self.policy.clone(), self.classifier.clone());
        let once = Mutex::new(Some((ready, request)));
        Box::pin(async move {
            policy
                .execute(&classifier, || {
                    let taken = once.lock().unwrap_or_else(|e| e.into_inner()).take();
                    async move {
                        match taken {
                            Some((mut service, request)) => service
                                .call(request)
                                .await
                                .map_err(IntoPolicyError::into_policy_error),
                            // Single-attempt policies never call twice; a second call finds
                            // the request already sent and cannot resend it.
                            None => Err(Error::RetriesExhausted {
                                attempts: 1,
                                last: Box::new(Error::DeadlineExceeded),
                            }),
                        }
                    }
                })
                .await
        })
    }
}
