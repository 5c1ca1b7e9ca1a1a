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
synchronous entrypoint can start it, wait on the engine process, and stop it. Its parts:
launcher.sglang_auth (SGLang's rules), launcher.http1 (messages), launcher.streams (I/O),
launcher.credentials (engine keys, redaction).
"""
from __future__ import annotations

import asyncio
import resource
import socket
import sys
import threading
import time
from http import HTTPStatus

from launcher.credentials import EngineKeys, redact_body, secret_needles
from launcher.http1 import (JSON, PIECE, ClientGone, EngineDown, EngineFailed, NoResponse, ProtocolError,
                            Request, _error_json, client_response_head,
                            engine_request_head, parse_request, pump_body, read_body, read_response_head,
                            response_framing, simple_response)
from launcher.settings import DEFAULT_MAX_CONNECTIONS
from launcher.sglang_auth import decide_auth, is_redacted_route, route_auth_level
from launcher.streams import (ENGINE_READ_LIMIT, HEAD_TIMEOUT_S, ClientIO, ClientReader, EngineIO,
                              engine_socket, linger_and_close, set_nodelay)

KEEP, CLOSE, LINGER = "keep", "close", "linger"   # what to do with a client connection next

ENGINE_CONNECT_TIMEOUT_S = 10.0
OVERFLOW_LINGER_S = 0.5              # a connection refused by the cap: how long we drain it
REDACT_BODY_LIMIT = 32 * 1024 * 1024

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
DESCRIPTORS_PER_CONNECTION = 2
DESCRIPTORS_RESERVED = 64
LOOP_ERROR_LOG_INTERVAL_S = 10.0     # accept errors and the like: one line per interval, with a count


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
            body = redact_body(body, self._needles)
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
