"""Behaviour tests for launcher/streams.py, written to kill mutmut's survivors (docs/mutation.md).
The readers are real asyncio StreamReaders fed by hand; sockets are real loopback sockets; only a
writer that must stall or fail on cue is a small stand-in. Timeouts are shortened per test (the
module reads them at call time), so no test waits for a real 60 s limit."""
import asyncio
import socket

import pytest

from launcher import streams
from launcher.http1 import ClientGone, EngineFailed, ProtocolError
from launcher.streams import ClientIO, ClientReader, EngineIO, engine_socket, linger_and_close, set_nodelay

SHORT = 0.05


def run(main):
    return asyncio.run(main())


class Transport:
    def __init__(self):
        self.aborted = False

    def abort(self):
        self.aborted = True


class Writer:
    """A StreamWriter stand-in: records writes; drain() stalls or fails on cue."""

    def __init__(self, drain_error=None, stall=False, eof_ok=True, eof_error=None):
        self.data, self.closed, self.eof_written = b"", False, False
        self.transport = Transport()
        self.drain_error, self.stall, self.eof_ok, self.eof_error = drain_error, stall, eof_ok, eof_error

    def write(self, data):
        self.data += data

    async def drain(self):
        if self.stall:
            await asyncio.sleep(3600)
        if self.drain_error:
            raise self.drain_error

    def can_write_eof(self):
        return self.eof_ok

    def write_eof(self):
        if self.eof_error:
            raise self.eof_error
        self.eof_written = True

    def close(self):
        self.closed = True


def fed(data=b"", eof=True, cls=ClientReader):
    reader = cls() if cls is ClientReader else cls(limit=64)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


# --- ClientReader --------------------------------------------------------------------------------

def test_client_reader_signals_gone_on_eof_and_on_errors_and_keeps_its_data():
    async def main():
        reader = ClientReader()
        assert reader._limit == 64 * 1024 and not reader.gone.is_set()
        reader.feed_data(b"GET / HTTP/1.1\r\n\r\n")
        assert not reader.gone.is_set()
        reader.feed_eof()
        assert reader.gone.is_set() and reader.at_eof() is False
        assert await reader.read() == b"GET / HTTP/1.1\r\n\r\n"
        broken = ClientReader()
        broken.set_exception(ConnectionResetError("rst"))
        assert broken.gone.is_set()
        with pytest.raises(ConnectionResetError):
            await broken.read(1)
    run(main)


# --- ClientIO ------------------------------------------------------------------------------------

def test_client_io_reads():
    async def main():
        client = ClientIO(fed(b"ab\r\ncdefg"), Writer())
        assert not client.started
        assert await client.readuntil(b"\r\n") == b"ab\r\n"
        assert await client.readexactly(2) == b"cd"
        assert await client.read(10) == b"efg"
    run(main)


def test_client_io_errors_and_failures():
    async def main():
        client = ClientIO(fed(b"abc"), Writer())
        assert isinstance(client.error("x"), ProtocolError) and str(client.error("x")) == "request body: x"
        with pytest.raises(ClientGone, match=r"^reading the request body: IncompleteReadError"):
            await client.readuntil(b"\r\n")
        client = ClientIO(fed(b"abc"), Writer())
        with pytest.raises(ClientGone, match=r"^reading the request body: IncompleteReadError"):
            await client.readexactly(4)
        reader = ClientReader()
        reader.set_exception(ConnectionResetError("gone"))
        with pytest.raises(ClientGone, match=r"^reading the request body: ConnectionResetError\('gone'\)$"):
            await ClientIO(reader, Writer()).read(1)
        reader = ClientReader()
        reader.set_exception(ConnectionResetError("gone"))
        with pytest.raises(ClientGone, match="ConnectionResetError"):
            await ClientIO(reader, Writer()).readexactly(1)
        reader = ClientReader()
        reader.set_exception(ConnectionResetError("gone"))
        with pytest.raises(ClientGone, match="ConnectionResetError"):
            await ClientIO(reader, Writer()).readuntil(b"\n")
    run(main)


