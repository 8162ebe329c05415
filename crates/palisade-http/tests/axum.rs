//! Palisade on an axum 0.8 `Router`: a pipeline with a retry (whose requests are not
//! `Clone`) and a fallback producing `http::Response<axum::body::Body>` (not `Clone`
//! either), driven with `oneshot` on tokio's paused clock.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use palisade::policy::fallback::{Fallback, Trigger};
use palisade::policy::retry::{BackoffKind, Jitter, Retry};
use palisade::policy::timeout::Timeout;
use palisade::{Error, Pipeline, Policy};
use palisade_http::classify::{RetryOn, StatusClassifier};
use palisade_http::retry::BufferedRetry;
use tower::{Layer, ServiceExt, service_fn};

/// `layer`, its errors answered with their status: axum wants a route's stack to be
/// `Infallible`.
fn answering_errors<L>(
    layer: L,
) -> tower::layer::util::Stack<L, HandleErrorLayer<ErrorAnswer, ()>> {
    tower::layer::util::Stack::new(layer, HandleErrorLayer::new(answer as ErrorAnswer))
}

type ErrorAnswer = fn(Error<Infallible>) -> std::future::Ready<Response>;

fn answer(error: Error<Infallible>) -> std::future::Ready<Response> {
    std::future::ready(palisade_http::status::response(&error))
}

/// The bodies the handler saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

fn retry(attempts: u32) -> BufferedRetry {
    let retry = Retry::builder()
        .max_attempts(attempts)
        .backoff(
            BackoffKind::Constant,
            Duration::from_millis(10),
            Duration::from_secs(1),
        )
        .jitter(Jitter::None)
        .seed(7)
        .build()
        .unwrap();
    BufferedRetry::new(retry).limit(16)
}

/// A route answering 503 (retryable) to every request, behind a pipeline with a retry.
fn busy_app(seen: Seen) -> Router {
    let pipeline = Pipeline::builder()
        .push(Timeout::new(Duration::from_secs(5)))
        .push(retry(3))
        .classifier(StatusClassifier::new(RetryOn::parse(&["503"]).unwrap()))
        .build();
    Router::new()
        .route(
            "/orders",
            post(move |body: String| async move {
                seen.lock().unwrap().push(body);
                StatusCode::SERVICE_UNAVAILABLE
            }),
        )
        .layer(answering_errors(pipeline.layer()))
}

async fn post_to(app: Router, body: Body) -> StatusCode {
    let request = Request::post("/orders").body(body).unwrap();
    app.oneshot(request).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn a_small_body_is_sent_again_on_every_attempt() {
    let seen = Seen::default();
    let status = post_to(busy_app(seen.clone()), Body::from("one coffee")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the last answer");
    assert_eq!(*seen.lock().unwrap(), ["one coffee"; 3]);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_bound_is_sent_once_whole() {
    let seen = Seen::default();
    let large = "x".repeat(100);
    let status = post_to(busy_app(seen.clone()), Body::from(large.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        std::slice::from_ref(&large),
        "declared length"
    );

    // Without a declared length, the bound is found while reading: the part read is
    // sent in front of the rest, once.
    let seen = Seen::default();
    let chunks = large
        .as_bytes()
        .chunks(10)
        .map(|c| Ok::<_, Infallible>(Bytes::copy_from_slice(c)))
        .collect::<Vec<_>>();
    let streamed = Body::from_stream(futures_util::stream::iter(chunks));
    let status = post_to(busy_app(seen.clone()), streamed).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(*seen.lock().unwrap(), [large], "streamed");
}

#[tokio::test(start_paused = true)]
async fn a_retry_stops_at_the_first_good_answer() {
    let seen = Seen::default();
    let log = seen.clone();
    let pipeline = Pipeline::builder()
        .push(retry(3))
        .classifier(StatusClassifier::new(RetryOn::parse(&["503"]).unwrap()))
        .build();
    let app = Router::new()
        .route(
            "/orders",
            post(move |body: String| async move {
                let mut seen = log.lock().unwrap();
                seen.push(body);
                if seen.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::CREATED
                }
            }),
        )
        .layer(answering_errors(pipeline.layer()));
    assert_eq!(post_to(app, Body::from("tea")).await, StatusCode::CREATED);
    assert_eq!(*seen.lock().unwrap(), ["tea", "tea"]);
}

/// The handler failed; the fallback's page, which is no more `Clone` than any response.
fn degraded() -> Fallback<Response, std::io::Error> {
    Fallback::<Response, std::io::Error>::builder()
        .on(&[Trigger::Inner])
        .compute(|_| (StatusCode::OK, "degraded").into_response())
        .build()
        .unwrap()
}

async fn text(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_computed_fallback_answers_with_a_response_through_call() {
    let fallback = degraded();
    let answer = fallback
        .call(|| async { Err(std::io::Error::other("down")) })
        .await
        .unwrap();
    assert_eq!(text(answer).await, "degraded");
    let answer = fallback
        .call(|| async { Ok("fresh".into_response()) })
        .await
        .unwrap();
    assert_eq!(text(answer).await, "fresh");
}

#[tokio::test(start_paused = true)]
async fn a_computed_fallback_answers_with_a_response_as_a_layer() {
    let handler = service_fn(|request: Request<Body>| async move {
        match request.uri().path() {
            "/up" => Ok("fresh".into_response()),
            _ => Err(std::io::Error::other("down")),
        }
    });
    let svc = degraded().layer().layer(handler);
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let answer = svc.clone().oneshot(get("/up")).await.unwrap();
    assert_eq!(text(answer).await, "fresh");
    let answer = svc.oneshot(get("/down")).await.unwrap();
    assert_eq!(text(answer).await, "degraded");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_while_buffered_is_handed_on_once_failing() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let handler = service_fn(
        move |request: Request<palisade_http::body::ReplayBody<Body>>| {
            let log = log.clone();
            async move {
                let read = request.into_body().collect().await;
                log.lock().unwrap().push(read.is_err());
                Ok::<_, Infallible>(StatusCode::SERVICE_UNAVAILABLE.into_response())
            }
        },
    );
    let pipeline = Pipeline::builder()
        .push(retry(3))
        .classifier(StatusClassifier::new(RetryOn::parse(&["503"]).unwrap()))
        .build();
    let svc = pipeline.layer().layer(handler);
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"half an ")),
        Err(std::io::Error::other("client went away")),
    ];
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let response = svc
        .oneshot(Request::post("/orders").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(*calls.lock().unwrap(), [true], "sent once, failing");
}
