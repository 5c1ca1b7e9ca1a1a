"""Quick checks of the SGLang CPU stand-in itself (not of the bundle).

Everything runs in subprocesses with PYTHONPATH=tests/standin, so the stand-in's
``sglang`` stub package never enters this pytest process (where the real SGLang
may be imported by other tests). They run on this interpreter: the test venv has the
stand-in's HTTP stack (tests/standin/requirements.txt, via requirements-test.txt).

The two parsers (help text, namespaces, error messages, exit codes) are compared against the
real sglang 0.5.23 of the test venv (this interpreter), or of STANDIN_REAL_SGLANG_PYTHON.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CATALOGUE = ROOT / "launcher" / "sglang_flags.json"
PY = sys.executable


def standin_env(**extra):
    env = dict(os.environ)
    env.update(PYTHONPATH=str(HERE), STANDIN_FLAG_CATALOGUE=str(CATALOGUE), PYTHONDONTWRITEBYTECODE="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_py(code, *args, env=None, timeout=60):
    return subprocess.run([PY, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=env or standin_env(), timeout=timeout, cwd=str(HERE.parent))


PARSE = """
import argparse, json, sys
from sglang.srt.server_args import ServerArgs
p = argparse.ArgumentParser(prog="sglang serve")
ServerArgs.add_cli_args(p)
argv = json.loads(sys.argv[1])
if argv == ["--help"]:
    sys.stdout.write(p.format_help()); sys.exit(0)
