"""SGLang 0.5.23's API-key rules, ported: which routes are admin routes (generated from the pinned
SGLang's source into sglang_routes.json by tools/gen_sglang_routes.py), Starlette's path matching,
the Bearer check, the exempt paths, and the routes whose answers carry SGLang's keys."""
from __future__ import annotations

import hmac
import json
import re
from pathlib import Path

NORMAL = "normal"
ADMIN_OPTIONAL = "admin_optional"
ADMIN_FORCE = "admin_force"

# Every route that the pinned SGLang marks @auth_level(...), with its methods: generated from its
# source by tools/gen_sglang_routes.py (`make generate`; CI fails when a fresh generation differs).
ROUTES_PATH = Path(__file__).with_name("sglang_routes.json")
_ROUTES = json.loads(ROUTES_PATH.read_text())
ADMIN_OPTIONAL_ROUTES: tuple[tuple[str, str], ...] = tuple(map(tuple, _ROUTES["admin_optional"]))
ADMIN_FORCE_ROUTES: tuple[tuple[str, str], ...] = tuple(map(tuple, _ROUTES["admin_force"]))


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


REDACTED_ROUTES = tuple(starlette_path_regex(p) for p in ("/server_info", "/get_server_info"))


def is_redacted_route(path: str) -> bool:
    return any(regex.match(path) for regex in REDACTED_ROUTES)

