use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt;

use super::*;

/// A body of scripted frames, all there when polled, counting the frames taken from it.
struct Script {
    frames: VecDeque<Frame<Bytes>>,
    taken: Arc<AtomicUsize>,
}

impl Script {
    fn new(chunks: &[&[u8]]) -> (Self, Arc<AtomicUsize>) {
        let taken = Arc::new(AtomicUsize::new(0));
        let frames = chunks
            .iter()
            .map(|c| Frame::data(Bytes::copy_from_slice(c)))
            .collect();
        let script = Self {
            frames,
            taken: taken.clone(),
        };
        (script, taken)
    }

    fn with_trailers(mut self) -> Self {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("1"));
        self.frames.push_back(Frame::trailers(trailers));
        self
    }

    fn len(&self) -> u64 {
        self.frames
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum()
    }
}

impl Body for Script {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = this.frames.pop_front();
        if frame.is_some() {
            this.taken.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

/// Counts a fault in progress until dropped, as a `FaultSlot` does.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn taken(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Polls `body` to its end: the data, when each piece came, and the error if it failed.
async fn drain<B>(mut body: B) -> (Vec<u8>, Vec<(Duration, usize)>, Option<BoxError>)
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let started = Instant::now();
    let (mut data, mut pieces) = (Vec::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(d) = frame.data_ref() {
                    data.extend_from_slice(d);
                    pieces.push((started.elapsed(), d.len()));
                }
            }
            Err(error) => return (data, pieces, Some(error)),
        }
    }
    (data, pieces, None)
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_is_released_at_its_rate_and_whole() {
    let (script, _) = Script::new(&[&[1; 3000], &[2; 1096]]);
    let active = Arc::new(AtomicUsize::new(0));
    let fault = BodyFault::Slow {
        bytes_per_second: 1024,
    };
    let body = FaultyBody::new(script, fault, Slot::taken(&active));
    let started = Instant::now();
    let (data, pieces, error) = drain(body).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(data.len(), 4096);
    assert_eq!(&data[..3000], &[1; 3000][..]);
    assert_eq!(&data[3000..], &[2; 1096][..]);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(4),
        "4 KiB at 1 KiB/s"
    );
    // A twentieth of a second's worth at a time, each when its bytes are due.
    assert!(pieces.iter().all(|(_, len)| *len <= 51), "{pieces:?}");
    let mut released = 0u64;
    for (at, len) in &pieces {
        released += *len as u64;
        // tokio's timer counts whole milliseconds, rounding up.
        let due = release_time(released, 1024);
        assert!(
            *at >= due && *at < due + Duration::from_millis(1),
            "{released} bytes at {at:?}, due {due:?}"
        );
    }
    assert_eq!(
        active.load(Ordering::Relaxed),
        0,
        "slot given back at the end"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_holds_one_upstream_frame_at_most() {
    let (script, taken) = Script::new(&[&[0; 100], &[0; 100], &[0; 100]]);
    let fault = BodyFault::Slow {
        bytes_per_second: 200,
    };
    let mut body = FaultyBody::new(script, fault, ());
    // 10 bytes a step: ten steps per frame.
    for step in 1..=25usize {
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().map(Bytes::len), Some(10));
        let frames_taken = taken.load(Ordering::Relaxed);
        assert_eq!(frames_taken, step.div_ceil(10), "step {step}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_passes_trailers_and_its_size() {
    let (script, _) = Script::new(&[b"hello"]);
    let body = FaultyBody::new(
        script.with_trailers(),
        BodyFault::Slow {
            bytes_per_second: 1,
        },
        (),
    );
    assert_eq!(body.size_hint().exact(), Some(5));
    let collected = body.collect().await.unwrap();
    assert_eq!(collected.trailers().map(|t| t.len()), Some(1));
    assert_eq!(collected.to_bytes(), "hello");
}

#[tokio::test(start_paused = true)]
async fn a_truncated_body_gives_exactly_its_bytes_then_fails() {
    for after in [0u64, 1, 499, 500, 501, 1499] {
        let (script, _) = Script::new(&[&[7; 500], &[8; 500], &[9; 500]]);
        let active = Arc::new(AtomicUsize::new(0));
        let body = FaultyBody::new(script, BodyFault::Truncate { after }, Slot::taken(&active));
        assert_eq!(body.size_hint().exact(), Some(1500), "the length is kept");
        let (data, _, error) = drain(body).await;
        assert_eq!(data.len() as u64, after, "cut after {after}");
        let error = error.expect("a cut body fails");
        assert!(error.is::<BodyTruncated>(), "{error}");
        assert_eq!(active.load(Ordering::Relaxed), 0, "slot given back");
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_ends_before_the_cut_is_left_whole() {
    for after in [1500u64, 1501, u64::MAX] {
        let (script, _) = Script::new(&[&[7; 500], &[8; 500], &[9; 500]]);
        let body = FaultyBody::new(script.with_trailers(), BodyFault::Truncate { after }, ());
        let collected = body.collect().await.expect("whole");
        assert!(collected.trailers().is_some());
        assert_eq!(collected.to_bytes().len(), 1500);
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_body_never_says_it_is_over() {
    let (script, _) = Script::new(&[&[7; 500]]);
    let mut body = FaultyBody::new(script, BodyFault::Truncate { after: 100 }, ());
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().map(Bytes::len), Some(100));
    assert!(
        !body.is_end_stream(),
        "the inner body is over, the cut is not reported yet"
    );
    assert!(body.frame().await.unwrap().is_err());
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_body_gives_its_slot_back() {
    let active = Arc::new(AtomicUsize::new(0));
    let (script, _) = Script::new(&[&[0; 1000]]);
    let fault = BodyFault::Slow {
        bytes_per_second: 10,
    };
    let mut body = FaultyBody::new(script, fault, Slot::taken(&active));
    let _ = body.frame().await;
    assert_eq!(
        active.load(Ordering::Relaxed),
        1,
        "held while the body lasts"
    );
    drop(body);
    assert_eq!(active.load(Ordering::Relaxed), 0);
}
