"""Behaviour tests for launcher/http1.py, written to kill mutmut's survivors (docs/mutation.md).
In-process and socket-free: heads are parsed from bytes written out by hand (RFC 9112's grammar),
bodies are read from asyncio StreamReaders fed with raw bytes and written to a recording sink, so
every byte that would go on the wire is compared."""
import asyncio
import json

import pytest

from launcher import http1
from launcher.http1 import (ClientGone, EngineFailed, NoResponse, ProtocolError, Request, Response,
                            body_pieces, chunk_size, client_response_head, content_length,
                            engine_request_head, end_to_end_fields, header_tokens, parse_fields,
                            parse_request, parse_response, pump_body, read_body, read_response_head,
                            request_framing, response_framing, serialize_head, simple_response,
                            skip_trailers)


# --- helpers: a byte source and a recording sink -------------------------------------------------

class Source:
    """What the guard's ClientIO/EngineIO offer the body functions, over a fed StreamReader."""

    def __init__(self, data: bytes, eof=True, failure=ProtocolError):
        self.reader = asyncio.StreamReader(limit=2 ** 20)
        self.reader.feed_data(data)
        if eof:
            self.reader.feed_eof()
        self.failure = failure

    def error(self, message):
        return self.failure(message)

    async def readuntil(self, separator):
        try:
            return await self.reader.readuntil(separator)
        except asyncio.IncompleteReadError as e:
            raise EngineFailed(f"eof: {e!r}") from e

    async def readexactly(self, n):
        return await self.reader.readexactly(n)

    async def read(self, n):
        return await self.reader.read(n)


class Sink:
    def __init__(self):
        self.sent = []

    async def send(self, data):
        self.sent.append(bytes(data))


def run(coroutine_function, *args, **kwargs):
    async def main():
        return await coroutine_function(*args, **kwargs)
    return asyncio.run(main())


def pieces(data, kind, length, **source_args):
    async def main():
        source = Source(data, **source_args)
        return [p async for p in body_pieces(source, kind, length)], source.reader
    return asyncio.run(main())


def pumped(data, kind, length, chunked_out, head=b""):
    async def main():
        sink = Sink()
        await pump_body(Source(data), kind, length, sink, chunked_out, head=head)
        return sink.sent
    return asyncio.run(main())


def refused(head, status=400):
    with pytest.raises(ProtocolError) as err:
        parse_request(head)
    assert err.value.status == status
    return str(err.value)


# --- small pieces --------------------------------------------------------------------------------

def test_error_json_is_compact_openai_style():
    assert http1._error_json(503, "down", "ServiceUnavailable") == \
        b'{"object":"error","message":"down","type":"ServiceUnavailable","param":null,"code":503}'


def test_protocol_error_defaults_to_400():
    assert ProtocolError("x").status == 400 and ProtocolError("x", 431).status == 431
    assert str(ProtocolError("why")) == "why"


def test_header_tokens_are_split_stripped_lowercased_and_never_empty():
    fields = [("Connection", " Keep-Alive ,, Upgrade,"), ("connection", "TE"), ("Other", "x")]
    assert header_tokens(fields, "connection") == {"keep-alive", "upgrade", "te"}
    assert header_tokens(fields, "missing") == set()


def test_parse_fields_keeps_names_and_trims_only_blanks():
    assert parse_fields([b"Host: a", b"X-Y:\t v \t", b"Z:", b"Latin: caf\xe9"]) == \
        [("Host", "a"), ("X-Y", "v"), ("Z", ""), ("Latin", "caf\u00e9")]


@pytest.mark.parametrize("line, message", [
    (b"NoColon", "malformed header line"),
    (b"Bad Name: x", "malformed header line"),
    (b"Host : x", "malformed header line"),
    (b" folded: x", "malformed header line"),
    (b": empty name", "malformed header line"),
    (b"X: a\x00b", "invalid character in header value"),
    (b"X: a\x7fb", "invalid character in header value"),
    (b"X: a\rb", "invalid character in header value"),
])
def test_parse_fields_refusals(line, message):
    with pytest.raises(ProtocolError) as err:
        parse_fields([line])
    assert str(err.value) == message and err.value.status == 400


def test_parse_fields_at_most_128():
    assert len(parse_fields([b"X: 1"] * 128)) == 128
    with pytest.raises(ProtocolError) as err:
        parse_fields([b"X: 1"] * 129)
    assert str(err.value) == "more than 128 header fields" and err.value.status == 431


