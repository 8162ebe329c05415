//! An order service, as the resilience guides sketch it, on `palisade-http`:
//!
//! - readiness checks of its real PostgreSQL and Redis (`/health/ready` answers 503
//!   naming the one that fails; `/health/live` never looks at them; `/health/deep` also
//!   shows the payments breaker);
//! - a bulkhead per dependency, so a slow database cannot take the cache's callers with it;
//! - the payments service called with reqwest through `ResilientMiddleware` — timeout,
//!   retry with a budget, breaker — and, when it is down, rates served from the last good
//!   answer cached in Redis, marked stale;
//! - deadlines: the caller's budget (`X-Request-Timeout`…) is read once, at the edge; the
//!   database calls' timeout and the payments calls are cut to what is left of it, and the
//!   payments call sends the rest on.
//!
//! `POST /orders {"item", "cents"}` stores the order and charges it (`Idempotency-Key:
//! order-{id}`, so a retried charge is one charge): 201 paid, or 202 with the order kept
//! unpaid when payments cannot answer. `GET /rates` answers payments' rates, fresh or
//! cached.
//!
//! An example: it opens a PostgreSQL connection per call where a real service keeps a
//! pool (deadpool-postgres, sqlx).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use palisade::policy::bulkhead::Bulkhead;
use palisade::policy::timeout::Timeout;
use palisade::{Error, Policy};
use palisade_http::client::{ClientConfig, Resilience, ResilientMiddleware};
use palisade_http::deadline::InboundDeadlineLayer;
use palisade_http::health::{
    Class, Health, HealthService, breaker_check, postgres_check, redis_check,
};
use reqwest_middleware::ClientWithMiddleware;
use serde::Deserialize;
use serde_json::{Value, json};

/// Where the dependencies are.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A tokio-postgres connection string (`host=… port=… user=… dbname=…`).
    pub postgres: String,
    /// `redis://host:port/`.
    pub redis: String,
    /// The payments service's base URL (`http://host:port`).
    pub payments: String,
}

/// The payments client's policies: the same keys as a sidecar's `[upstream]` sections.
const PAYMENTS: &str = r#"
[timeout]
total = "2s"
per_try = "300ms"
[retry]
max_attempts = 3
base = "20ms"
max_delay = "200ms"
budget = { ratio = 0.2, min_per_second = 5 }
[circuit_breaker]
scope = "upstream"
window = "count"
size = 20
minimum_calls = 5
failure_rate = 0.5
open_for = "1s"
"#;

struct Service {
    settings: Settings,
    postgres: tokio_postgres::Config,
    redis: redis::Client,
    payments: ClientWithMiddleware,
    database: Bulkhead,
    cache: Bulkhead,
    query_timeout: Timeout,
}

type Shared = Arc<Service>;

/// Why a request could not be served.
#[derive(Debug)]
enum Failure {
    Database(String),
    Cache(String),
    Payments(String),
}

// === the service ===

/// The service's router and its health registry (set warm once the schema exists).
pub async fn app(settings: Settings) -> Result<(Router, Arc<Health>), String> {
    let postgres: tokio_postgres::Config = settings
        .postgres
        .parse()
        .map_err(|e| format!("postgres settings: {e}"))?;
    let redis = redis::Client::open(settings.redis.as_str()).map_err(|e| format!("redis: {e}"))?;
    let config: ClientConfig = toml::from_str(PAYMENTS).map_err(|e| e.to_string())?;
    let resilience = Arc::new(Resilience::new("payments", &config).map_err(|e| e.to_string())?);
    let payments = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ResilientMiddleware::new(resilience.clone()))
        .build();
    let bulkhead = |name: &str, slots: usize| {
        Bulkhead::builder()
            .name(name)
            .max_concurrent(slots)
            .build()
            .map_err(|e| e.to_string())
    };
    let service = Arc::new(Service {
        settings,
        postgres: postgres.clone(),
        redis: redis.clone(),
        payments,
        database: bulkhead("database", 16)?,
        cache: bulkhead("cache", 32)?,
        query_timeout: Timeout::new(Duration::from_millis(500)),
    });
    let health = Arc::new(
        Health::builder()
            .check(
                "process",
                Class::Liveness,
                Duration::from_secs(1),
                || async { palisade_http::health::Status::Ok },
            )
            .check_with_ttl(
                "postgres",
                Class::Readiness,
                Duration::from_secs(1),
                Duration::from_millis(500),
                postgres_check(postgres),
            )
            .check_with_ttl(
                "redis",
                Class::Readiness,
                Duration::from_secs(1),
                Duration::from_millis(500),
                redis_check(redis),
            )
            .check(
                "payments",
                Class::Deep,
                Duration::from_secs(1),
                breaker_check(resilience.breaker("")),
            )
            .build()
            .map_err(|e| e.to_string())?,
    );
    service
        .database(|db| async move {
            db.batch_execute(
                "CREATE TABLE IF NOT EXISTS orders (id BIGSERIAL PRIMARY KEY, item TEXT NOT NULL, \
                 cents BIGINT NOT NULL, paid BOOLEAN NOT NULL DEFAULT FALSE)",
            )
            .await
            .map(|_| ())
        })
        .await
        .map_err(|e| format!("{e:?}"))?;
    health.warmed_up();
    let endpoints = HealthService::new(health.clone());
    let router = Router::new()
        .route("/orders", post(create_order))
        .route("/rates", get(rates))
        .with_state(service)
        .layer(InboundDeadlineLayer::new())
        .route_service("/health/live", endpoints.clone())
        .route_service("/health/ready", endpoints.clone())
        .route_service("/health/deep", endpoints);
    Ok((router, health))
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
    cents: i64,
}

