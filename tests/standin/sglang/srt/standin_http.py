"""SGLang CPU STAND-IN: the HTTP layer (not the real engine, no model).

SGLang 0.5.23 serves a FastAPI app with ``uvicorn.Server`` (``loop="uvloop"``,
``http="auto"``, which picks httptools when it is installed). The stand-in does
the same, so the bundle's guard meets the parser, the router and the API-key
middleware of the real engine: FastAPI's 404/405 answers, SGLang's
``_ApiKeyASGIMiddleware`` (route level resolved by Starlette's own route
matching), Starlette's CORSMiddleware, and SGLang's uvicorn log format.

On top, and outermost, two stand-in middlewares: one adds the
``X-SGLang-Standin`` header to every answer, one writes the request journal
(``STANDIN_REQUEST_JOURNAL``).

The route handlers (standin_info.py, standin_generate.py, standin_openai.py) were written for a blocking server
(they sleep per token and write SSE events as they go). Each request runs its
handler on a thread of its own; an ``Exchange`` hands the handler's answer,
or its stream of events, back to the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import sys
import threading
from typing import Any, Callable, Dict, Iterable, Optional
from urllib.parse import parse_qs, urlparse

import fastapi
import starlette
import uvicorn
import uvloop
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Match, Mount

logger = logging.getLogger("sglang.srt.standin")

NOTICE = "SGLang CPU STAND-IN (not the real engine, no model)"
STANDIN_HEADER = "X-SGLang-Standin"
STANDIN_HEADER_VALUE = "cpu-stand-in; deterministic placeholder text; not a model"

HTTP_PARSERS = ("httptools", "h11")
DEFAULT_HTTP_PARSER = "httptools"  # what uvicorn's http="auto" picks in SGLang's image
LOOP = "uvloop"                    # SGLang passes loop="uvloop"

# Auth levels (sglang/srt/utils/auth.py AuthLevel), as the route table spells them.
NORMAL = "normal"
ADMIN_OPTIONAL = "admin_optional"


# ---------------------------------------------------------------------------
# Stand-in knobs of the HTTP layer
# ---------------------------------------------------------------------------
def http_parser_from_env(environ=os.environ) -> str:
    """STANDIN_HTTP: the uvicorn HTTP parser, so attack suites can run against both."""
    raw = (environ.get("STANDIN_HTTP") or "").strip()
    if not raw:
        return DEFAULT_HTTP_PARSER
    if raw not in HTTP_PARSERS:
        sys.stderr.write(f"{NOTICE}: STANDIN_HTTP={raw!r} must be one of {', '.join(HTTP_PARSERS)}\n")
        raise SystemExit(1)
    return raw


def http_stack_line(parser: str) -> str:
    """The stand-in's second log line: which parser and loop answer, with versions."""
    parser_module = __import__(parser)
    return (f"{NOTICE}: HTTP served by FastAPI {fastapi.__version__} (Starlette "
            f"{starlette.__version__}) on uvicorn {uvicorn.__version__}, http={parser} "
            f"{parser_module.__version__}, loop={LOOP} {uvloop.__version__}")


class RequestJournal:
    """STANDIN_REQUEST_JOURNAL: one JSON line per request that reached the app.

    Tests read it to see what the engine itself received behind the guard. It never
    holds a header value or a key: only whether the Authorization header matched."""

    def __init__(self, path: str):
        self.lock = threading.Lock()
        try:
            self.file = open(path, "a", encoding="utf-8", buffering=1)
        except OSError as e:
            sys.stderr.write(f"{NOTICE}: STANDIN_REQUEST_JOURNAL={path!r} cannot be opened: {e}\n")
            raise SystemExit(1) from None

    @classmethod
    def from_env(cls, environ=os.environ) -> Optional["RequestJournal"]:
        path = environ.get("STANDIN_REQUEST_JOURNAL")
        return cls(path) if path else None

    def write(self, entry: Dict[str, Any]):
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        with self.lock:
            self.file.write(line + "\n")


# ---------------------------------------------------------------------------
# Auth: sglang/srt/utils/auth.py (NORMAL and ADMIN_OPTIONAL; 0.5.23 has no ADMIN_FORCE route)
# ---------------------------------------------------------------------------
def route_auth_level(fastapi_app: FastAPI, scope) -> str:
    """auth._get_auth_level_from_app_and_scope: the level of the first full (path and
    method) match; NORMAL otherwise, e.g. for a wrong method or an unknown path."""
    for route in fastapi_app.router.routes:
        try:
            match, child_scope = route.matches(scope)
        except Exception:
            continue
        if match == Match.FULL:
            endpoint = child_scope.get("endpoint") or getattr(route, "endpoint", None)
            return getattr(endpoint, "_auth_level", NORMAL)
    return NORMAL


