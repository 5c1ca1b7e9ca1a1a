"""guard.py: SGLang 0.5.23's API-key rules, unbuffered forwarding, engine-down answers, redaction.

Everything runs on 127.0.0.1: a small threaded HTTP/1.1 server stands in for the engine, and the
guard sits in front of it on an ephemeral port. The auth rules are also checked against the real
sglang source when it is installed (or GUARD_SGLANG_DIR points at its package folder).
"""
import importlib.util
import itertools
import json
import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from launcher import credentials, guard, sglang_auth, streams
from launcher.guard import Guard

API_KEY = "sk-normal-0123456789"
ADMIN_KEY = "sk-admin-9876543210"
CANARY = "canary-secret-4f1c2b"
QUOTED = 'tricky"secret\\with/escapes'
WAIT = 5  # seconds; the most any condition below may take before the test fails
BIG = 32 * 1024 * 1024  # more than loopback socket buffers hold


# --- a stand-in engine ----------------------------------------------------------------------

class EngineStub(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port=0):
        super().__init__(("127.0.0.1", port), StubHandler)
        self.first_chunk_sent = threading.Event()
        self.release_stream = threading.Event()
        self.stream_finished = threading.Event()
        self.proxy_hung_up = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server_address[1]

    def close(self):
        self.release_stream.set()
        self.shutdown()
        self.server_close()


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = WAIT
    disable_nagle_algorithm = True  # it sends head and body separately

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.route()

    do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def route(self):
        path = self.path.partition("?")[0]
        body = self.read_body()
        if path in ("/health", "/ready"):
            return self.reply(200, b"", None)
        if path == "/json":
            return self.reply(200, b'{"ok":true}', "application/json")
        if path in ("/server_info", "/get_server_info"):
            info = {"api_key": CANARY, "admin_api_key": QUOTED, "tp_size": 4,
                    "launch_command": f"python -m sglang.launch_server --api-key {CANARY}"}
            return self.reply(200, json.dumps(info).encode(), "application/json")
        if path == "/nocontent":
            return self.reply(204, b"", None)
        if path == "/big":
            return self.reply(200, b"x" * BIG, "application/octet-stream")
        if path == "/close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"until the connection closes")
            self.close_connection = True
            return
        if path == "/sse":
            return self.stream(lambda: self.server.release_stream.wait(WAIT))
        if path == "/sse-quick":
            return self.stream(lambda: True)
        if path == "/sse-abandoned":
            return self.stream_until_proxy_hangs_up()
        return self.echo(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            return body
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def reply(self, status, body, content_type):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def echo(self, body):
        seen = {"method": self.command, "target": self.path, "headers": list(self.headers.items()),
                "body": body.decode("latin-1"), "engine_side_port": self.client_address[1]}
        self.reply(200, json.dumps(seen).encode(), "application/json")

    def start_chunked(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def stream(self, between):
        self.start_chunked()
        self.chunk(b"data: 0\n\n")
        self.server.first_chunk_sent.set()
        between()
        for i in range(1, 5):
            self.chunk(b"data: %d\n\n" % i)
        self.chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.server.stream_finished.set()

    def stream_until_proxy_hangs_up(self):
        self.start_chunked()
        self.chunk(b"data: 0\n\n")
        readable, _, _ = select.select([self.connection], [], [], WAIT)
        if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
            self.server.proxy_hung_up.set()
        self.close_connection = True


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture
def engine():
    stub = EngineStub()
    yield stub
    stub.close()


class Logs(list):
    def __call__(self, message):
        self.append(message)


@pytest.fixture
def make_guard(engine):
    started = []

    def make(upstream_port=None, **kwargs):
        logs = Logs()
        g = Guard("127.0.0.1", 0, "127.0.0.1", upstream_port or engine.port, log=logs, **kwargs)
        g.logs = logs
        g.start()
        g.url = f"http://127.0.0.1:{g.port}"
        started.append(g)
        return g

    yield make
    for g in started:
        g.stop()
        for line in g.logs:  # whatever happened, no key or secret reached the log
            assert API_KEY not in line and ADMIN_KEY not in line and CANARY not in line


def get(g, path, key=None, method="GET", header=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if header is not None:
        headers["Authorization"] = header
    elif key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.request(method, g.url + path, headers=headers, timeout=WAIT, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw(port, data, shutdown=False):
    """Send bytes on a fresh connection and return everything until the guard closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received


# --- authentication -------------------------------------------------------------------------

def test_without_keys_everything_is_open(make_guard):
    g = make_guard()
    assert get(g, "/v1/models").status_code == 200
    assert get(g, "/flush_cache", method="POST").status_code == 200
    assert get(g, "/server_info").json()["tp_size"] == 4


@pytest.mark.parametrize("header, status", [
    (None, 401),
    ("Bearer wrong-key", 401),
    (f"Bearer {API_KEY}", 200),
    (f"bearer {API_KEY}", 200),
    (f"BEARER {API_KEY}", 200),
    (API_KEY, 401),                      # the raw key without the scheme
    (f"Bearer  {API_KEY}", 401),         # split on the first space only
    (f"Basic {API_KEY}", 401),
    (f"Bearer {API_KEY}x", 401),
    (f"Bearer {ADMIN_KEY}", 401),
])
def test_api_key_header_forms(make_guard, header, status):
    g = make_guard(api_key=API_KEY)
    response = get(g, "/v1/models", header=header)
    assert response.status_code == status
    if status == 401:
        assert response.content == b'{"error":"Unauthorized"}'
        assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/health", "/health_generate", "/healthz", "/ready",
                                  "/metrics", "/metrics/foo", "/health%5Fgenerate"])
def test_probe_paths_are_exempt(make_guard, path):
    g = make_guard(api_key=API_KEY, admin_api_key=ADMIN_KEY)
    assert get(g, path).status_code == 200


def test_options_is_exempt_but_only_uppercase(make_guard):
    g = make_guard(api_key=API_KEY)
    assert get(g, "/v1/chat/completions", method="OPTIONS").status_code == 200
    # requests uppercases methods, so send the lowercase one by hand. Methods are case-sensitive
    # and SGLang serves no lowercase one: refused before auth, like any method it does not serve.
    reply = raw(g.port, b"options /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 501 ")


def test_only_api_key_guards_admin_routes_with_it(make_guard):
    g = make_guard(api_key=API_KEY)
    assert get(g, "/flush_cache", method="POST").status_code == 401
    assert get(g, "/flush_cache", API_KEY, method="POST").status_code == 200


@pytest.mark.parametrize("method, path, key, status", [
    ("GET", "/v1/models", API_KEY, 200),
    ("GET", "/v1/models", ADMIN_KEY, 401),           # NORMAL wants the api key only
    ("POST", "/flush_cache", ADMIN_KEY, 200),
    ("POST", "/flush_cache", API_KEY, 401),          # ADMIN_OPTIONAL refuses the api key
    ("GET", "/flush_cache?timeout=3", API_KEY, 401),  # matched without the query
    ("GET", "/flush%5Fcache", API_KEY, 401),          # matched on the decoded path
    ("GET", "/flush_cache%0A", API_KEY, 401),         # Starlette's `$` matches before a newline
    ("POST", "/update_weights_from_disk", API_KEY, 401),
    ("POST", "/hicache/storage-backend/clear", API_KEY, 401),
    ("DELETE", "/hicache/storage-backend", API_KEY, 401),
    ("POST", "/dumper/dump", API_KEY, 401),
    ("POST", "/scale_elastic_ep", ADMIN_KEY, 200),
    # A POST-only admin route asked with GET is Starlette's Match.PARTIAL: NORMAL (then 405).
    ("GET", "/update_weights_from_disk", API_KEY, 200),
    ("HEAD", "/flush_cache", API_KEY, 200),
    ("GET", "/flush_cache/", API_KEY, 200),          # no route: NORMAL (the engine redirects)
])
def test_both_keys(make_guard, method, path, key, status):
    g = make_guard(api_key=API_KEY, admin_api_key=ADMIN_KEY)
    assert get(g, path, key, method=method).status_code == status


def test_only_admin_key_leaves_normal_routes_open(make_guard):
    g = make_guard(admin_api_key=ADMIN_KEY)
    assert get(g, "/v1/models").status_code == 200
    assert get(g, "/generate", method="POST", data=b"{}").status_code == 200
    assert get(g, "/flush_cache", method="POST").status_code == 401
    assert get(g, "/flush_cache", "wrong", method="POST").status_code == 401
    assert get(g, "/flush_cache", ADMIN_KEY, method="POST").status_code == 200
    # The engine would hand out the admin key here without asking for any; the guard redacts.
    assert ADMIN_KEY not in get(g, "/server_info").text


def test_engine_gets_its_own_key_host_and_forwarding_headers(make_guard, engine):
    keys = credentials.EngineKeys.generate()
    g = make_guard(api_key=API_KEY, admin_api_key=ADMIN_KEY, engine_keys=keys)
    headers = {"Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5",
               "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Custom": "a b  c"}
    seen = get(g, "/echo", API_KEY, headers=headers).json()["headers"]
    assert [value for name, value in seen if name == "Authorization"] == [f"Bearer {keys.api_key}"]
    seen = dict(seen)
    assert seen["X-Custom"] == "a b  c"
    assert seen["Host"] == f"127.0.0.1:{engine.port}"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["Connection"] == "close"
    for hop in ("X-Hop", "Keep-Alive", "X-Forwarded-Proto"):
        assert hop not in seen
    admin_seen = dict(get(g, "/flush_cache", ADMIN_KEY, method="POST").json()["headers"])
    assert admin_seen["Authorization"] == f"Bearer {keys.admin_api_key}"


def test_without_engine_keys_no_credentials_are_forwarded(make_guard):
    g = make_guard(api_key=API_KEY)
    seen = dict(get(g, "/echo", API_KEY).json()["headers"])
    assert "Authorization" not in seen


def _sglang_package_dir():
    configured = os.environ.get("GUARD_SGLANG_DIR")
    if configured:
        return Path(configured)
    spec = importlib.util.find_spec("sglang")  # finds without importing
    if spec and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0])
        if (folder / "srt" / "utils" / "auth.py").is_file():
            return folder
    return None


SGLANG = _sglang_package_dir()
assert SGLANG is not None, "the real sglang source is part of the test venv (make provision)"


def test_decide_auth_agrees_with_sglang_on_every_combination():
    spec = importlib.util.spec_from_file_location("sglang_auth", SGLANG / "srt/utils/auth.py")
    real = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = real  # its dataclasses look their module up there
    spec.loader.exec_module(real)
    keys = [None, "", "k1"]
    admin_keys = [None, "", "k2"]
    levels = ["normal", "admin_optional", "admin_force"]
    methods = ["GET", "POST", "OPTIONS", "options"]
    paths = ["/v1/models", "/health", "/healthz", "/ready", "/metrics/x", "/HEALTH", "/x/health"]
    headers = [None, "", "Bearer k1", "bearer k1", "BEARER k2", "Bearer k2", "Bearer  k1",
               "Bearerk1", "k1", "Basic k1", "Bearer", "Bearer ", "Bearer k1 extra", "Token k2"]
    checked = 0
    for key, admin, level, method, path, header in itertools.product(
            keys, admin_keys, levels, methods, paths, headers):
        expected = real.decide_request_auth(method=method, path=path, authorization_header=header,
                                            api_key=key, admin_api_key=admin,
                                            auth_level=real.AuthLevel(level))
        ours = sglang_auth.decide_auth(method, path, header, key, admin, level)
        assert (ours is None) == expected.allowed, (key, admin, level, method, path, header)
        if not expected.allowed:
            assert ours == expected.error_status_code
        checked += 1
    assert checked > 10000


def test_admin_route_table_is_what_the_installed_sglang_declares():
    """launcher/sglang_routes.json is generated; a regeneration from the installed SGLang must agree."""
    from tools import gen_sglang_routes
    fresh = gen_sglang_routes.routes_document(SGLANG)
    assert json.loads(sglang_auth.ROUTES_PATH.read_text()) == fresh, "run `make generate`"
    assert ("/flush_cache", "GET POST") in sglang_auth.ADMIN_OPTIONAL_ROUTES   # independent spot checks
    assert ("/pause_generation", "POST") in sglang_auth.ADMIN_OPTIONAL_ROUTES
    assert len(sglang_auth.ADMIN_OPTIONAL_ROUTES) == 43 and sglang_auth.ADMIN_FORCE_ROUTES == ()


def test_route_level_follows_starlette_matching():
    assert sglang_auth.route_auth_level("POST", "/flush_cache") == "admin_optional"
    assert sglang_auth.route_auth_level("PUT", "/flush_cache") == "normal"
    assert sglang_auth.route_auth_level("POST", "/dumper/x") == "admin_optional"
    assert sglang_auth.route_auth_level("POST", "/dumper/x/y") == "normal"
    assert sglang_auth.route_auth_level("POST", "/flush_cache\n") == "admin_optional"
    assert sglang_auth.route_auth_level("POST", "/flush_cache\nx") == "normal"


# --- forwarding -----------------------------------------------------------------------------

def test_client_keep_alive_with_a_fresh_engine_connection_per_request(make_guard):
    g = make_guard(api_key=API_KEY)
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        engine_ports = {session.get(g.url + "/echo", timeout=WAIT).json()["engine_side_port"]
                        for _ in range(5)}
        assert session.get(g.url + "/json", timeout=WAIT).json() == {"ok": True}
        pools = session.get_adapter(g.url).poolmanager.pools
        assert [pools[key].num_connections for key in pools.keys()] == [1]
    assert len(engine_ports) == 5


def test_client_sockets_have_nagle_off_so_stream_events_are_not_held_back(make_guard, monkeypatch):
    """The head and the events leave in separate sends; with Nagle on, each send after the first
    would wait for the client's delayed ACK (~40 ms). Asserted on the socket, not on a clock."""
    seen = []

    def recording_set_nodelay(writer):
        guard_set_nodelay(writer)
        sock = writer.get_extra_info("socket")
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    guard_set_nodelay = guard.set_nodelay
    monkeypatch.setattr(guard, "set_nodelay", recording_set_nodelay)
    g = make_guard()
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(g.url + "/sse-quick", timeout=WAIT).text.endswith("[DONE]\n\n")
    assert seen and all(value != 0 for value in seen)


def test_post_bodies_with_content_length_and_chunked(make_guard):
    g = make_guard()
    small = b'{"text": "hello"}'
    large = bytes(range(256)) * 1200  # 300 KiB: streamed, not sent in one piece
    for body in (small, large):
        seen = get(g, "/generate", method="POST", data=body).json()
        assert seen["body"].encode("latin-1") == body
        assert dict(seen["headers"])["Content-Length"] == str(len(body))

    def pieces():
        yield b"first,"
        yield b"second," * 10000
        yield b"third"
    seen = get(g, "/generate", method="POST", data=pieces()).json()
    assert seen["body"] == "first," + "second," * 10000 + "third"
    assert dict(seen["headers"])["Transfer-Encoding"] == "chunked"


def test_sse_chunks_reach_the_client_before_the_engine_finishes(make_guard, engine):
    g = make_guard()
    with get(g, "/sse", stream=True) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        chunks = response.iter_content(chunk_size=None)
        first = next(chunks)
        # The engine is still blocked before its second chunk: nothing was buffered on the way.
        assert first == b"data: 0\n\n"
        assert not engine.stream_finished.is_set()
        engine.release_stream.set()
        rest = b"".join(chunks)
    assert rest == b"".join(b"data: %d\n\n" % i for i in range(1, 5)) + b"data: [DONE]\n\n"


def test_client_disconnect_mid_stream_closes_the_engine_connection(make_guard, engine):
    g = make_guard()
    response = get(g, "/sse-abandoned", stream=True)
    assert next(response.iter_content(chunk_size=None)) == b"data: 0\n\n"
    response.close()
    # SGLang aborts a generation when its client goes away; through the guard it must too.
    assert engine.proxy_hung_up.wait(WAIT)


def test_head_204_and_close_delimited_responses(make_guard):
    g = make_guard()
    with requests.Session() as session:
        head = session.head(g.url + "/json", timeout=WAIT)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == "11"
        assert session.get(g.url + "/nocontent", timeout=WAIT).status_code == 204
        closed = session.get(g.url + "/close", timeout=WAIT)
        assert closed.text == "until the connection closes"
        assert closed.headers["Connection"] == "close"
        assert session.get(g.url + "/json", timeout=WAIT).json() == {"ok": True}


def test_websocket_upgrade_is_refused(make_guard):
    g = make_guard()
    response = get(g, "/v1/realtime", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert response.status_code == 501


def test_http10_client_gets_the_stream_without_chunk_framing(make_guard):
    g = make_guard()
    reply = raw(g.port, b"GET /sse-quick HTTP/1.0\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"".join(b"data: %d\n\n" % i for i in range(5)) + b"data: [DONE]\n\n"


def test_expect_100_continue_and_pipelined_requests(make_guard):
    g = make_guard()
    with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello"
                  b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert b'"body": "hello"' in received
    assert received.endswith(b'{"ok":true}')


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /json HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /json HTTP/1.1\r\n\r\n", 400),                             # no Host
    (b"GET /json HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET http://evil/json HTTP/1.1\r\nHost: x\r\n\r\n", 400),        # absolute form
    (b"GET /json#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /json HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),             # smuggling shape
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabc", 400),
])
def test_malformed_requests_are_refused(make_guard, request_bytes, status):
    g = make_guard()
    reply = raw(g.port, request_bytes, shutdown=True)
    assert reply.startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close" in reply


def test_refused_request_with_unread_body_still_gets_its_answer(make_guard):
    g = make_guard(api_key=API_KEY)
    response = get(g, "/generate", "wrong", method="POST", data=b"x" * 2_000_000)
    assert response.status_code == 401
    assert response.headers["Connection"] == "close"


def wait_until(condition, what):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_connections_beyond_the_cap_get_503_and_a_close(make_guard):
    g = make_guard(max_connections=3)
    idle = [socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) for _ in range(3)]
    try:
        wait_until(lambda: len(g._connections) == 3, "three connections held")
        reply = raw(g.port, b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in reply
        assert any("connection cap of 3" in line for line in g.logs)
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: not g._connections, "idle connections closed")
    assert get(g, "/json").json() == {"ok": True}


def test_the_cap_follows_the_open_file_limit():
    assert guard.connection_budget(1024) == (1024 - guard.DESCRIPTORS_RESERVED) // 2
    assert guard.connection_budget(10) == 1
    soft, hard = guard.resource.getrlimit(guard.resource.RLIMIT_NOFILE)
    assert guard.raise_open_file_limit() == hard == guard.resource.getrlimit(guard.resource.RLIMIT_NOFILE)[0]


def test_a_client_that_never_reads_is_dropped(make_guard, monkeypatch):
    monkeypatch.setattr(streams, "CLIENT_WRITE_TIMEOUT_S", 0.3)
    g = make_guard()
    with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 20)  # pipelined, never read
        wait_until(lambda: len(g._connections) == 1, "the connection to be served")
        wait_until(lambda: not g._connections, "the guard to drop the non-reading client")


def test_loop_errors_are_logged_once_per_interval():
    lines = []
    errors = guard.LoopErrorLog(lines.append, interval_s=0.2)
    for _ in range(100):
        errors(None, {"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many open files")})
    assert len(lines) == 1 and "Too many open files" in lines[0]
    time.sleep(0.25)
    errors(None, {"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many open files")})
    assert len(lines) == 2 and "99 more times" in lines[1]


def test_incomplete_request_head_is_dropped_after_the_timeout(make_guard):
    g = make_guard()
    g.head_timeout_s = 0.2
    with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as s:
        s.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n")
        assert s.recv(100) == b""  # closed by the guard well before WAIT


# --- redaction ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/server_info", "/get_server_info"])
def test_server_info_is_redacted(make_guard, engine, path):
    direct = requests.get(f"http://127.0.0.1:{engine.port}{path}", timeout=WAIT)
    assert CANARY in direct.text and json.loads(direct.text)["admin_api_key"] == QUOTED
    g = make_guard(secrets=(CANARY, QUOTED, ""))
    response = get(g, path)
    assert CANARY not in response.text and "tricky" not in response.text
    info = response.json()
    assert info["api_key"] == "<redacted>" and info["admin_api_key"] == "<redacted>"
    assert info["launch_command"].endswith("--api-key <redacted>")
    assert info["tp_size"] == 4
    assert int(response.headers["Content-Length"]) == len(response.content)


def test_keys_are_redacted_even_when_not_listed_as_secrets(make_guard):
    g = make_guard(api_key=CANARY)
    assert CANARY not in get(g, "/server_info", CANARY).text


# --- engine down, engine up -----------------------------------------------------------------

def test_engine_down_then_up_without_restarting_the_guard(make_guard):
    port = free_port()
    g = make_guard(upstream_port=port)
    for path in ("/health", "/health_generate", "/ready"):
        response = get(g, path)
        assert (response.status_code, response.content) == (503, b"")
    for _ in range(3):
        response = get(g, "/v1/models")
        assert response.status_code == 503
        assert response.content == (
            b'{"object":"error","message":"engine is not accepting connections yet (loading or '
            b'stopped)","type":"ServiceUnavailable","param":null,"code":503}')
        assert response.headers["Content-Type"] == "application/json"
    assert len(g.logs) == 1 and "not accepting connections" in g.logs[0]
    late_engine = EngineStub(port)
    try:
        assert get(g, "/json").json() == {"ok": True}
        assert get(g, "/health").status_code == 200
    finally:
        late_engine.close()
    assert len(g.logs) == 2 and "is accepting connections" in g.logs[1]


def test_engine_down_with_a_request_body(make_guard):
    g = make_guard(upstream_port=free_port())
    response = get(g, "/generate", method="POST", data=b"x" * 200_000)
    assert response.status_code == 503


def test_stop_frees_the_port(make_guard):
    g = make_guard()
    with requests.Session() as session:  # an open keep-alive connection must not hold it
        assert session.get(g.url + "/json", timeout=WAIT).status_code == 200
        g.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", g.port), timeout=WAIT).close()
        with socket.create_server(("127.0.0.1", g.port)):
            pass
    g.stop()  # idempotent


def test_stop_closes_open_streams(make_guard, engine):
    g = make_guard()
    response = get(g, "/sse-abandoned", stream=True)
    chunks = response.iter_content(chunk_size=None)
    assert next(chunks) == b"data: 0\n\n"
    g.stop()
    assert engine.proxy_hung_up.wait(WAIT)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # cut, not ended
        b"".join(chunks)


def test_start_raises_when_the_port_is_taken(engine):
    g = Guard("127.0.0.1", engine.port, "127.0.0.1", engine.port, log=Logs())
    with pytest.raises(OSError):
        g.start()
