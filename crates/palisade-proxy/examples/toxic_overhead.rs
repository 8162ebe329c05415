//! What `palisade toxic` adds to a round trip with no fault active, beside HAProxy in TCP
//! mode (Toxiproxy itself is neither in Debian nor buildable here) and a direct
//! connection, in one run: 64-byte echoes on one kept connection, targets alternating
//! round by round. Run by `bench/toxic/run.sh`, which builds the release binary first.
//!
//! Usage: toxic_overhead PALISADE_BINARY [ROUNDS] [ECHOES_PER_ROUND]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn echo_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// POSTs `body` to `path` of the API on `port`; the answer's status line.
async fn post(port: u16, path: &str, body: &str) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await?;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

async fn until_listening(addr: SocketAddr) -> bool {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        sleep(Duration::from_millis(25)).await;
    }
    false
}

async fn palisade_toxic(binary: &str, echo: SocketAddr) -> Result<(Killed, SocketAddr), String> {
    let api = free_port();
    let child = Command::new(binary)
        .args(["toxic", "--port", &api.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{binary}: {e}"))?;
    let child = Killed(child);
    if !until_listening(([127, 0, 0, 1], api).into()).await {
        return Err("palisade toxic did not start".into());
    }
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let status = post(
        api,
        "/proxies",
        &format!(r#"{{"name":"echo","listen":"{listen}","upstream":"{echo}"}}"#),
    )
    .await
    .map_err(|e| e.to_string())?;
    if !status.contains("201") {
        return Err(format!("creating the proxy: {status}"));
    }
    Ok((child, listen))
}

async fn haproxy(echo: SocketAddr) -> Option<(Killed, SocketAddr)> {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = std::env::temp_dir().join(format!("toxic-overhead-{}.cfg", std::process::id()));
    let text = format!(
        "global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend f\n  bind {listen}\n  default_backend b\nbackend b\n  server echo {echo}\n"
    );
    std::fs::write(&config, text).ok()?;
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let child = Killed(child);
    let listening = until_listening(listen).await;
    let _ = std::fs::remove_file(&config);
    listening.then_some((child, listen))
}

/// `n` echo round trips on one connection to `addr`, in microseconds.
async fn round_trips(addr: SocketAddr, n: usize) -> std::io::Result<Vec<f64>> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    let message = [7u8; 64];
    let mut answer = [0u8; 64];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        conn.write_all(&message).await?;
        conn.read_exact(&mut answer).await?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(samples)
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let binary = args
        .get(1)
        .ok_or("usage: toxic_overhead PALISADE_BINARY [ROUNDS] [ECHOES]")?;
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let echoes: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2000);

    let echo = echo_server().await.map_err(|e| e.to_string())?;
    let (_palisade, palisade) = palisade_toxic(binary, echo).await?;
    let haproxy = haproxy(echo).await;
    let mut targets = vec![("direct", echo), ("palisade toxic", palisade)];
    match &haproxy {
        Some((_, addr)) => targets.push(("haproxy (tcp)", *addr)),
        None => eprintln!("*** haproxy not found or did not start: measured without it ***"),
    }
    let mut samples = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        for i in 0..targets.len() {
            // Alternate the order round by round, so drift falls on every target alike.
            let i = if round % 2 == 0 {
                i
            } else {
                targets.len() - 1 - i
            };
            let got = round_trips(targets[i].1, echoes)
                .await
                .map_err(|e| e.to_string())?;
            samples[i].extend(got);
        }
    }
    let mut direct = samples[0].clone();
    let direct_p50 = percentile(&mut direct, 0.5);
    println!(
        "{:<16} {:>9} {:>9} {:>12}",
        "target", "p50 µs", "p99 µs", "added p50"
    );
    for ((name, _), samples) in targets.iter().zip(samples.iter_mut()) {
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        println!(
            "{name:<16} {p50:>9.1} {p99:>9.1} {:>12.1}",
            p50 - direct_p50
        );
    }
    Ok(())
}
