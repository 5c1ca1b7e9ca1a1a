"""`make deploy` and `make down`, driven end to end."""
import json
import os
import re
import shutil
import subprocess

import pytest
import requests
import yaml

from stack import ROOT, STANDIN, free_port, compose_override

pytestmark = pytest.mark.skipif(not STANDIN, reason="drives the stand-in image through make")


def make(*args, timeout=300):
    env = {**os.environ, "VENV": str(ROOT / ".venv")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def deploy_args(tmp_path, override_for_port) -> tuple[int, list[str]]:
    """make variables for a deployment on a free port, with a dummy token and a test override."""
    port = free_port()
    override = override_for_port(port)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hf_token").write_text("hf_dummy\n")
    override_file = tmp_path / "override.yml"
    override_file.write_text(yaml.safe_dump(override).replace("build: null", "build: !reset null"))
    return port, [f"PORT={port}", f"SECRETS_DIR={secrets}", f"OVERRIDE={override_file}"]


def clean_up(port, args):
    make("down", *args)
    shutil.rmtree(ROOT / "deploy" / f"port-{port}", ignore_errors=True)


@pytest.fixture
def deploy_env(tmp_path, test_image):
    port, args = deploy_args(tmp_path, lambda port: compose_override(port, {"BUNDLE_PREFLIGHT": "1"}))
    yield port, args
    clean_up(port, args)


def test_make_deploy_waits_until_ready_and_prints_a_working_endpoint(deploy_env):
    port, args = deploy_env
    result = make("deploy", "HARDWARE=h100x4", "PRESET=throughput", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"ready: http://127.0.0.1:{port}/v1" in out
    assert re.search(r"\d\d:\d\d  (loading weights|HTTP server up|capturing CUDA graphs|warm-up done)", out), out
    curl = out[out.index("curl -s"):].split("\n\n")[0]
    answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert answer.returncode == 0 and json.loads(answer.stdout)["choices"][0]["message"]["content"], answer
    assert requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 200
    status = make("status", *args)
    assert "healthy" in status.stdout and "HTTP 200" in status.stdout
    down = make("down", *args)
    assert down.returncode == 0, down.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=5)


def test_make_deploy_without_gpu_support_stops_with_a_clear_message(tmp_path, test_image):
    """On these machines Docker has no NVIDIA runtime: the real GPU reservation must fail clearly."""
    port, args = deploy_args(tmp_path, lambda _port: {"services": {"engine": {
        "image": test_image, "pull_policy": "never", "build": None}}})
    try:
        result = make("deploy", "HARDWARE=h100x4", "PRESET=basic", *args)
        assert result.returncode != 0
        assert "Docker cannot give the container its GPUs" in result.stderr, result.stderr
        assert "NVIDIA Container Toolkit" in result.stderr
    finally:
        clean_up(port, args)


def test_make_deploy_without_hardware_lists_the_profiles():
    result = make("deploy", f"PORT={free_port()}")
    assert result.returncode != 0
    assert "set HARDWARE= to one of: h100x2, h100x4" in result.stderr


def test_make_deploy_refuses_a_public_bind_without_a_key(tmp_path):
    result = make("deploy", "HARDWARE=h100x4", "BIND_ADDRESS=0.0.0.0", f"PORT={free_port()}")
    assert result.returncode != 0 and "without an API key" in result.stderr
