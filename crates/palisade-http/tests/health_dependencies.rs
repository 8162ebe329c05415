//! The ready-made dependency checks against real servers of the test's own (a PostgreSQL
//! cluster and a redis-server on free ports), stopped and started again: `/health/ready`
//! turns 503 naming the dependency within one check interval (the TTL) and 200 again when
//! it is back; `/health/live` stays 200 throughout. Without the servers' programs the test
//! skips loudly (a failure in CI).

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use palisade_http::health::{
    Class, Health, HealthService, Status, postgres_check, redis_check, sqlx_check,
};
use palisade_testkit::postgres::OwnServer;
use palisade_testkit::redis::OwnRedis;
use tower::ServiceExt;

/// How long a check's result is reused: the readiness answer is at most this stale.
const TTL: Duration = Duration::from_millis(200);

async fn get(health: &Arc<Health>, path: &str) -> (StatusCode, String) {
    let request = Request::get(path).body(()).unwrap();
    let response = HealthService::new(Arc::clone(health))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Polls `/health/ready` until `done` holds of its answer, for at most `within`; the answer.
async fn ready_until(
    health: &Arc<Health>,
    within: Duration,
    done: impl Fn(StatusCode, &str) -> bool,
) -> (StatusCode, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = get(health, "/health/ready").await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_real_postgres_and_redis_as_they_stop_and_return() {
    let Some(pg) = OwnServer::start() else { return };
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let config: tokio_postgres::Config = pg.url().parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(
            sqlx::postgres::PgConnectOptions::new()
                .host("127.0.0.1")
                .port(pg.port())
                .username("postgres")
                .database("postgres"),
        );
    let timeout = Duration::from_secs(1);
    let health = Arc::new(
        Health::builder()
            .check("loop", Class::Liveness, timeout, || async { Status::Ok })
            .check_with_ttl(
                "postgres",
                Class::Readiness,
                timeout,
                TTL,
                postgres_check(config),
            )
            .check_with_ttl(
                "orders_pool",
                Class::Readiness,
                timeout,
                TTL,
                sqlx_check(pool),
            )
            .check_with_ttl(
                "cache",
                Class::Readiness,
                timeout,
                TTL,
                redis_check(redis::Client::open(redis.url()).unwrap()),
            )
            .build()
            .unwrap(),
    );
    health.warmed_up();
    let (status, body) =
        ready_until(&health, Duration::from_secs(5), |s, _| s == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // PostgreSQL crashes: both of its checks fail within a TTL and a check's timeout.
    pg.stop_immediately();
    let (_, body) = ready_until(
        &health,
        TTL + timeout + Duration::from_secs(1),
        |s, body| {
            s == StatusCode::SERVICE_UNAVAILABLE
                && body.contains(r#""postgres":"error:"#)
                && body.contains(r#""orders_pool":"error:"#)
        },
    )
    .await;
    assert!(body.contains(r#""cache":"ok""#), "{body}");
    assert_eq!(get(&health, "/health/live").await.0, StatusCode::OK);
    pg.start_again();
    ready_until(&health, Duration::from_secs(5), |s, _| s == StatusCode::OK).await;

    // Redis is killed, then back.
    redis.stop();
    let (_, body) = ready_until(
        &health,
        TTL + timeout + Duration::from_secs(1),
        |s, body| s == StatusCode::SERVICE_UNAVAILABLE && body.contains(r#""cache":"error:"#),
    )
    .await;
    assert!(body.contains(r#""postgres":"ok""#), "{body}");
    assert_eq!(get(&health, "/health/live").await.0, StatusCode::OK);
    redis.start_again();
    ready_until(&health, Duration::from_secs(5), |s, _| s == StatusCode::OK).await;
}
