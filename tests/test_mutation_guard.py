"""Behaviour tests for launcher/guard.py, written to kill mutmut's survivors (docs/mutation.md).
Most drive one Guard method at a time over real asyncio StreamReaders fed with raw bytes and a
recording writer, so every byte the client or the engine would get is compared; a few run the
guard on loopback (the cap, malformed heads). Expected bytes are written out by hand."""
import asyncio
import socket
import time

import pytest

from launcher import guard
from launcher.guard import CLOSE, KEEP, LINGER, Guard, LoopErrorLog
from launcher.http1 import ClientGone, EngineDown, EngineFailed, NoResponse, parse_request
from launcher.streams import ClientIO, ClientReader, EngineIO

WAIT = 5
BAD_GATEWAY = (b'{"object":"error","message":"the engine closed the connection or sent an invalid response",'
               b'"type":"BadGateway","param":null,"code":502}')


class Logs(list):
    def __call__(self, message):
        self.append(message)


class Transport:
    def abort(self):
        pass


class Writer:
    def __init__(self, drain_error=None):
        self.data, self.closed, self.drain_error = b"", False, drain_error
        self.transport = Transport()

    def write(self, data):
        self.data += data

    async def drain(self):
        if self.drain_error:
            raise self.drain_error

    def can_write_eof(self):
        return True

    def write_eof(self):
        pass

    def close(self):
        self.closed = True


def client_io(body=b"", eof=True):
    reader = ClientReader()
    reader.feed_data(body)
    if eof:
        reader.feed_eof()
    return ClientIO(reader, Writer())


def engine_io(answer=b"", drain_error=None, eof=True):
    reader = asyncio.StreamReader()
    reader.feed_data(answer)
    if eof:
        reader.feed_eof()
    return EngineIO(reader, Writer(drain_error))


def make_guard(**kwargs):
    logs = Logs()
    g = Guard("127.0.0.1", 0, "127.0.0.1", 30000, log=logs, **kwargs)
    g.logs = logs
    return g


def run(main):
    return asyncio.run(main())


def req(head):
    return parse_request(head)


# --- logging -------------------------------------------------------------------------------------

def test_log_to_stderr(capsys):
    guard._log_to_stderr("hello")
    assert capsys.readouterr() == ("", "guard: hello\n")


def test_loop_error_log_formats_the_context():
    logs = Logs()
    handler = LoopErrorLog(logs)
    handler(None, {"message": "accept failed", "exception": OSError(24, "Too many open files")})
    handler(None, {"exception": ValueError("v")})
    handler(None, {"message": "plain"})
    handler(None, {})
    assert logs == ["accept failed: OSError: [Errno 24] Too many open files", "event loop error: ValueError: v",
                    "plain", "event loop error"]