def test_client_io_line_too_long_is_a_protocol_error():
    async def main():
        client = ClientIO(fed(b"x" * (64 * 1024 + 10), eof=False), Writer())
        with pytest.raises(ProtocolError) as err:
            await client.readuntil(b"\r\n")
        assert str(err.value) == "request body: line too long" and err.value.status == 400
    run(main)


@pytest.mark.parametrize("call", [lambda c: c.readuntil(b"\r\n"), lambda c: c.readexactly(5),
                                  lambda c: c.read(5)])
def test_client_io_reads_time_out_when_the_body_stalls(monkeypatch, call):
    monkeypatch.setattr(streams, "CLIENT_BODY_IDLE_TIMEOUT_S", SHORT)

    async def main():
        client = ClientIO(fed(b"", eof=False), Writer())
        with pytest.raises(ClientGone, match=r"^reading the request body: TimeoutError"):
            await asyncio.wait_for(call(client), 5)
    run(main)


def test_client_io_send_writes_and_marks_started():
    async def main():
        writer = Writer()
        client = ClientIO(fed(), writer)
        await client.send(b"HTTP/1.1 200 OK\r\n\r\n")
        assert client.started and writer.data == b"HTTP/1.1 200 OK\r\n\r\n" and not writer.transport.aborted
    run(main)


def test_client_io_send_to_a_client_that_reads_nothing_aborts(monkeypatch):
    monkeypatch.setattr(streams, "CLIENT_WRITE_TIMEOUT_S", SHORT)

    async def main():
        writer = Writer(stall=True)
        client = ClientIO(fed(), writer)
        with pytest.raises(ClientGone, match="^the client read nothing for too long$"):
            await asyncio.wait_for(client.send(b"x"), 5)
        assert writer.transport.aborted and client.started
    run(main)


def test_client_io_send_failure_is_client_gone():
    async def main():
        writer = Writer(drain_error=BrokenPipeError("pipe"))
        with pytest.raises(ClientGone, match=r"^writing the response: BrokenPipeError\('pipe'\)$"):
            await ClientIO(fed(), writer).send(b"x")
        assert not writer.transport.aborted
    run(main)


# --- EngineIO ------------------------------------------------------------------------------------

def engine_reader(data=b"", eof=True, error=None):
    reader = asyncio.StreamReader(limit=64)
    reader.feed_data(data)
    if error:
        reader.set_exception(error)
    elif eof:
        reader.feed_eof()
    return reader


def test_engine_io_reads_writes_and_closes():
    async def main():
        writer = Writer()
        engine = EngineIO(engine_reader(b"ab\r\ncdefg"), writer)
        assert await engine.readuntil(b"\r\n") == b"ab\r\n"
        assert await engine.readexactly(2) == b"cd"
        assert await engine.read(10) == b"efg"
        await engine.send(b"req")
        assert writer.data == b"req"
        engine.close()
        assert writer.closed
        assert isinstance(engine.error("m"), EngineFailed) and str(engine.error("m")) == "m"
    run(main)


def test_engine_io_failures_are_engine_failed():
    async def main():
        with pytest.raises(EngineFailed, match=r"^reading from the engine: IncompleteReadError"):
            await EngineIO(engine_reader(b"ab"), Writer()).readuntil(b"\r\n")
        with pytest.raises(EngineFailed, match=r"^reading from the engine: LimitOverrunError"):
            await EngineIO(engine_reader(b"x" * 100, eof=False), Writer()).readuntil(b"\r\n")
        with pytest.raises(EngineFailed, match=r"^reading from the engine: ConnectionResetError"):
            await EngineIO(engine_reader(error=ConnectionResetError()), Writer()).readuntil(b"\r\n")
        with pytest.raises(EngineFailed, match=r"^reading from the engine: IncompleteReadError"):
            await EngineIO(engine_reader(b"ab"), Writer()).readexactly(3)
        with pytest.raises(EngineFailed, match=r"^reading from the engine: ConnectionResetError"):
            await EngineIO(engine_reader(error=ConnectionResetError()), Writer()).readexactly(3)
        with pytest.raises(EngineFailed, match=r"^reading from the engine: ConnectionResetError\('r'\)$"):
            await EngineIO(engine_reader(error=ConnectionResetError("r")), Writer()).read(3)
        with pytest.raises(EngineFailed, match=r"^writing to the engine: BrokenPipeError\('p'\)$"):
            await EngineIO(engine_reader(), Writer(drain_error=BrokenPipeError("p"))).send(b"x")
    run(main)