print(json.dumps(vars(p.parse_args(argv)), sort_keys=True, default=repr))
"""


def parse(argv, env=None):
    return run_py(PARSE, json.dumps(argv), env=env)


def test_abbreviations_and_errors_like_sglang():
    ok = parse(["--model", "m", "--tp", "4", "--max-total-tokens", "1Ki", "--context-length", "8192"])
    assert ok.returncode == 0, ok.stderr
    ns = json.loads(ok.stdout)
    assert (ns["model_path"], ns["tp_size"], ns["max_total_tokens"], ns["context_length"]) == ("m", 4, 1024, 8192)
    amb = parse(["--model-path", "m", "--pp", "2"])
    assert amb.returncode == 2
    assert "sglang serve: error: ambiguous option: --pp could match --pp-size, --pp-max-micro-batch-size, " \
           "--pp-async-batch-depth" in amb.stderr
    unk = parse(["--model-path", "m", "--cpu-offload-gigabytes", "4"])
    assert unk.returncode == 2 and "unrecognized arguments: --cpu-offload-gigabytes 4" in unk.stderr
    missing = parse([])
    assert missing.returncode == 2 and "the following arguments are required: --model-path" in missing.stderr
    dep = parse(["--model-path", "m", "--disable-cuda-graph"])
    assert dep.returncode == 0 and json.loads(dep.stdout)["disable_cuda_graph"] is True
    assert "'--disable-cuda-graph' is deprecated and will be removed in a future release." in dep.stderr


def _norm(text):
    # The catalogue sorts choices; the real parser keeps list order (and set order varies per run).
    text = re.sub(r"\{([^{}]*)\}", lambda m: "{" + ",".join(sorted(m.group(1).split(","))) + "}", text)
    return re.sub(r"\(choose from ([^)]*)\)",
                  lambda m: "(choose from " + ", ".join(sorted(m.group(1).split(", "))) + ")", text)


REAL_SGLANG_PYTHON = os.environ.get("STANDIN_REAL_SGLANG_PYTHON", sys.executable)


def test_same_parser_as_real_sglang():
    real_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cases = [["--help"], ["--model-path", "m", "--tp", "4"], ["--model-path", "m", "--pp", "2"],
             ["--model-path", "m", "--cpu-offload-gigabytes", "1"], ["--model-path", "m", "--tp-size", "x"],
             ["--model-path", "m", "--max-total-tokens", "1.5Ki"], ["--model-path", "m", "--dllm-fdfo", "--no-dllm-fdfo"],
             ["--model-path", "m", "--monokernel-backend", "amd"], ["--model-path", "m", "--log-requests-level", "9"],
             ["--model-path", "m", "--cuda-graph-backend-decode", "tc_piecewise"]]
    for argv in cases:
        mine = parse(argv)
        real = subprocess.run([REAL_SGLANG_PYTHON, "-c", PARSE, json.dumps(argv)],
                              capture_output=True, text=True, env=real_env, timeout=120, cwd="/")
        def strip(text):
            return _norm("\n".join(line for line in text.splitlines()
                                    if "Warning" not in line and "warn(" not in line))
        assert (mine.returncode, _norm(mine.stdout), strip(mine.stderr)) == \
               (real.returncode, _norm(real.stdout), strip(real.stderr)), argv


def test_text_is_deterministic_prefix_stable_and_counts_words():
    out = run_py("""
        import json
        from sglang.srt.standin_text import Generation
        a = Generation("same prompt", 10, False)
        b = Generation("same prompt", 4, False)
        c = Generation("other prompt", 10, False)
        word = a.text.split()[2]
        s = Generation("same prompt", 10, False, stop=[word])
        n = Generation("same prompt", None, False, default_max_new_tokens=128)
        print(json.dumps([a.text, b.text, c.text, a.finish, s.text, s.finish, len(a.text.split()),
                          n.finish, len(n.text.split())]))
    """)
    assert out.returncode == 0, out.stderr
    a, b, c, fin, s, sfin, words, nfin, nwords = json.loads(out.stdout)
    assert a.startswith(b) and a != c and words == 10 and fin == {"type": "length", "length": 10}
    assert sfin["type"] == "stop" and a.startswith(s) and len(s) < len(a)
    assert nfin == {"type": "stop", "matched": None} and 16 <= nwords <= 48


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError):
        return None, b""


def _post(url, headers, body):
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers=dict(headers, **{"Content-Type": "application/json"}))
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _wait_healthy(base):
    """The health codes seen until 200: None (port closed), 503 (warming up), 200."""
    seen = []
    deadline = time.time() + 30
    while time.time() < deadline:
        code, _ = _status(base + "/health")
        if not seen or seen[-1] != code:
            seen.append(code)
        if code == 200:
            break
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_lifecycle_auth_config_journal_and_sigterm(parser, tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # The keys come only through --config, as the bundle passes them; the CLI's --port wins.
    config = tmp_path / "engine.yaml"
    config.write_text("api-key: sk-unit\nadmin-api-key: sk-admin\nenable-metrics: true\nport: 1\n")
    journal = tmp_path / "journal.jsonl"
    proc = subprocess.Popen(
        [PY, "-m", "sglang.launch_server", "--model-path", "meta-llama/Llama-3.1-70B-Instruct",
         "--config", str(config), "--port", str(port)],
        env=standin_env(STANDIN_LOAD_SECONDS=1, STANDIN_WARMUP_SECONDS=0.5, STANDIN_SHUTDOWN_SECONDS=0.3,
                        STANDIN_HEALTH_GENERATE_SECONDS=0, STANDIN_HTTP=parser,
                        STANDIN_REQUEST_JOURNAL=journal),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(HERE.parent))
    try:
        seen = _wait_healthy(base)
        assert seen[0] is None and 503 in seen and seen[-1] == 200, seen
        auth = {"Authorization": "Bearer sk-unit"}
        admin = {"Authorization": "Bearer sk-admin"}
        assert _status(base + "/v1/models")[0] == 401
        assert _status(base + "/v1/models", {"Authorization": "sk-unit"})[0] == 401
        code, body = _status(base + "/v1/models", auth)
        assert code == 200 and json.loads(body)["data"][0]["id"] == "meta-llama/Llama-3.1-70B-Instruct"
        assert _status(base + "/no_such_route", auth) == (404, b'{"detail":"Not Found"}')
        assert _status(base + "/no_such_route")[0] == 401  # the auth middleware runs before routing
        code, body = _status(base + "/metrics")
        assert code == 200 and b"sglang:num_running_reqs" in body
        code, body = _status(base + "/server_info", auth)
        info = json.loads(body)
        assert code == 200 and info["api_key"] == "sk-unit"  # leaked, as real SGLang does
        assert info["port"] == port and info["launch_command"] == (
            f"--api-key sk-unit --admin-api-key sk-admin --enable-metrics --port 1 "
            f"--model-path meta-llama/Llama-3.1-70B-Instruct --port {port}")
        assert _status(base + "/flush_cache", auth)[0] == 401  # admin route: the admin key only
        assert _status(base + "/flush_cache", admin)[0] == 200
        reply = _post(base + "/v1/chat/completions", auth,
                      {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
        assert len(reply["choices"][0]["message"]["content"].split()) == 5
        assert reply["usage"]["completion_tokens"] == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    lines = log.splitlines()
    assert lines[0].startswith("SGLang CPU STAND-IN (not the real engine, no model)")
    assert f"http={parser}" in lines[1] and "loop=uvloop" in lines[1]
    for needle in ("server_args={", "'api_key': 'sk-unit'", "Load weight begin. avail mem=",
                   "Loading safetensors checkpoint shards:  50% Completed", "Load weight end.",
                   "Memory pool end.", "CUDA graph begin.", f"Uvicorn running on http://127.0.0.1:{port}",
                   '"GET /v1/models HTTP/1.1" 401 Unauthorized',
                   "The server is fired up and ready to roll!", "SIGTERM received.", "Finished server process"):
        assert needle in log, needle

    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert "sk-unit" not in journal.read_text() and "sk-admin" not in journal.read_text()
    warmup = [e for e in entries if e["path"] == "/generate"]
    assert warmup and warmup[0]["auth"] == "valid" and warmup[0]["status"] == 200 and warmup[0]["body_bytes"] > 0
    flushes = [(e["method"], e["auth"], e["status"]) for e in entries if e["path"] == "/flush_cache"]
    assert flushes == [("GET", "invalid", 401), ("GET", "valid", 200)]
    unknown = [(e["auth"], e["status"]) for e in entries if e["path"] == "/no_such_route"]
    assert unknown == [("valid", 404), ("none", 401)]
    assert {e["http_version"] for e in entries} == {"1.1"}
    assert all(e["raw_path"] == e["path"] and e["query"] == "" for e in entries)


def test_config_merge_matches_real_sglang(tmp_path):
    """--config: the stand-in's merged argv and refusals are the real SGLang 0.5.23's."""
    # One process per side: importing the real parser takes seconds.
    merge = """
        import argparse, json, sys
        from sglang.srt.server_args import ServerArgs
        from sglang.srt.utils.server_args_config_parser import ConfigArgumentMerger
        p = argparse.ArgumentParser(prog="sglang serve")
        ServerArgs.add_cli_args(p)
        for argv in json.loads(sys.argv[1]):
            try:
                print(json.dumps(ConfigArgumentMerger(p).merge_config_with_args(argv)))
            except ValueError as e:
                print("ValueError:", e)
    """
    good = tmp_path / "good.yaml"
    good.write_text("api-key: k1\nadmin-api-key: k2\ntp: 4\nenable-metrics: true\n"
                    "enable-cache-report: false\njson-model-override-args: {a: 1}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("disable-cuda-graph: true\n")
    argvs = json.dumps([["--model-path", "m", "--config", str(config), "--tp", "2"] for config in (good, bad)])
    mine = run_py(merge, argvs)
    real_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    real = subprocess.run([REAL_SGLANG_PYTHON, "-c", textwrap.dedent(merge), argvs], capture_output=True,
                          text=True, env=real_env, timeout=120, cwd="/")
    assert mine.returncode == 0 and mine.stdout == real.stdout, (mine.stderr, real.stderr)
    merged, refused = mine.stdout.splitlines()
    assert json.loads(merged)[:2] == ["--api-key", "k1"] and json.loads(merged)[-2:] == ["--tp", "2"]
    assert refused.startswith("ValueError: Unsupported config option 'disable_cuda_graph'")


@pytest.mark.parametrize("args,message", [
    (["--tp-size", "2", "--dp-size", "2", "--nnodes", "2"], "multi-node data-parallel replicas are not supported"),
    (["--tp-size", "3", "--nnodes", "2"], "tp_size must be divisible by number of nodes"),
    (["--api-key", "k", "--tokenizer-worker-num", "2"], "API key is not supported in multi-tokenizer mode"),
    (["--served-model-name", "a:b"], "served_model_name cannot contain a colon"),
])
def test_startup_checks_exit_1(args, message):
    r = subprocess.run([PY, "-m", "sglang.launch_server", "--model-path", "m", "--port", str(_free_port()), *args],
                       capture_output=True, text=True, env=standin_env(STANDIN_LOAD_SECONDS=0), timeout=30,
                       cwd=str(HERE.parent))
    assert r.returncode == 1 and f"AssertionError: {message}" in r.stderr, r.stderr[-2000:]


def test_route_table_comes_from_the_generated_json():
    code = """
        import json, os
        from sglang.srt.standin_routes import build_routes
        print(json.dumps([build_routes(os.environ), build_routes(dict(os.environ, DUMPER_SERVER_PORT="reuse",
                                                                       AIP_PREDICT_ROUTE="/predict"))]))
    """
    out = run_py(code)
    assert out.returncode == 0, out.stderr
    plain, moved = json.loads(out.stdout)
    generated = json.loads((ROOT / "launcher" / "sglang_routes.json").read_text())["routes"]
    assert [r[3] for r in plain][:3] == [g["path"] for g in generated][:3]
    assert ["/scale_elastic_ep", ["POST"], "admin_optional", "/scale_elastic_ep"] in plain
    assert not any(r[0].startswith("/dumper/") for r in plain)
    assert ["/dumper/{method}", ["POST"], "admin_optional", "/dumper/{method}"] in moved
    assert ["/predict", ["POST"], "normal", "/vertex_generate"] in moved
    missing = run_py(code, env=standin_env(STANDIN_ROUTE_TABLE="/nonexistent.json"))
    assert missing.returncode == 1 and "STANDIN_ROUTE_TABLE" in missing.stderr
