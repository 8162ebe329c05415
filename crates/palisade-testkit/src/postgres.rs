//! A PostgreSQL server of a test's own: the newest installed server programs (Debian's
//! `/usr/lib/postgresql/*/bin`), a cluster in a temporary directory on a free loopback
//! port, trust authentication. For tests that stop or break the server.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{free_port, skipped};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A PostgreSQL server of the test's own, in a temporary directory on a free port, for
/// tests that stop or break the server. As root, its programs run as `postgres` (initdb
/// refuses root). `None` (after a loud message) when the binaries are missing outside CI.
pub struct OwnServer {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
}

impl OwnServer {
    /// Creates the cluster and starts it; `None` (after a loud message) without the
    /// server programs, outside CI.
    pub fn start() -> Option<Self> {
        let Some(bin) = server_bin() else {
            skipped("PostgreSQL's server programs (initdb, pg_ctl)");
            return None;
        };
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "palisade-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let server = Self { bin, dir, port };
        server.run("mkdir", &["-p", &server.path()]);
        server.run(
            &server.tool("initdb"),
            &[
                "-D",
                &server.path(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.start_again();
        Some(server)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string to its `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=3",
            self.port
        )
    }

    /// Stops it at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediately(&self) {
        self.run(
            &self.tool("pg_ctl"),
            &["-D", &self.path(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Starts it (again), waiting until it takes connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.path()
        );
        let log = self.dir.join("log").display().to_string();
        self.run(
            &self.tool("pg_ctl"),
            &[
                "-D",
                &self.path(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn path(&self) -> String {
        self.dir.display().to_string()
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    /// Runs `program` (as `postgres` when this process is root); panics if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let out = as_postgres(program)
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = as_postgres(&self.tool("pg_ctl"))
            .args(["-D", &self.path(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of the newest installed PostgreSQL's server programs.
fn server_bin() -> Option<std::path::PathBuf> {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// A command running `program`, as `postgres` when this process is root (initdb and
/// the server refuse root).
fn as_postgres(program: &str) -> std::process::Command {
    if is_root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        std::process::Command::new(program)
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
