//! A real browser for black-box tests: headless Chromium, driven by `tests/browser/driver.mjs`
//! (playwright-core) through its stdin and stdout, one JSON line each way per command.
//!
//! `Browser::start()` returns `None` after a loud SKIPPED line when node, the driver's
//! `node_modules` or Chromium is missing, and panics naming what is missing when `CI` is
//! set (`.ci/run` installs them all). Every command has a limit: a browser that stops
//! answering fails the test instead of hanging it. The driver is killed on drop, and
//! Chromium exits with it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

/// The driver's folder: `driver.mjs`, `package.json`, and `node_modules/` after `npm ci`.
const DRIVER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

/// The Chromium used when `PALISADE_CHROMIUM` names none (Debian's package).
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How long the driver may take to launch Chromium and answer its first command.
const LAUNCH: Duration = Duration::from_secs(60);

/// The limit on one command, past the driver's own 10 s on a command and 30 s on a page
/// load: the driver answers a slow command with an error; not answering is a hang.
const COMMAND: Duration = Duration::from_secs(20);
const NAVIGATION: Duration = Duration::from_secs(40);

/// How much longer than a `wait`'s own limit its answer may take.
const SLACK: Duration = Duration::from_secs(10);

/// Headless Chromium with one page, driven by `driver.mjs`.
pub struct Browser {
    /// The `node driver.mjs` process (killed on drop).
    child: Child,
    /// Where commands are written, one JSON object per line.
    stdin: ChildStdin,
    /// Where replies are read, one JSON object per line.
    stdout: Lines<BufReader<ChildStdout>>,
}

// === impl Browser ===

impl Browser {
    /// Starts the driver and its browser; `None` (outside CI) when something is missing.
    pub async fn start() -> Option<Browser> {
        let chromium = std::env::var_os("PALISADE_CHROMIUM")
            .map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
        let node = Command::new("node")
            .arg("--version")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        let playwright = Path::new(DRIVER_DIR).join("node_modules/playwright-core");

        let mut missing = Vec::new();
        if !node {
            missing.push(("node".to_string(), "apt-get install nodejs npm".to_string()));
        }
        if !playwright.is_dir() {
            missing.push((
                playwright.display().to_string(),
                format!("cd {DRIVER_DIR} && npm ci"),
            ));
        }
        if !chromium.is_file() {
            missing.push((
                chromium.display().to_string(),
                "apt-get install chromium, or set PALISADE_CHROMIUM".to_string(),
            ));
        }
        if !missing.is_empty() {
            let what: Vec<_> = missing.iter().map(|(what, _)| what.as_str()).collect();
            let how: Vec<_> = missing.iter().map(|(_, how)| how.as_str()).collect();
            let (what, how) = (what.join(", "), how.join("; "));
            assert!(
                std::env::var_os("CI").is_none(),
                "the browser tests need {what}: .ci/run installs it (install: {how})"
            );
            eprintln!("\n*** SKIPPED: a browser test; missing {what} (install: {how}) ***\n");
            return None;
        }

        let mut child = Command::new("node")
            .arg(Path::new(DRIVER_DIR).join("driver.mjs"))
            .current_dir(DRIVER_DIR)
            .env("PALISADE_CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts driver.mjs");
        let stdin = child.stdin.take().expect("the driver's stdin");
        let stdout = BufReader::new(child.stdout.take().expect("the driver's stdout")).lines();
        let mut browser = Browser {
            child,
            stdin,
            stdout,
        };
        // The first answer comes once Chromium is up.
        browser
            .call(json!({"cmd": "errors"}), LAUNCH)
            .await
            .expect("the browser driver answers");
        Some(browser)
    }

    /// Opens `url` and waits for its load event; the response's HTTP status (0 if the
    /// navigation had none, as within one document).
    pub async fn goto(&mut self, url: &str) -> u16 {
        let reply = self.must("goto", json!({"cmd": "goto", "url": url}), NAVIGATION);
        status(&reply.await)
    }

    /// Reloads the page and waits for its load event; the response's HTTP status.
    pub async fn reload(&mut self) -> u16 {
        let reply = self.must("reload", json!({"cmd": "reload"}), NAVIGATION);
        status(&reply.await)
    }

    /// Waits, polling every 25 ms for at most `limit`, until an element matches `selector`
    /// and, with `attr`, that attribute equals `value` (or, with no `value`, is present).
    /// How long that took, or why not, with the attribute's last value seen.
    pub async fn wait(
        &mut self,
        selector: &str,
        attr: Option<&str>,
        value: Option<&str>,
        limit: Duration,
    ) -> Result<Duration, String> {
        let cmd = json!({
            "cmd": "wait",
            "selector": selector,
            "attr": attr,
            "value": value,
            "timeout_ms": limit.as_millis() as u64,
        });
        let reply = self.send(&cmd.to_string(), limit + SLACK).await;
        if reply["ok"] == true {
            let elapsed = reply["elapsed_ms"].as_u64().unwrap_or_default();
            return Ok(Duration::from_millis(elapsed));
        }
        let wanted = match (attr, value) {
            (Some(a), Some(v)) => format!("{selector}[{a}={v:?}]"),
            (Some(a), None) => format!("{selector}[{a}]"),
            _ => selector.to_string(),
        };
        Err(format!(
            "{} after {limit:?} waiting for {wanted}; last value: {}",
            error(&reply),
            reply["last"]
        ))
    }

