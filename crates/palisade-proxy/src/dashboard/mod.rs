//! The live dashboard on the admin port: one self-contained page, fed by server-sent
//! events.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /dashboard` | the page (HTML, CSS and script inline: no CDN, works offline) |
//! | `GET /dashboard/events` | `text/event-stream`: a frame every `admin.dashboard_interval` |
//! | `GET /dashboard/data.json` | the state now and the history (15 min, one point a second) |
//! | `POST /dashboard/action` | an operator's action (see `action.rs`): admin token rule, then CSRF token |
//!
//! One sampler task ([`run`]) ticks every `admin.dashboard_interval` (1 s by default, 100
//! ms at the fastest): it takes what every route's tally counted, closes a second into
//! the [`History`] each whole second — whether anyone watches or not, so a reload shows
//! the recent past — and, when someone watches, encodes one frame and queues it for
//! every viewer. Viewers cost a queue of shared frames each (see `viewers.rs`); the
//! sampler's work does not grow with them.

mod action;
mod history;
mod sample;
mod viewers;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use palisade_saga::SagaState;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

pub use action::{Action, Refusal};
pub use history::History;
pub use viewers::{Hangup, Stream, Viewers};

use crate::runtime::Runtime;
use sample::Second;

/// The page, with `{{csrf}}` and `{{interval_ms}}` to fill in.
const PAGE: &str = include_str!("page.html");

/// Parked sagas listed by name on the page, at most.
const PARKED_LISTED: usize = 20;
/// Sagas counted per state, at most (the page shows "1000+").
const SAGAS_COUNTED: usize = 1000;
/// The longest a sample waits for the saga store.
const SAGA_READ_TIMEOUT: Duration = Duration::from_millis(250);

/// The dashboard's state: its history, its viewers and its CSRF token.
pub struct Dashboard {
    runtime: Arc<ArcSwap<Runtime>>,
    interval: Duration,
    csrf: String,
    page: Bytes,
    viewers: Viewers,
    samples: Mutex<Samples>,
}

/// What the sampler keeps between ticks.
#[derive(Debug, Default)]
struct Samples {
    history: History,
    /// The second being counted, and when it began.
    counting: Second,
    since: Option<Instant>,
    /// The last whole second, and its point.
    last: Second,
    point: Value,
    /// The sagas as last read.
    sagas: Value,
    /// The last frame's state (`now`), as JSON.
    now: Bytes,
}

// === impl Dashboard ===

impl Dashboard {
    /// A dashboard over `runtime`, sampling every `interval`; its CSRF token is drawn
    /// here, once per process.
    pub fn new(runtime: Arc<ArcSwap<Runtime>>, interval: Duration) -> Self {
        let csrf = format!("{:032x}", rand::random::<u128>());
        let page = PAGE
            .replace("{{csrf}}", &csrf)
            .replace("{{interval_ms}}", &interval.as_millis().to_string());
        Self {
            runtime,
            interval,
            csrf,
            page: Bytes::from(page),
            viewers: Viewers::default(),
            samples: Mutex::new(Samples {
                sagas: Value::Null,
                point: Value::Null,
                now: Bytes::from_static(b"null"),
                ..Samples::default()
            }),
        }
    }

    /// The page.
    pub fn page(&self) -> Bytes {
        self.page.clone()
    }

    /// The token a page's actions must carry (`x-palisade-csrf`).
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// A new viewer's stream, starting with the latest frame.
    pub fn watch(&self, hangup: Option<Hangup>) -> Stream {
        let now = self.lock().now.clone();
        let first = (now.as_ref() != b"null").then(|| frame(&now));
        self.viewers.join(first, hangup)
    }

    /// Viewers connected now.
    pub fn viewers(&self) -> usize {
        self.viewers.len()
    }

