//! Request bodies that can be sent more than once.
//!
//! A retry must send the same body again. [`buffer`] reads a body into memory when it is
//! at most `limit` bytes (the proxy's default: 64 KiB), so every attempt can send a
//! copy. A larger body is never held: what was read of it is put back in front of the
//! rest of the stream ([`Prefixed`]) and it is sent once, without retries.
//!
//! [`ReplayBody`] is the body each attempt of a
//! [`BufferedRetry`](crate::retry::BufferedRetry) sends: a copy of the buffered bytes,
//! or the one stream of a larger body. No byte is lost either way: a body that failed
//! while it was being read is handed on as a body failing with that error, so the
//! service sees what it would have seen without the retry.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

/// A request body after [`buffer`].
#[derive(Debug)]
pub enum RequestBody<B> {
    /// Fully read; send `bytes.clone()` on every attempt.
    Buffered(Bytes),
    /// Too large to keep: stream it once.
    Streaming(Prefixed<B>),
}

pin_project! {
    /// The bytes already read, followed by the rest of the body.
    #[derive(Debug)]
    pub struct Prefixed<B> {
        prefix: Option<Bytes>,
        #[pin]
        rest: B,
    }
}

/// Reads `body` whole if it is at most `limit` bytes; otherwise returns it as a stream.
///
/// A declared length over the limit is not read at all. Trailers of a buffered body are
/// dropped (HTTP/1.1 requests with trailers are rare; gRPC's are on responses).
pub async fn buffer<B>(body: B, limit: usize) -> Result<RequestBody<B>, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > limit as u64 {
        return Ok(RequestBody::Streaming(Prefixed {
            prefix: None,
            rest: body,
        }));
    }
    let mut body = body;
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            read.extend_from_slice(&data);
            if read.len() > limit {
                return Ok(RequestBody::Streaming(Prefixed {
                    prefix: Some(read.freeze()),
                    rest: body,
                }));
            }
        }
    }
    Ok(RequestBody::Buffered(read.freeze()))
}

/// The body an attempt sends; see the [module docs](self).
#[derive(Debug)]
pub enum ReplayBody<B: Body> {
    /// A copy of a buffered body; `None` once sent.
    Buffered(Option<Bytes>),
    /// A body too large to buffer, sent once.
    Streaming(Prefixed<B>),
    /// A body that failed while it was being buffered: yields its error, once.
    Failed(Option<B::Error>),
}

impl<B: Body> ReplayBody<B> {
    /// A copy of `bytes`.
    pub fn buffered(bytes: Bytes) -> Self {
        ReplayBody::Buffered(Some(bytes))
    }
}

// The error is only ever moved out, never pinned: the body is as movable as `B` is.
impl<B: Body + Unpin> Unpin for ReplayBody<B> {}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.get_mut() {
            ReplayBody::Buffered(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ReplayBody::Streaming(body) => Pin::new(body).poll_frame(cx),
            ReplayBody::Failed(error) => Poll::Ready(error.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplayBody::Buffered(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            ReplayBody::Streaming(body) => body.is_end_stream(),
            ReplayBody::Failed(error) => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplayBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ReplayBody::Streaming(body) => body.size_hint(),
            ReplayBody::Failed(_) => SizeHint::default(),
        }
    }
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + extra);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn small_bodies_are_buffered() {
        let body = buffer(Full::new(Bytes::from_static(b"hello")), 10)
            .await
            .unwrap();
        assert!(matches!(body, RequestBody::Buffered(b) if b == "hello"));
    }

    #[tokio::test]
    async fn declared_large_bodies_are_not_read() {
        let body = buffer(Full::new(Bytes::from(vec![0u8; 100])), 10)
            .await
            .unwrap();
        let RequestBody::Streaming(p) = body else {
            panic!("must stream")
        };
        assert!(p.prefix.is_none());
        assert_eq!(p.collect().await.unwrap().to_bytes().len(), 100);
    }

    #[tokio::test]
    async fn a_replay_body_sends_its_copy_or_its_stream_or_its_error() {
        let copy = ReplayBody::<Full<Bytes>>::buffered(Bytes::from_static(b"hello"));
        assert_eq!(copy.size_hint().exact(), Some(5));
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "hello");
        let RequestBody::Streaming(rest) = buffer(Full::new(Bytes::from(vec![7u8; 20])), 10)
            .await
            .unwrap()
        else {
            panic!("must stream")
        };
        let stream = ReplayBody::Streaming(rest);
        assert_eq!(stream.collect().await.unwrap().to_bytes(), vec![7u8; 20]);
        let failed = ReplayBody::<Full<Bytes>>::Failed(None);
        assert!(failed.is_end_stream());
    }

    #[tokio::test]
    async fn undeclared_large_bodies_keep_every_byte_in_order() {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..5u8)
            .map(|i| Ok(Frame::data(Bytes::from(vec![i; 4]))))
            .collect();
        let stream = StreamBody::new(futures_util::stream::iter(chunks));
        let body = buffer(stream, 6).await.unwrap();
        let RequestBody::Streaming(p) = body else {
            panic!("must stream")
        };
        let all = p.collect().await.unwrap().to_bytes();
        let expected: Vec<u8> = (0..5u8).flat_map(|i| vec![i; 4]).collect();
        assert_eq!(all.as_ref(), expected.as_slice());
    }
}