def key_for_level(level: str, api_key: Optional[str], admin_api_key: Optional[str]) -> Optional[str]:
    """The key a route of this level asks for; None when it asks for none."""
    if level == ADMIN_OPTIONAL:
        return admin_api_key or api_key or None
    return api_key or None


def bearer_matches(authorization: Optional[str], expected: str) -> bool:
    """`Bearer <key>`: scheme case-insensitive, split on the first space, constant time."""
    if not authorization:
        return False
    parts = authorization.split(" ", 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return False
    return hmac.compare_digest(parts[1].encode("utf-8"), expected.encode("utf-8"))


def auth_exempt(method: str, path: str) -> bool:
    # Probes and Prometheus scrapes never carry a key; matched by prefix, as in SGLang.
    return method == "OPTIONS" or path.startswith(("/health", "/ready", "/metrics"))


class ApiKeyMiddleware:
    """SGLang's _ApiKeyASGIMiddleware: 401 {"error":"Unauthorized"} before routing,
    so unknown paths and wrong methods are refused too."""

    def __init__(self, app, *, api_key, admin_api_key, fastapi_app):
        self.app = app
        self.api_key = api_key
        self.admin_api_key = admin_api_key
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope, receive=receive)
        if not self._allowed(request, scope):
            response = JSONResponse({"error": "Unauthorized"}, status_code=401)
            return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def _allowed(self, request: Request, scope) -> bool:
        if auth_exempt(request.method, request.url.path):
            return True
        level = route_auth_level(self.fastapi_app, scope)
        key = key_for_level(level, self.api_key, self.admin_api_key)
        return key is None or bearer_matches(request.headers.get("Authorization"), key)


# ---------------------------------------------------------------------------
# Stand-in middlewares (outermost)
# ---------------------------------------------------------------------------
class StandinHeaderMiddleware:
    """Names the stand-in on every answer, including 401, 404 and 405."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def tagged_send(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((STANDIN_HEADER.lower().encode(), STANDIN_HEADER_VALUE.encode()))
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, tagged_send)


class JournalMiddleware:
    """Writes one journal line per request, after its answer, before any auth."""

    def __init__(self, app, *, journal: RequestJournal, fastapi_app, api_key=None,
                 admin_api_key=None):
        self.app = app
        self.journal = journal
        self.fastapi_app = fastapi_app
        self.api_key = api_key
        self.admin_api_key = admin_api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = {"status": None, "body_bytes": 0}

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                seen["body_bytes"] += len(message.get("body", b""))
            return message

        async def status_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, status_send)
        except BaseException:
            # ServerErrorMiddleware, outside this one, answers 500 unless a stream had begun.
            seen["status"] = seen["status"] or 500
            raise
        finally:
            self.journal.write(self._entry(scope, seen))

    def _entry(self, scope, seen) -> Dict[str, Any]:
        raw_path = scope.get("raw_path")
        return {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": raw_path.decode("latin-1") if raw_path is not None else None,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "http_version": scope.get("http_version"),
            "auth": self._auth(scope),
            "status": seen["status"],
            "body_bytes": seen["body_bytes"],
        }

    def _auth(self, scope) -> str:
        authorization = Request(scope).headers.get("Authorization")
        if authorization is None:
            return "none"
        level = route_auth_level(self.fastapi_app, scope)
        key = key_for_level(level, self.api_key, self.admin_api_key)
        return "valid" if key is not None and bearer_matches(authorization, key) else "invalid"


# ---------------------------------------------------------------------------
# Handlers on threads
# ---------------------------------------------------------------------------
class HTTPError(Exception):
    """Raised by a handler for an error answer (JSON unless content_type says otherwise)."""

    def __init__(self, status: int, body: Any, content_type: str = "application/json"):
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


class ClientGone(Exception):
    """The client left a stream; the handler stops and runs its clean-up."""


_END = object()


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Exchange:
    """One request as a handler sees it: its headers, and send_*/stream calls that
    may be made from the handler's thread."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop):
        self.headers = request.headers
        self.loop = loop
        self.answer: asyncio.Future = loop.create_future()
        self.answered = False  # set on the handler's thread; the future resolves later, on the loop's
        self.events: Optional[asyncio.Queue] = None
        self.client_gone = False

    def _answer(self, response: Response):
        if self.answered:
            return  # one answer per request, as a blocking server could send only one
        self.answered = True

        def resolve():
            if not self.answer.done():  # cancelled when the client left first
                self.answer.set_result(response)
        self.loop.call_soon_threadsafe(resolve)

    # ---- whole answers ----
    def send(self, status: int, body: bytes = b"", content_type: Optional[str] = None,
             headers: Optional[Dict[str, str]] = None):
        # The Content-Type is passed as given (no media_type), so no charset is added to it
        # and a body without one goes out without one, as SGLang's bare Response(...) does.
        all_headers = dict(headers or {})
        if content_type:
            all_headers["Content-Type"] = content_type
        self._answer(Response(content=body, status_code=status, headers=all_headers))

    def send_json(self, status: int, obj: Any, headers=None):
        self.send(status, _json_bytes(obj), "application/json", headers)

    def send_text(self, status: int, text: str, content_type: Optional[str] = None):
        self.send(status, text.encode("utf-8"), content_type)

    # ---- server-sent events ----
    def start_stream(self, status: int = 200):
        self.events = asyncio.Queue()
        self._answer(StreamingResponse(self._drain(), status_code=status,
                                       media_type="text/event-stream"))

    def write_event(self, data: str):
        if self.client_gone:
            raise ClientGone()
        self.loop.call_soon_threadsafe(self.events.put_nowait, data.encode("utf-8"))

    def end_stream(self):
        if self.client_gone:
            raise ClientGone()
        self.loop.call_soon_threadsafe(self.events.put_nowait, _END)

    async def _drain(self):
        try:
            while True:
                chunk = await self.events.get()
                if chunk is _END:
                    return
                yield chunk
        finally:
            # Reached early only when Starlette stops the stream: the client disconnected.
            self.client_gone = True


