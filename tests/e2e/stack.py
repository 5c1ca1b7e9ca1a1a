"""Bring real deployments up and down: rendered compose file + a test override, real Docker.

Stand-in mode (default): the bundle image is built FROM the CPU stand-in base, the GPU reservation
is reset, preflight reads captured nvidia-smi output. GPU mode (BUNDLE_TEST_TARGET=gpu): the real
image, the real GPUs and model, only the port and the healthcheck pace are overridden.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import requests
import yaml

from bundle import render

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
TARGET = os.environ.get("BUNDLE_TEST_TARGET", "standin")
STANDIN = TARGET == "standin"
DEBIAN_IMAGE = "bundle-debian:bookworm"
STANDIN_BASE_IMAGE = "bundle-standin-base:test"
TEST_IMAGE = os.environ.get("BUNDLE_TEST_IMAGE", "llama31-sglang-bundle:test")
# The real gateway (PyPI smg, the same release as presets/gateway.yaml), FROM a local base with it.
GATEWAY_BASE_IMAGE = "bundle-gateway-base:test"
GATEWAY_TEST_IMAGE = "llama31-sglang-gateway:test"
# Bounded waits: a stand-in is ready in seconds; a real 70B may take most of an hour cold.
READY_TIMEOUT = 120 if STANDIN else 3600
# The token must never leak either way; in GPU mode it is the real one (gated weights), unless the
# weights are already in the cache and HF_TOKEN is unset.
CANARY_HF_TOKEN = (os.environ.get("HF_TOKEN") if not STANDIN else None) or "hf_CANARYtoken" + uuid.uuid4().hex[:12]
CANARY_API_KEY = "sk-canary-" + uuid.uuid4().hex
# Inside the container: every request that reaches the stand-in engine, one JSON line each.
STANDIN_JOURNAL = "/tmp/standin-requests.jsonl"


def run(*args, check=True, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build_test_images() -> str | None:
    """The project's real Dockerfile, FROM the stand-in base in stand-in mode. Never pulls.
    In GPU mode the rendered compose file builds the real image itself (`pull_policy: build`)."""
    if not STANDIN:
        return None
    import hashlib

    standin = ROOT / "tests" / "standin"
    # The stand-in's image build has no network: its Python packages come from site-packages/,
    # which .ci/provision stamps with the hash of the requirements it installed.
    stamp = standin / "site-packages" / ".requirements.sha256"
    wanted = hashlib.sha256((standin / "requirements.txt").read_bytes()).hexdigest()
    if not stamp.is_file() or stamp.read_text().strip() != wanted:
        raise AssertionError(f"{stamp.parent} is missing or older than tests/standin/requirements.txt: "
                             "run `make provision` (bash .ci/provision) to install the stand-in's packages")
    run("docker", "build", "--pull=false", "-q", "--build-arg", f"DEBIAN_IMAGE={DEBIAN_IMAGE}",
        "-t", STANDIN_BASE_IMAGE, str(standin))
    run("docker", "build", "--pull=false", "-q", "--build-arg", f"BASE_IMAGE={STANDIN_BASE_IMAGE}",
        "-t", TEST_IMAGE, str(ROOT))
    return TEST_IMAGE


def build_gateway_test_image() -> str | None:
    """Dockerfile.gateway FROM a local Debian base that carries the real smg wheel; never pulls.
    In GPU mode the rendered compose file builds it itself (FROM the Python image in presets/gateway.yaml)."""
    if not STANDIN:
        return None
    site = ROOT / "tests" / "gateway" / "site-packages"
    wanted = render.load_data()["gateway"]["smg_version"]
    stamp = site / ".smg-version"
    if not stamp.is_file() or stamp.read_text().strip() != wanted:
        raise AssertionError(f"{site} is missing or not smg {wanted}: run `make provision` (bash .ci/provision)")
    run("docker", "build", "--pull=false", "-q", "--build-arg", f"DEBIAN_IMAGE={DEBIAN_IMAGE}",
        "-t", GATEWAY_BASE_IMAGE, str(site.parent))
    run("docker", "build", "--pull=false", "-q", "-f", str(ROOT / "Dockerfile.gateway"),
        "--build-arg", f"GATEWAY_BASE_IMAGE={GATEWAY_BASE_IMAGE}", "--build-arg", f"SMG_VERSION={wanted}",
        "-t", GATEWAY_TEST_IMAGE, str(ROOT))
    return GATEWAY_TEST_IMAGE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compose_override(port: int, environment: dict, gpu_machine: str = "h200x4", restart: str | None = None,
                     engines: tuple = ("engine",), gateway: bool = False, fast_healthcheck: bool = True) -> dict:
    """The test's changes to the rendered file: its port, the stand-in images and a fast healthcheck
    pace. `engines` are the engine services; with `gateway`, the gateway holds the port instead."""
    engine = {"environment": environment}
    if fast_healthcheck:
        # Fast pace for the stand-in; a real /health generates a token, so give it SGLang's 20 s.
        engine["healthcheck"] = ({"interval": "1s", "timeout": "5s", "retries": 2, "start_period": "600s"} if STANDIN
                                 else {"interval": "5s", "timeout": "30s", "retries": 3, "start_period": "3600s"})
    if STANDIN:
        engine.update({
            "image": TEST_IMAGE,
            "pull_policy": "never",
            "build": yaml_tag("!reset", None),
            "deploy": yaml_tag("!reset", {}),
            # These sandboxed Docker hosts refuse RLIMIT_MEMLOCK -1 (GPU hosts need it for NCCL).
            "ulimits": yaml_tag("!reset", {}),
            "volumes": yaml_tag("!override", [
                f"{FIXTURES / 'bin' / 'nvidia-smi'}:/usr/local/bin/nvidia-smi:ro",
                f"{FIXTURES / 'gpu' / gpu_machine}:/gpu:ro",
            ]),
        })
        engine["environment"] = {"STANDIN_LOAD_SECONDS": "2", "STANDIN_WARMUP_SECONDS": "2",
                                 "CUDA_VERSION": "13.0.1", "STANDIN_REQUEST_JOURNAL": STANDIN_JOURNAL,
                                 **environment}
    if restart:
        engine["restart"] = restart
    published = {"ports": yaml_tag("!override", [f"127.0.0.1:{port}:8000"])}
    services = {name: dict(engine) for name in engines}
    if not gateway:
        services[engines[0]].update(published)
        return {"services": services}
    services["gateway"] = {**published, "healthcheck": {"interval": "1s", "start_period": "600s"}}
    if STANDIN:
        services["gateway"].update({"image": GATEWAY_TEST_IMAGE, "pull_policy": "never",
                                    "build": yaml_tag("!reset", None)})
    return {"services": services}


def hardware_under_test(data) -> str:
    """Stand-in mode renders the seed's 4x H100; GPU mode the profile of the host it runs on."""
    if os.environ.get("BUNDLE_TEST_HARDWARE"):
        return os.environ["BUNDLE_TEST_HARDWARE"]
    return "h100x4" if STANDIN else render.detect_hardware(data)


