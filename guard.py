"""The bundle's API-key guard: a small HTTP/1.1 reverse proxy in front of the SGLang engine.

Why it exists: SGLang 0.5.23 never redacts its own keys. `--api-key` and `--admin-api-key` come
back in plain text from GET /server_info and /get_server_info (as fields, and inside
`launch_command`), and the startup log line `server_args=...` prints them. With only
`--admin-api-key` set, /server_info is not even authenticated. So the user's keys never reach the
engine. This guard listens on the public address, checks the client's keys exactly as SGLang 0.5.23
would (`srt/utils/auth.py` plus the per-route auth levels of `srt/entrypoints/http_server.py`), and
forwards the request to the engine on 127.0.0.1 with the client's credentials replaced.

Two walls. The engine runs with keys of its own (EngineKeys: random per start, handed over in a
file, never on an argument list or in the environment), so a request that reaches the engine
without passing this guard's check is refused by the engine itself: a disagreement between two
HTTP parsers is no longer an authentication bypass. The guard also keeps that disagreement small:
only the methods SGLang serves, strict ASCII framing, one engine connection per request (never
reused, so nothing left over on it can be read as a next request), the Host header replaced.

Hostile load: a cap on open connections (answered 503 beyond it), timeouts on request heads, on
idle keep-alive, on request bodies and on clients that stop reading, the open-file limit raised
at start, and accept errors logged once per interval.

Standard library only (Python 3.11+). The guard runs its own asyncio loop in a daemon thread, so a
synchronous entrypoint can start it, wait on the engine process, and stop it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import resource
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

HEAD_LIMIT = 64 * 1024               # largest request or response head we accept
HEAD_FIELDS_LIMIT = 128              # most header fields in one head
CHUNK_LINE_LIMIT = 1024              # longest chunk-size line (size and extensions)
TRAILER_LIMIT = 64                   # most trailer lines after a chunked body (dropped)
HEAD_TIMEOUT_S = 60.0                # a client must send a complete request head within this
CLIENT_BODY_IDLE_TIMEOUT_S = 60.0    # a request body that stalls this long is abandoned
CLIENT_WRITE_TIMEOUT_S = 60.0        # a client that reads nothing of its response this long is dropped
ENGINE_CONNECT_TIMEOUT_S = 10.0
# What one connection buffers from the engine while its client is slow: asyncio pauses reading at
# twice the stream limit, and the kernel holds about twice SO_RCVBUF. Response heads are small.
ENGINE_READ_LIMIT = 16 * 1024
ENGINE_RECEIVE_BUFFER = 32 * 1024
LINGER_S = 2.0                       # how long we drain an unread request body before closing
OVERFLOW_LINGER_S = 0.5              # the same, for a connection refused by the connection cap
PIECE = 64 * 1024
REDACT_BODY_LIMIT = 32 * 1024 * 1024
REDACTED = b"<redacted>"
# Each client connection holds one descriptor, two while its request is at the engine; the rest of
# the process (engine pipes, logs) needs a few more. The cap keeps accept() from ever failing.
DEFAULT_MAX_CONNECTIONS = 4096
DESCRIPTORS_PER_CONNECTION = 2
DESCRIPTORS_RESERVED = 64
LOOP_ERROR_LOG_INTERVAL_S = 10.0     # accept errors and the like: one line per interval, with a count

# The methods SGLang 0.5.23's routes serve. Anything else (CONNECT and TRACE above all, which
# uvicorn and its parsers treat as a protocol switch or otherwise specially) never reaches it.
FORWARDED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"})

JSON = "application/json"


def _error_json(status: int, message: str, kind: str) -> bytes:
    """An error body in the OpenAI style that the engine itself uses."""
    return json.dumps({"object": "error", "message": message, "type": kind, "param": None,
                       "code": status}, separators=(",", ":")).encode()


# The bodies SGLang's auth middleware sends (ORJSONResponse, compact).
UNAUTHORIZED_BODY = b'{"error":"Unauthorized"}'
FORBIDDEN_BODY = b'{"error":"Forbidden"}'
ENGINE_DOWN_BODY = _error_json(503, "engine is not accepting connections yet (loading or stopped)",
                               "ServiceUnavailable")
BAD_GATEWAY_BODY = _error_json(502, "the engine closed the connection or sent an invalid response",
                               "BadGateway")
WEBSOCKET_BODY = _error_json(501, "WebSocket upgrade is not supported through the API-key guard",
                             "NotImplemented")
OVERLOADED_BODY = _error_json(503, "too many open connections to this server; retry later",
                              "ServiceUnavailable")


@dataclass(frozen=True)
class EngineKeys:
    """The engine's own keys. The guard sends them in place of the client's credentials, after
    checking those. They are made anew at every start and exist only in this process, in the
    engine's memory and, until the engine has read it, in a private file (entrypoint.py)."""
    api_key: str
    admin_api_key: str

    @classmethod
    def generate(cls) -> "EngineKeys":
        return cls(secrets.token_hex(32), secrets.token_hex(32))

    def for_level(self, level: str) -> str:
        return self.admin_api_key if level in (ADMIN_OPTIONAL, ADMIN_FORCE) else self.api_key


# --- Authentication, as SGLang 0.5.23 does it ---------------------------------------------------

NORMAL = "normal"
ADMIN_OPTIONAL = "admin_optional"
ADMIN_FORCE = "admin_force"

