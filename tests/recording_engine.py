"""An engine for the guard's attack tests, served the way SGLang 0.5.23 serves: a FastAPI app on
uvicorn (httptools or h11 as the HTTP parser, uvloop as the loop), behind SGLang's own API-key
middleware (`sglang.srt.utils.auth.add_api_key_middleware`, imported from the real wheel).

It is not the CPU stand-in (tests/standin/): it has only a few routes, and it writes down every
request that reaches the app (before the auth middleware runs), so that tests can assert on what
the engine actually received, not only on the status the client got.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sglang.srt.utils.auth import AuthLevel, add_api_key_middleware, auth_level

PARSERS = ("httptools", "h11")
BIG_BODY = 1024 * 1024   # GET /big: enough to fill a client's socket buffers in a few requests


@dataclass
class Received:
    """One request as the engine's ASGI app saw it."""
    method: str
    path: str
    raw_path: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    status: int | None = None
    complete: bool = False      # the whole body arrived (http.request with more_body False)

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]


@dataclass
class Journal:
    entries: list[Received] = field(default_factory=list)
    admin_calls: int = 0        # how often an admin handler really ran

    def clear(self):
        self.entries.clear()
        self.admin_calls = 0


class JournalMiddleware:
    """Outermost ASGI middleware: records the request, its body and the final status."""

    def __init__(self, app, journal: Journal):
        self.app, self.journal = app, journal

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        entry = Received(scope["method"], scope["path"], scope.get("raw_path") or b"",
                         list(scope["headers"]))
        self.journal.entries.append(entry)

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                entry.body += message.get("body", b"")
                entry.complete = not message.get("more_body", False)
            return message

        async def recording_send(message):
            if message["type"] == "http.response.start":
                entry.status = message["status"]
            await send(message)

        await self.app(scope, recording_receive, recording_send)


def build_app(journal: Journal, api_key: str | None, admin_api_key: str | None) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    @app.get("/ready")
    async def health():
        return JSONResponse(None)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "recording-engine", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.body()
        return {"object": "chat.completion", "received_bytes": len(body)}

    @app.api_route("/flush_cache", methods=["GET", "POST"])
    @auth_level(AuthLevel.ADMIN_OPTIONAL)
    async def flush_cache():
        journal.admin_calls += 1
        return JSONResponse({"flushed": True})

    @app.get("/server_info")
    async def server_info():
        return {"api_key": api_key, "admin_api_key": admin_api_key}

    @app.get("/big")
    async def big():
        return Response(b"x" * BIG_BODY, media_type="application/octet-stream")

    @app.get("/stream")
    async def stream():
        async def events():
            for i in range(3):
                yield f"data: {i}\n\n".encode()
                await asyncio.sleep(0.01)
        return StreamingResponse(events(), media_type="text/event-stream")

    add_api_key_middleware(app, api_key=api_key, admin_api_key=admin_api_key)
    return JournalMiddleware(app, journal)


class RecordingEngine:
    """uvicorn in a thread of its own, on 127.0.0.1 and an ephemeral port."""

    def __init__(self, parser: str, api_key: str | None, admin_api_key: str | None):
        self.journal = Journal()
        self.parser = parser
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        config = uvicorn.Config(build_app(self.journal, api_key, admin_api_key), http=parser,
                                loop="uvloop", log_level="warning", timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True, name=f"recording-engine-{parser}")
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn ({parser}) did not start")
            time.sleep(0.01)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self._sock.close()
