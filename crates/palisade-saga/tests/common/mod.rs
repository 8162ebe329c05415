//! Shared test helpers: stores to run the suite on, and scripted steps that record their
//! effects in a ledger.
#![allow(dead_code)]

pub mod pg;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_saga::{CompensationRetry, SagaDefinition, Step, StepError, Store};
use serde_json::json;

/// How one attempt of an action behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Ok,
    Definitive,
    /// Fails with an unknown outcome, after applying the effect or not.
    Unknown {
        applied: bool,
    },
    /// Never answers.
    Hang,
}

/// How one attempt of a compensation behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comp {
    Ok,
    Unknown,
    Definitive,
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub actions: Vec<String>,
    pub applied: HashMap<usize, usize>,
    pub compensations: Vec<String>,
    pub undone: Vec<usize>,
    pub act_script: HashMap<usize, VecDeque<Act>>,
    pub comp_script: HashMap<usize, VecDeque<Comp>>,
}

pub type Shared = Arc<Mutex<Ledger>>;

impl Ledger {
    /// Effects applied and not undone.
    pub fn outstanding(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .applied
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, _)| *s)
            .collect();
        v.sort_unstable();
        v
    }
}

pub fn ledger() -> Shared {
    Arc::new(Mutex::new(Ledger::default()))
}

pub fn script_act(l: &Shared, step: usize, acts: &[Act]) {
    l.lock()
        .unwrap()
        .act_script
        .insert(step, acts.iter().copied().collect());
}

pub fn script_comp(l: &Shared, step: usize, comps: &[Comp]) {
    l.lock()
        .unwrap()
        .comp_script
        .insert(step, comps.iter().copied().collect());
}

/// A saga of `n` steps `s0..`, each applying an effect once per key (as an upstream with an
/// idempotency ledger would) and undoing it in its compensation.
pub fn definition(
    name: &str,
    version: u32,
    n: usize,
    l: &Shared,
    retry: CompensationRetry,
) -> SagaDefinition {
    let mut b = SagaDefinition::builder(name, version).compensation_retry(retry);
    for i in 0..n {
        let la = Arc::clone(l);
        let lc = Arc::clone(l);
        b = b.step(
            Step::new(format!("s{i}"), move |cx| {
                let l = Arc::clone(&la);
                async move {
                    let act = {
                        let mut g = l.lock().unwrap();
                        g.actions.push(cx.idempotency_key.clone());
                        g.act_script
                            .get_mut(&i)
                            .and_then(VecDeque::pop_front)
                            .unwrap_or(Act::Ok)
                    };
                    let apply = |l: &Shared| {
                        let mut g = l.lock().unwrap();
                        let n = g.applied.entry(i).or_insert(0);
                        *n = 1; // idempotent by key: once however often
                    };
                    match act {
                        Act::Ok => {
                            apply(&l);
                            Ok(json!({ "step": i, "key": cx.idempotency_key }))
                        }
                        Act::Definitive => Err(StepError::definitive("rejected")),
                        Act::Unknown { applied } => {
                            if applied {
                                apply(&l);
                            }
                            Err(StepError::unknown("server error"))
                        }
                        Act::Hang => std::future::pending().await,
                    }
                }
            })
            .compensate(move |cx| {
                let l = Arc::clone(&lc);
                async move {
                    let mut g = l.lock().unwrap();
                    g.compensations.push(cx.idempotency_key.clone());
                    match g
                        .comp_script
                        .get_mut(&i)
                        .and_then(VecDeque::pop_front)
                        .unwrap_or(Comp::Ok)
                    {
                        Comp::Ok => {
                            if g.applied.get(&i).copied().unwrap_or(0) > 0 {
                                g.applied.insert(i, 0);
                                g.undone.push(i);
                            }
                            Ok(json!(null))
                        }
                        Comp::Unknown => Err(StepError::unknown("compensation failed")),
                        Comp::Definitive => Err(StepError::definitive("compensation refused")),
                    }
                }
            }),
        );
    }
    b.build().unwrap()
}

/// A quick compensation retry: 5 attempts, 100 ms doubling to 1 s.
pub fn quick_retry() -> CompensationRetry {
    CompensationRetry {
        max_attempts: 5,
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        ..CompensationRetry::default()
    }
}

/// Which store a suite runs on.
#[derive(Clone, Debug)]
pub enum Kind {
    Memory,
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// A fresh store of `kind` (a new file / schema each time `fresh` is called).
pub async fn open(kind: &Kind) -> Store {
    match kind {
        Kind::Memory => palisade_saga::store::memory::open(),
        Kind::Sqlite(path) => palisade_saga::store::sqlite::open(path).await.unwrap(),
        Kind::Postgres(url) => palisade_saga::store::postgres::open(url).await.unwrap(),
    }
}

/// The same store after a restart: the file or database opened again; memory kept.
pub async fn reopen(kind: &Kind, store: &Store) -> Store {
    match kind {
        Kind::Memory => store.clone(),
        _ => open(kind).await,
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn temp_sqlite() -> Kind {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join("palisade-saga-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("t{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    Kind::Sqlite(path)
}

/// Removes what a test's store left: the SQLite file (and its WAL), or the schema.
pub fn discard(kind: &Kind) {
    match kind {
        Kind::Sqlite(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
        Kind::Postgres(url) => pg::drop_schema(url),
        Kind::Memory => {}
    }
}
