//! Which HTTP version a client speaks, from its first bytes.
//!
//! HTTP/2 with prior knowledge (h2c) opens with a fixed 24-byte preface; anything else is
//! HTTP/1. The bytes are peeked, not read, so the chosen server reads them again from the
//! socket: no rewinding wrapper sits under every later read, and each connection's task
//! holds only the state of the one protocol it speaks.

use std::time::Duration;

use tokio::net::TcpStream;

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long to wait between peeks while the bytes so far are only the start of the
/// preface (a client trickling its first bytes).
const TRICKLE_PAUSE: Duration = Duration::from_millis(5);

/// The protocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 or 1.1 (also a connection that closed before saying anything).
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

/// Peeks at `stream` until its first bytes tell the protocol. The caller bounds the wait.
pub async fn protocol(stream: &TcpStream) -> std::io::Result<Protocol> {
    let mut seen = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut seen).await?;
        match decide(&seen[..n]) {
            Some(protocol) => return Ok(protocol),
            None => tokio::time::sleep(TRICKLE_PAUSE).await,
        }
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
}