# Every route that SGLang 0.5.23 marks @auth_level(AuthLevel.ADMIN_OPTIONAL), with its methods
# (srt/entrypoints/http_server.py and srt/entrypoints/elastic_ep.py). tests/test_guard.py derives
# this table again from the installed sglang source when it can, so an upgrade that changes it
# fails the tests instead of silently opening an admin route.
ADMIN_OPTIONAL_ROUTES: tuple[tuple[str, str], ...] = (
    ("/set_internal_state", "POST PUT"),
    ("/dumper/{method}", "POST"),  # registered only with DUMPER_SERVER_PORT=reuse; stricter is fine
    ("/flush_cache", "GET POST"),
    ("/add_external_corpus", "POST"),
    ("/remove_external_corpus", "POST"),
    ("/list_external_corpora", "GET"),
    ("/hicache/storage-backend/clear", "POST"),
    ("/hicache/storage-backend", "PUT DELETE GET"),
    ("/start_profile", "GET POST"),
    ("/stop_profile", "GET POST"),
    ("/set_trace_level", "GET POST"),
    ("/freeze_gc", "GET POST"),
    ("/start_expert_distribution_record", "GET POST"),
    ("/stop_expert_distribution_record", "GET POST"),
    ("/dump_expert_distribution_record", "GET POST"),
    ("/update_weights_from_disk", "POST"),
    ("/init_weights_send_group_for_remote_instance", "POST"),
    ("/send_weights_to_remote_instance", "POST"),
    ("/get_remote_instance_transfer_engine_info", "GET"),
    ("/remote_instance_transfer_engine_info", "GET"),
    ("/init_weights_update_group", "POST"),
    ("/destroy_weights_update_group", "POST"),
    ("/update_weights_from_tensor", "POST"),
    ("/begin_weight_update", "POST"),
    ("/end_weight_update", "POST"),
    ("/update_weights_from_distributed", "POST"),
    ("/update_weights_from_ipc", "POST"),
    ("/update_weight_version", "POST"),
    ("/get_weights_by_name", "GET POST"),
    ("/release_memory_occupation", "GET POST"),
    ("/resume_memory_occupation", "GET POST"),
    ("/weights_checker", "GET POST"),
    ("/slow_down", "GET POST"),
    ("/pd_role_switch", "POST"),
    ("/load_lora_adapter", "POST"),
    ("/load_lora_adapter_from_tensors", "POST"),
    ("/unload_lora_adapter", "POST"),
    ("/configure_logging", "GET POST"),
    ("/abort_request", "POST"),
    ("/pause_generation", "POST"),
    ("/continue_generation", "POST"),
    ("/scale_elastic_ep", "POST"),
    ("/is_scaling_elastic_ep", "GET"),
)
ADMIN_FORCE_ROUTES: tuple[tuple[str, str], ...] = ()  # SGLang 0.5.23 marks no route ADMIN_FORCE


def starlette_path_regex(template: str) -> re.Pattern[str]:
    """Compile a route template the way starlette.routing.compile_path does.

    We copy its quirks on purpose: the trailing `$` also matches before a final newline, so the
    engine routes "/flush_cache%0A" to /flush_cache, and so must our auth check.
    """
    regex, end = "^", 0
    for param in re.finditer(r"{([a-zA-Z_][a-zA-Z0-9_]*)(:path)?}", template):
        regex += re.escape(template[end:param.start()])
        regex += f"(?P<{param.group(1)}>{'.*' if param.group(2) else '[^/]+'})"
        end = param.end()
    return re.compile(regex + re.escape(template[end:]) + "$")


_LEVELED_ROUTES = tuple(
    (starlette_path_regex(path), frozenset(methods.split()), level)
    for routes, level in ((ADMIN_FORCE_ROUTES, ADMIN_FORCE), (ADMIN_OPTIONAL_ROUTES, ADMIN_OPTIONAL))
    for path, methods in routes
)


def route_auth_level(method: str, path: str) -> str:
    """The auth level SGLang resolves for a request.

    Only a route that matches both path and method counts (Starlette's Match.FULL). A path match
    with another method, such as HEAD on a GET route, is Match.PARTIAL and falls back to NORMAL.
    The engine then answers 405.
    """
    for regex, methods, level in _LEVELED_ROUTES:
        if method in methods and regex.match(path):
            return level
    return NORMAL


def bearer_matches(authorization: str | None, expected: str) -> bool:
    """`Authorization: Bearer <key>`: scheme case-insensitive, split on the first space."""
    if not authorization:
        return False
    scheme, space, token = authorization.partition(" ")
    if not space or scheme.lower() != "bearer":
        return False
    # Compare bytes: SGLang's str comparison raises TypeError (a 500) on non-ASCII input.
    return hmac.compare_digest(token.encode("latin-1"), expected.encode("utf-8"))


def decide_auth(method: str, path: str, authorization: str | None, api_key: str | None,
                admin_api_key: str | None, level: str) -> int | None:
    """A port of sglang.srt.utils.auth.decide_request_auth. Returns None when the request is
    allowed, otherwise the status to answer with."""
    if method == "OPTIONS":
        return None
    if path.startswith(("/health", "/ready", "/metrics")):
        return None
    if level == ADMIN_FORCE:
        if not admin_api_key:
            return 403
        return None if bearer_matches(authorization, admin_api_key) else 401
    # ADMIN_OPTIONAL wants the admin key when there is one (the api key is then refused).
    # NORMAL wants the api key, even when an admin key is also set.
    required = (admin_api_key or api_key) if level == ADMIN_OPTIONAL else api_key
    if not required:
        return None
    return None if bearer_matches(authorization, required) else 401