class Tagged:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def yaml_tag(tag, value):
    return Tagged(tag, value)


def _represent_tagged(dumper, data):
    if data.value is None:
        return dumper.represent_scalar(data.tag, "")
    if isinstance(data.value, list):
        return dumper.represent_sequence(data.tag, data.value)
    return dumper.represent_mapping(data.tag, data.value)


yaml.SafeDumper.add_representer(Tagged, _represent_tagged)


class Stack:
    """One deployment: render + override + `docker compose` under a unique project name."""

    def __init__(self, workdir: Path, hardware=None, preset="basic", environment=None, api_key=True,
                 gpu_machine="h200x4", restart=None, params: render.Params | None = None, replicas: int = 1,
                 fast_healthcheck: bool = True):
        self.workdir = workdir
        self.port = free_port()
        self.project = f"bundletest-{uuid.uuid4().hex[:10]}"
        secrets = workdir / "secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        (secrets / "hf_token").write_text(CANARY_HF_TOKEN + "\n")
        (secrets / "api_key").write_text(CANARY_API_KEY + "\n")
        self.api_key = CANARY_API_KEY if api_key else None
        data = render.load_data()
        hardware = hardware or hardware_under_test(data)
        self.deployment = render.resolve(data, hardware, preset, replicas)
        params = params or render.Params(port=self.port, secrets_dir=str(secrets), replicas=replicas,
                                         api_key_file=str(secrets / "api_key") if api_key else None)
        self.engines = [e["name"] for e in render.engine_services(self.deployment, params.gpus)]
        self.compose_file = workdir / "docker-compose.yml"
        self.compose_file.write_text(render.render(data, self.deployment, params, self.compose_file, "test"))
        self.override_file = workdir / "override.yml"
        self.override_file.write_text(yaml.safe_dump(compose_override(
            self.port, {"BUNDLE_PREFLIGHT": "1", **(environment or {})}, gpu_machine, restart,
            engines=tuple(self.engines), gateway=replicas > 1, fast_healthcheck=fast_healthcheck)))
        self.base = f"http://127.0.0.1:{self.port}"

    def compose(self, *args, check=True, timeout=600):
        return run("docker", "compose", "-p", self.project, "-f", str(self.compose_file),
                   "-f", str(self.override_file), *args, check=check, timeout=timeout)

    def up(self, wait=True):
        args = ["up", "-d"] + (["--wait", "--wait-timeout", str(READY_TIMEOUT)] if wait else [])
        return self.compose(*args, check=wait, timeout=READY_TIMEOUT + 60)

    def down(self):
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)

    def container(self, service: str | None = None) -> str:
        return self.compose("ps", "-aq", service or self.engines[0]).stdout.strip()

    def inspect(self, service: str | None = None) -> dict:
        return json.loads(run("docker", "inspect", self.container(service)).stdout)[0]

    def health(self, service: str | None = None) -> str:
        state = self.inspect(service)["State"]
        return (state.get("Health") or {}).get("Status", "none")

    def logs(self, service: str | None = None) -> str:
        result = run("docker", "logs", self.container(service), check=False)
        return result.stdout + result.stderr

    def exec(self, *args, check=True, service: str | None = None):
        return run("docker", "exec", self.container(service), *args, check=check)

    def engine_pid(self) -> int:
        script = ("import os\n"
                  "for p in os.listdir('/proc'):\n"
                  "    if p.isdigit():\n"
                  "        try: cmd = open(f'/proc/{p}/cmdline','rb').read()\n"
                  "        except OSError: continue\n"
                  "        if b'sglang.launch_server' in cmd and b'-c' not in cmd.split(b'\\0')[:2]: print(p)\n")
        pids = self.exec("python3", "-c", script).stdout.split()
        assert pids, "no engine process in the container"
        return int(pids[0])

    def signal_engine(self, signame: str, pid: int | None = None) -> int:
        """Send a signal to the engine process from inside the container (no procps needed)."""
        pid = pid or self.engine_pid()
        self.exec("python3", "-c", f"import os, signal; os.kill({pid}, signal.{signame})")
        return pid

    def engine_journal(self, service: str | None = None) -> list[dict]:
        """What the stand-in engine received (stand-in mode only)."""
        text = self.exec("sh", "-c", f"cat {STANDIN_JOURNAL} 2>/dev/null || true", service=service).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def inside(self, script: str) -> str:
        """Run Python inside the engine container (the image has no curl)."""
        return self.exec("python3", "-c", script).stdout

    def headers(self, key: str | None = "default") -> dict:
        key = self.api_key if key == "default" else key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def get(self, path, key="default", **kwargs):
        return requests.get(self.base + path, headers=self.headers(key), timeout=30, **kwargs)

    def post(self, path, json_body, key="default", **kwargs):
        return requests.post(self.base + path, json=json_body, headers=self.headers(key), timeout=60, **kwargs)


def wait_for(condition, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