    /// `/dashboard/data.json`: the state now and every point of the history.
    pub async fn data(&self) -> Vec<u8> {
        let runtime = self.runtime.load_full();
        let sagas = sagas(&runtime).await;
        let samples = self.lock();
        let now = state_now(&runtime, &samples, &sagas).to_string();
        let history = samples.history.to_json();
        let mut out = Vec::with_capacity(history.len() + now.len() + 64);
        out.extend_from_slice(
            format!("{{\"interval_ms\":{},\"now\":", self.interval.as_millis()).as_bytes(),
        );
        out.extend_from_slice(now.as_bytes());
        out.extend_from_slice(b",\"history\":");
        out.extend_from_slice(&history);
        out.push(b'}');
        out
    }

    /// One tick: counts, closes a second when one has passed, and sends a frame when
    /// someone watches.
    async fn tick(&self) {
        let runtime = self.runtime.load_full();
        let now = Instant::now();
        let closed = {
            let mut samples = self.lock();
            samples.counting.take(&runtime);
            let since = *samples.since.get_or_insert(now);
            let elapsed = now.saturating_duration_since(since);
            if elapsed >= Duration::from_millis(995) {
                let mut second = std::mem::take(&mut samples.counting);
                second.seconds = elapsed.as_secs_f64();
                let point = sample::point(wall_ms(), &runtime, &second);
                samples.history.push(Bytes::from(point.to_string()));
                samples.point = point;
                samples.last = second;
                samples.since = Some(now);
                true
            } else {
                false
            }
        };
        if self.viewers.is_empty() {
            return;
        }
        if closed {
            let sagas = sagas(&runtime).await;
            self.lock().sagas = sagas;
        }
        let now = {
            let mut samples = self.lock();
            let now = state_now(&runtime, &samples, &samples.sagas);
            samples.now = Bytes::from(now.to_string());
            samples.now.clone()
        };
        self.viewers.send(&frame(&now));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The state now, with the last whole second's figures and point (the page appends the
/// point to its history when it is new).
fn state_now(runtime: &Runtime, samples: &Samples, sagas: &Value) -> Value {
    let mut now = sample::now(wall_ms(), runtime, &samples.last, sagas);
    now["point"] = samples.point.clone();
    now
}

/// Samples every `dashboard.interval` until `stopped` says so; then the viewers'
/// streams end.
pub async fn run(dashboard: Arc<Dashboard>, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(dashboard.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => dashboard.tick().await,
            _ = stopped.changed() => break,
        }
    }
    dashboard.viewers.close();
}

/// A server-sent event carrying `now` (one line of JSON).
fn frame(now: &Bytes) -> Bytes {
    let mut out = Vec::with_capacity(now.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(now);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Sagas running, compensating and parked (the parked ones listed), from the store;
/// `null` when no saga is configured, the last answer's error when the store fails.
async fn sagas(runtime: &Runtime) -> Value {
    let Some(sagas) = runtime.sagas.get() else {
        return Value::Null;
    };
    let runner = sagas.runner();
    let read = async {
        let running = runner.list(Some(SagaState::Running), SAGAS_COUNTED).await?;
        let compensating = runner
            .list(Some(SagaState::Compensating), SAGAS_COUNTED)
            .await?;
        let parked = runner.list(Some(SagaState::Parked), SAGAS_COUNTED).await?;
        Ok::<_, palisade_saga::SagaError>((running.len(), compensating.len(), parked))
    };
    match tokio::time::timeout(SAGA_READ_TIMEOUT, read).await {
        Ok(Ok((running, compensating, parked))) => json!({
            "running": running,
            "compensating": compensating,
            "parked": parked.len(),
            "capped_at": SAGAS_COUNTED,
            "parked_list": parked.iter().take(PARKED_LISTED).map(|r| json!({
                "id": r.id, "saga": r.definition, "reason": r.reason,
            })).collect::<Vec<_>>(),
        }),
        Ok(Err(error)) => json!({ "error": error.to_string() }),
        Err(_) => json!({ "error": "the saga store did not answer in time" }),
    }
}

/// Unix time in milliseconds, for the page's time axis (ticks run on tokio's clock).
#[allow(clippy::disallowed_methods)]
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