async fn create_order(State(service): State<Shared>, Json(order): Json<NewOrder>) -> Response {
    let id = match service
        .database(|db| async move {
            let row = db
                .query_one(
                    "INSERT INTO orders (item, cents) VALUES ($1, $2) RETURNING id",
                    &[&order.item, &order.cents],
                )
                .await?;
            Ok(row.get::<_, i64>(0))
        })
        .await
    {
        Ok(id) => id,
        Err(failure) => return failure.into_response(),
    };
    let charge = service
        .payments
        .post(format!("{}/charges", service.settings.payments))
        .header("idempotency-key", format!("order-{id}"))
        .json(&json!({ "order": id, "cents": order.cents }))
        .send()
        .await;
    match charge {
        Ok(answer) if answer.status().is_success() => {
            let paid = service
                .database(|db| async move {
                    db.execute("UPDATE orders SET paid = TRUE WHERE id = $1", &[&id])
                        .await
                        .map(|_| ())
                })
                .await;
            match paid {
                Ok(()) => {
                    (StatusCode::CREATED, Json(json!({ "id": id, "paid": true }))).into_response()
                }
                Err(failure) => failure.into_response(),
            }
        }
        Ok(answer) => Failure::Payments(format!("answered {}", answer.status())).pending(id),
        Err(error) => Failure::Payments(error.to_string()).pending(id),
    }
}

async fn rates(State(service): State<Shared>) -> Response {
    let fresh = async {
        let answer = service
            .payments
            .get(format!("{}/rates", service.settings.payments))
            .send()
            .await
            .map_err(|e| Failure::Payments(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(Failure::Payments(format!("answered {}", answer.status())));
        }
        answer
            .text()
            .await
            .map_err(|e| Failure::Payments(e.to_string()))
    };
    match fresh.await {
        Ok(rates) => {
            // Kept for when payments is down; a failed write only loses the fallback.
            let _ = service.cache_set("rates", &rates).await;
            answer_rates(&rates, false)
        }
        Err(failure) => match service.cache_get("rates").await {
            Ok(Some(cached)) => answer_rates(&cached, true),
            Ok(None) => failure.into_response(),
            Err(cache) => cache.into_response(),
        },
    }
}

fn answer_rates(rates: &str, stale: bool) -> Response {
    let rates: Value = serde_json::from_str(rates).unwrap_or(Value::String(rates.to_owned()));
    Json(json!({ "rates": rates, "stale": stale })).into_response()
}

// === impl Service ===

impl Service {
    /// Runs `query` on a new connection, inside the database's bulkhead and under the
    /// query timeout (cut to the caller's deadline).
    async fn database<T, F, Fut>(&self, query: F) -> Result<T, Failure>
    where
        T: Send,
        F: FnOnce(tokio_postgres::Client) -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let _slot = self
            .database
            .acquire::<()>()
            .await
            .map_err(|e| Failure::Database(e.reason().to_owned()))?;
        // The query runs once (the timeout does not retry); the lock only lets a
        // one-shot closure through the policy's `Fn` operation.
        let query = std::sync::Mutex::new(Some(query));
        let run = || {
            let query = query.lock().unwrap_or_else(|e| e.into_inner()).take();
            async move {
                let query = query.ok_or_else(|| Failure::Database("run twice".into()))?;
                let (client, connection) = self
                    .postgres
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| Failure::Database(e.to_string()))?;
                let driving = tokio::spawn(connection);
                let result = query(client)
                    .await
                    .map_err(|e| Failure::Database(e.to_string()));
                driving.abort();
                result
            }
        };
        self.query_timeout
            .call(run)
            .await
            .map_err(|error| match error {
                Error::Inner(failure) => failure,
                other => Failure::Database(other.reason().to_owned()),
            })
    }

    async fn cache_set(&self, key: &str, value: &str) -> Result<(), Failure> {
        let _slot = self
            .cache
            .acquire::<()>()
            .await
            .map_err(|e| Failure::Cache(e.reason().to_owned()))?;
        let mut connection = self.cache_connection().await?;
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| Failure::Cache(e.to_string()))
    }

    async fn cache_get(&self, key: &str) -> Result<Option<String>, Failure> {
        let _slot = self
            .cache
            .acquire::<()>()
            .await
            .map_err(|e| Failure::Cache(e.reason().to_owned()))?;
        let mut connection = self.cache_connection().await?;
        redis::cmd("GET")
            .arg(key)
            .query_async::<Option<String>>(&mut connection)
            .await
            .map_err(|e| Failure::Cache(e.to_string()))
    }

    async fn cache_connection(&self) -> Result<redis::aio::MultiplexedConnection, Failure> {
        self.redis
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| Failure::Cache(e.to_string()))
    }
}

// === impl Failure ===

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Database(why) => write!(f, "database: {why}"),
            Failure::Cache(why) => write!(f, "cache: {why}"),
            Failure::Payments(why) => write!(f, "payments: {why}"),
        }
    }
}

impl Failure {
    /// The order is stored; its payment is not done.
    fn pending(self, id: i64) -> Response {
        tracing::warn!(failure = %self, id, "payment pending");
        (
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "paid": false, "reason": self.to_string() })),
        )
            .into_response()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}