Handler = Callable[..., Any]


def run_handler(exchange: Exchange, handler: Handler, args: tuple, label: str):
    """The body of a handler thread: error answers for HTTPError and crashes."""
    try:
        handler(exchange, *args)
    except ClientGone:
        pass
    except HTTPError as e:
        if not exchange.answered:
            body = _json_bytes(e.body) if e.content_type == "application/json" else \
                str(e.body).encode("utf-8")
            exchange.send(e.status, body, e.content_type)
    except Exception as e:
        logger.exception(f"{NOTICE}: internal error on {label}: {e}")
        if not exchange.answered:
            exchange.send(500, b"Internal Server Error", "text/plain; charset=utf-8")
    finally:
        if exchange.events is not None:
            exchange.loop.call_soon_threadsafe(exchange.events.put_nowait, _END)
        elif not exchange.answered:
            exchange.send(500, b"Internal Server Error", "text/plain; charset=utf-8")


def route_path_of(scope) -> str:
    """The path the routes see: scope["path"] less --fastapi-root-path."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path


def make_endpoint(server, handler: Handler, level: str):
    """A FastAPI endpoint that runs `handler(exchange, server, method, path, query, raw)`
    on a thread of its own, carrying the route's auth level as SGLang's @auth_level does."""

    async def endpoint(request: Request):
        raw = await request.body()
        loop = asyncio.get_running_loop()
        exchange = Exchange(request, loop)
        path = route_path_of(request.scope)
        query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"))
        args = (server, request.method, path, query, raw)
        threading.Thread(target=run_handler, args=(exchange, handler, args,
                                                   f"{request.method} {path}"),
                         name="standin-request", daemon=True).start()
        return await exchange.answer

    endpoint._auth_level = level
    return endpoint


# ---------------------------------------------------------------------------
# Apps
# ---------------------------------------------------------------------------
def _bare_fastapi() -> FastAPI:
    # FastAPI's own /openapi.json, /docs and /redoc would describe the stand-in; they are in
    # the route table instead, answered 501 like the other routes the stand-in leaves out.
    return FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def _metrics_mount(render: Callable[[], str]) -> Mount:
    """/metrics as SGLang mounts prometheus_client's app: every path under the prefix."""

    async def metrics_app(scope, receive, send):
        if scope["method"] not in ("GET", "HEAD"):
            response = JSONResponse({"detail": "Method Not Allowed"}, status_code=405)
        else:
            response = Response(render().encode("utf-8"), status_code=200,
                                headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
        await response(scope, receive, send)

    mount = Mount("/metrics", metrics_app)
    mount.path_regex = re.compile("^/metrics(?P<path>.*)$")  # SGLang's workaround for a 307
    return mount


def _add_standin_middlewares(app: FastAPI, journal: Optional[RequestJournal], api_key=None,
                             admin_api_key=None):
    # Starlette wraps the last-added middleware outermost: the journal sees every request.
    app.add_middleware(StandinHeaderMiddleware)
    if journal is not None:
        app.add_middleware(JournalMiddleware, journal=journal, fastapi_app=app,
                           api_key=api_key, admin_api_key=admin_api_key)


def build_app(server, handlers: Dict[str, Handler], not_implemented: Callable[[str], Handler],
              routes: Iterable, journal: Optional[RequestJournal]) -> FastAPI:
    """The engine's app: SGLang 0.5.23's route table, CORS, /metrics, the API-key middleware.

    `handlers` maps a route-table path to its handler; the other routes get
    `not_implemented(table_path)`."""
    app = _bare_fastapi()
    for path, methods, level, table_path in routes:
        handler = handlers.get(table_path) or not_implemented(table_path)
        app.add_api_route(path, make_endpoint(server, handler, level), methods=list(methods),
                          include_in_schema=False)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True,
                       allow_methods=["*"], allow_headers=["*"])
    if server.enable_metrics:
        app.router.routes.append(_metrics_mount(server.metrics.render))
    if server.api_key or server.admin_api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=server.api_key,
                           admin_api_key=server.admin_api_key, fastapi_app=app)
    _add_standin_middlewares(app, journal, server.api_key, server.admin_api_key)
    return app


