//! A Redis server of a test's own: `redis-server` on a free loopback port, keeping nothing
//! on disk, started as a child process; stopped by killing it, started again on the same
//! port. And a Redis Cluster of a test's own ([`OwnRedisCluster`]): three such servers
//! in cluster mode, their slots shared out by `redis-cli --cluster create`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{free_port, skipped};

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until something listens on `port` of 127.0.0.1, up to 5 s.
fn wait_listening(port: u16) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server did not listen on {port} within 5 s");
}

/// Waits until the server listening on `port` is `child` (its `INFO server` names the
/// child's process id), up to 5 s; false if `child` exited first. A port found free can
/// be taken by another test's server before this one binds it: that server answers
/// connections, so listening alone says nothing of whose it is.
fn wait_for_child(port: u16, child: &mut Child) -> bool {
    for _ in 0..500 {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if server_pid(port) == Some(child.id()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server did not listen on {port} within 5 s");
}

/// The process id of the Redis server on `port` of 127.0.0.1, if one answers.
fn server_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .ok()?;
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&answer).contains("\nprocess_id:")
        || !answer.ends_with(b"\r\n\r\n")
    {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || answer.len() > 64 * 1024 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    let line = text.lines().find_map(|l| l.strip_prefix("process_id:"))?;
    line.trim().parse().ok()
}

pub struct OwnRedis {
    port: u16,
    child: Mutex<Option<Child>>,
}

impl OwnRedis {
    /// Starts it; `None` (after a loud message) without `redis-server`, outside CI.
    pub fn start() -> Option<Self> {
        if !installed("redis-server") {
            skipped("redis-server");
            return None;
        }
        // A port found free may be taken before the server binds it: then another.
        for _ in 0..10 {
            let server = Self {
                port: free_port(),
                child: Mutex::new(None),
            };
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("redis-server found no free port in 10 tries");
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (as a crash would).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on its port, waiting until it takes connections.
    pub fn start_again(&self) {
        assert!(
            self.spawn(),
            "redis-server could not listen on {} again",
            self.port
        );
    }

    /// Starts it on its port; false if the port was taken by another process.
    fn spawn(&self) -> bool {
        self.stop();
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let ours = wait_for_child(self.port, &mut child);
        *self.child.lock().unwrap() = Some(child);
        ours
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

/// A Redis Cluster of a test's own: three `redis-server`s in cluster mode on free
/// loopback ports (each port's cluster bus, the port + 10000, free as well), every slot
/// shared out among them by `redis-cli --cluster create` (no replicas), keeping nothing
/// on disk but their `nodes-<port>.conf` in a temporary directory. Killed, and the
/// directory removed, on drop.
pub struct OwnRedisCluster {
    ports: Vec<u16>,
    dir: PathBuf,
    children: Mutex<Vec<Child>>,
}

impl OwnRedisCluster {
    /// The number of nodes.
    pub const NODES: usize = 3;

    /// Starts the three servers, creates the cluster and waits until every node says
    /// `cluster_state:ok`; `None` (after a loud message) without `redis-server` or
    /// `redis-cli`, outside CI.
    pub fn start() -> Option<Self> {
        for program in ["redis-server", "redis-cli"] {
            if !installed(program) {
                skipped(program);
                return None;
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "palisade-redis-cluster-{}-{}",
            std::process::id(),
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("the cluster's directory");
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < Self::NODES {
            let port = free_port();
            if port <= 55535 && port_is_free(port + 10000) && !ports.contains(&port) {
                ports.push(port);
            }
        }
        let cluster = Self {
            ports,
            dir,
            children: Mutex::new(Vec::new()),
        };
        for &port in &cluster.ports {
            let config = cluster.dir.join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(&config)
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            cluster.children.lock().unwrap().push(child);
        }
        for &port in &cluster.ports {
            wait_listening(port);
        }
        let create = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            create.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&create.stdout),
            String::from_utf8_lossy(&create.stderr)
        );
        // Up to 20 s in all, in 50 ms pauses.
        let mut pauses = 0;
        for &port in &cluster.ports {
            loop {
                let info = cluster.cli(port, &["cluster", "info"]);
                if info.contains("cluster_state:ok") {
                    break;
                }
                pauses += 1;
                assert!(pauses <= 400, "node {port} not ok within 20 s: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(cluster)
    }

    /// The nodes' ports on 127.0.0.1.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// `redis://127.0.0.1:PORT/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// Runs `redis-cli -p PORT ARGS…` against one node and returns what it printed.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether nobody listens on `port` of 127.0.0.1 right now.
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}
