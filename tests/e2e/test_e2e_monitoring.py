"""Monitoring end to end: a real Prometheus (Debian bookworm's package, in the local image that
.ci/provision-monitoring.sh builds) scrapes a stand-in deployment through the bundle's guard,
with the rendered monitoring.yml beside the rendered deployment, as `make deploy MONITORING=1`
combines them. Every expression of the generated dashboard and alert rules is evaluated through
Prometheus's HTTP API and must return data. The numbers are the stand-in's (labelled
standin="cpu-stand-in" on every series), not an engine's.

Grafana's image is used on GPU hosts only; here its service is left out (a profile that is never
enabled) and its dashboard is checked as the file Grafana would load.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from bundle import monitoring, render
from stack import (CANARY_API_KEY, READY_TIMEOUT, STANDIN, Stack, build_gateway_test_image, free_port, run,
                   wait_for)

pytestmark = pytest.mark.skipif(not STANDIN, reason="GPU mode: monitoring is checked against the stand-in here")

PROMETHEUS_TEST_IMAGE = "bundle-prometheus:bookworm"   # .ci/provision-monitoring.sh
MAX_RUNNING = 2          # ENGINE_MAX_RUNNING_REQUESTS: the stand-in reports the rest as queued
CLIENTS = 5              # concurrent streaming clients: 2 running, 3 waiting
TOKEN_DELAY_MS = 20      # the stand-in's spacing of output tokens
OUTPUT_TOKENS = 60       # per request: about 1.2 s
# The latency preset's EAGLE3 shape (presets/presets.yaml): 4 draft tokens per verify step, so
# 3 drafts per round; the stand-in accepts half of them: 1 + 0.5 * 3 tokens per step.
EXPECTED_ACCEPT_RATE = 0.5
EXPECTED_ACCEPT_LENGTH = 1 + 0.5 * (4 - 1)
DATA_TIMEOUT = 150       # the [1m] rates need two scrapes, the [5m:] subquery two evaluations
# Long enough for Prometheus (started beside the engine) to scrape the loading engine (503) and
# evaluate its rules (every 15 s, at an offset of its own) more than once before it is ready.
LOAD_SECONDS = 45
# Alerts about an engine that is not there: silent while it serves (the last tests stop it).
ABSENT_ENGINE_ALERTS = {"SGLangEngineDown", "SGLangEngineNotReady"}
# SGLang's HTTP middleware counters, which the stand-in does not export: their expressions are
# evaluated (Prometheus must accept them) but cannot return data here. Their names and labels
# are checked against SGLang's source in tests/test_monitoring.py.
STANDIN_LACKS = ("sglang:http_responses_total",)
ENGINES_ROW, GATEWAY_ROW = (title for _, title in monitoring.ROWS)


class Monitored:
    def __init__(self, stack: Stack, workdir, gateway: dict | None = None):
        self.stack = stack
        self.prometheus_port = free_port()
        self.monitoring_file = monitoring.write(
            stack.compose_file, engine_services=stack.engines, engine_port=8000, gateway=gateway, api_key=True,
            secrets_dir=workdir / "secrets", command="tests/e2e/test_e2e_monitoring.py")
        self.override_file = workdir / "monitoring-override.yml"
        self.override_file.write_text(yaml.safe_dump({"services": {
            "prometheus": {"image": PROMETHEUS_TEST_IMAGE, "pull_policy": "never"},
            # Grafana's image is pulled on GPU hosts only; a profile nobody enables leaves it out.
            "grafana": {"profiles": ["gpu-host-only"]},
        }}))
        self.base = f"http://127.0.0.1:{self.prometheus_port}"

    def compose(self, *args, check=True, timeout=600):
        files = [self.stack.compose_file, self.stack.override_file, self.monitoring_file, self.override_file]
        argv = ["docker", "compose", "-p", self.stack.project]
        for path in files:
            argv += ["-f", str(path)]
        env = {**os.environ, "PROMETHEUS_PORT": str(self.prometheus_port)}
        return run(*argv, *args, check=check, timeout=timeout, env=env)

    def query(self, expr: str) -> dict:
        answer = requests.get(f"{self.base}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", f"{expr!r}: {answer}"
        return answer["data"]

    def values(self, expr: str) -> list[float]:
        return [float(sample["value"][1]) for sample in self.query(expr)["result"]]

    def api(self, path: str) -> dict:
        return requests.get(f"{self.base}/api/v1/{path}", timeout=10).json()["data"]

    def container(self, service: str) -> str:
        return self.compose("ps", "-aq", service).stdout.strip()


class Load:
    """CLIENTS streaming chat requests at a time through the guard, until stopped."""

    def __init__(self, stack: Stack):
        self.stack, self.stop = stack, threading.Event()
        self.finished, self.errors = 0, []
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]

    def client(self):
        body = {"model": "meta-llama/Llama-3.1-70B-Instruct", "stream": True, "max_tokens": OUTPUT_TOKENS,
                "messages": [{"role": "user", "content": "Describe the weather."}]}
        while not self.stop.is_set():
            try:
                with requests.post(self.stack.base + "/v1/chat/completions", json=body, stream=True, timeout=60,
                                   headers=self.stack.headers()) as answer:
                    answer.raise_for_status()
                    for _ in answer.iter_lines():
                        pass
                self.finished += 1
            except requests.RequestException as err:
                self.errors.append(repr(err))
                time.sleep(0.2)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


@pytest.fixture(scope="module")
def monitored(test_image, tmp_path_factory):
    if run("docker", "image", "inspect", PROMETHEUS_TEST_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{PROMETHEUS_TEST_IMAGE} is missing: run bash .ci/provision-monitoring.sh (make provision)")
    workdir = tmp_path_factory.mktemp("monitoring")
    stack = Stack(workdir, preset="latency", environment={
        "ENGINE_MAX_RUNNING_REQUESTS": str(MAX_RUNNING), "STANDIN_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS),
        "STANDIN_LOAD_SECONDS": str(LOAD_SECONDS)})
    stack.project = f"bundletest-mon-{uuid.uuid4().hex[:8]}"
    setup = Monitored(stack, workdir)
    try:
        setup.compose("up", "-d", "--wait", "--wait-timeout", str(READY_TIMEOUT), timeout=READY_TIMEOUT + 60)
        wait_for(lambda: _ready(setup.base), 60, "Prometheus /-/ready")
        yield setup
    finally:
        setup.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)


def _ready(base: str) -> bool:
    try:
        return requests.get(base + "/-/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def generated_expressions(row: str = ENGINES_ROW) -> tuple[list[str], list[dict]]:
    """The expressions of the files Grafana and Prometheus load, not of their source: the
    panels of one dashboard row, and the alert rules."""
    dashboard = json.loads(monitoring.DASHBOARD_FILE.read_text())
    rules = [rule for group in yaml.safe_load(monitoring.RULES_FILE.read_text())["groups"]
             for rule in group["rules"]]
    return monitoring.dashboard_expressions(dashboard, row), rules


def alerts_pending_or_firing(setup: Monitored) -> set[str]:
    return {alert["labels"]["alertname"] for alert in setup.api("alerts")["alerts"]
            if alert["state"] in ("pending", "firing")}


def has_finite_data(setup: Monitored, expr: str) -> bool:
    values = setup.values(expr)
    return bool(values) and all(math.isfinite(value) for value in values)


def test_a_cold_start_is_not_an_engine_down(monitored):
    """The engine loaded for LOAD_SECONDS beside a running Prometheus: its rules saw it not
    scrapable (the not-ready warning went pending, as it does at once) but the page did not."""
    def history(alert: str) -> str:
        return f'max_over_time(ALERTS{{alertname="{alert}"}}[15m])'

    wait_for(lambda: monitored.values('up{job="sglang"}') == [1.0], 30, "the engine scraped")
    assert monitored.values('min_over_time(up{job="sglang"}[15m])') == [0.0], "no scrape saw the engine loading"
    assert monitored.query(history("SGLangEngineDown"))["result"] == [], "the cold start paged"
    # ... and not because the rules never ran while it loaded:
    assert monitored.values(history("SGLangEngineNotReady")), "the rules were not evaluated while the engine loaded"


def test_prometheus_scrapes_the_engine_through_the_guard(monitored):
    def engine_target():
        targets = [t for t in monitored.api("targets")["activeTargets"] if t["labels"]["job"] == "sglang"]
        return targets if targets and targets[0]["health"] == "up" else None

    target = wait_for(engine_target, 60, "the engine target up")[0]
    assert target["scrapeUrl"] == "http://engine:8000/metrics"   # the guard's port, not the engine's
    scrapes = [e for e in monitored.stack.engine_journal() if e["path"] == "/metrics"]
    assert scrapes and all(e["status"] == 200 for e in scrapes), "the scrapes did not reach the engine"
    # Every SGLang series says it comes from the stand-in.
    assert monitored.values('count({__name__=~"sglang:.+"})')[0] > 20
    assert monitored.query('{__name__=~"sglang:.+", standin!="cpu-stand-in"}')["result"] == []


def test_every_dashboard_and_alert_query_returns_data_under_load(monitored):
    panels, rules = generated_expressions()
    alerts = [rule["expr"] for rule in rules if rule["alert"] not in ABSENT_ENGINE_ALERTS]   # the last test's
    # "Growing" compares with 5 minutes earlier: first an idle queue at two steps of the rule's
    # subquery (its resolution is the evaluation interval), as before real load arrives.
    wait_for(lambda: monitored.values("count_over_time((sum(sglang:num_queue_reqs) == 0)[5m:])") >= [2.0],
             90, "an idle queue on record")
    with Load(monitored.stack) as load:
        def missing():
            return [expr for expr in panels + alerts if not has_finite_data(monitored, expr)
                    and not any(name in expr for name in STANDIN_LACKS)] or None

        deadline = time.monotonic() + DATA_TIMEOUT
        left = missing()
        while left and time.monotonic() < deadline:
            time.sleep(2)
            left = missing()
        assert not left, f"no data after {DATA_TIMEOUT} s for: {left} (load errors: {load.errors[:3]})"
        # The stand-in's model of its load, seen through Prometheus: the running batch capped at
        # --max-running-requests, the KV pool (modelled as that cap) full, the rest waiting.
        wait_for(lambda: monitored.values("sum(sglang:num_running_reqs)") == [MAX_RUNNING], 30,
                 f"{MAX_RUNNING} running requests")
        wait_for(lambda: monitored.values("max(sglang:token_usage)") == [1.0], 30, "KV usage 1.0")
        wait_for(lambda: 0 < monitored.values("sum(sglang:num_queue_reqs)")[0] <= CLIENTS - MAX_RUNNING, 30,
                 "a waiting queue")
        # Both load alerts matched at an evaluation: pending (their `for` is minutes).
        wait_for(lambda: {"SGLangKVCacheFull", "SGLangQueueGrowing"} <= alerts_pending_or_firing(monitored), 60,
                 "the KV-cache and queue alerts pending")
    assert monitored.values("avg(sglang:spec_accept_length)") == [EXPECTED_ACCEPT_LENGTH]
    assert monitored.values("avg(sglang:spec_accept_rate)") == [EXPECTED_ACCEPT_RATE]
    assert load.finished >= CLIENTS and not load.errors, load.errors[:3]


def test_alert_rules_load_and_evaluate(monitored):
    _, rules = generated_expressions()
    loaded = [rule for group in monitored.api("rules")["groups"] for rule in group["rules"]]
    assert [rule["name"] for rule in loaded] == [rule["alert"] for rule in rules]
    assert all(rule["health"] == "ok" for rule in loaded), [(r["name"], r.get("lastError")) for r in loaded]
    assert not ABSENT_ENGINE_ALERTS & alerts_pending_or_firing(monitored)


def test_the_api_key_stays_out_of_prometheus(monitored):
    config = monitored.api("status/config")["yaml"]
    assert "credentials_file: /run/secrets/api_key" in config and CANARY_API_KEY not in config
    container = monitored.container("prometheus")
    inspect = run("docker", "inspect", container).stdout
    logs = run("docker", "logs", container, check=False)
    assert CANARY_API_KEY not in inspect + logs.stdout + logs.stderr
    for path in monitored.monitoring_file.parent.iterdir():
        if path.is_file():
            assert CANARY_API_KEY not in path.read_text(), path


def test_engine_down_is_seen_by_its_alert_expression(monitored):
    _, rules = generated_expressions()
    down = next(rule["expr"] for rule in rules if rule["alert"] == "SGLangEngineDown")
    assert monitored.query(down)["result"] == []
    monitored.compose("stop", "--timeout", "20", "engine")
    result = wait_for(lambda: monitored.query(down)["result"], 60, f"{down} to return data")
    assert result[0]["metric"]["instance"] == "engine:8000"

    wait_for(lambda: ABSENT_ENGINE_ALERTS <= alerts_pending_or_firing(monitored), 60,
             "SGLangEngineDown and SGLangEngineNotReady pending")


# ---- the gateway row: smg's exporter scraped beside two engines -------------------------------

@pytest.fixture(scope="module")
def monitored_gateway(test_image, tmp_path_factory):
    if run("docker", "image", "inspect", PROMETHEUS_TEST_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{PROMETHEUS_TEST_IMAGE} is missing: run bash .ci/provision-monitoring.sh (make provision)")
    build_gateway_test_image()
    workdir = tmp_path_factory.mktemp("monitoring-gateway")
    # REPLICAS=2 as tests/e2e/test_e2e_gateway.py: two TP2 FP8 engines on 4x H100 behind smg.
    stack = Stack(workdir, hardware="h100x4", preset="throughput-fp8", replicas=2, gpu_machine="h200x2")
    stack.project = f"bundletest-mongw-{uuid.uuid4().hex[:8]}"
    setup = Monitored(stack, workdir, gateway=render.load_data()["gateway"])
    try:
        setup.compose("up", "-d", "--wait", "--wait-timeout", str(READY_TIMEOUT), timeout=READY_TIMEOUT + 60)
        wait_for(lambda: _ready(setup.base), 60, "Prometheus /-/ready")
        yield setup
    finally:
        setup.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)


def test_every_gateway_panel_returns_data_from_the_real_gateway(monitored_gateway):
    panels, _ = generated_expressions(GATEWAY_ROW)
    assert panels
    stack = monitored_gateway.stack
    body = {"model": stack.deployment.flags["model-path"], "max_tokens": 4,
            "messages": [{"role": "user", "content": "Describe the weather."}]}
    deadline, left = time.monotonic() + DATA_TIMEOUT, panels
    while left and time.monotonic() < deadline:
        for _ in range(4):
            answer = stack.post("/v1/chat/completions", {**body, "messages": [
                {"role": "user", "content": uuid.uuid4().hex + " Describe the weather."}]})
            assert answer.status_code == 200, answer.text
        left = [expr for expr in panels if not has_finite_data(monitored_gateway, expr)]
        time.sleep(1)
    assert not left, f"no data after {DATA_TIMEOUT} s for: {left}"
    # What the gateway row shows is what the engines received: both served, both healthy. smg's
    # cache-aware policy may keep sequential requests on one engine, so send them concurrently
    # (load spreads them) until the gateway's counters show both, within a bound.
    engines = [f"http://{engine}:8000" for engine in stack.engines]

    def both_served():
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: stack.post("/v1/chat/completions", {**body, "messages": [
                {"role": "user", "content": uuid.uuid4().hex + " Describe the weather. " * 20}]}), range(8)))
        assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
        served = {sample["metric"]["worker"]: float(sample["value"][1]) for sample in
                  monitored_gateway.query("sum by (worker) (smg_worker_requests_total)")["result"]}
        return served if sorted(served) == engines and all(served.values()) else None

    wait_for(both_served, 60, f"the gateway's counters showing requests to each of {engines}")
    assert monitored_gateway.values("min(smg_worker_health)") == [1.0]
    assert monitored_gateway.values('sum(rate(smg_http_responses_total{path="/v1/chat/completions",'
                                    'status_code="200"}[1m]))')[0] > 0
