"""Behaviour tests for launcher/sglang_auth.py, written to kill mutmut's survivors (docs/mutation.md).
The oracles are the real ones: SGLang 0.5.23's decide_request_auth and Starlette's compile_path,
both installed in the test venv."""
import itertools

import pytest
from starlette.routing import compile_path

from sglang.srt.utils.auth import AuthLevel, decide_request_auth

from launcher import sglang_auth
from launcher.sglang_auth import ADMIN_FORCE, ADMIN_OPTIONAL, NORMAL, bearer_matches, decide_auth, \
    is_redacted_route, route_auth_level, starlette_path_regex

TEMPLATES = ["/flush_cache", "/v1/models/{model}", "/files/{path:path}", "/a/{x}/b/{y}",
             "/x.y/{name}", "/{first}-{second}", "/m/{Model}", "/m/{_x9}/{Z}"]
PATHS = ["/flush_cache", "/flush_cache\n", "/flush_cache/", "/flush_cachex", "/v1/models/llama",
         "/v1/models/", "/v1/models/a/b", "/files/a/b/c", "/files/", "/a/1/b/2", "/a/1/b/", "/x.y/n",
         "/xzy/n", "/p-q", "/p-", "/m/llama", "/m/{Model}", "/m/a/b", "/m/1/2", "/v1/models/llama\n", "/flush_cache\n\n", "X/flush_cache"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_path_regex_matches_like_starlette(template):
    theirs, _format, _convertors = compile_path(template)
    ours = starlette_path_regex(template)
    for path in PATHS:
        mine, real = ours.match(path), theirs.match(path)
        assert bool(mine) == bool(real), (template, path)
        if real:
            assert mine.groupdict() == real.groupdict(), (template, path)


def test_level_constants_are_sglangs():
    assert (NORMAL, ADMIN_OPTIONAL, ADMIN_FORCE) == (AuthLevel.NORMAL.value, AuthLevel.ADMIN_OPTIONAL.value,
                                                     AuthLevel.ADMIN_FORCE.value)


def concrete(template):
    path = template.replace("{path:path}", "a/b")
    while "{" in path:
        path = path[:path.index("{")] + "x" + path[path.index("}") + 1:]
    return path


def test_route_levels_need_path_and_method():
    assert sglang_auth.ADMIN_FORCE_ROUTES == ()     # SGLang 0.5.23 marks no route admin_force
    assert ("/flush_cache", "GET POST") in sglang_auth.ADMIN_OPTIONAL_ROUTES
    assert route_auth_level("POST", "/flush_cache") == ADMIN_OPTIONAL
    assert route_auth_level("GET", "/flush_cache") == ADMIN_OPTIONAL
    assert route_auth_level("HEAD", "/flush_cache") == NORMAL
    assert route_auth_level("POST", "/flush_cache/") == NORMAL
    assert route_auth_level("GET", "/v1/chat/completions") == NORMAL
    assert route_auth_level("POST", "/v1/chat/completions") == NORMAL


def test_every_listed_route_resolves_to_its_level():
    assert len(sglang_auth.ADMIN_OPTIONAL_ROUTES) == 43
    for path, methods in sglang_auth.ADMIN_OPTIONAL_ROUTES:
        for method in methods.split():
            assert route_auth_level(method, concrete(path)) == ADMIN_OPTIONAL, (method, path)
            assert route_auth_level(method, concrete(path) + "\n") == ADMIN_OPTIONAL, (method, path)
        assert route_auth_level("TRACE", concrete(path)) == NORMAL


@pytest.mark.parametrize("authorization, expected", [
    (None, False), ("", False), ("Bearer", False), ("Bearer ", False), ("Bearerk", False),
    ("Bearer k", True), ("bearer k", True), ("BEARER k", True), ("bEaReR k", True),
    ("Basic k", False), ("Bearer  k", False), ("Bearer k ", False), ("Bearer kk", False), ("Bearer K", False),
    (" Bearer k", False), ("Bearer\tk", False), ("Token k", False),
])
def test_bearer_matches_like_sglang(authorization, expected):
    assert bearer_matches(authorization, "k") is expected
    real = decide_request_auth(method="GET", path="/v1/models", authorization_header=authorization, api_key="k",
                               admin_api_key=None, auth_level=AuthLevel.NORMAL)
    assert real.allowed is expected


def test_bearer_token_is_everything_after_the_first_space():
    assert bearer_matches("Bearer a b", "a b") is True
    assert bearer_matches("Bearer a b", "b") is False
    real = decide_request_auth(method="GET", path="/v1/models", authorization_header="Bearer a b", api_key="a b",
                               admin_api_key=None, auth_level=AuthLevel.NORMAL)
    assert real.allowed is True


def test_bearer_with_non_ascii_is_refused_not_an_error():
    assert bearer_matches("Bearer \u00e9", "k") is False
    assert bearer_matches("Bearer \u00e9", "\u00e9") is False   # latin-1 bytes vs the key's UTF-8 bytes
    assert bearer_matches("Bearer \u00c3\u00a9", "\u00e9") is True


AUTHS = [None, "Bearer user", "Bearer admin", "Bearer other", "Basic user"]
KEYS = [None, "", "user"]
ADMIN_KEYS = [None, "", "admin"]
LEVELS = [(NORMAL, AuthLevel.NORMAL), (ADMIN_OPTIONAL, AuthLevel.ADMIN_OPTIONAL),
          (ADMIN_FORCE, AuthLevel.ADMIN_FORCE)]
REQUESTS = [("GET", "/v1/models"), ("POST", "/generate"), ("OPTIONS", "/flush_cache"), ("GET", "/health"),
            ("GET", "/health_generate"), ("GET", "/ready"), ("GET", "/readyz"), ("GET", "/metrics"),
            ("GET", "/metricsx"), ("GET", "/healt"), ("GET", "/v1/health"), ("POST", "/rea")]


def test_decide_auth_equals_sglang_on_every_combination():
    checked = 0
    for (method, path), auth, key, admin, (level, real_level) in itertools.product(REQUESTS, AUTHS, KEYS,
                                                                                   ADMIN_KEYS, LEVELS):
        real = decide_request_auth(method=method, path=path, authorization_header=auth, api_key=key,
                                   admin_api_key=admin, auth_level=real_level)
        expected = None if real.allowed else real.error_status_code
        assert decide_auth(method, path, auth, key, admin, level) == expected, (method, path, auth, key, admin,
                                                                                level)
        checked += 1
    assert checked == 12 * 5 * 3 * 3 * 3


def test_decide_auth_statuses_spelled_out():
    assert decide_auth("POST", "/flush_cache", "Bearer user", "user", None, ADMIN_FORCE) == 403
    assert decide_auth("POST", "/flush_cache", "Bearer user", "user", "admin", ADMIN_FORCE) == 401
    assert decide_auth("POST", "/flush_cache", "Bearer admin", "user", "admin", ADMIN_FORCE) is None
    assert decide_auth("POST", "/x", "Bearer user", "user", "admin", ADMIN_OPTIONAL) == 401
    assert decide_auth("POST", "/x", "Bearer admin", "user", "admin", ADMIN_OPTIONAL) is None
    assert decide_auth("POST", "/x", "Bearer user", "user", None, ADMIN_OPTIONAL) is None
    assert decide_auth("POST", "/x", None, None, None, ADMIN_OPTIONAL) is None
    assert decide_auth("POST", "/x", "Bearer admin", "user", "admin", NORMAL) == 401
    assert decide_auth("POST", "/x", "Bearer user", "user", "admin", NORMAL) is None
    assert decide_auth("POST", "/x", None, None, "admin", NORMAL) is None


@pytest.mark.parametrize("path, expected", [
    ("/server_info", True), ("/get_server_info", True), ("/server_info\n", True), ("/get_server_info\n", True),
    ("/server_infox", False), ("/server_info/", False), ("/v1/server_info", False), ("/", False),
    ("/get_server_info/x", False), ("server_info", False),
])
def test_redacted_routes(path, expected):
    assert is_redacted_route(path) is expected