# --- Redaction ------------------------------------------------------------------------------

REDACTED_ROUTES = tuple(starlette_path_regex(p) for p in ("/server_info", "/get_server_info"))


def is_redacted_route(path: str) -> bool:
    return any(regex.match(path) for regex in REDACTED_ROUTES)


def secret_needles(secrets) -> tuple[bytes, ...]:
    """Every byte form in which a secret can appear in a JSON body: raw UTF-8, and JSON-escaped
    with or without \\u escapes. The longest comes first, so a secret that contains another
    secret is replaced whole."""
    needles = set()
    for secret in secrets:
        if not secret:
            continue
        needles.add(secret.encode("utf-8"))
        needles.add(json.dumps(secret)[1:-1].encode("ascii"))
        needles.add(json.dumps(secret, ensure_ascii=False)[1:-1].encode("utf-8"))
    return tuple(sorted(needles, key=len, reverse=True))


def redact(body: bytes, needles: tuple[bytes, ...]) -> bytes:
    for needle in needles:
        body = body.replace(needle, REDACTED)
    return body


# --- HTTP/1.1 messages ----------------------------------------------------------------------

class ProtocolError(ValueError):
    """A message that is not valid HTTP/1.1, or uses a feature the guard does not forward."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client disconnected or stalled; nothing more can be sent to it."""


class EngineDown(Exception):
    """Connecting to the engine failed: it is loading, stopping or stopped."""


class EngineFailed(Exception):
    """The engine connection broke, or the engine sent something that is not HTTP."""


class NoResponse(EngineFailed):
    """The engine failed before the client got any part of a response, so we can still answer."""


# RFC 9110/9112 grammar, on bytes and ASCII only: str methods such as strip() and isdigit() know
# Unicode (they strip "\x85" and accept "²"), and an engine parser would not agree with them.
_TOKEN_CLASS = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN = re.compile(_TOKEN_CLASS + rb"+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")   # no control characters but HTAB
_ORIGIN_FORM = re.compile(rb"/[\x21-\x22\x24-\x7e]*")  # printable ASCII, no '#'
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
_DECIMAL_LENGTH = re.compile(rb"[0-9]{1,15}")   # up to 999 TB: any more is an attack or a bug
_QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXTENSION = (rb"[ \t]*;[ \t]*" + _TOKEN_CLASS + rb"+(?:[ \t]*=[ \t]*(?:" + _TOKEN_CLASS
                    + rb"+|" + _QUOTED_STRING + rb"))?")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:" + _CHUNK_EXTENSION + rb")*\r\n")

# RFC 9110 section 7.6.1, plus the legacy ones: these headers describe one connection only.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate"})

Fields = list[tuple[str, str]]


def header_values(fields: Fields, name: str) -> list[str]:
    return [value for key, value in fields if key.lower() == name]


def header_tokens(fields: Fields, name: str) -> set[str]:
    """The comma-separated tokens of a list header, such as Connection, lowercased."""
    return {token.strip().lower() for value in header_values(fields, name)
            for token in value.split(",") if token.strip()}


def parse_fields(lines: list[bytes]) -> Fields:
    if len(lines) > HEAD_FIELDS_LIMIT:
        raise ProtocolError(f"more than {HEAD_FIELDS_LIMIT} header fields", 431)
    fields = []
    for line in lines:
        name, colon, value = line.partition(b":")
        # Rejects obsolete line folding and whitespace before the colon: both are request
        # smuggling vectors (RFC 9112 section 5).
        if not colon or not _TOKEN.fullmatch(name):
            raise ProtocolError("malformed header line")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise ProtocolError("invalid character in header value")
        fields.append((name.decode("ascii"), value.decode("latin-1")))
    return fields


@dataclass
class Request:
    method: str
    target: str
    version: str
    fields: Fields
    path: str          # percent-decoded, without the query: what Starlette routes and checks on
    body_kind: str     # "none" | "length" | "chunked"
    length: int
    keep_alive: bool

    @property
    def has_body(self) -> bool:
        return self.body_kind != "none"

    @property
    def authorization(self) -> str | None:
        values = header_values(self.fields, "authorization")
        return values[0] if values else None  # Starlette's Headers.get takes the first one

    @property
    def expects_continue(self) -> bool:
        # RFC 9110 section 10.1.1: never send 100 Continue to an HTTP/1.0 client.
        return (self.has_body and self.version == "HTTP/1.1"
                and "100-continue" in header_tokens(self.fields, "expect"))

    @property
    def wants_websocket(self) -> bool:
        return "websocket" in header_tokens(self.fields, "upgrade")


def content_length(values: list[str]) -> int:
    """Exactly one Content-Length of 1 to 15 ASCII digits. Lists and repeats ("5, 5"), which
    RFC 9110 lets a recipient accept, are refused: parsers disagree about them."""
    if len(values) != 1 or not _DECIMAL_LENGTH.fullmatch(values[0].encode("latin-1")):
        raise ProtocolError("invalid Content-Length: expected one decimal number of at most 15 digits")
    return int(values[0])


