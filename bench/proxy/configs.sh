# The configurations of the upstream and the proxies for the load benchmarks, and free
# ports for them (sourced by run.sh, callgrind.sh and gaps.sh, so that all measure the
# same setups).
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

# N free ports on 127.0.0.1, space-separated.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# nginx: the fast upstream (`return 200 "ok"` from memory, one worker) and nginx as a
# plain reverse proxy in front of it. A profiler that follows one process starts nginx
# with `-g 'master_process off;'` so that the worker is that process.
nginx_common() { # DIR
    cat <<EOF
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; }
EOF
}

nginx_http_common() { # DIR
    cat <<EOF
    access_log off;
    default_type text/plain;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

upstream_config() { # DIR PORT
    cat <<EOF
worker_processes 1;
worker_rlimit_nofile 16384;
$(nginx_common "$1")
http {
$(nginx_http_common "$1")
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / { return 200 "ok"; }
    }
}
EOF
}

nginx_proxy_config() { # DIR PORT UPSTREAM_PORT WORKERS
    cat <<EOF
worker_processes $4;
worker_rlimit_nofile 16384;
$(nginx_common "$1")
http {
$(nginx_http_common "$1")
    upstream fast {
        server 127.0.0.1:$3;
        keepalive 256;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / {
            proxy_pass http://fast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}