@pytest.mark.parametrize("values", [["1234567890123456"], ["5, 5"], ["5", "5"], ["+5"], [""], [" 5"], ["0x5"],
                                    ["\u00b2"], []])
def test_content_length_refusals(values):
    with pytest.raises(ProtocolError) as err:
        content_length(values)
    assert str(err.value) == "invalid Content-Length: expected one decimal number of at most 15 digits"


def test_content_length_accepts_fifteen_digits():
    assert content_length(["999999999999999"]) == 999_999_999_999_999
    assert content_length(["007"]) == 7


# --- request heads -------------------------------------------------------------------------------

def test_request_framing():
    assert request_framing([], "HTTP/1.1") == ("none", 0)
    assert request_framing([("Content-Length", "0")], "HTTP/1.1") == ("none", 0)
    assert request_framing([("Content-Length", "12")], "HTTP/1.0") == ("length", 12)
    assert request_framing([("Transfer-Encoding", "ChUnKeD")], "HTTP/1.1") == ("chunked", 0)
    for fields, version, message in [
        ([("Transfer-Encoding", "chunked"), ("Content-Length", "3")], "HTTP/1.1",
         "Transfer-Encoding together with Content-Length or HTTP/1.0"),
        ([("Transfer-Encoding", "chunked")], "HTTP/1.0", "Transfer-Encoding together with Content-Length or HTTP/1.0"),
        ([("Transfer-Encoding", "gzip, chunked")], "HTTP/1.1", "Transfer-Encoding must be exactly 'chunked'"),
        ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], "HTTP/1.1",
         "Transfer-Encoding must be exactly 'chunked'"),
    ]:
        with pytest.raises(ProtocolError) as err:
            request_framing(fields, version)
        assert str(err.value) == message


def test_parse_request_of_a_full_head():
    request = parse_request(b"\r\n\r\nPOST /v1/chat%5Fcompletions?x=%41 HTTP/1.1\r\nHost: h\r\n"
                            b"Content-Length: 5\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n")
    assert request == Request(method="POST", target="/v1/chat%5Fcompletions?x=%41", version="HTTP/1.1",
                              fields=[("Host", "h"), ("Content-Length", "5"), ("Authorization", "Bearer a"),
                                      ("authorization", "Bearer b")],
                              path="/v1/chat_completions", body_kind="length", length=5, keep_alive=True)
    assert request.has_body and request.authorization == "Bearer a"


def test_http10_needs_no_host_and_closes():
    request = parse_request(b"GET / HTTP/1.0\r\n\r\n")
    assert (request.version, request.keep_alive, request.has_body, request.authorization) == \
        ("HTTP/1.0", False, False, None)


def test_connection_close_in_any_token_position():
    assert not parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive
    assert parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n").keep_alive


