use super::*;
use palisade::policy::circuit_breaker::CircuitBreaker;

use crate::config::Protocol;
use crate::upstream::Role;

fn endpoint(port: u16, role: Role, breaker: Option<CircuitBreaker>) -> Arc<Endpoint> {
    let endpoint = Endpoint::new(
        "api",
        format!("127.0.0.1:{port}"),
        role,
        breaker,
        crate::upstream::pool::Connections {
            protocol: Protocol::Http1,
            connect_timeout: Duration::from_secs(1),
            workers: 1,
        },
        Clock::tokio(),
    )
    .expect("endpoint");
    Arc::new(endpoint)
}

fn balancer() -> Balancer {
    with(vec![endpoint(9, Role::Primary, None)], Vec::new())
}

fn with(primaries: Vec<Arc<Endpoint>>, backups: Vec<Arc<Endpoint>>) -> Balancer {
    Balancer::new(
        "api".into(),
        Balance::P2c,
        primaries,
        backups,
        Clock::tokio(),
    )
}

/// A breaker opened by 10 failures; open 1 s, no jitter.
fn breaker(name: &str) -> CircuitBreaker {
    CircuitBreaker::builder()
        .name(name)
        .consecutive_failures(10)
        .open_for(Duration::from_secs(1), Duration::from_secs(8), 2.0, 0.0)
        .build()
        .expect("breaker")
}

