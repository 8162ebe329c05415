//! One proxied connection (a link): the client's bytes to the upstream and back, each
//! direction through the toxics on its stream.
//!
//! Each direction is a reader that stamps chunks with their arrival and a writer that
//! passes them on through the toxics. The channel between them is bounded, so a writer
//! held back by a toxic (latency, bandwidth, timeout) holds the reader back in turn: the
//! sender feels TCP's backpressure, and memory per link stays bounded.
//!
//! Toxics are read again before each chunk and whenever they change, so adding, changing
//! or removing one acts on open connections too, as in Toxiproxy. Whether a toxic applies
//! to a connection (its toxicity) is drawn once per connection and version of the toxic.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::fault::Fault;
use super::toxics::{Stream, Toxic};

/// The largest chunk read at once.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks held between a direction's reader and writer.
const CHUNKS_IN_FLIGHT: usize = 32;
/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A proxy's toxics, as its links read them.
pub(crate) type Toxics = Arc<[Toxic]>;

/// Bytes read, and when.
struct Chunk {
    bytes: Bytes,
    arrived: Instant,
}

/// How a direction ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// Its sender closed: the other direction may go on (a half-close).
    Finished,
    /// The link must close: a toxic closed it, or a socket failed.
    Close,
    /// The link must close with a reset (`reset_peer`).
    Reset,
}

/// Relays `client` to `upstream` through `toxics` until both directions end, a toxic
/// closes the link, or `stop` is dropped (the proxy was disabled or removed).
pub(crate) async fn relay(
    client: TcpStream,
    upstream: String,
    toxics: watch::Receiver<Toxics>,
    mut stop: watch::Receiver<()>,
) {
    let server = tokio::select! {
        connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&upstream)) => {
            match connected {
                Ok(Ok(server)) => server,
                Ok(Err(error)) => {
                    tracing::debug!(%upstream, %error, "toxic proxy: the upstream refused");
                    return;
                }
                Err(_) => return,
            }
        }
        _ = stop.changed() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let ended = {
        let up = direction(
            Stream::Upstream,
            client_read,
            &mut server_write,
            toxics.clone(),
        );
        let down = direction(Stream::Downstream, server_read, &mut client_write, toxics);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let ended = tokio::select! {
                ended = &mut up, if !up_done => { up_done = true; ended }
                ended = &mut down, if !down_done => { down_done = true; ended }
                _ = stop.changed() => Ended::Close,
            };
            if ended != Ended::Finished || (up_done && down_done) {
                break ended;
            }
        }
    };
    if ended == Ended::Reset {
        // Closed with SO_LINGER 0 and without a FIN first: the client reads a reset.
        let _ = socket2::SockRef::from(client_write.as_ref()).set_linger(Some(Duration::ZERO));
        client_write.forget();
    }
}

/// One direction: reads `from`, writes `to` through the toxics on `stream`.
async fn direction(
    stream: Stream,
    from: OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    toxics: watch::Receiver<Toxics>,
) -> Ended {
    let (chunks, arriving) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let reader = read(from, chunks);
    let writer = Writer::new(stream, to, toxics).run(arriving);
    tokio::pin!(reader, writer);
    tokio::select! {
        // A read error (the sender reset) ends the link; an end of stream reaches the
        // writer as the channel's end, after the chunks before it.
        read = &mut reader => match read {
            Ok(()) => writer.await,
            Err(_) => Ended::Close,
        },
        ended = &mut writer => ended,
    }
}

/// Reads chunks until the end of the stream, stamping each with its arrival.
async fn read(mut from: OwnedReadHalf, chunks: mpsc::Sender<Chunk>) -> io::Result<()> {
    loop {
        let mut buffer = BytesMut::with_capacity(CHUNK_BYTES);
        if from.read_buf(&mut buffer).await? == 0 {
            return Ok(());
        }
        let chunk = Chunk {
            bytes: buffer.freeze(),
            arrived: Instant::now(),
        };
        if chunks.send(chunk).await.is_err() {
            return Ok(());
        }
    }
}

