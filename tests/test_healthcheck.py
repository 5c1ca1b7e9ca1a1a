"""The container healthcheck's two speeds: the cheap /ready at every probe (Docker runs it every 5 s),
the generating /health only once /ready says the engine serves, and then at most every
BUNDLE_HEALTHCHECK_GENERATE_SECONDS. Against a real HTTP server that records what it was asked."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from launcher import supervise
from launcher.settings import BundleSettings
from launcher.sglang_flags import Catalogue


class Engine(http.server.BaseHTTPRequestHandler):
    answers: dict = {}
    asked: list = []

    def do_GET(self):
        type(self).asked.append(self.path)
        self.send_response(type(self).answers.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def engine(tmp_path, monkeypatch):
    Engine.answers, Engine.asked = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state = tmp_path / "guard.json"
    state.write_text(json.dumps({"port": server.server_address[1]}))
    monkeypatch.setattr(supervise, "GUARD_STATE_FILE", state)
    monkeypatch.setattr(supervise, "GENERATION_STATE_FILE", tmp_path / "generated")
    yield Engine
    server.shutdown()
    server.server_close()


def check(at: float, **environ) -> int:
    settings = BundleSettings.from_environ({"BUNDLE_HEALTHCHECK_TIMEOUT": "5", **environ})
    return supervise.healthcheck(settings, {}, Catalogue.load(), now=lambda: at)


def test_while_loading_only_the_cheap_flag_is_asked(engine):
    engine.answers = {"/ready": 503, "/health": 200}
    assert check(1000.0) == 1
    assert engine.asked == ["/ready"]


def test_once_ready_one_generation_proves_the_model_answers(engine):
    engine.answers = {"/ready": 200, "/health": 200}
    assert check(1000.0) == 0
    assert engine.asked == ["/ready", "/health"]


def test_between_generations_the_probe_is_cheap_and_the_generation_repeats_after_30_s(engine):
    engine.answers = {"/ready": 200, "/health": 200}
    assert check(1000.0) == 0
    engine.asked.clear()
    assert check(1029.9) == 0
    assert engine.asked == ["/ready"]                 # 29.9 s after the generation: cheap only
    assert check(1030.0) == 0
    assert engine.asked == ["/ready", "/ready", "/health"]


def test_a_failed_generation_is_unhealthy_and_retried_at_the_next_probe(engine):
    engine.answers = {"/ready": 200, "/health": 500}
    assert check(1000.0) == 1
    engine.answers["/health"] = 200
    engine.asked.clear()
    assert check(1005.0) == 0
    assert engine.asked == ["/ready", "/health"]       # no success was noted: it generates again


def test_a_paused_engine_is_unhealthy_at_once_even_right_after_a_generation(engine):
    engine.answers = {"/ready": 200, "/health": 200}
    assert check(1000.0) == 0
    engine.answers["/ready"] = 503
    assert check(1001.0) == 1


def test_the_generation_interval_is_a_setting(engine):
    engine.answers = {"/ready": 200, "/health": 200}
    assert check(1000.0, BUNDLE_HEALTHCHECK_GENERATE_SECONDS="0") == 0
    assert check(1000.5, BUNDLE_HEALTHCHECK_GENERATE_SECONDS="0") == 0
    assert engine.asked.count("/health") == 2


def test_a_ready_only_healthcheck_never_generates(engine):
    engine.answers = {"/ready": 200, "/health": 200}
    assert check(1000.0, BUNDLE_HEALTHCHECK_PATH="/ready") == 0
    assert check(1001.0, BUNDLE_HEALTHCHECK_PATH="/ready") == 0
    assert engine.asked == ["/ready", "/ready"]


def test_a_clock_that_went_back_generates_again(engine):
    engine.answers = {"/ready": 200, "/health": 200}
    assert check(1000.0) == 0
    engine.asked.clear()
    assert check(990.0) == 0
    assert engine.asked == ["/ready", "/health"]
