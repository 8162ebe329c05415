//! Which HTTP version a client speaks, from its first bytes.
//!
//! HTTP/2 with prior knowledge (h2c) opens with a fixed 24-byte preface; anything else is
//! HTTP/1. The bytes are peeked, not read, so the chosen server reads them again from the
//! socket: no rewinding wrapper sits under every later read, and each connection's task
//! holds only the state of the one protocol it speaks.
//!
//! A client that has sent only the start of the preface is waited for, never polled: the
//! sniffer sleeps until the socket has more to read or the client has closed, so a
//! connection that trickles, stalls or closes mid-preface costs nothing while it waits.
//! Its wait is bounded by the caller (the header timeout).
//!
//! The wait rests on tokio's readiness flag, which a peek leaves set (the bytes stay
//! queued). It is cleared only by a non-blocking peek that finds nothing beyond the
//! bytes already seen, run inside `TcpStream::try_io`: tokio clears the flag only if the
//! driver has seen no new event since the flag was read, which was before that peek, so
//! bytes that arrive after the peek always wake the wait again. The closed state is never
//! cleared (it is final), so a client that has closed ends the wait at once.

use std::io;
use std::mem::MaybeUninit;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 or 1.1 (also a connection that closed before saying anything).
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

/// Peeks at `stream` until its first bytes tell the protocol. The caller bounds the wait.
///
/// A client that closes after only part of the preface is an `UnexpectedEof` error: it
/// can never send a request.
pub async fn protocol(stream: &TcpStream) -> io::Result<Protocol> {
    let mut seen = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut seen).await?;
        if let Some(protocol) = decide(&seen[..n]) {
            return Ok(protocol);
        }
        // Only the start of the preface so far: clear the readiness unless more has
        // come since (see the module's doc), then wait for more bytes or the close.
        match stream.try_io(Interest::READABLE, || more_than(stream, n)) {
            Ok(()) => continue,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        if stream.ready(Interest::READABLE).await?.is_read_closed() {
            // Everything the client sent is queued by now: one last look.
            let n = stream.peek(&mut seen).await?;
            return decide(&seen[..n]).ok_or_else(|| io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// `Ok` if the socket holds more than `seen` bytes now; `WouldBlock` if not, which tells
/// `try_io` that the readiness it read is used up. A non-blocking peek of the count only.
fn more_than(stream: &TcpStream, seen: usize) -> io::Result<()> {
    let mut scratch = [MaybeUninit::<u8>::uninit(); PREFACE.len()];
    if SockRef::from(stream).peek(&mut scratch)? > seen {
        Ok(())
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// The protocol that `first` (the bytes received so far) shows, or `None` while they are
/// a strict beginning of the preface.
fn decide(first: &[u8]) -> Option<Protocol> {
    if first.is_empty() || !PREFACE.starts_with(first) {
        Some(Protocol::Http1)
    } else if first.len() == PREFACE.len() {
        Some(Protocol::Http2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_preface_is_http2_and_anything_else_http1() {
        assert_eq!(decide(PREFACE), Some(Protocol::Http2));
        assert_eq!(decide(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(decide(b"PRI * HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(decide(b""), Some(Protocol::Http1), "closed before a byte");
    }

    #[test]
    fn a_partial_preface_waits_for_more() {
        assert_eq!(decide(&PREFACE[..1]), None);
        assert_eq!(decide(&PREFACE[..23]), None);
    }

    // Paused clock: the writer's pause and the sniffer's waits are virtual; the bytes
    // travel over a real loopback socket.
    #[tokio::test(start_paused = true)]
    async fn a_trickled_preface_is_recognised() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut client = TcpStream::connect(address).await.unwrap();
            client.write_all(&PREFACE[..10]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&PREFACE[10..]).await.unwrap();
            client
        });
        let (server, _) = listener.accept().await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), protocol(&server)).await;
        assert_eq!(seen.unwrap().unwrap(), Protocol::Http2);
        drop(writer.await.unwrap());
    }

    // Paused clock: a sniffer that sleeps between peeks advances the virtual clock to
    // the timeout; one that waits for the socket sees the close at once.
    #[tokio::test(start_paused = true)]
    async fn a_partial_preface_then_a_close_ends_the_sniff_at_once() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(&PREFACE[..10]).await.unwrap();
        drop(client);
        let seen = tokio::time::timeout(Duration::from_secs(10), protocol(&server)).await;
        let error = seen.expect("still sniffing 10 s after the client closed");
        assert_eq!(
            error.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::UnexpectedEof)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rest_of_the_preface_sent_with_the_close_is_recognised() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(&PREFACE[..10]).await.unwrap();
        let sniffing = tokio::spawn(async move { (protocol(&server).await, server) });
        tokio::task::yield_now().await;
        client.write_all(&PREFACE[10..]).await.unwrap();
        drop(client);
        let (seen, _server) = tokio::time::timeout(Duration::from_secs(10), sniffing)
            .await
            .expect("sniffed")
            .unwrap();
        assert_eq!(seen.unwrap(), Protocol::Http2);
    }
}
