"""The guard against hostile clients, in front of an engine served as SGLang serves it.

The engine is FastAPI on uvicorn behind SGLang's own API-key middleware (tests/recording_engine.py),
once with uvicorn's httptools parser (what uvicorn picks when httptools is installed) and once with
h11. It runs with its own keys, as the bundle's engine does, and it writes down every request that
reaches it. Each attack asserts on the client's answer AND on what the engine received:
- nothing reaches the engine without the engine's key (the second wall is never even tested);
- the client's own Authorization and Host never reach it;
- no admin handler runs unless the client held the right key.
"""
from __future__ import annotations

import json
import re
import socket
import time

import pytest

from launcher.credentials import EngineKeys
from launcher.guard import Guard
from recording_engine import PARSERS, RecordingEngine

USER_KEY = "sk-user-key-0123456789"
USER_ADMIN_KEY = "sk-user-admin-9876543210"
WAIT = 5.0


@pytest.fixture(params=PARSERS)
def wall(request):
    """(guard, engine, engine keys): the guard checks the user's keys, the engine its own."""
    keys = EngineKeys.generate()
    engine = RecordingEngine(request.param, keys.api_key, keys.admin_api_key)
    logs = []
    guard = Guard("127.0.0.1", 0, "127.0.0.1", engine.port, api_key=USER_KEY,
                  admin_api_key=USER_ADMIN_KEY, engine_keys=keys, log=logs.append)
    guard.start()
    yield guard, engine, keys
    guard.stop()
    engine.stop()


def exchange(port: int, *writes: bytes, pause: float = 0.05) -> bytes:
    """Send each write separately, then read until the guard closes or WAIT passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        for data in writes:
            try:
                sock.sendall(data)
            except OSError:
                break
            time.sleep(pause)
        received = b""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                piece = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not piece:
                return received
            received += piece
        return received + b"<still open>"


def statuses(reply: bytes) -> list[int]:
    """The status of each response in a reply (a body may end right before the next head)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] ([0-9]{3}) ", reply)]


def assert_second_wall_held(engine: RecordingEngine, keys: EngineKeys, allowed_paths=()):
    """Every request the engine received came from the guard: it carries exactly one
    Authorization, the engine's own, and the guard's Host; and it is one the guard approved."""
    for entry in engine.journal.entries:
        assert entry.header(b"authorization") in ([f"Bearer {keys.api_key}".encode()],
                                                  [f"Bearer {keys.admin_api_key}".encode()]), entry
        assert entry.header(b"host") == [f"127.0.0.1:{engine.port}".encode()], entry
        assert entry.status != 401, f"the engine refused a request the guard forwarded: {entry}"
        assert entry.path in allowed_paths, f"the engine received an unexpected request: {entry}"


def wait_for_journal(engine, count):
    deadline = time.monotonic() + WAIT
    while len(engine.journal.entries) < count and time.monotonic() < deadline:
        time.sleep(0.01)


# --- the bypass of issue 7, and its variants ---------------------------------------------------

SMUGGLED = (b"POST /flush_cache HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 69906\r\n\r\n" + b" " * 69906)
assert len(SMUGGLED) == 70000


