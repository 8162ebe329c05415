//! Request bodies that can be sent more than once.
//!
//! A retry must send the same body again. [`buffer`] reads a body into memory when it is
//! at most `limit` bytes (the proxy's default: 64 KiB), so every attempt can send a
//! copy. A larger body is never held: what was read of it is put back in front of the
//! rest of the stream ([`Prefixed`]) and it is sent once, without retries.

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
