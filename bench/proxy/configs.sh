# The proxies' configurations for the load benchmarks (sourced by run.sh and
# callgrind.sh, so that both measure the same setups).
#
# Every policy the sidecar has, on one upstream: timeouts (total and per try), retries
# with a budget, one breaker per endpoint, a bulkhead, a rate limit far above any rate
# reached here, active health checks, a route fallback, and fault injection at 0%. The
# second route has no fallback, so a forced-open breaker answers 503 there.
palisade_config() { # PORT ADMIN_PORT UPSTREAM_PORT
    cat <<EOF
[listener]
address = "127.0.0.1:$1"

[admin]
address = "127.0.0.1:$2"

[[upstream]]
name = "fast"
endpoints = ["127.0.0.1:$3"]
[upstream.timeout]
total = "2s"
per_try = "1s"
[upstream.retry]
max_attempts = 3
[upstream.retry.budget]
ratio = 0.2
min_per_second = 10
window = "10s"
[upstream.circuit_breaker]
scope = "endpoint"
[upstream.bulkhead]
max_concurrent = 2048
max_queue = 1024
queue_timeout = "100ms"
[upstream.rate_limit]
per_second = 1000000000
burst = 1000000
[upstream.health_check]
path = "/health/ready"
interval = "2s"
timeout = "1s"

[[route]]
path_prefix = "/"
upstream = "fast"
[route.fallback]
body = "fallback"
[route.fault]
abort_percent = 0
delay_percent = 0

[[route]]
path_prefix = "/nofallback"
upstream = "fast"
[route.fault]
abort_percent = 0
delay_percent = 0
EOF
}

# HAProxy as a plain reverse proxy, keep-alive and connection reuse to the server.
haproxy_config() { # PORT UPSTREAM_PORT THREADS
    cat <<EOF
global
    nbthread $3
    maxconn 8000

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:$1
    default_backend be

backend be
    server fast 127.0.0.1:$2
EOF
}