/// The writing side of a direction, with what it knows of each toxic on this link.
struct Writer<'a> {
    stream: Stream,
    to: &'a mut OwnedWriteHalf,
    toxics: watch::Receiver<Toxics>,
    /// Per toxic version (id): whether it applies to this link, since when, and the bytes
    /// passed since then. Bounded by the proxy's toxics: entries of removed ones go.
    seen: HashMap<u64, Seen>,
}

#[derive(Clone, Copy)]
struct Seen {
    applies: bool,
    since: Instant,
    passed: u64,
}

/// The toxics that apply to this link now, by what they do.
#[derive(Default)]
struct Active {
    /// Added delay per chunk: latency ± jitter of each latency toxic.
    latency: Vec<(Duration, Duration)>,
    /// The lowest bandwidth, in bytes a second.
    bytes_per_second: Option<u64>,
    slicer: Option<(u64, u64, Duration)>,
    /// The smallest data limit left: (toxic id, bytes left).
    limit: Option<(u64, u64)>,
    slow_close: Duration,
    /// Whether data is held, and when the link closes (a timeout toxic).
    hold: Option<Option<Instant>>,
    /// When the link is reset (a reset_peer toxic).
    reset_at: Option<Instant>,
}

// === impl Writer ===

impl<'a> Writer<'a> {
    fn new(stream: Stream, to: &'a mut OwnedWriteHalf, toxics: watch::Receiver<Toxics>) -> Self {
        Self {
            stream,
            to,
            toxics,
            seen: HashMap::new(),
        }
    }

    async fn run(mut self, mut arriving: mpsc::Receiver<Chunk>) -> Ended {
        loop {
            let active = self.active();
            if let Some(reset_at) = active.reset_at {
                if self.wait_for_change_until(Some(reset_at)).await {
                    return Ended::Reset;
                }
                continue;
            }
            if let Some(close_at) = active.hold {
                if self.wait_for_change_until(close_at).await {
                    return Ended::Close;
                }
                continue;
            }
            let chunk = tokio::select! {
                chunk = arriving.recv() => chunk,
                changed = self.toxics.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return Ended::Close,
                },
            };
            let Some(chunk) = chunk else {
                pause(active.slow_close).await;
                let _ = self.to.shutdown().await;
                return Ended::Finished;
            };
            match self.pass(chunk, &active).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return Ended::Close,
            }
        }
    }

    /// Waits until the toxics change (false) or `deadline` passes (true; never without
    /// one).
    async fn wait_for_change_until(&mut self, deadline: Option<Instant>) -> bool {
        let fired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = fired => true,
            changed = self.toxics.changed() => changed.is_err(),
        }
    }

    /// The toxics on this link's stream that apply to it, drawing each new one's toxicity.
    fn active(&mut self) -> Active {
        let toxics = self.toxics.borrow_and_update().clone();
        let now = Instant::now();
        self.seen.retain(|id, _| toxics.iter().any(|t| t.id == *id));
        let mut active = Active::default();
        for toxic in toxics.iter().filter(|t| t.stream == self.stream) {
            let seen = *self.seen.entry(toxic.id).or_insert_with(|| Seen {
                applies: rand::rng().random_bool(toxic.toxicity.clamp(0.0, 1.0)),
                since: now,
                passed: 0,
            });
            if seen.applies {
                active.add(toxic, seen);
            }
        }
        active
    }

    /// Passes `chunk` on through the active toxics; false when a data limit closed the link.
    async fn pass(&mut self, chunk: Chunk, active: &Active) -> io::Result<bool> {
        let delay: Duration = active.latency.iter().map(|&(l, j)| jittered(l, j)).sum();
        pause_until(chunk.arrived + delay).await;
        let mut bytes = chunk.bytes;
        let mut open = true;
        if let Some((id, left)) = active.limit {
            if bytes.len() as u64 >= left {
                bytes.truncate(left as usize);
                open = false;
            }
            if let Some(seen) = self.seen.get_mut(&id) {
                seen.passed += bytes.len() as u64;
            }
        }
        for slice in slices(bytes, active.slicer) {
            let len = slice.len();
            self.to.write_all(&slice).await?;
            if let Some(rate) = active.bytes_per_second.filter(|r| *r > 0) {
                pause(Duration::from_secs_f64(len as f64 / rate as f64)).await;
            }
            if let Some((_, _, between)) = active.slicer {
                pause(between).await;
            }
        }
        Ok(open)
    }
}

