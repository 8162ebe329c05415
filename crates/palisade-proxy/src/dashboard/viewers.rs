//! The pages watching the dashboard: one server-sent-events stream each.
//!
//! A frame is encoded once and shared (`Bytes`): each viewer's queue holds references,
//! so a hundred viewers cost a hundred queues of pointers, not a hundred copies. A queue
//! holds at most [`QUEUE`] frames. A viewer that does not read leaves its frames in its
//! connection's buffers, then in its queue; when the queue is full the viewer is dropped
//! and its connection closed ([`Hangup`]), instead of frames piling up for it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{Notify, mpsc};

use crate::body::BoxError;

/// Frames a viewer may have waiting before it is dropped.
pub const QUEUE: usize = 16;

/// Closes the admin connection a request came on: the admin port puts one in each
/// request's extensions and drops the connection when it is fired.
#[derive(Clone, Debug, Default)]
pub struct Hangup(Arc<Notify>);

/// Every viewer's queue.
#[derive(Debug, Default)]
pub struct Viewers {
    queues: Mutex<Vec<Viewer>>,
}

#[derive(Debug)]
struct Viewer {
    frames: mpsc::Sender<Bytes>,
    hangup: Option<Hangup>,
}

/// One viewer's stream: the frames of its queue, as a response body that never ends by
/// itself (it ends when the viewer is dropped or the dashboard stops).
#[derive(Debug)]
pub struct Stream {
    frames: mpsc::Receiver<Bytes>,
}

// === impl Hangup ===

impl Hangup {
    /// Closes the connection.
    pub fn fire(&self) {
        self.0.notify_one();
    }

    /// Resolves once [`fire`](Self::fire) was called.
    pub async fn fired(&self) {
        self.0.notified().await;
    }
}

// === impl Viewers ===

impl Viewers {
    /// A new viewer, its queue starting with `first` (the latest frame) when there is one.
    pub fn join(&self, first: Option<Bytes>, hangup: Option<Hangup>) -> Stream {
        let (frames, receiver) = mpsc::channel(QUEUE);
        if let Some(first) = first {
            // A fresh queue has room.
            let _ = frames.try_send(first);
        }
        self.lock().push(Viewer { frames, hangup });
        Stream { frames: receiver }
    }

    /// Whether anyone watches.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Viewers connected.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Queues `frame` for every viewer: one whose queue is full is dropped and its
    /// connection closed; one that went away is forgotten.
    pub fn send(&self, frame: &Bytes) {
        self.lock()
            .retain(|viewer| match viewer.frames.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(
                        queued = QUEUE,
                        "dashboard: a viewer did not read its stream; dropped"
                    );
                    if let Some(hangup) = &viewer.hangup {
                        hangup.fire();
                    }
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    /// Drops every viewer: their streams end.
    pub fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Viewer>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Stream ===

impl Body for Stream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn every_viewer_gets_every_frame_and_its_first() {
        let viewers = Viewers::default();
        let mut a = viewers.join(Some(Bytes::from_static(b"latest")), None);
        let mut b = viewers.join(None, None);
        viewers.send(&Bytes::from_static(b"next"));
        let next = |s: &mut Stream| {
            let frame = s.frames.try_recv().ok();
            frame.map(|f| String::from_utf8(f.to_vec()).unwrap())
        };
        assert_eq!(next(&mut a).as_deref(), Some("latest"));
        assert_eq!(next(&mut a).as_deref(), Some("next"));
        assert_eq!(next(&mut b).as_deref(), Some("next"));
        let frame = b.frame().now_or_never();
        assert!(frame.is_none(), "the stream waits for the next frame");
    }

    #[tokio::test]
    async fn a_viewer_that_does_not_read_is_dropped_and_hung_up() {
        let viewers = Viewers::default();
        let hangup = Hangup::default();
        let _stuck = viewers.join(None, Some(hangup.clone()));
        let mut reading = viewers.join(None, None);
        for n in 0..QUEUE {
            viewers.send(&Bytes::from(n.to_string()));
            assert!(reading.frames.try_recv().is_ok());
        }
        assert_eq!(viewers.len(), 2, "a full queue is not over yet");
        viewers.send(&Bytes::from_static(b"one too many"));
        assert_eq!(viewers.len(), 1, "the stuck viewer was dropped");
        tokio::time::timeout(std::time::Duration::from_secs(1), hangup.fired())
            .await
            .expect("its connection is closed");
    }

    #[tokio::test]
    async fn a_viewer_gone_is_forgotten() {
        let viewers = Viewers::default();
        drop(viewers.join(None, None));
        viewers.send(&Bytes::from_static(b"x"));
        assert!(viewers.is_empty());
    }

    trait NowOrNever: std::future::Future + Sized {
        fn now_or_never(self) -> Option<Self::Output> {
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut this = std::pin::pin!(self);
            match this.as_mut().poll(&mut cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            }
        }
    }
    impl<F: std::future::Future> NowOrNever for F {}
}
