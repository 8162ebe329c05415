"""Drives `palisade toxic` with Toxiproxy's Python client (PyPI: toxiproxy-python),
unchanged: proxies, toxics, down, populate, reset, destroy. Exits non-zero on the first
expectation that fails.

Usage: toxiproxy_client.py API_PORT ECHO_ADDRESS
"""

import socket
import sys
import time

from toxiproxy import Toxiproxy
from toxiproxy.exceptions import NotFound, ProxyExists

api_port, echo = int(sys.argv[1]), sys.argv[2]
server = Toxiproxy()
server.update_api_consumer("127.0.0.1", api_port)


def round_trip(listen):
    """Seconds for one echo through the proxy at `listen`."""
    host, port = listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        start = time.monotonic()
        s.sendall(b"ping\n")
        got = b""
        while not got.endswith(b"\n"):
            chunk = s.recv(64)
            assert chunk, "the connection closed before the echo"
            got += chunk
        assert got == b"ping\n", got
        return time.monotonic() - start


def refused(listen):
    host, port = listen.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return False
    except OSError:
        return True


assert server.running(), "the API does not answer"
assert server.version(), "no version"

proxy = server.create(upstream=echo, name="echo")
assert proxy.enabled, proxy.__dict__
assert round_trip(proxy.listen) < 0.1

try:
    server.create(upstream=echo, name="echo")
    raise AssertionError("a second proxy of the same name was created")
except ProxyExists:
    pass

proxy.add_toxic(type="latency", attributes={"latency": 200})
toxics = proxy.toxics()
assert list(toxics) == ["latency_downstream"], toxics
assert toxics["latency_downstream"].attributes == {"latency": 200, "jitter": 0}
took = round_trip(proxy.listen)
assert 0.19 <= took < 0.6, took

proxy.destroy_toxic("latency_downstream")
assert proxy.toxics() == {}
assert round_trip(proxy.listen) < 0.1

with proxy.down():
    assert refused(proxy.listen), "a disabled proxy still accepts"
assert round_trip(proxy.listen) < 0.1

proxy.add_toxic(type="timeout", name="cut", stream="upstream", attributes={"timeout": 0})
server.reset()
assert server.get_proxy("echo").toxics() == {}, "reset left a toxic"

try:
    proxy.add_toxic(type="warp", attributes={})
    raise AssertionError("an unknown toxic type was accepted")
except Exception as error:  # the client raises InvalidToxic on 400
    assert "warp" in str(error), error

populated = server.populate([
    {"name": "echo", "upstream": echo, "listen": proxy.listen},
    {"name": "second", "upstream": echo, "listen": "127.0.0.1:0"},
])
assert [p.name for p in populated] == ["second"], populated
assert sorted(server.proxies()) == ["echo", "second"]

server.destroy_all()
assert server.proxies() == {}
try:
    server.get_proxy("echo").toxics()
    raise AssertionError("a destroyed proxy is still there")
except (AttributeError, NotFound):
    pass
print("toxiproxy-python drove palisade toxic: ok")