# --- linger_and_close ----------------------------------------------------------------------------

def test_linger_half_closes_drains_then_closes():
    async def main():
        reader, writer = fed(b"x" * (3 * 64 * 1024)), Writer()
        await linger_and_close(reader, writer)
        assert writer.eof_written and writer.closed and reader.at_eof()
    run(main)


def test_linger_without_half_close_support_still_drains_and_closes():
    async def main():
        reader, writer = fed(b"rest"), Writer(eof_ok=False)
        await linger_and_close(reader, writer)
        assert not writer.eof_written and writer.closed and reader.at_eof()
    run(main)


def test_linger_gives_up_after_its_time(monkeypatch):
    monkeypatch.setattr(streams, "LINGER_S", SHORT)

    async def main():
        reader, writer = fed(b"", eof=False), Writer()
        await asyncio.wait_for(linger_and_close(reader, writer), 5)
        assert writer.eof_written and writer.closed
    run(main)


def test_linger_closes_even_when_half_close_fails():
    async def main():
        reader, writer = fed(b"", eof=False), Writer(eof_error=ConnectionResetError())
        await asyncio.wait_for(linger_and_close(reader, writer), 5)
        assert writer.closed
    run(main)


# --- sockets -------------------------------------------------------------------------------------

class SocketOnly:
    def __init__(self, sock):
        self.sock = sock

    def get_extra_info(self, name):
        return self.sock if name == "socket" else None


def tcp_pair(family=socket.AF_INET, host="127.0.0.1"):
    listener = socket.create_server((host, 0), family=family)
    client = socket.create_connection(listener.getsockname()[:2])
    accepted, _ = listener.accept()
    listener.close()
    return client, accepted


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_set_nodelay_on_tcp_sockets(family, host):
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    client, accepted = tcp_pair(family, host)
    with client, accepted:
        accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        set_nodelay(SocketOnly(accepted))
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_set_nodelay_leaves_other_sockets_alone():
    left, right = socket.socketpair()
    with left, right:
        set_nodelay(SocketOnly(left))   # a Unix socket has no TCP_NODELAY: setting it would raise
    set_nodelay(SocketOnly(None))


def test_engine_socket_connects_with_a_small_receive_buffer():
    listener = socket.create_server(("127.0.0.1", 0))
    address = socket.getaddrinfo("127.0.0.1", listener.getsockname()[1], type=socket.SOCK_STREAM)[0]

    async def main():
        return await engine_socket(address)
    sock = run(main)
    with sock, listener:
        # Linux doubles the requested size for its bookkeeping (socket(7)): 2 x 32 KiB
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 32 * 1024
        assert sock.getblocking() is False
        assert sock.getpeername() == listener.getsockname()
        assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_STREAM)


def test_engine_socket_closes_its_socket_when_the_connect_fails(monkeypatch):
    made = []

    class Recording(socket.socket):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setattr(streams.socket, "socket", Recording)
        port = probe.getsockname()[1]          # bound, not listening: a connect is refused
        address = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))

        async def main():
            await engine_socket(address)
        with pytest.raises(ConnectionRefusedError):
            run(main)
    inet = [s for s in made if s.family == socket.AF_INET]   # the event loop's own are AF_UNIX
    assert len(inet) == 1 and inet[0].fileno() == -1
