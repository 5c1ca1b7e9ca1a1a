"""One exit status per class of error, whichever host tool meets it (docs/internals.md#exit-statuses):
2 for a bad variable or data file (argparse's status for a bad flag), 1 for a host or deployment that
is not ready or a check that failed. Each case runs the tool as make runs it, `python -m bundle.X`, in a
real subprocess, with the Docker daemon unreachable: every refusal here comes before anything expensive.
The statuses are written here by hand, not read from bundle/errors.py."""
import os
import socket
import subprocess
import sys

import pytest

from paths import ROOT

USAGE, FAILED = 2, 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tool(args, tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("PORT", "HARDWARE", "PRESET", "OUT", "GPUS")}
    environ.update(DOCKER_HOST="unix:///nonexistent", HF_CACHE=str(tmp_path / "hf"), **env)
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)


# Every tool that reads PORT=, with the arguments make gives it (Makefile).
PORT_READERS = {
    "render": ["bundle.render", "render"],
    "deploy": ["bundle.deploy"],
    "status": ["bundle.deploy", "status"],
    "down": ["bundle.deploy", "compose", "down"],
    "doctor": ["bundle.doctor"],
    "download": ["bundle.download"],
    "bench": ["bundle.bench", "run"],
    "eval": ["bundle.evaluate", "run"],
}


@pytest.mark.parametrize("target", PORT_READERS)
def test_a_bad_port_is_a_usage_error_in_every_tool(target, tmp_path):
    result = tool(PORT_READERS[target], tmp_path, PORT="abc", HARDWARE="h100x4", OUT=str(tmp_path / "out.yml"),
                  SKIP_DOCTOR="1")
    assert result.returncode == USAGE, result.stderr
    assert "PORT='abc'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,env,named", [
    (["bundle.k8s", "render"], {"HARDWARE": "h100x4", "REPLICAS": "two"}, "REPLICAS='two'"),
    (["bundle.bench", "run"], {"BENCH_TARGET": "engine"}, "BENCH_TARGET=engine"),
    (["bundle.bench", "run"], {"BENCH_DATASET_PATH": "/nonexistent/sharegpt.json"}, "BENCH_DATASET_PATH="),
    (["bundle.bench", "compare"], {}, "RESULTS= is empty"),
    (["bundle.evaluate", "run"], {"EVAL_DATA": "/nonexistent/test.jsonl"}, "EVAL_DATA="),
    (["bundle.inventory"], {"INVENTORY": "", "OUT": ""}, "INVENTORY="),
], ids=["k8s-REPLICAS", "bench-BENCH_TARGET", "bench-BENCH_DATASET_PATH", "bench-compare-RESULTS", "eval-EVAL_DATA",
        "hosts-INVENTORY"])
def test_other_bad_variables_are_usage_errors(args, env, named, tmp_path):
    result = tool(args, tmp_path, PORT=str(free_port()), **env)
    assert result.returncode == USAGE, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_data_is_a_usage_error(tmp_path):
    (tmp_path / "hardware.yaml").write_text("hardware: [not, a, mapping\n")
    result = tool(["bundle.render", "--data", str(tmp_path), "presets"], tmp_path)
    assert result.returncode == USAGE, result.stderr
    assert "hardware.yaml" in result.stderr


@pytest.mark.parametrize("args,env,said", [
    # The variables are fine; the Docker engine that would say where the deployment is does not answer.
    (["bundle.bench", "run"], {}, "`docker ps` fails"),
    (["bundle.evaluate", "run"], {}, "`docker ps` fails"),
    (["bundle.deploy"], {"SKIP_DOCTOR": "1", "HARDWARE": "h100x4"}, "Docker engine does not answer"),
], ids=["bench", "eval", "deploy"])
def test_a_host_that_is_not_ready_is_a_failure(args, env, said, tmp_path):
    result = tool(args, tmp_path, PORT=str(free_port()), **env)
    assert result.returncode == FAILED, result.stderr
    assert said in result.stderr


def test_a_failed_check_is_a_failure(tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: abc}]}\n")
    result = tool(["bundle.k8s", "validate", str(tmp_path / "bad.yaml")], tmp_path)
    assert result.returncode == FAILED, result.stderr


def test_an_existing_api_key_is_a_failure_not_a_usage_error(tmp_path):
    key = tmp_path / "api_key"
    key.write_text("sk-kept\n")
    result = tool(["bundle.keys"], tmp_path, API_KEY_FILE=str(key))
    assert result.returncode == FAILED, result.stderr
    assert key.read_text() == "sk-kept\n"