@pytest.mark.parametrize("first_line", [
    b"CONNECT /health HTTP/1.1", b"CONNECT /ready HTTP/1.1", b"CONNECT /metrics HTTP/1.1",
    b"CONNECT /health_generate HTTP/1.1", b"CONNECT /health HTTP/1.0",
])
def test_connect_smuggling_is_refused_and_reaches_nothing(wall, first_line):
    guard, engine, keys = wall
    head = first_line + b"\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"
    reply = exchange(guard.port, head, SMUGGLED, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(reply) == [501]
    assert reply.endswith(b"}"), "the connection must close after the refusal"
    assert engine.journal.entries == [] and engine.journal.admin_calls == 0


def test_connect_smuggling_in_a_single_write_is_refused(wall):
    guard, engine, _ = wall
    reply = exchange(guard.port, b"CONNECT /health HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"
                     + SMUGGLED)
    assert statuses(reply) == [501]
    assert engine.journal.entries == []


def test_connect_with_the_normal_key_does_not_reach_admin_routes(wall):
    guard, engine, _ = wall
    head = (b"CONNECT /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + USER_KEY.encode()
            + b"\r\nContent-Length: 70000\r\n\r\n")
    reply = exchange(guard.port, head, SMUGGLED)
    assert statuses(reply) == [501]
    assert engine.journal.entries == [] and engine.journal.admin_calls == 0


@pytest.mark.parametrize("method", [b"TRACE", b"PATCH", b"PROPFIND", b"get", b"BREW", b"PRI"])
def test_methods_sglang_does_not_serve_are_refused(wall, method):
    guard, engine, _ = wall
    reply = exchange(guard.port, method + b" /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(reply) == [501] and not reply.endswith(b"<still open>")
    assert engine.journal.entries == []


# --- framing: CL/TE conflicts and obfuscations -------------------------------------------------

def post(headers: bytes, body: bytes = b"", path=b"/v1/chat/completions", key=USER_KEY) -> bytes:
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
            + headers + b"\r\n" + body)


SMUGGLED_SMALL = b"GET /flush_cache HTTP/1.1\r\nHost: x\r\n\r\n"
BAD_FRAMING = {
    "CL.TE": b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    "TE.CL": b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
    "TE xchunked": b"Transfer-Encoding: xchunked\r\n",
    "TE list": b"Transfer-Encoding: chunked, chunked\r\n",
    "TE identity,chunked": b"Transfer-Encoding: identity, chunked\r\n",
    "TE twice": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "TE vertical tab": b"Transfer-Encoding: chunked\x0b\r\n",
    "TE space before colon": b"Transfer-Encoding : chunked\r\n",
    "TE folded": b"Transfer-Encoding:\r\n chunked\r\n",
    "TE NEL": b"Transfer-Encoding: chunked\x85\r\n",
    "CL NEL": b"Content-Length: 2\x85\r\n",
    "CL plus": b"Content-Length: +2\r\n",
    "CL minus": b"Content-Length: -2\r\n",
    "CL hex": b"Content-Length: 0x2\r\n",
    "CL list": b"Content-Length: 2, 2\r\n",
    "CL twice": b"Content-Length: 2\r\nContent-Length: 2\r\n",
    "CL twice differing": b"Content-Length: 2\r\nContent-Length: 40\r\n",
    "CL 20 digits": b"Content-Length: 18446744073709551617\r\n",
    "CL 5000 digits": b"Content-Length: " + b"9" * 5000 + b"\r\n",
    "CL arabic digit": "Content-Length: \u0662\r\n".encode(),
    "CL superscript": "Content-Length: \u00b2\r\n".encode("latin-1"),
    "CL underscore": b"Content-Length: 1_0\r\n",
    "control char": b"X-Note: a\x01b\r\nContent-Length: 2\r\n",
    "DEL char": b"X-Note: a\x7fb\r\nContent-Length: 2\r\n",
    "NUL in name": b"X-No\x00te: a\r\nContent-Length: 2\r\n",
}


@pytest.mark.parametrize("name", BAD_FRAMING)
def test_ambiguous_framing_gets_400_and_a_close(wall, name):
    guard, engine, keys = wall
    reply = exchange(guard.port, post(BAD_FRAMING[name], b"{}" + SMUGGLED_SMALL))
    assert statuses(reply) == [400], reply[:300]
    assert not reply.endswith(b"<still open>")
    assert engine.journal.entries == []


BAD_CHUNKS = {
    "bare LF in extension": b"2;a\nb\r\n{}\r\n0\r\n\r\n",
    "bare CR in extension": b"2;a\rb\r\n{}\r\n0\r\n\r\n",
    "NUL in extension": b"2;a\x00b\r\n{}\r\n0\r\n\r\n",
    "bare LF line end": b"2\n{}\r\n0\r\n\r\n",
    "hex prefix": b"0x2\r\n{}\r\n0\r\n\r\n",
    "negative": b"-2\r\n{}\r\n0\r\n\r\n",
    "16 hex digits": b"10000000000000002\r\n{}\r\n0\r\n\r\n",
    "space inside size": b"2 2\r\n{}\r\n0\r\n\r\n",
    "no CRLF after data": b"2\r\n{}XX0\r\n\r\n",
    "overlong extension": b"2;" + b"a" * 2000 + b"\r\n{}\r\n0\r\n\r\n",
    "malformed trailer": b"2\r\n{}\r\n0\r\nbad trailer\r\n\r\n",
}


@pytest.mark.parametrize("name", BAD_CHUNKS)
def test_malformed_chunks_get_400_and_nothing_complete_reaches_the_engine(wall, name):
    guard, engine, keys = wall
    reply = exchange(guard.port, post(b"Transfer-Encoding: chunked\r\n", BAD_CHUNKS[name] + SMUGGLED_SMALL))
    assert statuses(reply) == [400], reply[:300]
    assert not reply.endswith(b"<still open>")
    # The head went ahead of the body; the engine may have seen its start, never a whole request.
    assert not [e for e in engine.journal.entries if e.complete and e.status == 200]
    assert engine.journal.admin_calls == 0
    assert_second_wall_held(engine, keys, allowed_paths={"/v1/chat/completions"})


def test_valid_chunk_extensions_and_trailers_pass_and_are_rechunked(wall):
    guard, engine, keys = wall
    body = b'1;name=value;q="a \\" b"\r\n{\r\n1 ; x\r\n}\r\n0\r\nX-Trailer: yes\r\n\r\n'
    reply = exchange(guard.port, post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", body))
    assert statuses(reply) == [200]
    assert [(e.body, e.complete) for e in engine.journal.entries] == [(b"{}", True)]
    assert_second_wall_held(engine, keys, allowed_paths={"/v1/chat/completions"})


def test_large_body_written_in_pieces_reaches_the_engine_whole(wall):
    guard, engine, keys = wall
    body = b'{"pad":"' + b"x" * 200_000 + b'"}'
    reply = exchange(guard.port, post(b"Content-Length: %d\r\nConnection: close\r\n" % len(body)),
                     body[:70_000], body[70_000:])
    assert statuses(reply) == [200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["received_bytes"] == len(body)
    assert_second_wall_held(engine, keys, allowed_paths={"/v1/chat/completions"})


# --- pipelining, targets, upgrades, Host ----------------------------------------------------------

def test_pipelined_unauthenticated_request_is_refused_after_an_honest_one(wall):
    guard, engine, keys = wall
    honest = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + USER_KEY.encode() + b"\r\n\r\n"
    sneaky = b"POST /flush_cache HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    reply = exchange(guard.port, honest + sneaky)
    assert statuses(reply) == [200, 401]
    assert [e.path for e in engine.journal.entries] == ["/v1/models"]
    assert engine.journal.admin_calls == 0
    assert_second_wall_held(engine, keys, allowed_paths={"/v1/models"})


def test_each_request_gets_its_own_engine_connection(wall):
    guard, engine, keys = wall
    get = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + USER_KEY.encode() + b"\r\n\r\n"
    reply = exchange(guard.port, get * 3)
    assert statuses(reply) == [200, 200, 200]
    wait_for_journal(engine, 3)
    for entry in engine.journal.entries:
        assert entry.header(b"connection") == [b"close"]


@pytest.mark.parametrize("target", [
    b"http://127.0.0.1/flush_cache", b"//127.0.0.1/flush_cache", b"*", b"flush_cache",
    b"/flush_cache#frag", b"/flush cache", b"/\xffflush",
])
def test_odd_request_targets_never_reach_an_admin_handler(wall, target):
    guard, engine, keys = wall
    request = (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + USER_KEY.encode()
               + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    reply = exchange(guard.port, request)
    assert statuses(reply) and statuses(reply)[0] in (400, 404)
    assert engine.journal.admin_calls == 0
    assert_second_wall_held(engine, keys, allowed_paths={"//127.0.0.1/flush_cache"})


@pytest.mark.parametrize("path", [b"/flush%5Fcache", b"/flush_cache%0A", b"/%66lush_cache", b"/flush_cache?x=1"])
def test_encoded_admin_paths_need_the_admin_key(wall, path):
    guard, engine, keys = wall
    request = (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + USER_KEY.encode()
               + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert statuses(exchange(guard.port, request)) == [401]
    assert engine.journal.entries == [] and engine.journal.admin_calls == 0


def test_admin_key_runs_the_admin_route_with_the_engine_admin_key(wall):
    guard, engine, keys = wall
    request = (b"POST /flush_cache HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + USER_ADMIN_KEY.encode()
               + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert statuses(exchange(guard.port, request)) == [200]
    assert engine.journal.admin_calls == 1
    assert engine.journal.entries[0].header(b"authorization") == [f"Bearer {keys.admin_api_key}".encode()]


@pytest.mark.parametrize("host", [b"x/health?", b"x/ready#", b"127.0.0.1/metrics/..", b"x\\@/health"])
def test_host_header_tricks_do_not_exempt_a_route(wall, host):
    """CVE-2026-48710: Starlette < 1.0.1 built request.url.path from Host; the guard replaces Host."""
    guard, engine, keys = wall
    for key in (None, USER_KEY):
        auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
        reply = exchange(guard.port, b"POST /flush_cache HTTP/1.1\r\nHost: " + host + b"\r\n" + auth
                         + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        assert statuses(reply) in ([401], [400])
    assert engine.journal.entries == [] and engine.journal.admin_calls == 0


@pytest.mark.parametrize("headers", [
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
    b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
    b"Upgrade: foo/2\r\nConnection: upgrade\r\n",
])
def test_upgrades_never_reach_the_engine(wall, headers):
    guard, engine, keys = wall
    request = (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + USER_KEY.encode()
               + b"\r\n" + headers + b"\r\n" + SMUGGLED_SMALL)
    reply = exchange(guard.port, request)
    assert statuses(reply)[0] in (200, 501)
    for entry in engine.journal.entries:
        assert not entry.header(b"upgrade") and not entry.header(b"http2-settings")
    assert engine.journal.admin_calls == 0
    assert_second_wall_held(engine, keys, allowed_paths={"/v1/models"})


def test_forwarding_headers_and_credentials_are_the_guards(wall):
    guard, engine, keys = wall
    request = (b"GET /v1/models HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer " + USER_KEY.encode()
               + b"\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\n"
               b"X-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n")
    assert statuses(exchange(guard.port, request)) == [200]
    (entry,) = engine.journal.entries
    assert entry.header(b"x-forwarded-for") == [b"127.0.0.1"]
    assert not entry.header(b"x-forwarded-proto") and not entry.header(b"forwarded")
    assert not entry.header(b"x-forwarded-host")
    assert USER_KEY.encode() not in b"".join(value for _, value in entry.headers)
    assert_second_wall_held(engine, keys, allowed_paths={"/v1/models"})


# --- the second wall itself -------------------------------------------------------------------

def test_the_engine_refuses_requests_that_bypass_the_guard(wall):
    """Straight to the engine's port, as a smuggled request would arrive: refused by the engine."""
    guard, engine, keys = wall
    for key in (None, USER_KEY, USER_ADMIN_KEY, keys.api_key):
        auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
        reply = exchange(engine.port, b"POST /flush_cache HTTP/1.1\r\nHost: x\r\n" + auth
                         + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        assert statuses(reply) == [401]
    assert engine.journal.admin_calls == 0


def test_malformed_requests_always_get_an_answer(wall):
    """Never silence and never an internal error: a 4xx (or 5xx for unsupported) and a close."""
    guard, engine, _ = wall
    cases = [
        b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",          # too many fields
        b"GET /v1/models HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\n\r\n",                            # no Host
        b"GET  /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/models\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",           # TLS to a plain port
    ]
    for request in cases:
        reply = exchange(guard.port, request)
        assert statuses(reply) and 400 <= statuses(reply)[0] < 600 and statuses(reply)[0] != 500, request
        assert not reply.endswith(b"<still open>"), request
    assert engine.journal.entries == []
