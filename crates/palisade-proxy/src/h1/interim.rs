//! Interim answers (`103 Early Hints`) relayed from an upstream to the client while its
//! final answer is awaited, so that a browser starts fetching what the hints name.
//!
//! Only a connection that writes its own heads (the own HTTP/1.1 server) takes them:
//! hyper's servers send no 1xx answers but `100 Continue`. A request queues at most
//! [`MAX_QUEUED`] hints (more are dropped: hints are advisory); the queue is emptied
//! before the final answer is written (what is left goes out first), so no hint is ever
//! written after its request's answer.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;

use super::client::RawHead;

/// Hints queued per request, at most.
pub(crate) const MAX_QUEUED: usize = 4;

/// A client connection's queue of interim answers.
#[derive(Debug, Default)]
pub(crate) struct EarlyHints {
    /// The connection writes them (the own server serves it).
    relayed: AtomicBool,
    heads: Mutex<VecDeque<RawHead>>,
    /// How many are queued: read without the lock by the connection's wait, which most
    /// requests poll with nothing queued.
    queued: AtomicUsize,
    /// The connection's task, waiting for a hint.
    waiter: AtomicWaker,
}

// === impl EarlyHints ===

impl EarlyHints {
    /// Whether the connection relays hints now.
    pub(crate) fn is_relayed(&self) -> bool {
        self.relayed.load(Ordering::Relaxed)
    }

    /// The connection starts (`true`) or stops relaying hints.
    pub(crate) fn relay(&self, relayed: bool) {
        self.relayed.store(relayed, Ordering::Relaxed);
    }

    /// Queues an upstream's `103` head lines, if there is room.
    pub(crate) fn push(&self, head: RawHead) {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        if heads.len() < MAX_QUEUED {
            heads.push_back(head);
            self.queued.store(heads.len(), Ordering::Release);
            drop(heads);
            self.waiter.wake();
        }
    }

    /// The next queued hint, when there is one. One task (the connection's) waits.
    pub(crate) async fn next(&self) -> RawHead {
        poll_fn(|cx| {
            if self.queued.load(Ordering::Acquire) == 0 {
                self.waiter.register(cx.waker());
                if self.queued.load(Ordering::Acquire) == 0 {
                    return Poll::Pending;
                }
            }
            match self.pop() {
                Some(head) => Poll::Ready(head),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Takes what is queued, in order.
    pub(crate) fn take_all(&self) -> VecDeque<RawHead> {
        if self.queued.load(Ordering::Acquire) == 0 {
            return VecDeque::new();
        }
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        self.queued.store(0, Ordering::Release);
        std::mem::take(&mut *heads)
    }

    fn pop(&self) -> Option<RawHead> {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        let head = heads.pop_front();
        self.queued.store(heads.len(), Ordering::Release);
        head
    }
}

/// Appends the `103 Early Hints` answer carrying `head`'s lines.
pub(crate) fn encode(head: &RawHead, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 103 Early Hints\r\n");
    head.write_to(out);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn hint(n: usize) -> RawHead {
        RawHead::lines(Bytes::from(format!("link: </{n}>\r\n")))
    }

    #[tokio::test(start_paused = true)]
    async fn hints_wait_in_order_within_their_bound() {
        let hints = std::sync::Arc::new(EarlyHints::default());
        let waiting = tokio::spawn({
            let hints = hints.clone();
            async move {
                let mut out = Vec::new();
                encode(&hints.next().await, &mut out);
                out
            }
        });
        tokio::task::yield_now().await;
        hints.push(hint(0));
        let written = waiting.await.expect("the waiter wakes");
        assert_eq!(written, b"HTTP/1.1 103 Early Hints\r\nlink: </0>\r\n\r\n");
        for n in 1..=MAX_QUEUED + 2 {
            hints.push(hint(n));
        }
        let left = hints.take_all();
        assert_eq!(left.len(), MAX_QUEUED, "the rest were dropped");
        let mut first = Vec::new();
        left[0].write_to(&mut first);
        assert_eq!(first, b"link: </1>\r\n");
        assert!(hints.take_all().is_empty());
    }
}
