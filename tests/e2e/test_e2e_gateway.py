"""REPLICAS=2 end to end: the real gateway (PyPI smg, the release in presets/gateway.yaml) in front
of two engine containers rendered from the same data (CPU stand-ins in stand-in mode).

Every assertion about routing reads what each engine actually received (its request journal),
not what the gateway says it did.
"""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from stack import CANARY_API_KEY, CANARY_HF_TOKEN, STANDIN, Stack, build_gateway_test_image, run, wait_for

pytestmark = pytest.mark.skipif(not STANDIN, reason="reads the stand-in engines' request journals")

HARDWARE, PRESET, REPLICAS = "h100x4", "throughput-fp8", 2     # two TP2 FP8 engines on 4x H100
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def replicas(test_image, tmp_path_factory):
    build_gateway_test_image()
    stack = Stack(tmp_path_factory.mktemp("gateway"), hardware=HARDWARE, preset=PRESET, replicas=REPLICAS,
                  gpu_machine="h200x2")
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def chat(stack: Stack, text: str, key="default") -> requests.Response:
    body = {"model": stack.deployment.flags["model-path"], "max_tokens": 4,
            "messages": [{"role": "user", "content": text}]}
    return stack.post(CHAT, body, key=key)


def chats_received(stack: Stack) -> dict[str, int]:
    """Engine service -> how many chat requests it has answered with 200 so far."""
    return {engine: sum(1 for entry in stack.engine_journal(engine)
                        if entry["path"] == CHAT and entry["status"] == 200)
            for engine in stack.engines}


def distinct_prompt() -> str:
    # Different from the first character on: no prefix shared with any other prompt.
    return uuid.uuid4().hex + " " + "lorem ipsum dolor " * 40


def test_the_rendered_file_has_two_engines_on_disjoint_gpus_and_one_gateway(replicas):
    config = json.loads(replicas.compose("config", "--format", "json").stdout)["services"]
    assert sorted(config) == ["engine-1", "engine-2", "gateway"]
    rendered = (replicas.compose_file.read_text())
    assert '"0", "1"' in rendered and '"2", "3"' in rendered      # device_ids of engine-1 and engine-2
    assert config["gateway"]["command"][config["gateway"]["command"].index("--worker-urls") + 1:][:2] == \
        ["http://engine-1:8000", "http://engine-2:8000"]


def test_requests_reach_both_engines(replicas):
    before = chats_received(replicas)
    for _ in range(16):
        answer = chat(replicas, distinct_prompt())
        assert answer.status_code == 200, answer.text
    after = chats_received(replicas)
    grown = {engine: after[engine] - before[engine] for engine in after}
    assert sum(grown.values()) == 16, grown
    assert all(count > 0 for count in grown.values()), f"one engine got everything: {grown}"


def test_a_shared_prompt_prefix_sticks_to_one_engine(replicas):
    prefix = f"{uuid.uuid4().hex} You are a careful assistant for the operations team. " * 30
    before = chats_received(replicas)
    for number in range(8):
        assert chat(replicas, f"{prefix} question {number}").status_code == 200
    after = chats_received(replicas)
    grown = {engine: after[engine] - before[engine] for engine in after}
    assert sorted(grown.values()) == [0, 8], f"cache-aware routing split one prefix: {grown}"


def test_the_key_is_enforced_at_the_edge_and_nothing_reaches_an_engine(replicas):
    seen = {e: len(replicas.engine_journal(e)) for e in replicas.engines}
    assert chat(replicas, "no key", key=None).status_code == 401
    assert chat(replicas, "wrong key", key="sk-wrong").status_code == 401
    for engine in replicas.engines:
        # Only the gateway's own probes (GET /ready, /v1/loads, ...) arrived meanwhile.
        arrived = replicas.engine_journal(engine)[seen[engine]:]
        assert all(entry["method"] == "GET" for entry in arrived), arrived


def test_the_api_key_cannot_register_engines_or_flush_caches(replicas):
    """smg's control plane (/workers, /flush_cache) takes only the admin key; without one it is closed."""
    attempt = replicas.post("/workers", {"url": "http://169.254.169.254:80"})
    assert attempt.status_code == 401, attempt.text
    assert replicas.get("/workers").status_code == 401
    assert replicas.post("/flush_cache", {}).status_code == 401


def test_engines_are_not_published_and_the_gateway_is(replicas):
    for engine in replicas.engines:
        ports = replicas.inspect(engine)["NetworkSettings"]["Ports"] or {}
        assert all(not bindings for bindings in ports.values()), (engine, ports)
    gateway_ports = replicas.inspect("gateway")["NetworkSettings"]["Ports"]
    assert [b["HostPort"] for b in gateway_ports["8000/tcp"]] == [str(replicas.port)]
    assert "29000/tcp" not in gateway_ports or not gateway_ports["29000/tcp"]


def test_an_engine_answers_only_with_the_key_inside_the_network(replicas):
    """The second wall: a container on the deployment's network still needs the key."""
    script = ("import urllib.request, urllib.error\n"
              "try:\n"
              "    urllib.request.urlopen('http://engine-2:8000/v1/models', timeout=10); print(200)\n"
              "except urllib.error.HTTPError as err:\n"
              "    print(err.code)\n")
    assert replicas.exec("python3", "-c", script, service="gateway").stdout.strip() == "401"