def build_worker_app(journal: Optional[RequestJournal]) -> FastAPI:
    """Node rank >= 1: SGLang's dummy health server (no auth, no other routes)."""
    app = _bare_fastapi()

    async def ok():
        return Response(status_code=200)

    for path in ("/health", "/health_generate", "/ping"):
        app.add_api_route(path, ok, methods=["GET"], include_in_schema=False)
    _add_standin_middlewares(app, journal)
    return app


# ---------------------------------------------------------------------------
# uvicorn, configured as SGLang 0.5.23 configures it
# ---------------------------------------------------------------------------
class UvicornAccessLogFilter(logging.Filter):
    """sglang.srt.utils.common.UvicornAccessLogFilter: drops access lines by path prefix."""

    def __init__(self, excluded_path_prefixes=None):
        super().__init__()
        self.excluded_path_prefixes = tuple(str(p) for p in excluded_path_prefixes or [] if p)

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access records carry the request line only in their message:
        # '<client> - "GET /path HTTP/1.1" 200'.
        request_line = getattr(record, "request_line", None)
        if not request_line:
            quoted = record.getMessage().split('"')
            request_line = quoted[1] if len(quoted) > 2 else ""
        parts = str(request_line).split()
        if len(parts) < 2:
            return True
        path = parts[1]
        if "://" in path:
            path = urlparse(path).path or path
        path = path.split("?", 1)[0]
        return not path.startswith(self.excluded_path_prefixes)


def set_uvicorn_logging_configs(server_args):
    """sglang.srt.utils.common.set_uvicorn_logging_configs: edits uvicorn's LOGGING_CONFIG."""
    from uvicorn.config import LOGGING_CONFIG

    LOGGING_CONFIG["formatters"]["default"]["fmt"] = "[%(asctime)s] %(levelprefix)s %(message)s"
    LOGGING_CONFIG["formatters"]["default"]["datefmt"] = "%Y-%m-%d %H:%M:%S"
    LOGGING_CONFIG["formatters"]["access"]["fmt"] = (
        '[%(asctime)s] %(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
    )
    LOGGING_CONFIG["formatters"]["access"]["datefmt"] = "%Y-%m-%d %H:%M:%S"

    prefixes = getattr(server_args, "uvicorn_access_log_exclude_prefixes", None) or []
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    prefixes = list(dict.fromkeys(p for p in prefixes if p))
    if prefixes:
        LOGGING_CONFIG.setdefault("filters", {})["sglang_uvicorn_access_path_filter"] = {
            "()": UvicornAccessLogFilter, "excluded_path_prefixes": prefixes}
        filters = LOGGING_CONFIG["handlers"]["access"].setdefault("filters", [])
        if "sglang_uvicorn_access_path_filter" not in filters:
            filters.append("sglang_uvicorn_access_path_filter")


def make_uvicorn_server(app: FastAPI, server_args, parser: str, keep_alive: float) -> uvicorn.Server:
    a = server_args
    set_uvicorn_logging_configs(a)
    config = uvicorn.Config(
        app,
        host=a.host if a.host is not None else "127.0.0.1",
        port=a.port,
        root_path=a.fastapi_root_path or "",
        log_level=str(a.log_level_http or a.log_level).lower(),
        timeout_keep_alive=keep_alive,
        loop=LOOP,
        http=parser,
        ssl_keyfile=a.ssl_keyfile,
        ssl_certfile=a.ssl_certfile,
        ssl_ca_certs=a.ssl_ca_certs,
        ssl_keyfile_password=a.ssl_keyfile_password,
    )
    return uvicorn.Server(config)
