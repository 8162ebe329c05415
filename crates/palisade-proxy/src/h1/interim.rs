//! Interim answers (`103 Early Hints`) relayed from an upstream to the client while its
//! final answer is awaited, so that a browser starts fetching what the hints name.
//!
//! Only a connection that writes its own heads (the own HTTP/1.1 server) takes them:
//! hyper's servers send no 1xx answers but `100 Continue`. A request queues at most
//! [`MAX_QUEUED`] hints (more are dropped: hints are advisory); the queue is emptied
//! before the final answer is written (what is left goes out first), so no hint is ever
//! written after its request's answer.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

    /// Queues an upstream's `103` head lines, if there is room. Called from the
    /// request's own future, so the connection's task, which polls it, looks at the queue
    /// next (see `h1::server`).
    pub(crate) fn push(&self, head: RawHead) {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        if heads.len() < MAX_QUEUED {
            heads.push_back(head);
            self.queued.store(heads.len(), Ordering::Release);
        }
    }

    /// Whether a hint waits to be written.
    pub(crate) fn has_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0
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

    #[test]
    fn hints_are_kept_in_order_within_their_bound() {
        let hints = EarlyHints::default();
        assert!(!hints.has_queued());
        for n in 0..MAX_QUEUED + 2 {
            hints.push(hint(n));
        }
        assert!(hints.has_queued());
        let queued = hints.take_all();
        assert_eq!(queued.len(), MAX_QUEUED, "the rest were dropped");
        let mut written = Vec::new();
        encode(&queued[0], &mut written);
        assert_eq!(written, b"HTTP/1.1 103 Early Hints\r\nlink: </0>\r\n\r\n");
        assert!(!hints.has_queued());
        assert!(hints.take_all().is_empty());
    }
}
