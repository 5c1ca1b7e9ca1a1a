"""The guard's two byte streams: the client's (timeouts, "went away" without reading) and the
engine's (a small receive buffer, no read timeouts: a generation may take minutes)."""
from __future__ import annotations

import asyncio
import socket

from launcher.http1 import HEAD_LIMIT, PIECE, ClientGone, EngineFailed, ProtocolError

HEAD_TIMEOUT_S = 60.0                # a client must send a complete request head within this
CLIENT_BODY_IDLE_TIMEOUT_S = 60.0    # a request body that stalls this long is abandoned
CLIENT_WRITE_TIMEOUT_S = 60.0        # a client that reads nothing of its response this long is dropped
LINGER_S = 2.0                       # how long we drain an unread request body before closing
# What one connection buffers from the engine while its client is slow: asyncio pauses reading at
# twice the stream limit, and the kernel holds about twice SO_RCVBUF. Response heads are small.
ENGINE_READ_LIMIT = 16 * 1024
ENGINE_RECEIVE_BUFFER = 32 * 1024


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