    /// The value of `attr` on the first element matching `selector`; `None` if the
    /// element or the attribute is missing.
    pub async fn attr(&mut self, selector: &str, attr: &str) -> Option<String> {
        let cmd = json!({"cmd": "attr", "selector": selector, "attr": attr});
        let reply = self.must("attr", cmd, COMMAND).await;
        reply["value"].as_str().map(str::to_string)
    }

    /// The rendered text (`innerText`) of the first element matching `selector`.
    pub async fn text(&mut self, selector: &str) -> String {
        let cmd = json!({"cmd": "text", "selector": selector});
        let reply = self.must("text", cmd, COMMAND).await;
        reply["value"].as_str().unwrap_or_default().to_string()
    }

    /// How many elements match `selector`.
    pub async fn count(&mut self, selector: &str) -> usize {
        let cmd = json!({"cmd": "count", "selector": selector});
        let reply = self.must("count", cmd, COMMAND).await;
        reply["value"].as_u64().unwrap_or_default() as usize
    }

    /// Clicks the first element matching `selector`, once it is visible and enabled.
    pub async fn click(&mut self, selector: &str) {
        let cmd = json!({"cmd": "click", "selector": selector});
        self.must("click", cmd, COMMAND).await;
    }

    /// Selects the `<option>` with this value (or label) in the `<select>` at `selector`.
    pub async fn select(&mut self, selector: &str, value: &str) {
        let cmd = json!({"cmd": "select", "selector": selector, "value": value});
        self.must("select", cmd, COMMAND).await;
    }

    /// The JSON value of a JavaScript expression evaluated in the page (a promise is
    /// awaited; `undefined` is null).
    pub async fn eval(&mut self, js: &str) -> Value {
        let cmd = json!({"cmd": "eval", "js": js});
        let mut reply = self.must("eval", cmd, COMMAND).await;
        reply["value"].take()
    }

    /// Writes a PNG of the whole page to `path` (its folder is created).
    pub async fn screenshot(&mut self, path: &Path) {
        let cmd = json!({"cmd": "screenshot", "path": path});
        self.must("screenshot", cmd, COMMAND).await;
    }

    /// Every console error, uncaught page error and failed request since the start.
    pub async fn errors(&mut self) -> Vec<String> {
        let reply = self.must("errors", json!({"cmd": "errors"}), COMMAND).await;
        let errors = reply["errors"].as_array().cloned().unwrap_or_default();
        errors
            .into_iter()
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
            .collect()
    }

    /// Closes the browser and waits for the driver to exit; panics if it fails to.
    pub async fn quit(mut self) {
        self.must("quit", json!({"cmd": "quit"}), COMMAND).await;
        let status = timeout(COMMAND, self.child.wait())
            .await
            .expect("the browser driver exits after quit")
            .expect("the browser driver is waited for");
        assert!(status.success(), "the browser driver exited with {status}");
    }

    /// Sends one line as it is and returns the reply, whatever it says (for testing the
    /// driver itself).
    pub async fn raw(&mut self, line: &str) -> Value {
        self.send(line, COMMAND).await
    }

    /// Sends `cmd`; its reply if ok, else the driver's error.
    async fn call(&mut self, cmd: Value, limit: Duration) -> Result<Value, String> {
        let reply = self.send(&cmd.to_string(), limit).await;
        if reply["ok"] == true {
            Ok(reply)
        } else {
            Err(error(&reply))
        }
    }

    /// Sends `cmd`; its reply, or a panic naming the command and the driver's error.
    async fn must(&mut self, what: &str, cmd: Value, limit: Duration) -> Value {
        match self.call(cmd, limit).await {
            Ok(reply) => reply,
            Err(e) => panic!("browser: {what} failed: {e}"),
        }
    }

    /// Writes one line and reads one reply line within `limit`; panics if the driver
    /// has gone or does not answer in time.
    async fn send(&mut self, line: &str, limit: Duration) -> Value {
        let exchange = async {
            self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
            self.stdin.flush().await?;
            self.stdout.next_line().await
        };
        let answer = timeout(limit, exchange)
            .await
            .unwrap_or_else(|_| panic!("browser: no answer to {line} within {limit:?}"));
        match answer {
            Ok(Some(reply)) => serde_json::from_str(&reply).unwrap_or_else(|e| {
                panic!("browser: the reply to {line} is not JSON ({e}): {reply}")
            }),
            Ok(None) => {
                panic!("browser: the driver exited before answering {line} (its stderr is above)")
            }
            Err(e) => panic!("browser: the driver's pipe failed on {line}: {e}"),
        }
    }
}

/// A reply's error text.
fn error(reply: &Value) -> String {
    reply["error"]
        .as_str()
        .map_or_else(|| reply.to_string(), str::to_string)
}

/// A navigation reply's HTTP status (0 for none).
fn status(reply: &Value) -> u16 {
    reply["status"].as_u64().unwrap_or_default() as u16
}
