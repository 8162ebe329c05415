//! A future that is one of two futures, chosen when it is made.
//!
//! Lets a policy whose checks are done up front return the operation's own future on its
//! fast path (fault injection switched off), with no extra state machine around it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

pin_project! {
    /// Either future `A` or future `B`, with the same output.
    #[project = EitherProj]
    pub(crate) enum Either<A, B> {
        /// The first kind.
        Left { #[pin] future: A },
        /// The second kind.
        Right { #[pin] future: B },
    }
}

impl<A, B> Future for Either<A, B>
where
    A: Future,
    B: Future<Output = A::Output>,
{
    type Output = A::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
        match self.project() {
            EitherProj::Left { future } => future.poll(cx),
            EitherProj::Right { future } => future.poll(cx),
        }
    }
}
