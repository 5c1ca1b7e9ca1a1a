"""HTTP/1.1 messages as the guard reads and writes them: strict, bounded, ASCII-only parsing of
request and response heads and of bodies (Content-Length, chunked), and their serialisation with
the guard's own framing. No I/O here beyond the `source`/`sink` objects handed in."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

from launcher.sglang_auth import is_redacted_route

HEAD_LIMIT = 64 * 1024               # largest request or response head we accept
HEAD_FIELDS_LIMIT = 128              # most header fields in one head
CHUNK_LINE_LIMIT = 1024              # longest chunk-size line (size and extensions)
TRAILER_LIMIT = 64                   # most trailer lines after a chunked body (dropped)
PIECE = 64 * 1024                    # bodies are copied in pieces of at most this
JSON = "application/json"

# The methods SGLang 0.5.23's routes serve. Anything else (CONNECT and TRACE above all, which
# uvicorn and its parsers treat as a protocol switch or otherwise specially) never reaches it.
FORWARDED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"})


def _error_json(status: int, message: str, kind: str) -> bytes:
    """An error body in the OpenAI style that the engine itself uses."""
    return json.dumps({"object": "error", "message": message, "type": kind, "param": None,
                       "code": status}, separators=(",", ":")).encode()


# The bodies SGLang's auth middleware sends (ORJSONResponse, compact).

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
    for count in range(TRAILER_LIMIT + 1):
        line = await source.readuntil(b"\r\n")
        if line == b"\r\n":
            return
        if count == TRAILER_LIMIT:
            break
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


async def read_response_head(engine) -> Response:
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