def test_expect_continue_only_for_an_http11_request_with_a_body():
    def head(version, body):
        host = b"Host: h\r\n" if version == b"HTTP/1.1" else b""
        return parse_request(b"POST / " + version + b"\r\n" + host + b"Expect: 100-Continue\r\n" + body + b"\r\n")
    assert head(b"HTTP/1.1", b"Content-Length: 1\r\n").expects_continue
    assert not head(b"HTTP/1.1", b"").expects_continue
    assert not head(b"HTTP/1.0", b"Content-Length: 1\r\n").expects_continue
    plain = parse_request(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n")
    assert not plain.expects_continue


def test_websocket_wish_is_read_from_the_upgrade_tokens():
    assert parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c, WebSocket\r\n\r\n").wants_websocket
    assert not parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n").wants_websocket


@pytest.mark.parametrize("head, status, message", [
    (b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "unsupported HTTP version"),
    (b"GET / http/1.1\r\nHost: h\r\n\r\n", 505, "unsupported HTTP version"),
    (b"TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", 501,
     "method not served here (only DELETE, GET, HEAD, OPTIONS, POST, PUT)"),
    (b"get / HTTP/1.1\r\nHost: h\r\n\r\n", 501, "method not served here (only DELETE, GET, HEAD, OPTIONS, POST, PUT)"),
    (b"GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request target must be an absolute path"),
    (b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request target must be an absolute path"),
    (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request target must be an absolute path"),
    (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request target must be an absolute path"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 request needs exactly one Host header"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, "HTTP/1.1 request needs exactly one Host header"),
])
def test_parse_request_refusals(head, status, message):
    assert refused(head, status) == message


def test_every_served_method_is_accepted():
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"):
        assert parse_request(method.encode() + b" / HTTP/1.1\r\nHost: h\r\n\r\n").method == method


# --- response heads ------------------------------------------------------------------------------

def test_parse_response():
    assert parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n") == \
        Response(200, "OK", [("Content-Length", "2")])
    assert parse_response(b"HTTP/1.0 204\r\n\r\n") == Response(204, "", [])
    assert parse_response(b"HTTP/1.1 418 I'm a \xe9teapot\r\n\r\n").reason == "I'm a \u00e9teapot"
    for bad in (b"HTTP/1.1 20 OK\r\n\r\n", b"HTTP/2 200 OK\r\n\r\n", b"HTTP/1.1 099 x\r\n\r\n", b"junk\r\n\r\n"):
        with pytest.raises(ProtocolError, match="^malformed status line$"):
            parse_response(bad)


@pytest.mark.parametrize("method, status, fields, framing", [
    ("HEAD", 200, [("Content-Length", "5")], ("none", 0)),
    ("GET", 100, [], ("none", 0)),
    ("GET", 199, [("Content-Length", "5")], ("none", 0)),
    ("GET", 204, [("Content-Length", "5")], ("none", 0)),
    ("GET", 304, [("Content-Length", "5")], ("none", 0)),
    ("GET", 200, [("Content-Length", "5")], ("length", 5)),
    ("GET", 205, [("Content-Length", "0")], ("none", 0)),
    ("GET", 200, [], ("close", 0)),
    ("GET", 200, [("Transfer-Encoding", "gzip,\t CHUNKED ")], ("chunked", 0)),
    ("GET", 200, [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")], ("chunked", 0)),
    ("GET", 200, [("Transfer-Encoding", "chunked, gzip")], ("close", 0)),
    ("GET", 200, [("Transfer-Encoding", "chunked"), ("Content-Length", "5")], ("chunked", 0)),
])
def test_response_framing(method, status, fields, framing):
    assert response_framing(method, Response(status, "", fields)) == framing


def test_response_with_a_bad_length_is_refused():
    with pytest.raises(ProtocolError):
        response_framing("GET", Response(200, "", [("Content-Length", "5, 5")]))


# --- serialisation -------------------------------------------------------------------------------

def test_serialize_head():
    assert serialize_head("HTTP/1.1 200 OK", [("A", "1"), ("B", "caf\u00e9")]) == \
        b"HTTP/1.1 200 OK\r\nA: 1\r\nB: caf\xe9\r\n\r\n"
    assert serialize_head("GET / HTTP/1.1", []) == b"GET / HTTP/1.1\r\n\r\n"


def test_end_to_end_fields_drop_hop_by_hop_and_what_connection_names():
    fields = [("Connection", "X-Private, close"), ("X-Private", "1"), ("Keep-Alive", "5"), ("TE", "t"),
              ("Trailer", "x"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Proxy-Connection", "x"),
              ("Proxy-Authorization", "x"), ("Proxy-Authenticate", "x"), ("Content-Type", "a/b"), ("X-Other", "2")]
    assert end_to_end_fields(fields) == [("Content-Type", "a/b"), ("X-Other", "2")]
    assert end_to_end_fields(fields, frozenset({"x-other"})) == [("Content-Type", "a/b")]


def request(head):
    return parse_request(head)


def test_engine_request_head_replaces_credentials_host_framing_and_forwarding():
    req = request(b"POST /generate?a=1 HTTP/1.1\r\nHost: public\r\nAuthorization: Bearer user\r\n"
                  b"Content-Length: 3\r\nExpect: 100-continue\r\nX-Forwarded-For: 6.6.6.6\r\n"
                  b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=x\r\n"
                  b"Accept-Encoding: gzip\r\nConnection: keep-alive\r\nX-Custom: yes\r\n\r\n")
    assert engine_request_head(req, "10.1.2.3", "127.0.0.1:30000", "engine-key") == (
        b"POST /generate?a=1 HTTP/1.1\r\nHost: 127.0.0.1:30000\r\nAccept-Encoding: gzip\r\nX-Custom: yes\r\n"
        b"Authorization: Bearer engine-key\r\nX-Forwarded-For: 10.1.2.3\r\nConnection: close\r\n"
        b"Content-Length: 3\r\n\r\n")


def test_engine_request_head_for_a_redacted_route_asks_for_no_compression():
    req = request(b"GET /server_info HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br\r\n\r\n")
    assert engine_request_head(req, "1.2.3.4", "e:1", None) == (
        b"GET /server_info HTTP/1.1\r\nHost: e:1\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: close\r\n\r\n")


def test_engine_request_head_for_a_chunked_body():
    req = request(b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert engine_request_head(req, "::1", "[::1]:2", "") == (
        b"PUT /x HTTP/1.1\r\nHost: [::1]:2\r\nX-Forwarded-For: ::1\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")


RESPONSE = Response(200, "OK", [("Content-Type", "text/plain"), ("Content-Length", "5"), ("Connection", "keep-alive"),
                                ("Transfer-Encoding", "chunked")])


@pytest.mark.parametrize("kwargs, expected", [
    (dict(keep_alive=True), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"),
    (dict(keep_alive=False), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                             b"Connection: close\r\n\r\n"),
    (dict(keep_alive=True, chunked=True), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                          b"Transfer-Encoding: chunked\r\n\r\n"),
    (dict(keep_alive=True, new_length=9), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n"),
    (dict(keep_alive=True, new_length=0), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"),
    (dict(keep_alive=False, reframed=True), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"),
])
def test_client_response_head(kwargs, expected):
    assert client_response_head(RESPONSE, **kwargs) == expected


def test_simple_response():
    assert simple_response(503, b'{"a":1}', "application/json", keep_alive=False) == (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 7\r\n"
        b"Connection: close\r\n\r\n{\"a\":1}")
    assert simple_response(200, b"", None, keep_alive=True) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert simple_response(401, b"body", None, keep_alive=True, send_body=False) == \
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\n"


# --- chunks and bodies ---------------------------------------------------------------------------

class Errors:
    """chunk_size needs only its source's error(); no stream, so no event loop."""

    def error(self, message):
        return ProtocolError(message)


def test_chunk_size_lines():
    source = Errors()
    assert chunk_size(b"1a\r\n", source) == 26
    assert chunk_size(b"FFFFFFFFFFFFFFF\r\n", source) == 16 ** 15 - 1
    assert chunk_size(b'5 ; name = "quoted \\" value" ;flag\r\n', source) == 5
    assert chunk_size(b"5;" + b"a" * 1020 + b"\r\n", source) == 5            # 1,024 bytes: the limit
    for bad in (b"5;" + b"a" * 1021 + b"\r\n", b"1G\r\n", b"\r\n", b"1\n", b"1;\r\n", b"1; a=\r\n", b"1 \r\n",
                b"1000000000000000\r\n", b'1;a="x\rz"\r\n', b"-1\r\n"):
        with pytest.raises(ProtocolError, match="^malformed chunk size line$"):
            chunk_size(bad, source)


def test_length_body_in_pieces_of_at_most_64_kib():
    data = b"a" * (http1.PIECE + 1)
    got, _ = pieces(data + b"NEXT", "length", len(data))
    assert [len(p) for p in got] == [http1.PIECE, 1] and b"".join(got) == data


def test_length_body_cut_short_is_an_error():
    with pytest.raises(ProtocolError, match="^connection closed inside the body$"):
        pieces(b"abc", "length", 4)


def test_chunked_body_with_trailers_leaves_the_next_message_unread():
    got, reader = pieces(b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer-A: 1\r\n\r\nNEXT", "chunked", 0)
    assert got == [b"abc", b"de"]
    assert run(reader.read, 10) == b"NEXT"


def test_big_chunk_in_pieces():
    size = http1.PIECE + 2
    got, _ = pieces(b"%x\r\n" % size + b"b" * size + b"\r\n0\r\n\r\n", "chunked", 0)
    assert [len(p) for p in got] == [http1.PIECE, 2]


def test_chunk_errors():
    with pytest.raises(ProtocolError, match="^connection closed inside a chunk$"):
        pieces(b"5\r\nab", "chunked", 0)
    with pytest.raises(ProtocolError, match="^chunk data not followed by CRLF$"):
        pieces(b"2\r\nabXY0\r\n\r\n", "chunked", 0)


def test_close_delimited_body_until_eof():
    got, _ = pieces(b"everything", "close", 0)
    assert b"".join(got) == b"everything"
    assert pieces(b"ignored", "none", 0)[0] == []


def test_trailers_bounds():
    async def skip(data):
        await skip_trailers(Source(data))
    run(skip, b"A: 1\r\n" * 64 + b"\r\n")                       # TRAILER_LIMIT fields: accepted
    with pytest.raises(ProtocolError, match="^more than 64 trailer fields$"):
        run(skip, b"A: 1\r\n" * 65 + b"\r\n")
    run(skip, b"A: " + b"v" * 1019 + b"\r\n\r\n")                     # 1,024 bytes with its CRLF
    with pytest.raises(ProtocolError, match="^trailer line too long$"):
        run(skip, b"A: " + b"v" * 1020 + b"\r\n\r\n")
    with pytest.raises(ProtocolError, match="^malformed trailer field$"):
        run(skip, b"no colon\r\n\r\n")


def test_pump_body_chunked_out_frames_every_piece_and_ends():
    assert pumped(b"abcdef", "length", 6, chunked_out=True, head=b"HEAD") == [b"HEAD6\r\nabcdef\r\n", b"0\r\n\r\n"]


def test_pump_body_plain_sends_the_head_with_the_first_piece():
    assert pumped(b"abc", "length", 3, chunked_out=False, head=b"H") == [b"Habc"]
    assert pumped(b"0\r\n\r\n", "chunked", 0, chunked_out=False, head=b"H") == [b"H"]
    assert pumped(b"0\r\n\r\n", "chunked", 0, chunked_out=True) == [b"0\r\n\r\n"]
    assert pumped(b"", "close", 0, chunked_out=False) == []


def test_pump_body_chunks_in_chunks_out():
    assert pumped(b"a\r\n0123456789\r\n0\r\n\r\n", "chunked", 0, chunked_out=True) == \
        [b"a\r\n0123456789\r\n", b"0\r\n\r\n"]


def test_read_body_limit_is_inclusive():
    async def read(limit):
        return await read_body(Source(b"abcd", failure=EngineFailed), "length", 4, limit)
    assert run(read, 4) == b"abcd"
    with pytest.raises(EngineFailed, match="^body larger than 3 bytes$"):
        run(read, 3)


def test_read_response_head_skips_interim_answers():
    async def head(data):
        return await read_response_head(Source(data, failure=EngineFailed))
    final = run(head, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                      b"HTTP/1.1 201 Created\r\nA: b\r\n\r\n")
    assert final == Response(201, "Created", [("A", "b")])
    with pytest.raises(NoResponse, match="^the engine switched protocols unasked$"):
        run(head, b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    with pytest.raises(NoResponse, match="^malformed status line$"):
        run(head, b"HTTP/1.1 2000 OK\r\n\r\n")
    with pytest.raises(NoResponse, match="^eof: "):
        run(head, b"HTTP/1.1 200 OK\r\n")


def test_exceptions_are_what_the_guard_catches():
    assert issubclass(NoResponse, EngineFailed) and issubclass(ProtocolError, ValueError)
    assert not issubclass(ClientGone, EngineFailed)
    assert json.loads(http1._error_json(400, "m", "BadRequest"))["code"] == 400


# --- edges found by the full run -----------------------------------------------------------------

def test_only_blanks_are_trimmed_around_a_value_not_other_whitespace():
    for value in (b"a\x0b", b"\x0ca", b"a\r"):
        with pytest.raises(ProtocolError, match="^invalid character in header value$"):
            parse_fields([b"X: " + value])


def test_only_empty_lines_may_precede_a_request_line():
    assert refused(b" GET / HTTP/1.1\r\nHost: h\r\n\r\n") == "malformed request line"
    assert refused(b"XGET / HTTP/1.1\r\nHost: h\r\n\r\n", 501).startswith("method not served here")
    assert parse_request(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").method == "GET"


def test_an_http10_request_may_not_be_chunked():
    assert refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == \
        "Transfer-Encoding together with Content-Length or HTTP/1.0"


@pytest.mark.parametrize("value, framing", [("gzip,chunked", ("chunked", 0)), ("chunked\u00a0", ("close", 0)),
                                            ("chunked,gzip", ("close", 0))])
def test_response_codings_split_on_commas_and_trim_only_blanks(value, framing):
    assert response_framing("GET", Response(200, "", [("Transfer-Encoding", value)])) == framing


def test_read_body_keeps_every_piece():
    async def main():
        return await read_body(Source(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "chunked", 0, 100)
    assert run(main) == b"abcde"


def test_a_bad_chunk_line_inside_a_body_is_the_sources_error():
    with pytest.raises(ProtocolError, match="^malformed chunk size line$"):
        pieces(b"zz\r\nabc\r\n0\r\n\r\n", "chunked", 0)


def test_a_trailer_field_with_an_empty_value_is_accepted():
    async def skip():
        await skip_trailers(Source(b"AB:\r\n\r\n"))
    run(skip)
