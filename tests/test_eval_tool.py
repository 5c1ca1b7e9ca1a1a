"""tools/few_shot_gsm8k_with_key.py: SGLang's own GSM8K tool (from the test venv's real sglang)
through the guard, with the deployment's API key, against the CPU stand-in engine (its answers are
placeholder text, so the accuracy is meaningless; what is tested is that the run gets through the
guard and the engine's own key, and fails without the key)."""
import json
import os
import subprocess
import sys
import time

import pytest
import requests

from bundle import evaluate
from launcher import supervise
from launcher.credentials import EngineKeys
from launcher.guard import Guard
from paths import ROOT

USER_KEY = "sk-eval-user-key-0123456789"
QUESTIONS = [{"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
              "answer": "3 + 4 = 7\n#### 7"},
             {"question": "A box holds 6 eggs. How many eggs are in 2 boxes?", "answer": "6 * 2 = 12\n#### 12"}]


@pytest.fixture
def guarded_standin(tmp_path):
    keys = EngineKeys.generate()
    key_file = supervise.write_engine_key_file(keys)
    engine_port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "standin"),
           "STANDIN_FLAG_CATALOGUE": str(ROOT / "launcher" / "sglang_flags.json"), "STANDIN_LOAD_SECONDS": "0",
           "STANDIN_HEALTH_GENERATE_SECONDS": "0"}
    engine = subprocess.Popen([sys.executable, "-m", "sglang.launch_server", "--model-path", "m",
                               "--port", str(engine_port), "--skip-server-warmup", "--config", str(key_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    guard = Guard("127.0.0.1", 0, "127.0.0.1", engine_port, api_key=USER_KEY, engine_keys=keys,
                  log=lambda message: None)
    guard.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{guard.port}/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and engine.poll() is None, "the stand-in did not start"
            time.sleep(0.2)
        yield guard.port
    finally:
        guard.stop()
        engine.terminate()
        engine.wait(timeout=30)
        supervise.remove_key_file(key_file)


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_eval(tmp_path, port, key):
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    if key:
        env["OPENAI_API_KEY"] = key
    with open(ROOT / "tools" / "few_shot_gsm8k_with_key.py") as script:   # as `make eval` feeds it
        return subprocess.run([sys.executable, "-", "--port", str(port), "--data-path", str(data),
                               "--num-questions", "2", "--num-shots", "1", "--parallel", "2",
                               "--max-new-tokens", "8"], stdin=script, cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)


def test_gsm8k_runs_through_the_guard_with_the_key(tmp_path, guarded_standin):
    result = run_eval(tmp_path, guarded_standin, USER_KEY)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Accuracy:" in result.stdout and "Output throughput:" in result.stdout
    # make eval reads the tool's report as it really prints it; the stand-in answers words, never numbers
    figures = evaluate.parse_report(result.stdout)
    assert (figures["accuracy"], figures["invalid"]) == (0.0, 1.0) and figures["latency_s"] > 0
    assert (tmp_path / "tmp_output_gsm8k.txt").read_text().count("Question: ") >= 2


def test_gsm8k_without_the_key_is_refused(tmp_path, guarded_standin):
    result = run_eval(tmp_path, guarded_standin, None)
    assert result.returncode != 0
    assert "401" in result.stderr or "Unauthorized" in result.stderr
