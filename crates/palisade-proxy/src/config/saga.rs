//! The saga sections: `[saga_store]`, `[[saga]]` with its `[[saga.step]]`s, for routes
//! with `saga = "…"` (see `crate::saga`).

use std::time::Duration;

use palisade_saga::CompensationRetry;
use serde::{Deserialize, Serialize};

/// `[saga_store]`: where sagas are logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaStore {
    /// `sqlite://PATH` (a file, created if missing) or `postgres://…`. Default
    /// `sqlite://palisade-sagas.db` (in the working directory).
    #[serde(default = "default_store_url")]
    pub url: String,
}

impl Default for SagaStore {
    fn default() -> Self {
        Self {
            url: default_store_url(),
        }
    }
}

fn default_store_url() -> String {
    "sqlite://palisade-sagas.db".to_owned()
}

/// `[[saga]]`: a saga's steps, each a request to an upstream with its compensation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saga {
    /// Its name, which routes give as `saga = "…"`.
    pub name: String,
    /// Its definition's version, recorded with every saga it starts. Default 1.
    #[serde(default = "default_version")]
    pub version: u32,
    /// The whole saga's time; past it, it compensates. Default: none.
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// How a failing compensation is retried before the saga is parked.
    #[serde(default)]
    pub compensation_retry: CompensationRetry,
    /// Its steps, in order.
    #[serde(default)]
    pub step: Vec<SagaStep>,
}

fn default_version() -> u32 {
    1
}

/// `[[saga.step]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaStep {
    /// Its name, unique in the saga.
    pub name: String,
    /// The upstream it calls, through that upstream's policies.
    pub upstream: String,
    /// The request's method.
    pub method: String,
    /// The request's path; `{saga_id}` is replaced by the saga's id.
    pub path: String,
    /// The request that undoes it; absent: nothing to undo.
    #[serde(default)]
    pub compensate: Option<SagaRequest>,
}

/// A compensation's request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaRequest {
    /// Its method.
    pub method: String,
    /// Its path; `{saga_id}` is replaced by the saga's id.
    pub path: String,
}