// === impl Active ===

impl Active {
    fn add(&mut self, toxic: &Toxic, seen: Seen) {
        match toxic.fault {
            Fault::Latency { latency, jitter } => self.latency.push((latency, jitter)),
            Fault::Bandwidth { kb_per_second } if kb_per_second > 0 => {
                let rate = kb_per_second.saturating_mul(1000);
                self.bytes_per_second = Some(self.bytes_per_second.map_or(rate, |r| r.min(rate)));
            }
            Fault::Bandwidth { .. } => {}
            Fault::SlowClose { delay } => self.slow_close = self.slow_close.max(delay),
            Fault::Timeout { timeout } => {
                let close_at = (!timeout.is_zero()).then(|| seen.since + timeout);
                self.hold = Some(match (self.hold.flatten(), close_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                });
            }
            Fault::ResetPeer { timeout } => {
                let at = seen.since + timeout;
                self.reset_at = Some(self.reset_at.map_or(at, |r| r.min(at)));
            }
            Fault::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                self.slicer
                    .get_or_insert((average_size, size_variation, delay));
            }
            Fault::LimitData { bytes } => {
                let left = bytes.saturating_sub(seen.passed);
                if self.limit.is_none_or(|(_, l)| left < l) {
                    self.limit = Some((toxic.id, left));
                }
            }
        }
    }
}

/// Waits `duration`; none at all when it is zero. (The timer rounds every wait up to its
/// next millisecond tick: a zero wait through it would add a millisecond per chunk.)
async fn pause(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

/// Waits until `deadline`; none at all when it has passed (see [`pause`]).
async fn pause_until(deadline: Instant) {
    if deadline > Instant::now() {
        tokio::time::sleep_until(deadline).await;
    }
}

/// `latency` ± up to `jitter`, drawn uniformly, never below zero.
fn jittered(latency: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return latency;
    }
    let spread = jitter.as_secs_f64();
    let offset = rand::rng().random_range(-spread..=spread);
    Duration::from_secs_f64((latency.as_secs_f64() + offset).max(0.0))
}

/// `bytes` cut as a slicer cuts them (`average` ± `variation` bytes each), or whole.
fn slices(mut bytes: Bytes, slicer: Option<(u64, u64, Duration)>) -> Vec<Bytes> {
    let Some((average, variation, _)) = slicer else {
        return vec![bytes];
    };
    let mut slices = Vec::new();
    let mut rng = rand::rng();
    while !bytes.is_empty() {
        let size = if variation == 0 {
            average
        } else {
            rng.random_range(average - variation..=average + variation)
        };
        let size = (size.max(1) as usize).min(bytes.len());
        slices.push(bytes.split_to(size));
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slicer_cuts_within_its_bounds_and_loses_nothing() {
        let data = Bytes::from(vec![7u8; 10_000]);
        let slices = slices(data, Some((100, 30, Duration::ZERO)));
        assert_eq!(slices.iter().map(Bytes::len).sum::<usize>(), 10_000);
        let last = slices.len() - 1;
        for (i, s) in slices.iter().enumerate() {
            assert!(s.len() <= 130, "slice {i}: {}", s.len());
            assert!(i == last || s.len() >= 70, "slice {i}: {}", s.len());
        }
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(100), Duration::from_millis(20));
            assert!(
                d >= Duration::from_millis(80) && d <= Duration::from_millis(120),
                "{d:?}"
            );
        }
    }
}
