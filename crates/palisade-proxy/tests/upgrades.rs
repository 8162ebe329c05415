//! Protocol upgrades (WebSocket) and interim answers: a request to switch protocols reaches the endpoint
//! with its upgrade headers, and once the endpoint agrees (101) the proxy joins the two
//! connections; `Expect: 100-continue` is answered before the body is sent. Real binary,
//! raw loopback sockets.

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

fn config(endpoint: SocketAddr) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{endpoint}"]

[[route]]
path_prefix = "/api"
upstream = "api"
"#
    )
}

const UPGRADE: &[u8] = b"GET /api/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// An endpoint that answers each request head with `answer`, reports the head it read,
/// and then echoes whatever comes.
async fn endpoint(answer: &'static [u8]) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (heads, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&head).to_ascii_lowercase());
                if s.write_all(answer).await.is_err() {
                    return;
                }
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (address, seen)
}

/// Reads one answer head.
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    timeout(secs(5), async {
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) => head.push(byte[0]),
            }
        }
    })
    .await
    .expect("an answer head in time");
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_tunnelled_to_the_endpoint() {
    let (address, mut seen) =
        endpoint(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").await;
    let proxy = Proxy::start(&config(address)).await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(UPGRADE).await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head:?}"
    );
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head:?}");

    let sent = timeout(secs(5), seen.recv()).await.unwrap().unwrap();
    for line in [
        "get /api/chat http/1.1",
        "upgrade: websocket",
        "connection: upgrade",
        "sec-websocket-key:",
    ] {
        assert!(
            sent.contains(line),
            "the endpoint got no {line:?}: {sent:?}"
        );
    }

    // The tunnel carries bytes both ways.
    for message in [&b"hello"[..], b"\x81\x05frame"] {
        client.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        timeout(secs(5), client.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_endpoint_refuses_is_answered_with_its_status() {
    let (address, _seen) =
        endpoint(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n").await;
    let proxy = Proxy::start(&config(address)).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(UPGRADE).await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_an_endpoint_that_is_down_is_502() {
    let proxy = Proxy::start(&config(dead_addr())).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(UPGRADE).await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head:?}");
}

/// `Expect: 100-continue`: the client is told to go on before it sends its body, and
/// the body reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let up = Upstream::start("api", Behaviour::Echo).await;
    let proxy = Proxy::start(&config(up.addr())).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(
            b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let interim = read_head(&mut client).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    client.write_all(b"hello").await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], b"hello");
}
