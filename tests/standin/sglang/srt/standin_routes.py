"""SGLang CPU STAND-IN: the route table of SGLang 0.5.23's HTTP server (not the real engine).

SGLang's own routes (path, methods, auth level, in registration order) are read from the
bundle's generated ``sglang_routes.json`` (key ``routes``; tools/gen_sglang_routes.py scans
SGLang's source): ``$STANDIN_ROUTE_TABLE``, else ``sglang_routes.json`` beside the flag
catalogue (``/opt/bundle/launcher/`` in the image). Here is only what that scan cannot give:
the routes whose path comes from the environment, FastAPI's default routes, how the
``only_if`` conditions read the environment, and which stand-in handler serves which path.
Every route is registered on the stand-in's FastAPI app, so Starlette's own matching decides
404/405 and the level the API-key middleware asks for; routes without a handler answer 501.
"""

import json
import os
import sys

from sglang.srt import standin_generate, standin_info, standin_openai
from sglang.srt.server_args import catalogue_path
from sglang.srt.standin_http import NORMAL, NOTICE

# Routes whose path SGLang reads from the environment at import time: (default path, methods,
# env var). The scan leaves them out, as their path is no literal; they are all NORMAL.
ENV_ROUTES = [
    ("/api/chat", ("POST",), "SGLANG_OLLAMA_CHAT_ROUTE"),
    ("/api/generate", ("POST",), "SGLANG_OLLAMA_GENERATE_ROUTE"),
    ("/api/tags", ("GET",), "SGLANG_OLLAMA_TAGS_ROUTE"),
    ("/api/show", ("POST",), "SGLANG_OLLAMA_SHOW_ROUTE"),
    ("/vertex_generate", ("POST",), "AIP_PREDICT_ROUTE"),
]
# SGLANG_OLLAMA_ROOT_ROUTE replaces "/" with Ollama's root; the stand-in moves its "/" there.
ROOT_ROUTE_ENV = "SGLANG_OLLAMA_ROOT_ROUTE"

# FastAPI's defaults on SGLang's app (Starlette routes: GET and HEAD).
FASTAPI_DEFAULT_ROUTES = ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"]

# The module-level conditions routes sit under in http_server.py (`only_if`), as the stand-in
# reads them. An unknown one stops the stand-in: a newer SGLang needs a look.
CONDITIONS = {
    "os.environ.get('DUMPER_SERVER_PORT') == 'reuse'":
        lambda environ: environ.get("DUMPER_SERVER_PORT") == "reuse",
    "not (_ollama_root_route is not None)": lambda environ: True,   # moved instead, see above
}


def not_implemented(route_path: str):
    def handler(h, app, *_):
        h.send_json(501, {"error": {"message": (
            f"{route_path} exists in SGLang 0.5.23 but is not implemented by the {NOTICE}.")}})
    return handler


# Which stand-in handler serves which route (by its path in the table); the others answer 501.
ROUTE_HANDLERS = {
    "/ready": standin_info.h_ready,
    "/health": standin_info.h_health,
    "/health_generate": standin_info.h_health,
    "/ping": standin_info.h_ping,
    "/": standin_info.h_root,
    "/model_info": standin_info.h_model_info,
    "/get_model_info": standin_info.h_model_info,
    "/server_info": standin_info.h_server_info,
    "/get_server_info": standin_info.h_server_info,
    "/v1/models": standin_info.h_models,
    "/v1/models/{model:path}": standin_info.h_model,
    "/v1/loads": standin_info.h_loads,
    "/flush_cache": standin_info.h_flush_cache,
    "/pause_generation": standin_info.h_pause,
    "/continue_generation": standin_info.h_continue,
    "/generate": standin_generate.h_generate,
    "/v1/chat/completions": standin_openai.h_chat,
    "/v1/completions": standin_openai.h_completions,
}


def route_table_path(environ=os.environ) -> str:
    return environ.get("STANDIN_ROUTE_TABLE") or os.path.join(
        os.path.dirname(catalogue_path()), "sglang_routes.json")


def generated_routes(path: str):
    """SGLang's literal-path routes, as tools/gen_sglang_routes.py wrote them."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)["routes"]
    except (OSError, ValueError, KeyError) as e:
        sys.stderr.write(f"{NOTICE}: route table not readable at {path} ({e!r}). Set "
                         "STANDIN_ROUTE_TABLE to the bundle's launcher/sglang_routes.json.\n")
        raise SystemExit(1) from None


def build_routes(environ=os.environ):
    """(path, methods, level, table path) per route, in SGLang's registration order (the
    environment's routes and FastAPI's defaults after): the path after the env overrides,
    the table path to find the stand-in's handler by."""
    routes = []
    for route in generated_routes(route_table_path(environ)):
        condition = route.get("only_if")
        if condition is not None:
            if condition not in CONDITIONS:
                sys.stderr.write(f"{NOTICE}: the route table has a condition the stand-in does "
                                 f"not know: {condition!r} (on {route['path']})\n")
                raise SystemExit(1)
            if not CONDITIONS[condition](environ):
                continue
        path = route["path"]
        served = environ.get(ROOT_ROUTE_ENV) or path if path == "/" else path
        routes.append((served, tuple(route["methods"].split()), route["auth"], path))
    for path, methods, env in ENV_ROUTES:
        routes.append((environ.get(env) or path, methods, NORMAL, path))
    for path in FASTAPI_DEFAULT_ROUTES:
        routes.append((path, ("GET", "HEAD"), NORMAL, path))
    return routes