fn trip(breaker: &CircuitBreaker) {
    for _ in 0..10 {
        if let Ok(permit) = breaker.try_acquire() {
            permit.record(&palisade::outcome::Outcome::failure());
        }
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

/// The early refusal gives what `pick` gives whenever it answers at all.
fn agrees_with_pick(balancer: &Balancer) -> Option<String> {
    let early = balancer.refusal().map(|e| e.to_string());
    if let Some(refused) = &early {
        let picked = balancer.pick(0).err().map(|e| e.to_string());
        assert_eq!(picked.as_ref(), Some(refused), "pick disagrees");
    }
    early
}

#[tokio::test(start_paused = true)]
async fn refuses_early_only_when_no_endpoint_can_take_a_request() {
    let (a, b) = (breaker("a"), breaker("b"));
    let balancer = with(
        vec![endpoint(1, Role::Primary, Some(a.clone()))],
        vec![endpoint(2, Role::Backup, Some(b.clone()))],
    );
    assert!(agrees_with_pick(&balancer).is_none(), "both closed");
    trip(&a);
    assert!(agrees_with_pick(&balancer).is_none(), "the backup takes it");
    b.force_open();
    let refused = balancer.refusal().expect("every endpoint refuses");
    assert!(matches!(
        refused,
        Error::CircuitOpen {
            retry_after: Some(_),
            ..
        }
    ));
    assert!(agrees_with_pick(&balancer).is_some());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        balancer.refusal().is_none(),
        "an open time that is over leaves the probe to pick"
    );
    assert_eq!(a.state(), CircuitState::Open, "asking took no probe");
}

#[tokio::test(start_paused = true)]
async fn refuses_early_as_no_healthy_endpoint_when_none_is_healthy() {
    let balancer = with(
        vec![endpoint(1, Role::Primary, Some(breaker("a")))],
        Vec::new(),
    );
    balancer.primaries[0].set_healthy(false);
    let refused = balancer.refusal().expect("no healthy endpoint");
    assert!(
        matches!(&refused, Error::Inner(e) if e.kind == TransportErrorKind::NoHealthyEndpoint),
        "{refused}"
    );
    assert!(agrees_with_pick(&balancer).is_some());
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_without_a_breaker_is_never_refused_early() {
    assert!(agrees_with_pick(&balancer()).is_none());
}

#[tokio::test]
async fn an_attempt_counts_in_flight_until_dropped_finished_or_not() {
    let balancer = balancer();
    let endpoint = balancer.primaries[0].clone();
    let first = balancer.pick(0).expect("picked");
    let second = balancer.pick(0).expect("picked");
    assert_eq!(endpoint.in_flight(), 2);
    // Finished: its latency observed, then dropped.
    let mut first = first;
    let now = balancer.clock().now();
    balancer.finish(
        &mut first,
        now,
        Duration::from_millis(5),
        &Outcome::success(),
    );
    drop(first);
    assert_eq!(endpoint.in_flight(), 1);
    // Cancelled (a timeout dropped its future): dropped without an answer.
    drop(second);
    assert_eq!(endpoint.in_flight(), 0);
}

fn primaries(breakers: &[CircuitBreaker]) -> Balancer {
    let endpoints = breakers
        .iter()
        .enumerate()
        .map(|(i, b)| endpoint(20 + i as u16, Role::Primary, Some(b.clone())))
        .collect();
    with(endpoints, Vec::new())
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoint_is_never_offered_and_the_others_share_the_load() {
    let breakers = [breaker("a"), breaker("b"), breaker("c")];
    let balancer = primaries(&breakers);
    trip(&breakers[0]);
    let mut picks = [0usize; 3];
    for _ in 0..3000 {
        let picked = balancer.pick(0).expect("two endpoints can serve");
        picks[picked.index] += 1;
    }
    assert_eq!(picks[0], 0, "the ejected endpoint served");
    assert_eq!(
        breakers[0].state(),
        CircuitState::Open,
        "no probe was taken"
    );
    for (i, &n) in picks.iter().enumerate().skip(1) {
        assert!(
            (1300..=1700).contains(&n),
            "endpoint {i} got {n} of 3000 picks: the load falls on one endpoint ({picks:?})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_refusal_the_next_choice_is_by_load_not_list_order() {
    let breakers = [breaker("a"), breaker("b"), breaker("c")];
    let balancer = primaries(&breakers);
    // Endpoint 0 is half-open with its one probe in flight: a candidate that refuses.
    trip(&breakers[0]);
    tokio::time::advance(Duration::from_secs(1)).await;
    let _probe = breakers[0].try_acquire_owned().expect("the probe");
    // Endpoint 1 is busy (cost 6), endpoint 2 less so (cost 2), endpoint 0 idle (1).
    for _ in 0..5 {
        balancer.primaries[1].start();
    }
    balancer.primaries[2].start();
    for _ in 0..200 {
        let picked = balancer.pick(0).expect("two endpoints can serve");
        assert_eq!(
            picked.index, 2,
            "after endpoint 0 refused, the busier endpoint 1 was tried before 2"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_recovered_endpoint_s_share_ramps_up_over_the_slow_start() {
    let breakers = [breaker("a"), breaker("b")];
    let balancer = primaries(&breakers).slow_start(Duration::from_secs(10));
    tokio::time::advance(Duration::from_secs(60)).await;
    // Endpoint 0 trips, waits out its open time and closes again through a probe.
    trip(&breakers[0]);
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..3 {
        breakers[0]
            .try_acquire()
            .expect("a probe")
            .record(&palisade::outcome::Outcome::success());
    }
    assert_eq!(breakers[0].state(), CircuitState::Closed);
    let share = |balancer: &Balancer| {
        let picks = 2000;
        let to_first = (0..picks)
            .filter(|_| balancer.pick(0).expect("picked").index == 0)
            .count();
        to_first as f64 / picks as f64
    };
    let at_first = share(&balancer);
    assert!(
        at_first < 0.2,
        "just closed, it got {at_first} of the picks"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let after = share(&balancer);
    assert!(
        (0.4..=0.6).contains(&after),
        "ramped up, it got {after} of the picks"
    );
    let without = primaries(&breakers);
    assert!((0.4..=0.6).contains(&share(&without)), "off by default");
}

/// `n` attempts in turn, each answered after the latency and with the outcome
/// `answer` gives its endpoint, a millisecond apart; the picks each endpoint got.
async fn serve_in_turn(
    balancer: &Balancer,
    n: usize,
    answer: impl Fn(usize) -> (u64, Outcome),
) -> Vec<usize> {
    let mut picks = vec![0; balancer.primaries.len()];
    for _ in 0..n {
        let mut picked = balancer.pick(0).expect("picked");
        picks[picked.index] += 1;
        let (ms, outcome) = answer(picked.index);
        tokio::time::advance(Duration::from_millis(ms)).await;
        let now = balancer.clock().now();
        balancer.finish(&mut picked, now, Duration::from_millis(ms), &outcome);
    }
    picks
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_failing_fast_does_not_draw_the_picks() {
    let balancer = with(
        (0..3)
            .map(|i| endpoint(40 + i, Role::Primary, None))
            .collect(),
        Vec::new(),
    );
    // Endpoint 0 answers 503 in a millisecond; the others serve in 20 ms.
    let picks = serve_in_turn(&balancer, 3000, |i| match i {
        0 => (1, Outcome::failure()),
        _ => (20, Outcome::success()),
    })
    .await;
    assert!(
        picks[0] < 300,
        "the endpoint failing fast got {} of 3000 picks ({picks:?})",
        picks[0]
    );
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_back_from_idle_does_not_look_best() {
    let breakers = [breaker("a"), breaker("b")];
    let balancer = primaries(&breakers);
    // Both serve in 20 ms; then endpoint 1 is ejected, and endpoint 0 serves alone
    // for a minute.
    serve_in_turn(&balancer, 200, |_| (20, Outcome::success())).await;
    breakers[1].force_open();
    serve_in_turn(&balancer, 3000, |_| (20, Outcome::success())).await;
    breakers[1].reset();
    // Back after a minute idle: a burst of requests in flight at once is shared, not
    // drawn to the endpoint that has served nothing lately.
    let held: Vec<Picked> = (0..100)
        .map(|_| balancer.pick(0).expect("picked"))
        .collect();
    let to_idle = held.iter().filter(|p| p.index == 1).count();
    assert!(
        (35..=65).contains(&to_idle),
        "the endpoint back from idle got {to_idle} of 100 requests in flight"
    );
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_waiting_for_a_probe_is_offered_first_and_starts_over_when_closed() {
    let breakers = [breaker("a"), breaker("b"), breaker("c")];
    let balancer = primaries(&breakers);
    serve_in_turn(&balancer, 300, |_| (20, Outcome::success())).await;
    // Endpoint 0 hangs: its attempts time out after 250 ms, and its breaker opens.
    balancer.primaries[0].observe(balancer.clock().now(), 250e6);
    trip(&breakers[0]);
    // Its open time over, the next request is its probe, whatever its estimate.
    tokio::time::advance(Duration::from_secs(1)).await;
    let typical = balancer.typical_latency();
    let slow = balancer.primaries[0].latency_estimate(balancer.clock(), typical);
    assert!(slow > 0.1, "its estimate is still the timeout's: {slow}");
    let picked = balancer.pick(0).expect("picked");
    assert_eq!(picked.index, 0, "the probe went elsewhere");
    drop(picked);
    // Its probes succeed and close its breaker: its estimate starts over, at the
    // upstream's typical latency, and it takes its share at once.
    serve_in_turn(&balancer, 3, |_| (20, Outcome::success())).await;
    assert_eq!(breakers[0].state(), CircuitState::Closed);
    let held: Vec<Picked> = (0..90).map(|_| balancer.pick(0).expect("picked")).collect();
    let to_first = held.iter().filter(|p| p.index == 0).count();
    assert!(
        (20..=40).contains(&to_first),
        "recovered, it got {to_first} of 90 requests in flight"
    );
}

/// An endpoint with its own adaptive limit of `limit`, never moving (AIMD without drops
/// grows only when used, and these tests record nothing).
fn limited(port: u16, limit: u32) -> Arc<Endpoint> {
    limited_with(port, limit, None)
}

/// Like [`limited`], with `breaker`.
fn limited_with(port: u16, limit: u32, breaker: Option<CircuitBreaker>) -> Arc<Endpoint> {
    use palisade::policy::adaptive_concurrency::{
        AdaptiveConcurrency, AdaptiveConcurrencyConfig, AlgorithmConfig,
    };
    let endpoint = Arc::try_unwrap(endpoint(port, Role::Primary, breaker))
        .ok()
        .expect("one owner");
    let limiter = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        algorithm: AlgorithmConfig::Aimd {
            backoff_ratio: 0.5,
            latency_threshold: None,
        },
        initial_limit: limit,
        ..Default::default()
    })
    .expect("a limiter");
    Arc::new(endpoint.limited(limiter))
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_at_its_limit_is_chosen_only_when_every_one_is() {
    let (a, b) = (limited(1, 1), limited(2, 2));
    let balancer = with(vec![a.clone(), b.clone()], Vec::new());
    let first = balancer.pick(0).expect("picked");
    let full = if first.index == 0 { &a } else { &b };
    assert!(first.limit.is_some(), "under its limit: a place taken");
    // Fill whichever has room left until both are at their limits: every pick lands on
    // an endpoint with room, whatever p2c drew.
    let mut held = vec![first];
    for _ in 0..2 {
        let picked = balancer.pick(0).expect("picked");
        assert!(
            picked.limit.is_some(),
            "picked a full endpoint while another had room"
        );
        held.push(picked);
    }
    assert_eq!((a.in_flight(), b.in_flight()), (1, 2), "each at its limit");
    assert!(!full.has_room() && !a.has_room() && !b.has_room());
    // All full: the request still goes (by load), over a limit, without a place.
    let over = balancer.pick(0).expect("not refused");
    assert!(over.limit.is_none());
    drop(held);
    assert!(a.has_room() && b.has_room());
    drop(over);
}

#[tokio::test(start_paused = true)]
async fn the_endpoints_limits_add_up_to_what_is_offered() {
    let (a, b) = (limited(1, 3), limited(2, 5));
    let limits = EndpointLimits::new(&[a.clone(), b.clone()], &[]);
    assert_eq!(limits.capacity(), 8);
    a.set_healthy(false);
    assert_eq!(limits.capacity(), 5, "an unhealthy endpoint is not offered");
    a.set_healthy(true);

    // An endpoint whose breaker refuses for certain counts nothing; one waiting for its
    // probe counts one.
    let tripped = breaker("c");
    let c = limited_with(3, 4, Some(tripped.clone()));
    let limits = EndpointLimits::new(&[a.clone(), c.clone()], std::slice::from_ref(&b));
    assert_eq!(limits.capacity(), 7);
    trip(&tripped);
    assert_eq!(limits.capacity(), 3, "ejected: only the other primary");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(limits.capacity(), 4, "its open time over: one probe");
    a.set_healthy(false);
    tripped.force_open();
    assert_eq!(
        limits.capacity(),
        5,
        "no primary offered: the backups' limits"
    );
}
