//! PostgreSQL for tests: the machine's server at 127.0.0.1:5432 (user postgres, database
//! `test`), a fresh schema per store. Unreachable: a failure when `CI` is set, else a loud
//! skip.

use std::sync::atomic::{AtomicUsize, Ordering};

pub const BASE: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3";

/// The server to test against: `PALISADE_SAGA_PG`, or [`BASE`].
pub fn base() -> String {
    std::env::var("PALISADE_SAGA_PG").unwrap_or_else(|_| BASE.to_owned())
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A connection string whose search_path is a new, empty schema; `None` (after a loud
/// message) when PostgreSQL is unreachable outside CI.
pub fn fresh_url() -> Option<String> {
    fresh_url_on(base())
}

/// As [`fresh_url`], on the server `base` names.
pub fn fresh_url_on(base: String) -> Option<String> {
    let schema = format!(
        "saga_t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::thread::current().name().unwrap_or("x").len()
    );
    let b = base.clone();
    let s = schema.clone();
    let made = std::thread::spawn(move || -> Result<(), String> {
        let mut c = postgres::Client::connect(&b, postgres::NoTls).map_err(|e| e.to_string())?;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}"
        ))
        .map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("panicked".into()));
    match made {
        Ok(()) => Some(format!("{base} options='-c search_path={schema}'")),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL unreachable at {base} and CI is set: {e}");
            }
            eprintln!(
                "\n!!!!!!!! SKIPPED: PostgreSQL unreachable at {base}: {e} (set CI to make this a failure) !!!!!!!!\n"
            );
            None
        }
    }
}

/// Drops the schema a [`fresh_url`] created.
pub fn drop_schema(url: &str) {
    let Some(schema) = url
        .split("search_path=")
        .nth(1)
        .map(|s| s.trim_end_matches('\'').to_owned())
    else {
        return;
    };
    let base = base();
    let _ = std::thread::spawn(move || {
        if let Ok(mut c) = postgres::Client::connect(&base, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    })
    .join();
}

/// A PostgreSQL server of the test's own, in a temporary directory on a free port, for
/// tests that stop or break the server. As root, its programs run as `postgres` (initdb
/// refuses root). `None` (after a loud message) when the binaries are missing outside CI.
pub struct OwnServer {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
}

impl OwnServer {
    pub fn start() -> Option<Self> {
        let Some(bin) = server_bin() else {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL's server programs (initdb, pg_ctl) are missing and CI is set");
            }
            eprintln!(
                "\n!!!!!!!! SKIPPED: PostgreSQL's server programs (initdb, pg_ctl) are missing (set CI to make this a failure) !!!!!!!!\n"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
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