def test_the_gateway_exports_its_metrics_inside_the_network(replicas):
    script = ("import urllib.request\n"
              "print(urllib.request.urlopen('http://127.0.0.1:29000/metrics', timeout=10).read().decode())\n")
    metrics = replicas.exec("python3", "-c", script, service="gateway").stdout
    assert "smg_worker_selection_total" in metrics or "smg_http_requests_total" in metrics, metrics[:2000]


@pytest.mark.parametrize("service", ["gateway", "engine-1", "engine-2"])
def test_no_secret_reaches_any_containers_config_logs_or_processes(replicas, service):
    inspected = json.dumps(replicas.inspect(service))
    logs = replicas.logs(service)
    script = ("import os\n"
              "for p in os.listdir('/proc'):\n"
              "    if p.isdigit():\n"
              "        try: print(open(f'/proc/{p}/cmdline','rb').read().replace(b'\\0', b' ').decode())\n"
              "        except OSError: pass\n"
              "        try: print(open(f'/proc/{p}/environ','rb').read().replace(b'\\0', b' ').decode())\n"
              "        except OSError: pass\n")
    processes = replicas.exec("python3", "-c", script, service=service).stdout
    assert ("smg" if service == "gateway" else "sglang.launch_server") in processes   # the scan saw the server
    for secret in (CANARY_API_KEY, CANARY_HF_TOKEN):
        assert secret not in inspected and secret not in logs and secret not in processes


def test_a_stopped_engine_leaves_rotation_and_comes_back(replicas):
    replicas.compose("stop", "engine-2")
    try:
        for _ in range(10):
            answer = chat(replicas, distinct_prompt())
            assert answer.status_code == 200, answer.text
    finally:
        replicas.compose("start", "engine-2")
    wait_for(lambda: replicas.health("engine-2") == "healthy", 120, "engine-2 healthy again")
    before = chats_received(replicas)["engine-2"]

    def engine_2_serves_again():
        assert chat(replicas, distinct_prompt()).status_code == 200
        return chats_received(replicas)["engine-2"] > before

    wait_for(engine_2_serves_again, 120, "the gateway routing to engine-2 again", interval=0.5)


def test_make_status_reports_the_gateway_readiness(replicas):
    """`bundle.deploy status` probes /readiness (smg's) on a deployment with a gateway."""
    answer = requests.get(replicas.base + "/readiness", timeout=10)
    assert answer.status_code == 200, answer.text
    assert run("docker", "inspect", "--format", "{{.State.Health.Status}}",
               replicas.container("gateway")).stdout.strip() == "healthy"


def test_make_deploy_status_bench_and_down_work_unchanged_with_replicas(test_image, tmp_path):
    """`make deploy REPLICAS=2` waits for both engines and the gateway; status, bench (through the
    gateway, with the key) and down find them by PORT= alone."""
    import sys

    from stack import ROOT, compose_override
    from test_e2e_bench import BENCH_CLIENT
    from test_e2e_make import clean_up, deploy_args, make

    build_gateway_test_image()
    port, args = deploy_args(tmp_path, lambda port: compose_override(
        port, {"BUNDLE_PREFLIGHT": "1"}, "h200x2", engines=("engine-1", "engine-2"), gateway=True))
    key_file = tmp_path / "secrets" / "api_key"
    key_file.write_text(CANARY_API_KEY + "\n")
    tokenizer = tmp_path / "tokenizer"
    run(sys.executable, str(ROOT / "tests" / "standin" / "make_tokenizer.py"), str(tokenizer), timeout=120)
    try:
        result = make("deploy", f"HARDWARE={HARDWARE}", f"PRESET={PRESET}", f"REPLICAS={REPLICAS}",
                      f"API_KEY_FILE={key_file}", *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "engine-1 healthy, engine-2 healthy, gateway healthy" in result.stdout, result.stdout
        assert f"ready: http://127.0.0.1:{port}/v1" in result.stdout
        status = make("status", *args)
        assert "HTTP 200" in status.stdout and "/readiness" in status.stdout, status.stdout
        assert status.stdout.count("healthy") >= 3, status.stdout
        bench = make("bench", *args, f"RESULTS_DIR={tmp_path / 'results'}", f"BENCH_CLIENT={BENCH_CLIENT}",
                     "BENCH_DATASET=random-ids", f"BENCH_TOKENIZER={tokenizer}", "BENCH_PROMPTS=12",
                     "BENCH_INPUT_LEN=32", "BENCH_OUTPUT_LEN=8", timeout=600)
        assert bench.returncode == 0, bench.stdout + bench.stderr
        [record] = (tmp_path / "results").glob("*/deployment.json")
        assert json.loads(record.read_text())["gateway"] is True, record.read_text()
        assert CANARY_API_KEY not in bench.stdout + bench.stderr
        down = make("down", *args)
        assert down.returncode == 0, down.stderr
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/readiness", timeout=5)
    finally:
        clean_up(port, args)