def test_loop_error_log_once_per_interval_with_a_count(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(guard.time, "monotonic", lambda: clock[0])
    logs = Logs()
    note = LoopErrorLog(logs, interval_s=10.0).note
    note("a")
    clock[0] = 1009.99
    note("a")
    note("a")
    note("b")
    assert logs == ["a", "b"]
    clock[0] = 1010.0
    note("a")
    assert logs == ["a", "b", "a (and 2 more times in the last interval)"]
    clock[0] = 1020.0
    note("a")
    assert logs[-1] == "a"


def test_loop_error_log_at_time_zero_logs_the_first_note(monkeypatch):
    monkeypatch.setattr(guard.time, "monotonic", lambda: 0.0)
    logs = Logs()
    LoopErrorLog(logs, interval_s=10.0).note("first")
    assert logs == ["first"]


def test_loop_error_log_forgets_after_256_messages(monkeypatch):
    monkeypatch.setattr(guard.time, "monotonic", lambda: 5.0)
    logs = Logs()
    log = LoopErrorLog(logs, interval_s=10.0)
    for i in range(256):
        log.note(f"m{i}")
    log.note("m0")                      # 256 remembered: within the interval, suppressed
    assert logs[-1] == "m255" and len(log._last) == 256
    log.note("m256")                    # the 257th
    log.note("m0")                      # more than 256: the table starts again, the count is kept
    assert logs[-2:] == ["m256", "m0 (and 1 more times in the last interval)"] and len(log._last) == 1


def test_connection_budget_and_open_file_limit():
    assert guard.connection_budget(1024) == (1024 - 64) // 2 == 480
    assert guard.connection_budget(66) == 1 and guard.connection_budget(10) == 1
    assert guard.connection_budget(68) == 2
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert guard.raise_open_file_limit() == (hard if hard != resource.RLIM_INFINITY else soft)


# --- answers without the engine ------------------------------------------------------------------

def test_answer_keeps_a_connection_whose_request_had_no_body():
    async def main():
        client = client_io()
        step = await make_guard()._answer(client, req(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"), 401,
                                          guard.UNAUTHORIZED_BODY, "application/json")
        return step, client.writer.data
    assert run(main) == (KEEP, b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 24\r\n\r\n" + guard.UNAUTHORIZED_BODY)


def test_answer_to_head_has_no_body():
    async def main():
        client = client_io()
        step = await make_guard()._answer(client, req(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n"), 403,
                                          guard.FORBIDDEN_BODY, "application/json")
        return step, client.writer.data
    assert run(main) == (KEEP, b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 21\r\n\r\n")


def test_answer_with_the_body_unread_closes_after_a_linger():
    async def main():
        client = client_io()
        step = await make_guard()._answer(client, req(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n"),
                                          503, b"", None)
        return step, client.writer.data
    assert run(main) == (LINGER, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_answer_with_the_body_read_or_an_http10_client_closes_plainly():
    async def main():
        guard_ = make_guard()
        post = req(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n")
        read = await guard_._answer(client_io(), post, 502, b"", None, body_unread=False)
        old = await guard_._answer(client_io(), req(b"GET /x HTTP/1.0\r\n\r\n"), 401, b"", None)
        closing = await guard_._answer(client_io(), req(b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
                                       401, b"", None)
        return read, old, closing
    assert run(main) == (KEEP, CLOSE, CLOSE)


# --- forwarding ----------------------------------------------------------------------------------

def test_small_body_goes_with_the_head_in_one_send_up_to_64_kib():
    sent = []

    class Recording:
        async def send(self, data):
            sent.append(data)

    async def main(size):
        sent.clear()
        head = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size
        await make_guard()._send_request(req(head), client_io(b"b" * size), Recording(), "1.1.1.1", None)
        return [len(s) for s in sent]
    one = asyncio.run(main(64 * 1024))
    several = asyncio.run(main(64 * 1024 + 1))
    assert len(one) == 1 and one[0] > 64 * 1024              # head and the whole body together
    assert len(several) == 3 and several[1:] == [64 * 1024, 1]  # the head alone, then the body piece by piece


def test_chunked_request_body_is_chunked_on_to_the_engine():
    async def main():
        io = engine_io()
        await make_guard()._send_request(req(b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
                                         client_io(b"3\r\nabc\r\n0\r\n\r\n"), io, "1.1.1.1", "ek")
        return io.writer.data
    assert run(main) == (b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:30000\r\nAuthorization: Bearer ek\r\n"
                         b"X-Forwarded-For: 1.1.1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n0\r\n\r\n")


def test_engine_failing_while_the_request_is_sent_gives_502_and_a_log():
    async def main():
        g = make_guard()
        client = client_io(b"hi")
        step = await g._forward(req(b"POST /generate?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n"),
                                client, engine_io(drain_error=BrokenPipeError("p")), "1.2.3.4", "normal")
        return step, client.writer.data, g.logs
    step, data, logs = run(main)
    assert step == LINGER
    assert data == (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n" % len(BAD_GATEWAY) + BAD_GATEWAY)
    assert logs == ["engine failed during POST '/generate': writing to the engine: BrokenPipeError('p')"]


def test_engine_without_an_answer_gives_502_and_keeps_the_client():
    async def main():
        g = make_guard()
        client = client_io()
        step = await g._forward(req(b"GET /v1/models HTTP/1.1\r\nHost: h\r\n\r\n"), client,
                                engine_io(b"HTTP/1.1 200 OK\r\n"), "1.2.3.4", "normal")
        return step, client.writer.data, g.logs
    step, data, logs = run(main)
    assert step == KEEP
    assert data == (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % len(BAD_GATEWAY) + BAD_GATEWAY)
    assert len(logs) == 1 and logs[0].startswith("engine failed during GET '/v1/models': reading from the engine: "
                                                 "IncompleteReadError")


def test_engine_with_a_bad_framing_gives_502_naming_it():
    async def main():
        g = make_guard()
        client = client_io()
        step = await g._forward(req(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"), client,
                                engine_io(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"), "1.2.3.4", "normal")
        return step, client.writer.data, g.logs
    step, data, logs = run(main)
    assert step == KEEP and data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert logs == ["engine failed during GET '/x': invalid Content-Length: expected one decimal number of at most "
                    "15 digits"]


def test_engine_failing_mid_response_closes_the_client():
    async def main():
        g = make_guard()
        client = client_io(eof=False)
        step = await g._forward(req(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"), client,
                                engine_io(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), "1.2.3.4", "normal")
        return step, client.writer.data, g.logs
    step, data, logs = run(main)
    assert step == CLOSE and data == b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"   # then cut off
    assert logs == ["engine failed during GET '/x': connection closed inside the body"]


def test_expect_continue_then_a_failure_still_answers():
    async def main():
        g = make_guard()
        client = client_io(b"hi")
        step = await g._forward(req(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"),
                                client, engine_io(drain_error=BrokenPipeError()), "1.2.3.4", "normal")
        return step, client.writer.data, client.started
    step, data, started = run(main)
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 502 Bad Gateway\r\n") and started


def test_forward_with_engine_keys_uses_the_key_of_the_routes_level():
    keys = guard.EngineKeys.generate()

    async def main(level):
        io = engine_io(b"HTTP/1.1 204 No Content\r\n\r\n")
        g = make_guard(engine_keys=keys)
        client = client_io(eof=False)
        step = await g._forward(req(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"), client, io, "1.2.3.4", level)
        return step, io.writer.data, client.writer.data
    step, sent, data = asyncio.run(main("admin_force"))
    assert step == KEEP and f"Authorization: Bearer {keys.admin_api_key}\r\n".encode() in sent
    assert data == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert f"Bearer {keys.admin_api_key}\r\n".encode() in asyncio.run(main("admin_optional"))[1]
    assert f"Bearer {keys.api_key}\r\n".encode() in asyncio.run(main("normal"))[1]


# --- relaying and redaction ----------------------------------------------------------------------

def relay(head, answer, **guard_args):
    async def main():
        client = client_io(eof=False)
        keep = await make_guard(**guard_args)._relay_response(req(head), client, engine_io(answer))
        return keep, client.writer.data
    return run(main)


def test_redacted_route_body_is_redacted_and_reframed():
    keep, data = relay(b"GET /server_info HTTP/1.1\r\nHost: h\r\n\r\n",
                       b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{"api_key":"sk-12"}',
                       api_key="sk-12")
    assert keep is True
    assert data == (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n'
                    b'{"api_key":"<redacted>"}')


def test_redacted_route_for_an_http10_client_closes():
    keep, data = relay(b"GET /server_info HTTP/1.0\r\n\r\n",
                       b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nsk-12\r\n0\r\n\r\n", api_key="sk-12")
    assert keep is False
    assert data == b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n<redacted>"


def test_redacted_route_without_a_body_passes_the_head():
    keep, data = relay(b"HEAD /server_info HTTP/1.1\r\nHost: h\r\n\r\n",
                       b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", api_key="sk-12")
    assert keep is True and data == b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"


def test_redacted_route_with_a_broken_body_is_no_response():
    with pytest.raises(NoResponse, match="^connection closed inside the body$"):
        relay(b"GET /server_info HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nab",
              api_key="k")


def test_unredacted_route_streams_and_keeps():
    keep, data = relay(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n",
                       b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", api_key="k")
    assert keep is True
    assert data == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


def test_close_delimited_answer_closes_the_client():
    keep, data = relay(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\nuntil eof")
    assert keep is False and data == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof"


def test_http10_client_gets_a_chunked_answer_unchunked():
    keep, data = relay(b"GET /x HTTP/1.0\r\n\r\n",
                       b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert keep is False and data == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc"


def test_a_length_answer_leaves_in_one_send():
    keep, data = relay(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert keep is True and data == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"


# --- leaving clients -----------------------------------------------------------------------------

def test_a_client_that_leaves_abandons_the_relay():
    async def main():
        client = client_io(eof=False)
        cancelled = asyncio.Event()

        async def forever():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        asyncio.get_running_loop().call_later(0.01, client.reader.feed_eof)
        with pytest.raises(ClientGone, match="^client disconnected during the response$"):
            await asyncio.wait_for(make_guard()._unless_client_leaves(client, forever()), WAIT)
        return cancelled.is_set()
    assert run(main)


def test_a_finished_relay_returns_its_result_and_stops_watching():
    async def main():
        client = client_io(eof=False)

        async def quick():
            return "done"
        result = await make_guard()._unless_client_leaves(client, quick())
        await asyncio.sleep(0)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return result, pending
    result, pending = run(main)
    assert result == "done" and pending == []


# --- the engine's state --------------------------------------------------------------------------

def test_engine_reachability_is_logged_on_changes_only():
    async def main():
        g = make_guard()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            g._engine_address = socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_STREAM)[0]
            g._engine_host = f"127.0.0.1:{port}"
            for _ in range(2):
                with pytest.raises(EngineDown):
                    await g._connect_engine()
            probe.listen()
            io = await g._connect_engine()
            io.close()
            io = await g._connect_engine()
            io.close()
        return g.logs, port
    logs, port = run(main)
    assert logs == [f"engine at 127.0.0.1:{port} is not accepting connections (ConnectionRefusedError); "
                    "answering 503 until it does", f"engine at 127.0.0.1:{port} is accepting connections"]


def test_engine_host_brackets_an_ipv6_address():
    assert Guard("::", 0, "::1", 30000)._engine_host == "[::1]:30000"
    assert Guard("::", 0, "127.0.0.1", 30000)._engine_host == "127.0.0.1:30000"


def test_log_engine_failure_cuts_the_path_at_200_characters():
    g = make_guard()
    g._log_engine_failure(req(b"GET /" + b"a" * 300 + b"?secret=1 HTTP/1.1\r\nHost: h\r\n\r\n"), EngineFailed("x"))
    assert g.logs == [f"engine failed during GET '/{'a' * 199}': x"]


# --- on loopback: the connection cap and malformed heads -----------------------------------------

@pytest.fixture
def running():
    started = []

    def start(**kwargs):
        g = make_guard(**kwargs)
        g.start()
        started.append(g)
        return g
    yield start
    for g in started:
        g.stop()


def exchange(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize("head, status, phrase, kind, message", [
    (b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400, "Bad Request", "BadRequest", "request target must be an absolute path"),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP Version Not Supported", "HTTPVersionNotSupported",
     "unsupported HTTP version"),
    (b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 129 + b"\r\n", 431, "Request Header Fields Too Large",
     "RequestHeaderFieldsTooLarge", "more than 128 header fields"),
])
def test_malformed_requests_get_the_exact_error(running, head, status, phrase, kind, message):
    g = running()
    body = ('{"object":"error","message":"%s","type":"%s","param":null,"code":%d}' % (message, kind, status)).encode()
    assert exchange(g.port, head) == (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
                                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def test_beyond_the_cap_the_exact_503(running):
    g = running(max_connections=1)
    with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as held:
        held.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n")        # an unfinished head holds the slot
        deadline = time.monotonic() + WAIT
        while not g._connections and time.monotonic() < deadline:
            time.sleep(0.01)
        answer = exchange(g.port, b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
    assert answer == (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n" % len(guard.OVERLOADED_BODY) + guard.OVERLOADED_BODY)
    assert g.logs == ["connection cap of 1 reached; answering 503"]


def test_start_twice_is_refused_and_stop_is_idempotent(running):
    g = running()
    with pytest.raises(RuntimeError, match="^guard already started$"):
        g.start()
    g.stop()
    g.stop()
    assert g._thread is None
    make_guard().stop()                # never started: nothing to do


def test_start_returns_promptly_with_the_port_bound():
    """Within a deadline, so that a broken start fails here at once instead of hanging the tests
    that start a guard (mutmut then needs its timeout, ~40 s, per such mutant)."""
    import threading
    g = make_guard()
    done = threading.Event()
    errors = []

    def start():
        try:
            g.start()
        except BaseException as e:
            errors.append(e)
        done.set()
    threading.Thread(target=start, daemon=True).start()
    try:
        assert done.wait(WAIT) and not errors
        assert isinstance(g.port, int) and g.port > 0 and g._thread.is_alive()
        assert g.max_connections == min(4096, guard.connection_budget(guard.raise_open_file_limit()))
        with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT):
            pass
    finally:
        stopper = threading.Thread(target=g.stop, daemon=True)
        stopper.start()
        stopper.join(WAIT)
    assert not stopper.is_alive() and g._thread is None


# --- edges found by the full run -----------------------------------------------------------------

class Writes(Writer):
    """Records each write apart: how many sends a response took."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, data):
        super().write(data)
        self.writes.append(data)


def test_a_length_answer_is_one_write_and_a_chunked_one_to_http10_drops_a_stray_length():
    async def main(head, answer):
        client = ClientIO(client_io(eof=False).reader, Writes())
        await make_guard()._relay_response(req(head), client, engine_io(answer))
        return client.writer.writes
    writes = asyncio.run(main(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
    assert writes == [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"]
    writes = asyncio.run(main(b"GET /x HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                                         b"Content-Length: 5\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
    assert b"".join(writes) == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc"


def test_engine_without_an_answer_to_a_request_with_a_body_keeps_the_client():
    async def main():
        client = client_io(b"hi")
        step = await make_guard()._forward(req(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n"), client,
                                           engine_io(b""), "1.2.3.4", "normal")
        return step, client.writer.data
    step, data = run(main)
    assert step == KEEP and b"Connection: close" not in data and data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")


def test_websocket_and_forbidden_answers_are_exact(monkeypatch):
    from launcher import sglang_auth

    async def main(head, **keys):
        client = client_io()
        step = await make_guard(**keys)._exchange(req(head), client, "1.2.3.4")
        return step, client.writer.data
    step, data = run(lambda: main(b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
    assert step == KEEP and data == (b"HTTP/1.1 501 Not Implemented\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n" % len(guard.WEBSOCKET_BODY) + guard.WEBSOCKET_BODY)
    # SGLang 0.5.23 declares no admin-force route; its rule answers 403 on one when no admin key is set
    monkeypatch.setattr(guard, "route_auth_level", lambda method, path: sglang_auth.ADMIN_FORCE)
    head = b"POST /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer sk-user\r\nContent-Length: 0\r\n\r\n"
    step, data = run(lambda: main(head, api_key="sk-user"))
    assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n") and data.endswith(b"\r\n\r\n" + guard.FORBIDDEN_BODY)


def test_redaction_covers_the_engine_keys_and_nothing_for_absent_keys():
    keys = guard.EngineKeys.generate()
    body = ('{"a":"%s","b":"XXXX","c":""}' % keys.admin_api_key).encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    keep, data = relay(b"GET /server_info HTTP/1.1\r\nHost: h\r\n\r\n", answer, engine_keys=keys)
    assert data.endswith(b'{"a":"<redacted>","b":"XXXX","c":""}')
    keep, data = relay(b"GET /server_info HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nXXXX",
                       api_key="k")
    assert data.endswith(b"\r\n\r\nXXXX")


def test_a_new_guard_has_no_port_and_its_thread_is_a_named_daemon(running):
    assert make_guard().port is None
    g = running()
    assert g._thread.name == "api-key-guard" and g._thread.daemon is True
    assert g.listen_host == "127.0.0.1"


def test_the_guard_listens_on_the_given_address_only(running):
    g = running()
    assert g._server.sockets[0].getsockname()[0] == "127.0.0.1"


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no dual-stack IPv6 on this host")
def test_listening_on_all_ipv6_addresses_takes_ipv4_clients_too():
    g = Guard("::", 0, "127.0.0.1", 1, log=Logs())
    g.start()
    try:
        assert g._server.sockets[0].family == socket.AF_INET6
        with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 503 ")
    finally:
        g.stop()


def test_the_event_loops_errors_go_to_the_guards_log(running):
    g = running()
    done = __import__("threading").Event()
    g._loop.call_soon_threadsafe(lambda: (g._loop.call_exception_handler({"message": "probe"}), done.set()))
    assert done.wait(WAIT) and g.logs == ["probe"]


def test_open_file_limit_raised_to_the_hard_limit(monkeypatch):
    import resource
    calls = []
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append((which, limits)))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    assert guard.raise_open_file_limit() == 4096 and calls == [(resource.RLIMIT_NOFILE, (4096, 4096))]
    calls.clear()
    monkeypatch.setattr(resource, "getrlimit", lambda which: (4096, 4096))
    assert guard.raise_open_file_limit() == 4096 and calls == []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, resource.RLIM_INFINITY))
    assert guard.raise_open_file_limit() == 1024 and calls == []

    def refuse(which, limits):
        raise ValueError("not permitted")
    monkeypatch.setattr(resource, "setrlimit", refuse)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    assert guard.raise_open_file_limit() == 1024


def test_connection_budget_is_a_whole_number():
    assert type(guard.connection_budget(1025)) is int and guard.connection_budget(1025) == 480


def test_refusals_on_loopback_leave_nothing_in_the_log(running):
    g = running()
    assert exchange(g.port, b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    big = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * (64 * 1024) + b"\r\n\r\n"
    answer = exchange(g.port, big)
    body = b'{"object":"error","message":"request head larger than 64 KiB","type":"RequestHeaderFieldsTooLarge",' \
           b'"param":null,"code":431}'
    assert answer == (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    answer = exchange(g.port, b"POST /generate HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")     # engine down, body unread: linger
    g.stop()
    assert g.logs == ["engine at 127.0.0.1:30000 is not accepting connections (ConnectionRefusedError); "
                      "answering 503 until it does"]


def test_an_internal_error_is_a_500_and_a_log_line(running):
    g = running()

    async def broken(request, client, client_ip):
        raise RuntimeError("boom")
    g._exchange = broken
    body = (b'{"object":"error","message":"internal error in the guard","type":"InternalServerError",'
            b'"param":null,"code":500}')
    assert exchange(g.port, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n") == (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % len(body) + body)
    assert g.logs == ["internal error, connection dropped: RuntimeError: boom"]


def test_a_broken_body_after_100_continue_still_gets_its_400(running):
    listener = socket.create_server(("127.0.0.1", 0))
    g = running()
    g.upstream_port = listener.getsockname()[1]
    g._engine_address = socket.getaddrinfo("127.0.0.1", g.upstream_port, type=socket.SOCK_STREAM)[0]
    with listener, socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as s:
        s.sendall(b"POST /generate HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        received = b""
        while b"100 Continue\r\n\r\n" not in received:
            received += s.recv(65536)
        s.sendall(b"zz\r\n")
        while chunk := s.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\n")
    assert received.endswith(b'"message":"request body: malformed chunk size line","type":"BadRequest",'
                             b'"param":null,"code":400}')


def test_stop_with_an_open_connection_is_clean(running):
    g = running()
    with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n")      # an unfinished head: the connection stays
        deadline = time.monotonic() + WAIT
        while not g._connections and time.monotonic() < deadline:
            time.sleep(0.01)
        g.stop()
        assert s.recv(100) == b""
    assert g.logs == []


def test_the_admin_key_is_redacted_even_when_not_listed():
    body = b'{"admin_api_key":"sk-admin-1"}'
    keep, data = relay(b"GET /server_info HTTP/1.1\r\nHost: h\r\n\r\n",
                       b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body, admin_api_key="sk-admin-1")
    assert data.endswith(b'{"admin_api_key":"<redacted>"}')