def request_framing(fields: Fields, version: str) -> tuple[str, int]:
    """How the request body is delimited (RFC 9112 section 6.3)."""
    encodings = header_values(fields, "transfer-encoding")
    lengths = header_values(fields, "content-length")
    if encodings:
        # Both headers, or Transfer-Encoding from HTTP/1.0: the classic smuggling setup.
        if lengths or version == "HTTP/1.0":
            raise ProtocolError("Transfer-Encoding together with Content-Length or HTTP/1.0")
        # One field, one coding, exactly "chunked" (any case): no lists, no obfuscation.
        if len(encodings) != 1 or encodings[0].lower() != "chunked":
            raise ProtocolError("Transfer-Encoding must be exactly 'chunked'")
        return "chunked", 0
    if lengths:
        length = content_length(lengths)
        return ("length", length) if length else ("none", 0)
    return "none", 0


def parse_request(head: bytes) -> Request:
    lines = head.lstrip(b"\r\n")[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise ProtocolError("malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ProtocolError("unsupported HTTP version", 505)
    if method.decode("ascii") not in FORWARDED_METHODS:
        raise ProtocolError(f"method not served here (only {', '.join(sorted(FORWARDED_METHODS))})", 501)
    # Only origin-form ("/path?query"); no fragments, which uvicorn's parsers treat differently.
    if not _ORIGIN_FORM.fullmatch(target):
        raise ProtocolError("request target must be an absolute path")
    fields = parse_fields(lines[1:])
    version_s = version.decode()
    if version_s == "HTTP/1.1" and len(header_values(fields, "host")) != 1:
        raise ProtocolError("HTTP/1.1 request needs exactly one Host header")
    body_kind, length = request_framing(fields, version_s)
    target_s = target.decode("ascii")
    return Request(
        method=method.decode("ascii"), target=target_s, version=version_s, fields=fields,
        # uvicorn decodes the path the same way before Starlette routes on it. Matching on the
        # raw path would let "/flush%5Fcache" past the admin check.
        path=unquote(target_s.partition("?")[0]),
        body_kind=body_kind, length=length,
        keep_alive=version_s == "HTTP/1.1" and "close" not in header_tokens(fields, "connection"),
    )


@dataclass
class Response:
    status: int
    reason: str
    fields: Fields


def parse_response(head: bytes) -> Response:
    lines = head[:-4].split(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if not status_line:
        raise ProtocolError("malformed status line")
    _minor, status, reason = status_line.groups()
    return Response(int(status), (reason or b"").decode("latin-1"), parse_fields(lines[1:]))


def response_framing(method: str, response: Response) -> tuple[str, int]:
    """How the response body is delimited: "none", "length", "chunked" or "close"."""
    if method == "HEAD" or response.status < 200 or response.status in (204, 304):
        return "none", 0
    encodings = header_values(response.fields, "transfer-encoding")
    if encodings:
        codings = [c.strip(" \t").lower() for value in encodings for c in value.split(",")]
        return ("chunked", 0) if codings[-1] == "chunked" else ("close", 0)
    lengths = header_values(response.fields, "content-length")
    if lengths:
        length = content_length(lengths)
        return ("length", length) if length else ("none", 0)
    return "close", 0


def serialize_head(start_line: str, fields: Fields) -> bytes:
    lines = [start_line] + [f"{name}: {value}" for name, value in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def end_to_end_fields(fields: Fields, also_drop=frozenset()) -> Fields:
    drop = HOP_BY_HOP | header_tokens(fields, "connection") | also_drop
    return [(name, value) for name, value in fields if name.lower() not in drop]


# Replaced, never passed on:
# - Authorization: the client's key stays here; the engine gets its own (EngineKeys).
# - Host: Starlette before 1.0.1 builds request.url from it, and SGLang's auth middleware checks
#   request.url.path, so "Host: x/health?" made every route look auth-exempt (CVE-2026-48710).
# - X-Forwarded-*: uvicorn trusts them from 127.0.0.1, so a client could spoof its address.
# - Content-Length, Transfer-Encoding, Expect, Connection: the framing is ours on each hop.
_REQUEST_DROP = frozenset({"authorization", "host", "content-length", "expect", "x-forwarded-for",
                           "x-forwarded-proto", "x-forwarded-host", "forwarded"})


def engine_request_head(request: Request, client_ip: str, engine_host: str,
                        engine_key: str | None) -> bytes:
    drop = _REQUEST_DROP
    if is_redacted_route(request.path):
        drop = drop | {"accept-encoding"}  # a compressed body could not be redacted
    fields = [("Host", engine_host), *end_to_end_fields(request.fields, drop)]
    if engine_key:
        fields.append(("Authorization", f"Bearer {engine_key}"))
    fields.append(("X-Forwarded-For", client_ip))
    # One request per engine connection: nothing the engine leaves unread, and no framing doubt,
    # can ever carry over into a next request.
    fields.append(("Connection", "close"))
    if request.body_kind == "length":
        fields.append(("Content-Length", str(request.length)))
    elif request.body_kind == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
    return serialize_head(f"{request.method} {request.target} HTTP/1.1", fields)


def client_response_head(response: Response, keep_alive: bool, *, chunked: bool = False,
                         new_length: int | None = None, reframed: bool = False) -> bytes:
    """The engine's response head for the client: the same fields, our own framing."""
    reframed = reframed or chunked or new_length is not None
    fields = end_to_end_fields(response.fields,
                               frozenset({"content-length"}) if reframed else frozenset())
    if chunked:
        fields.append(("Transfer-Encoding", "chunked"))
    if new_length is not None:
        fields.append(("Content-Length", str(new_length)))
    if not keep_alive:
        fields.append(("Connection", "close"))
    return serialize_head(f"HTTP/1.1 {response.status} {response.reason}", fields)


def simple_response(status: int, body: bytes, content_type: str | None, keep_alive: bool,
                    send_body: bool = True) -> bytes:
    fields = [("Content-Type", content_type)] if content_type else []
    fields.append(("Content-Length", str(len(body))))
    if not keep_alive:
        fields.append(("Connection", "close"))
    head = serialize_head(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", fields)
    return head + body if send_body else head


# --- Byte streams ---------------------------------------------------------------------------

class ClientReader(asyncio.StreamReader):
    """A StreamReader that also signals "the client went away" without consuming anything.

    While a response streams we watch for this, so that we can drop the engine connection at once.
    That is how SGLang notices a disconnect and aborts the generation, just as if the client had
    been connected to it directly. Reading would steal the bytes of a pipelined next request.
    """

    def __init__(self):
        super().__init__(limit=HEAD_LIMIT)
        self.gone = asyncio.Event()

    def feed_eof(self):
        self.gone.set()
        super().feed_eof()

    def set_exception(self, exc):
        self.gone.set()
        super().set_exception(exc)


class ClientIO:
    """The client side of an exchange. Failures become ClientGone, stalls time out."""

    def __init__(self, reader: ClientReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.started = False   # whether any byte of the current answer has been sent

    def error(self, message: str) -> Exception:
        """Broken framing in the request body: the client gets a 400 and the connection closes."""
        return ProtocolError(f"request body: {message}")

    async def readuntil(self, separator: bytes) -> bytes:
        try:
            async with asyncio.timeout(CLIENT_BODY_IDLE_TIMEOUT_S):
                return await self.reader.readuntil(separator)
        except asyncio.LimitOverrunError:
            raise ProtocolError("request body: line too long") from None
        except (asyncio.IncompleteReadError, OSError, TimeoutError) as e:
            raise ClientGone(f"reading the request body: {e!r}") from e

    async def readexactly(self, n: int) -> bytes:
        try:
            async with asyncio.timeout(CLIENT_BODY_IDLE_TIMEOUT_S):
                return await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, OSError, TimeoutError) as e:
            raise ClientGone(f"reading the request body: {e!r}") from e

    async def read(self, n: int) -> bytes:
        try:
            async with asyncio.timeout(CLIENT_BODY_IDLE_TIMEOUT_S):
                return await self.reader.read(n)
        except (OSError, TimeoutError) as e:
            raise ClientGone(f"reading the request body: {e!r}") from e

    async def send(self, data: bytes) -> None:
        # The transport sends at once when its buffer is empty, and drain() waits only while the
        # client is slower than the engine. So each SSE chunk leaves immediately (TCP_NODELAY is
        # asyncio's default), and a slow client slows the engine down instead of filling memory.
        # A client that reads nothing for CLIENT_WRITE_TIMEOUT_S is dropped: otherwise one that
        # pipelines requests and never reads would hold its connection and buffers forever.
        self.started = True
        try:
            self.writer.write(data)
            async with asyncio.timeout(CLIENT_WRITE_TIMEOUT_S):
                await self.writer.drain()
        except TimeoutError as e:
            # close() would wait for the unread buffer to drain, which it never will: abort.
            self.writer.transport.abort()
            raise ClientGone("the client read nothing for too long") from e
        except OSError as e:
            raise ClientGone(f"writing the response: {e!r}") from e


class EngineIO:
    """One connection to the engine. No read timeouts: a generation may take minutes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    def error(self, message: str) -> Exception:
        return EngineFailed(message)

    async def readuntil(self, separator: bytes) -> bytes:
        try:
            return await self.reader.readuntil(separator)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as e:
            raise EngineFailed(f"reading from the engine: {e!r}") from e

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, OSError) as e:
            raise EngineFailed(f"reading from the engine: {e!r}") from e

    async def read(self, n: int) -> bytes:
        try:
            return await self.reader.read(n)
        except OSError as e:
            raise EngineFailed(f"reading from the engine: {e!r}") from e

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as e:
            raise EngineFailed(f"writing to the engine: {e!r}") from e

    def close(self) -> None:
        self.writer.close()


def chunk_size(line: bytes, source) -> int:
    """The size on a chunk line. Extensions must follow RFC 9112's grammar (no bare CR, LF or NUL
    in them); they are dropped, since the body is chunked anew on the way out."""
    match = _CHUNK_LINE.fullmatch(line) if len(line) <= CHUNK_LINE_LIMIT else None
    if not match:
        raise source.error("malformed chunk size line")
    return int(match.group(1), 16)


async def skip_trailers(source) -> None:
    """Trailer fields after the last chunk: checked like header lines, then dropped (neither
    uvicorn nor HTTP clients use them)."""
    for _ in range(TRAILER_LIMIT):
        line = await source.readuntil(b"\r\n")
        if line == b"\r\n":
            return
        if len(line) > CHUNK_LINE_LIMIT:
            raise source.error("trailer line too long")
        try:
            parse_fields([line[:-2]])
        except ProtocolError:
            raise source.error("malformed trailer field") from None
    raise source.error(f"more than {TRAILER_LIMIT} trailer fields")


async def body_pieces(source, kind: str, length: int):
    """Yield a message body as it arrives, without its framing."""
    if kind == "length":
        while length:
            piece = await source.read(min(length, PIECE))
            if not piece:
                raise source.error("connection closed inside the body")
            length -= len(piece)
            yield piece
    elif kind == "chunked":
        while size := chunk_size(await source.readuntil(b"\r\n"), source):
            while size:
                piece = await source.read(min(size, PIECE))
                if not piece:
                    raise source.error("connection closed inside a chunk")
                size -= len(piece)
                yield piece
            if await source.readexactly(2) != b"\r\n":
                raise source.error("chunk data not followed by CRLF")
        await skip_trailers(source)
    elif kind == "close":
        while piece := await source.read(PIECE):
            yield piece


async def pump_body(source, kind: str, length: int, sink, chunked_out: bool,
                    head: bytes = b"") -> None:
    """Copy a body piece by piece, each piece sent as soon as it has arrived. A `head` goes out
    with the first piece, so a small message leaves in one send."""
    async for piece in body_pieces(source, kind, length):
        await sink.send(head + (b"%x\r\n%s\r\n" % (len(piece), piece) if chunked_out else piece))
        head = b""
    if chunked_out or head:
        await sink.send(head + (b"0\r\n\r\n" if chunked_out else b""))


async def read_body(source, kind: str, length: int, limit: int) -> bytes:
    body = bytearray()
    async for piece in body_pieces(source, kind, length):
        body += piece
        if len(body) > limit:
            raise source.error(f"body larger than {limit} bytes")
    return bytes(body)


async def read_response_head(engine: EngineIO) -> Response:
    """The final response head. Interim 1xx responses are skipped: we send no Expect upstream."""
    while True:
        try:
            response = parse_response(await engine.readuntil(b"\r\n\r\n"))
        except (ProtocolError, EngineFailed) as e:
            raise NoResponse(str(e)) from e
        if response.status == 101:
            raise NoResponse("the engine switched protocols unasked")
        if response.status >= 200:
            return response


async def linger_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close without losing our response, when the client may still be sending a body we did not
    read. Closing a socket that has unread input sends an RST, and the RST can destroy the
    response in flight (RFC 9112 section 9.6). So we half-close and drain for a short while."""
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            while await reader.read(PIECE):
                pass
    except (OSError, TimeoutError):
        pass
    writer.close()


# --- The proxy ------------------------------------------------------------------------------

KEEP, CLOSE, LINGER = "keep", "close", "linger"   # what to do with a client connection next


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and sockets accepted
    from socket.create_server() have proto 0. Without it, Nagle's algorithm holds back each
    small send until the client's delayed ACK arrives (about 40 ms)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def engine_socket(engine_address) -> socket.socket:
    """A connected socket to the engine with a small receive buffer: while a client reads slowly,
    the engine's answer waits in the engine, not in this process (asyncio reads up to 256 KiB at
    a time, whatever its stream limit). `engine_address` is one getaddrinfo() entry."""
    loop = asyncio.get_running_loop()
    family, kind, proto, _, address = engine_address
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ENGINE_RECEIVE_BUFFER)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; returns the new soft limit.
    Docker's default soft limit can be 1,024: a thousand idle clients would exhaust it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    return soft


def connection_budget(open_file_limit: int) -> int:
    """How many client connections fit in the open-file limit, engine connections included."""
    return max(1, (open_file_limit - DESCRIPTORS_RESERVED) // DESCRIPTORS_PER_CONNECTION)


class LoopErrorLog:
    """The event loop's exception handler, and a place for other per-event notes: the first
    occurrence of each message is logged, then at most one line per interval with a count.
    Without it, asyncio logs a traceback for every failed accept() under a connection flood."""

    def __init__(self, log, interval_s: float = LOOP_ERROR_LOG_INTERVAL_S):
        self._log, self._interval_s = log, interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, loop, context: dict) -> None:
        error = context.get("exception")
        detail = f": {type(error).__name__}: {error}" if error else ""
        self.note(f"{context.get('message', 'event loop error')}{detail}")

    def note(self, message: str) -> None:
        now = time.monotonic()
        if len(self._last) > 256:   # messages with varying details must not grow this forever
            self._last.clear()
        if now - self._last.get(message, -self._interval_s) < self._interval_s:
            self._suppressed[message] = self._suppressed.get(message, 0) + 1
            return
        repeats = self._suppressed.pop(message, 0)
        self._last[message] = now
        self._log(message + (f" (and {repeats} more times in the last interval)" if repeats else ""))


def _log_to_stderr(message: str) -> None:
    print(f"guard: {message}", file=sys.stderr, flush=True)


def _bind(host: str, port: int) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    dualstack = family == socket.AF_INET6 and host in ("", "::") and socket.has_dualstack_ipv6()
    return socket.create_server(address, family=family, backlog=1024, dualstack_ipv6=dualstack)


class Guard:
    """Listens on the public address and forwards to the engine on loopback. See the module
    docstring for why. start() and stop() may be called from any (non-event-loop) thread."""

    head_timeout_s = HEAD_TIMEOUT_S

    def __init__(self, listen_host: str, listen_port: int, upstream_host: str, upstream_port: int,
                 api_key: str | None = None, admin_api_key: str | None = None,
                 secrets: tuple[str, ...] = (), log=_log_to_stderr,
                 engine_keys: EngineKeys | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS):
        self.listen_host, self.listen_port = listen_host, listen_port
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.port: int | None = None      # the bound port, once started (useful with port 0)
        self._api_key = api_key or None   # SGLang treats an empty key as no key
        self._admin_api_key = admin_api_key or None
        self._engine_keys = engine_keys
        engine_secrets = (engine_keys.api_key, engine_keys.admin_api_key) if engine_keys else ()
        # The keys themselves are redacted too, whether or not the caller listed them.
        self._needles = secret_needles((*secrets, api_key or "", admin_api_key or "", *engine_secrets))
        self._log = log
        self.max_connections = max_connections   # lowered at start() to what the open-file limit allows
        self._loop_errors = LoopErrorLog(log)
        self._engine_host = (f"[{upstream_host}]:{upstream_port}" if ":" in upstream_host
                             else f"{upstream_host}:{upstream_port}")
        self._engine_reachable: bool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    # -- lifecycle --

    def start(self) -> None:
        """Bind (raising OSError here, in the caller's thread, if that fails), then serve in a
        daemon thread with its own event loop."""
        if self._thread is not None:
            raise RuntimeError("guard already started")
        self.max_connections = min(self.max_connections, connection_budget(raise_open_file_limit()))
        # Resolved once: per request, getaddrinfo would run in a thread and cost a millisecond.
        self._engine_address = socket.getaddrinfo(self.upstream_host, self.upstream_port,
                                                  type=socket.SOCK_STREAM)[0]
        listener = _bind(self.listen_host, self.listen_port)
        self.port = listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(listener, started, failure),
                                        name="api-key-guard", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]

    def stop(self) -> None:
        """Stop listening, close every open connection and join the thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            except Exception as e:  # stop anyway: the caller is shutting down
                self._log(f"shutdown did not finish cleanly: {type(e).__name__}: {e}")
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None

    def _run(self, listener: socket.socket, started: threading.Event,
             failure: list[BaseException]) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._loop_errors)
        try:
            self._server = loop.run_until_complete(
                loop.create_server(self._new_protocol, sock=listener, backlog=1024))
        except BaseException as e:  # hand it to start(); the thread must not die silently
            failure.append(e)
            listener.close()
            loop.close()
            started.set()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _new_protocol(self) -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(ClientReader(), self._serve_connection)

    async def _shutdown(self) -> None:
        self._server.close()  # the listening socket closes now, so the port is free
        await asyncio.sleep(0)  # let connections accepted just now start and register
        while self._connections:
            connections = list(self._connections)
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

    # -- engine state --

    async def _connect_engine(self) -> EngineIO:
        try:
            async with asyncio.timeout(ENGINE_CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(
                    sock=await engine_socket(self._engine_address),
                    limit=ENGINE_READ_LIMIT)
        except (OSError, TimeoutError) as e:
            self._note_engine_reachable(False, e)
            raise EngineDown() from e
        self._note_engine_reachable(True)
        return EngineIO(reader, writer)

    def _note_engine_reachable(self, reachable: bool, error: BaseException | None = None) -> None:
        """Log changes only: while the engine loads, every health probe would otherwise log."""
        if reachable == self._engine_reachable:
            return
        self._engine_reachable = reachable
        if reachable:
            self._log(f"engine at {self._engine_host} is accepting connections")
        else:
            self._log(f"engine at {self._engine_host} is not accepting connections "
                      f"({type(error).__name__}); answering 503 until it does")

    # -- one client connection --

    async def _serve_connection(self, reader: ClientReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= self.max_connections:
            await self._refuse_overflow(reader, writer)
            return
        self._connections.add(task)
        set_nodelay(writer)
        client = ClientIO(reader, writer)
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else "unknown"
        try:
            next_step = KEEP
            while next_step == KEEP:
                request = await self._read_request(client)
                if request is None:
                    return
                next_step = await self._exchange(request, client, client_ip)
            if next_step == LINGER:
                await linger_and_close(reader, writer)
        except ProtocolError as e:
            if not client.started:
                await self._refuse_malformed(client, e)
        except (ClientGone, asyncio.CancelledError):
            pass
        except Exception as e:  # a bug: keep serving other connections, but say so
            self._log(f"internal error, connection dropped: {type(e).__name__}: {e}")
            if not client.started:
                await self._refuse_malformed(client, ProtocolError("internal error in the guard", 500))
        finally:
            writer.close()
            self._connections.discard(task)

    async def _refuse_overflow(self, reader: ClientReader, writer: asyncio.StreamWriter) -> None:
        self._loop_errors.note(f"connection cap of {self.max_connections} reached; answering 503")
        try:
            writer.write(simple_response(503, OVERLOADED_BODY, JSON, keep_alive=False))
            async with asyncio.timeout(OVERFLOW_LINGER_S):
                await linger_and_close(reader, writer)
        except (OSError, TimeoutError):
            pass
        writer.close()

    async def _refuse_malformed(self, client: ClientIO, error: ProtocolError) -> None:
        body = _error_json(error.status, str(error), HTTPStatus(error.status).phrase.replace(" ", ""))
        try:
            await client.send(simple_response(error.status, body, JSON, keep_alive=False))
        except ClientGone:
            return
        await linger_and_close(client.reader, client.writer)

    async def _read_request(self, client: ClientIO) -> Request | None:
        """The next request head, or None when the client is done or too slow to send one."""
        client.started = False
        try:
            async with asyncio.timeout(self.head_timeout_s):
                head = await client.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ProtocolError("request head larger than 64 KiB", 431) from None
        except (asyncio.IncompleteReadError, OSError, TimeoutError):
            return None
        return parse_request(head)

    async def _exchange(self, request: Request, client: ClientIO, client_ip: str) -> str:
        """Answer one request. Returns what to do with the client connection next."""
        if request.wants_websocket:
            return await self._answer(client, request, 501, WEBSOCKET_BODY, JSON)
        level = route_auth_level(request.method, request.path)
        refusal = decide_auth(request.method, request.path, request.authorization, self._api_key,
                              self._admin_api_key, level)
        if refusal is not None:
            body = UNAUTHORIZED_BODY if refusal == 401 else FORBIDDEN_BODY
            return await self._answer(client, request, refusal, body, JSON)
        try:
            io = await self._connect_engine()
        except EngineDown:
            if request.path.startswith(("/health", "/ready")):
                return await self._answer(client, request, 503, b"", None)  # as SGLang starting
            return await self._answer(client, request, 503, ENGINE_DOWN_BODY, JSON)
        try:
            return await self._forward(request, client, io, client_ip, level)
        finally:
            io.close()

    async def _forward(self, request: Request, client: ClientIO, io: EngineIO, client_ip: str,
                       level: str) -> str:
        if request.expects_continue:
            await client.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            client.started = False   # an interim answer: a refusal may still follow
        engine_key = self._engine_keys.for_level(level) if self._engine_keys else None
        try:
            await self._send_request(request, client, io, client_ip, engine_key)
        except EngineFailed as e:
            self._log_engine_failure(request, e)
            return await self._answer(client, request, 502, BAD_GATEWAY_BODY, JSON)
        try:
            keep_alive = await self._unless_client_leaves(
                client, self._relay_response(request, client, io))
        except NoResponse as e:
            self._log_engine_failure(request, e)
            return await self._answer(client, request, 502, BAD_GATEWAY_BODY, JSON,
                                      body_unread=False)
        except EngineFailed as e:  # the client has part of a response: all we can do is close
            self._log_engine_failure(request, e)
            return CLOSE
        return KEEP if keep_alive else CLOSE

    async def _answer(self, client: ClientIO, request: Request, status: int, body: bytes,
                      content_type: str | None, body_unread: bool | None = None) -> str:
        """Answer without the engine. If the request body was not read, the connection must close
        (with a linger), because the body's bytes are still on their way."""
        if body_unread is None:
            body_unread = request.has_body
        keep_alive = request.keep_alive and not body_unread
        await client.send(simple_response(status, body, content_type, keep_alive,
                                          send_body=request.method != "HEAD"))
        if keep_alive:
            return KEEP
        return LINGER if body_unread else CLOSE

    async def _send_request(self, request: Request, client: ClientIO, io: EngineIO,
                            client_ip: str, engine_key: str | None) -> None:
        head = engine_request_head(request, client_ip, self._engine_host, engine_key)
        if request.body_kind == "length" and request.length <= PIECE:
            # One write for a small request: head and body in the same packet.
            await io.send(head + await client.readexactly(request.length))
            return
        await io.send(head)
        if request.has_body:
            await pump_body(client, request.body_kind, request.length, io,
                            chunked_out=request.body_kind == "chunked")

    async def _relay_response(self, request: Request, client: ClientIO, io: EngineIO) -> bool:
        """Relay the engine's response. Returns whether the client connection stays open."""
        response = await read_response_head(io)
        try:
            kind, length = response_framing(request.method, response)
        except ProtocolError as e:
            raise NoResponse(str(e)) from e
        if kind != "none" and self._needles and is_redacted_route(request.path):
            try:
                body = await read_body(io, kind, length, REDACT_BODY_LIMIT)
            except EngineFailed as e:
                raise NoResponse(str(e)) from e
            body = redact(body, self._needles)
            head = client_response_head(response, request.keep_alive, new_length=len(body))
            await client.send(head + body)
            return request.keep_alive
        # An HTTP/1.0 client cannot take chunks: it gets the bare body and the close marks its end.
        chunked_out = kind == "chunked" and request.version == "HTTP/1.1"
        keep_alive = request.keep_alive and kind != "close"
        head = client_response_head(response, keep_alive, chunked=chunked_out,
                                    reframed=kind == "chunked")
        if kind == "length":
            await pump_body(io, kind, length, client, chunked_out, head=head)
        else:
            # Streams: the head leaves now, so the client sees the status before the first token.
            await client.send(head)
            if kind != "none":
                await pump_body(io, kind, length, client, chunked_out)
        return keep_alive

    async def _unless_client_leaves(self, client: ClientIO, relay):
        """Run the relay, but abandon it as soon as the client disconnects."""
        work = asyncio.ensure_future(relay)
        gone = asyncio.ensure_future(client.reader.gone.wait())
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if work.cancelled():
            raise ClientGone("client disconnected during the response")
        return work.result()

    def _log_engine_failure(self, request: Request, error: Exception) -> None:
        # The path without its query: a query string could carry something private.
        self._log(f"engine failed during {request.method} {request.path[:200]!r}: {error}")
