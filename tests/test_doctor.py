"""`make doctor` (bundle/doctor.py): one line per check with its verdict and fix, exit 1 on a failure.

GPU verdicts come from recorded nvidia-smi output: the real H100/H200 machines of
tests/fixtures/gpu/, a real H200 recorded idle and busy, and folders derived from those
(tests/fixtures/doctor/README.md), played by tests/fixtures/doctor/bin/nvidia-smi. The expected
verdicts below are read off those files and the profiles' data (presets/hardware.yaml), not
computed by the code under test. Docker is played by tests/fixtures/doctor/fake-docker/ except in
the test of this very machine, where the real one answers."""
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from paths import FIXTURES, ROOT

sys.path.insert(0, str(FIXTURES / "hub"))
from fake_hub import FakeHub

DOCTOR = FIXTURES / "doctor"
LINE = re.compile(r"^(PASS|WARN|FAIL)  (.{12}) (.*)$")
TOKEN = "hf_doctorTestToken0123456789"
# model.safetensors.index.json's metadata.total_size of meta-llama/Llama-3.1-70B-Instruct on the Hub,
# and the EAGLE3 draft's size from its model card (launcher/memory.py KNOWN_DRAFT_BYTES says the same).
LLAMA_70B_BYTES = 141_107_412_992
DRAFT_BYTES = 2_810_000_000
# Llama 3.1 70B with its linear layers in FP8 (1 byte) and embeddings and norms in BF16, from the
# architecture: 80 x (2*8192*8192 + 2*8192*1024 + 3*8192*28672) + 2 x (2*128256*8192 + 161*8192).
FP8_70B_BYTES = 72_656_371_712


def gpu_dir(name: str) -> Path:
    recorded = FIXTURES / "gpu" / name
    return recorded if recorded.is_dir() else DOCTOR / "gpu" / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def host(tmp_path):
    """A host made of fixtures: run(gpus=folder, **variables) -> (exit code, {check: [(verdict, text)]}, output)."""
    tools = tmp_path / "tools"          # only what the fakes need, so that no real nvidia-smi is found
    tools.mkdir()
    for name in ("cat", "sh"):
        (tools / name).symlink_to(shutil.which(name))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    token = secrets / "hf_token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)

    def run(gpus=None, toolkit=True, docker=True, engine="20.10.24", compose="2.40.3", runtimes=None,
            extra_env=None, **variables):
        path = [str(DOCTOR / "fake-docker")] if docker else []
        if not toolkit:
            hookless = tmp_path / "docker-only"
            hookless.mkdir(exist_ok=True)
            if not (hookless / "docker").exists():
                (hookless / "docker").symlink_to(DOCTOR / "fake-docker" / "docker")
            path = [str(hookless)]
        if gpus:
            path.append(str(DOCTOR / "bin"))
        env = {"PATH": ":".join(path + [str(tools)]), "HOME": str(tmp_path), "FAKE_DOCKER_ENGINE": engine,
               "FAKE_COMPOSE": compose, "HF_CACHE": str(tmp_path / "hf"), "SECRETS_DIR": str(secrets),
               "PORT": str(free_port()), **(extra_env or {}), **variables}
        if gpus:
            env["FAKE_GPU_DIR"] = str(gpu_dir(gpus))
        if runtimes is not None:
            env["FAKE_RUNTIMES"] = json.dumps(runtimes)
        result = subprocess.run([sys.executable, "-m", "bundle.doctor"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        return result.returncode, parse(result.stdout), result.stdout + result.stderr
    run.token = token
    run.tmp = tmp_path
    return run


def parse(output: str) -> dict:
    checks = {}
    for line in output.splitlines():
        match = LINE.match(line)
        if match:
            checks.setdefault(match.group(2).strip(), []).append((match.group(1), match.group(3)))
    return checks


def verdict(checks, name) -> str:
    (found,) = checks[name]
    return found[0]


def text(checks, name) -> str:
    return checks[name][0][1]


# ---- GPUs against the profile, from recorded nvidia-smi output -------------------------------------
# fixture, HARDWARE, GPUS -> gpu count, gpu model, gpu memory, gpus busy, driver
GPU_CASES = [
    ("h200x2", "", "", "PASS PASS PASS PASS PASS"),                    # recorded, detected as h200x2
    ("h200x4", "h200x2", "", "PASS PASS PASS PASS PASS"),              # 4 GPUs, profile uses 2
    ("h200x4", "h200x2", "2,3", "PASS PASS PASS PASS PASS"),
    ("h100x1", "h100x4", "", "FAIL PASS PASS PASS PASS"),              # 1 GPU, needs 4
    ("h100x1", "h200x1", "", "PASS FAIL FAIL PASS PASS"),              # an H100 is not an H200: name, 81559 MiB
    ("h200x4", "h100x4", "", "PASS FAIL PASS PASS PASS"),              # H200s are not H100s
    ("h200x1-idle", "", "", "PASS PASS PASS PASS PASS"),               # recorded 2026-11-28
    ("h200x1-busy", "", "", "PASS PASS PASS FAIL PASS"),               # recorded: 20 GiB held by python3
    ("h200x1-busy-unseen", "", "", "PASS PASS PASS FAIL PASS"),        # derived: held, no process listed
    ("h200x2-busy", "", "", "PASS PASS PASS FAIL PASS"),               # derived: GPU 1 held
    ("h200x2-busy", "h200x1", "0", "PASS PASS PASS PASS PASS"),        # GPU 0 of it is idle
    ("h100x1-old-driver", "h100x2", "", "FAIL PASS PASS PASS FAIL"),   # derived: driver 570 < 580
    ("h200x4-wrong-model", "h200x4", "", "PASS FAIL FAIL PASS PASS"),  # derived: GPU 2 is an H100
    ("h200x4-wrong-model", "h200x2", "0,1", "PASS PASS PASS PASS PASS"),
]


@pytest.mark.parametrize("gpus,hardware,chosen,expected", GPU_CASES)
def test_gpus_against_the_profile_from_recorded_nvidia_smi(host, gpus, hardware, chosen, expected):
    code, checks, output = host(gpus=gpus, HARDWARE=hardware, GPUS=chosen)
    got = [verdict(checks, name) for name in ("gpu count", "gpu model", "gpu memory", "gpus busy", "driver")]
    assert " ".join(got) == expected, output
    assert verdict(checks, "hardware") == "PASS", output
    assert code == 1 or "FAIL" not in output


def test_a_busy_gpu_names_the_process_and_the_fix(host):
    code, checks, output = host(gpus="h200x1-busy")
    assert checks["gpus busy"] == [("FAIL", "GPU 0: 21007 MiB in use by pid 478 python3 (20998 MiB)  fix: stop "
                                            "those programs (`make down` on the port of an earlier deployment), "
                                            "or choose idle GPUs with GPUS=")]
    assert code == 1


def test_memory_in_use_without_a_listed_process_is_busy_too(host):
    """nvidia-smi in a container lists no process of the host or of other containers."""
    code, checks, output = host(gpus="h200x1-busy-unseen")
    assert text(checks, "gpus busy").startswith("GPU 0: 21007 MiB in use (by a process not visible here)")


def test_an_old_driver_fails_against_the_images_cuda_with_the_fix(host):
    code, checks, output = host(gpus="h100x1-old-driver", HARDWARE="h100x2")
    detail = text(checks, "driver")
    # The image lmsysorg/sglang:v0.5.23-cu130-runtime: CUDA 13.0, which needs the 580 branch.
    assert "driver 570.172.08" in detail and "CUDA 13.0" in detail and "needs 580+" in detail
    assert "install NVIDIA driver 580 or later" in detail


def test_the_cuda_of_a_local_image_and_of_base_image(host):
    image_env = json.dumps(["PATH=/usr/local/cuda/bin:/usr/bin", "CUDA_VERSION=13.0.1"])
    code, checks, output = host(gpus="h200x2", FAKE_IMAGE_ENV=image_env)
    assert text(checks, "driver") == ("driver 580.159.04; the image (lmsysorg/sglang:v0.5.23-cu130-runtime, "
                                      "CUDA 13.0.1) needs 580+")
    # An older CUDA image given with BASE_IMAGE=: its tag says 12.9 (575); the lane's floor, 580, stays.
    code, checks, output = host(gpus="h100x1-old-driver", HARDWARE="h100x2", BASE_IMAGE="lmsysorg/sglang:v0.5.9-cu129")
    assert text(checks, "driver").startswith("driver 570.172.08; the image (lmsysorg/sglang:v0.5.9-cu129, "
                                             "CUDA 12.9) needs 580+")


def test_a_mixed_host_names_the_odd_gpu(host):
    code, checks, output = host(gpus="h200x4-wrong-model", HARDWARE="h200x4")
    assert text(checks, "gpu model").startswith("NVIDIA H100 80GB HBM3 is not h200x4's NVIDIA H200")
    assert text(checks, "gpu memory").startswith("GPU 2 has 81559 MiB, the memory plan of h200x4 assumes 143771")


def test_the_profile_is_detected_or_the_fix_names_the_choices(host):
    code, checks, output = host(gpus="h200x2")
    assert text(checks, "hardware") == "h200x2 (detected from nvidia-smi)"
    code, checks, output = host(gpus="h100x1")          # one H100: no profile has it
    assert verdict(checks, "hardware") == "FAIL" and "1x NVIDIA H100 80GB HBM3" in text(checks, "hardware")
    assert "set HARDWARE=" in text(checks, "hardware")
    assert code == 1


def test_gpus_not_on_the_host_fail(host):
    code, checks, output = host(gpus="h200x2", HARDWARE="h200x2", GPUS="2,3")
    assert verdict(checks, "gpu count") == "FAIL" and "no GPU 2, 3 here (the host lists 0, 1)" in output


# ---- this machine, as it is ---------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this host has a GPU driver")
def test_on_this_machine_without_a_gpu_the_gpu_checks_fail_with_their_fix(tmp_path):
    env = {**os.environ, "HARDWARE": "h200x2", "PORT": str(free_port()), "HF_CACHE": str(tmp_path / "hf"),
           "SECRETS_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "bundle.doctor"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    checks = parse(result.stdout)
    assert result.returncode == 1
    assert checks["gpus"][0][0] == "FAIL" and "fix: install the NVIDIA driver" in checks["gpus"][0][1]
    assert verdict(checks, "driver") == "FAIL" and "fix: install the NVIDIA driver 580 or later" in text(checks, "driver")
    assert verdict(checks, "token") == "FAIL" and "install -D -m 600" in text(checks, "token")
    engine = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                            text=True) if shutil.which("docker") else None
    answers = engine is not None and engine.returncode == 0 and engine.stdout.strip()
    assert verdict(checks, "docker") == ("PASS" if answers else "FAIL"), result.stdout
    if answers:
        assert text(checks, "docker") == f"engine {engine.stdout.strip()}"


# ---- Docker and the toolkit ----------------------------------------------------------------------

def test_docker_and_compose_versions(host):
    code, checks, output = host(gpus="h200x2")
    assert checks["docker"] == [("PASS", "engine 20.10.24")] and checks["compose"] == [("PASS", "v2.40.3")]
    code, checks, output = host(gpus="h200x2", engine="19.03.15", compose="2.20.2")
    assert verdict(checks, "docker") == "WARN" and verdict(checks, "compose") == "WARN"
    code, checks, output = host(gpus="h200x2", compose="1.29.2")
    assert verdict(checks, "compose") == "FAIL"


def test_a_stopped_docker_engine_fails_with_the_fix(host):
    code, checks, output = host(gpus="h200x2", engine="down")
    assert verdict(checks, "docker") == "FAIL"
    assert "Is the docker daemon running?" in text(checks, "docker") and "systemctl start docker" in text(checks, "docker")
    assert code == 1


def test_compose_v2_missing_fails_with_the_fix(host):
    code, checks, output = host(gpus="h200x2", compose="missing")
    assert verdict(checks, "compose") == "FAIL" and "docker-compose-plugin" in text(checks, "compose")


def test_the_nvidia_container_toolkit(host):
    code, checks, output = host(gpus="h200x2")
    assert verdict(checks, "gpu runtime") == "PASS"
    assert str(DOCTOR / "fake-docker" / "nvidia-container-runtime-hook") in text(checks, "gpu runtime")
    code, checks, output = host(gpus="h200x2", toolkit=False)
    assert verdict(checks, "gpu runtime") == "FAIL"
    assert "nvidia-ctk runtime configure --runtime=docker" in text(checks, "gpu runtime")
    code, checks, output = host(gpus="h200x2", toolkit=False, runtimes={"nvidia": {"path": "nvidia-container-runtime"},
                                                                       "runc": {"path": "runc"}})
    assert verdict(checks, "gpu runtime") == "PASS"


def test_amd_needs_the_rocm_devices(host):
    code, checks, output = host(HARDWARE="mi300x")
    expected = "PASS" if Path("/dev/kfd").exists() and Path("/dev/dri").exists() else "FAIL"
    assert verdict(checks, "gpu runtime") == expected
    if expected == "FAIL":
        assert "/dev/kfd" in text(checks, "gpu runtime") and "amdgpu" in text(checks, "gpu runtime")


# ---- disk, shm, port, token ----------------------------------------------------------------------

def df_available(path: Path) -> int:
    """Free bytes as df sees them (not the code under test's arithmetic)."""
    out = subprocess.run(["df", "-B1", "--output=avail", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("preset,needed", [("basic", LLAMA_70B_BYTES), ("latency", FP8_70B_BYTES + DRAFT_BYTES)])
def test_free_disk_where_the_cache_lives_against_the_checkpoints(host, preset, needed):
    code, checks, output = host(gpus="h200x2", PRESET=preset)
    free = df_available(host.tmp)
    expected = "FAIL" if free < needed else "WARN" if free < needed * 1.1 else "PASS"
    assert verdict(checks, "disk") == expected, output
    assert f"needs {needed / 1e9:.1f} GB" in text(checks, "disk")


def test_a_cache_that_holds_the_checkpoint_needs_no_more_space(host):
    blobs = host.tmp / "hf" / "hub" / "models--meta-llama--Llama-3.1-70B-Instruct" / "blobs"
    blobs.mkdir(parents=True)
    with open(blobs / "shards", "wb") as sparse:      # its size, without the bytes
        sparse.truncate(LLAMA_70B_BYTES)
    with open(blobs / "0123.abcd1234.incomplete", "wb") as partial:   # not reused: not counted
        partial.truncate(10 * 2 ** 20)
    code, checks, output = host(gpus="h200x2")
    assert "needs 0.0 GB" in text(checks, "disk") and verdict(checks, "disk") == "PASS"


def test_a_checkpoint_make_download_completed_needs_no_space_and_a_partial_one_does(host):
    model = "meta-llama/Llama-3.1-70B-Instruct"
    files = {name: name.encode() * 100 for name in ("config.json", "model-00001-of-00002.safetensors",
                                                     "model-00002-of-00002.safetensors", "tokenizer.json",
                                                     "original/consolidated.00.pth")}
    hub = FakeHub({model: files}, gated={model}, token=TOKEN).start()
    try:
        env = {"PATH": os.environ["PATH"], "HOME": str(host.tmp), "HF_ENDPOINT": hub.url, "NO_PROXY": "127.0.0.1",
               "HF_CACHE": str(host.tmp / "hf"), "SECRETS_DIR": str(host.token.parent), "HARDWARE": "h200x2"}
        fetched = subprocess.run([sys.executable, "-m", "bundle.download"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=120)
        assert fetched.returncode == 0, fetched.stderr
    finally:
        hub.stop()
    code, checks, output = host(gpus="h200x2")
    assert verdict(checks, "disk") == "PASS"
    assert text(checks, "disk").endswith(f"needs 0.0 GB: {model} complete in the cache")
    snapshots = host.tmp / "hf" / "hub" / "models--meta-llama--Llama-3.1-70B-Instruct" / "snapshots"
    next(snapshots.glob("*/model-00002-of-00002.safetensors")).unlink()
    code, checks, output = host(gpus="h200x2")
    assert "complete in the cache" not in text(checks, "disk") and f"{model} 141.1 GB" in text(checks, "disk")


def test_shm_for_tensor_parallelism():
    from bundle import doctor, render
    data = render.load_data()
    two = render.resolve(data, "h200x2", "basic")
    one = render.resolve(data, "h200x1", "basic")
    assert doctor.check_shm(two, 64 * 2 ** 20).verdict == "FAIL"     # Docker's default 64 MiB
    assert "remount,size=" in doctor.check_shm(two, 64 * 2 ** 20).fix
    assert doctor.check_shm(two, 16 * 2 ** 30).verdict == "PASS"
    assert doctor.check_shm(one, 64 * 2 ** 20).verdict == "PASS"     # one GPU: no NCCL between ranks


def test_a_port_in_use_fails_with_the_fix(host):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code, checks, output = host(gpus="h200x2", PORT=str(port))
    assert checks["port"] == [("FAIL", f"127.0.0.1:{port} is in use  fix: choose another PORT=, or `make down "
                                       f"PORT={port}` if an earlier deployment holds it")]
    code, checks, output = host(gpus="h200x2", PORT=str(port))
    assert checks["port"] == [("PASS", f"127.0.0.1:{port} is free")]


def test_a_redeploy_finds_the_port_and_gpus_held_by_its_own_deployment(host):
    """make deploy on a port whose deployment runs replaces it: a warning, not a failure."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # presets/container.yaml: project_prefix llama31-sglang; compose names the project <prefix>-<port>
        running = f"llama31-sglang-{port} llama31-sglang-{port}-engine-1"
        code, checks, output = host(gpus="h200x1-busy", PORT=str(port), FAKE_RUNNING=running)
        assert verdict(checks, "port") == "WARN" and "make deploy replaces it" in text(checks, "port")
        assert verdict(checks, "gpus busy") == "WARN"
        assert f"llama31-sglang-{port}-engine-1" in text(checks, "gpus busy")
        other = f"llama31-sglang-{port + 1} llama31-sglang-{port + 1}-engine-1"   # another port's deployment
        code, checks, output = host(gpus="h200x1-busy", PORT=str(port), FAKE_RUNNING=other)
        assert verdict(checks, "port") == "FAIL" and verdict(checks, "gpus busy") == "FAIL"


def test_the_token_file_present_and_readable_by_its_owner_only(host):
    code, checks, output = host(gpus="h200x2")
    assert checks["token"] == [("PASS", f"{host.token} (mode 0600)")]
    host.token.chmod(0o644)
    code, checks, output = host(gpus="h200x2")
    assert checks["token"] == [("FAIL", f"{host.token} has mode 0644: others on this host can read the token  "
                                        f"fix: chmod 600 {host.token}")]
    host.token.write_text("")
    host.token.chmod(0o600)
    code, checks, output = host(gpus="h200x2")
    assert verdict(checks, "token") == "FAIL" and "is empty" in text(checks, "token")
    host.token.unlink()
    code, checks, output = host(gpus="h200x2")
    assert verdict(checks, "token") == "FAIL" and "is missing" in text(checks, "token")
    assert TOKEN not in output


def test_the_token_is_asked_of_the_hub_only_when_online(host):
    model = "meta-llama/Llama-3.1-70B-Instruct"
    hub = FakeHub({model: {"config.json": b"{}"}}, gated={model}, token=TOKEN).start()
    try:
        code, checks, output = host(gpus="h200x2", extra_env={"HF_ENDPOINT": hub.url, "NO_PROXY": "127.0.0.1"})
        assert "token online" not in checks and hub.requests == []
        code, checks, output = host(gpus="h200x2", ONLINE="1", extra_env={"HF_ENDPOINT": hub.url,
                                                                          "NO_PROXY": "127.0.0.1"})
        assert checks["token online"] == [("PASS", f"{model}: the token may read it")]
        assert hub.requests[-1]["path"] == f"/api/models/{model}/auth-check"
        assert hub.requests[-1]["headers"]["authorization"] == f"Bearer {TOKEN}"
        host.token.write_text("hf_someoneElsesToken\n")
        code, checks, output = host(gpus="h200x2", ONLINE="1", extra_env={"HF_ENDPOINT": hub.url,
                                                                          "NO_PROXY": "127.0.0.1"})
        assert verdict(checks, "token online") == "FAIL"
        assert f"accept the licence on https://huggingface.co/{model}" in text(checks, "token online")
        assert code == 1 and "hf_someoneElsesToken" not in output
    finally:
        hub.stop()


@pytest.fixture
def closed_port():
    """A port of 127.0.0.1 nobody listens on: bound, then let go (connecting is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts the connection (the kernel's backlog) and never answers: a Hub behind a
    firewall that swallows requests."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


class ErrorHub(threading.Thread):
    """Answers every request with this HTTP status, as a Hub in trouble does."""

    def __init__(self, status: int):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        super().__init__(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


EVERY_CHECK = {"docker", "compose", "hardware", "preset", "gpu runtime", "gpu count", "gpu model", "gpu memory",
               "gpus busy", "driver", "disk", "shm", "port", "token", "token online"}


def assert_verdicts_not_a_traceback(code, checks, output, detail):
    assert "Traceback" not in output, output
    assert set(checks) == EVERY_CHECK, output            # every check still ran and said its verdict
    (online,) = checks["token online"]                  # the preset's one checkpoint, asked once
    assert online[0] == "FAIL" and detail in online[1] and "  fix: " in online[1], online
    assert re.search(r"^\d+ failed, \d+ warning\(s\), \d+ passed$", output, re.M), output
    assert code == 1 and TOKEN not in output


def test_online_with_the_hub_refusing_connections_says_so_with_the_fix(host, closed_port):
    endpoint = f"http://127.0.0.1:{closed_port}"
    code, checks, output = host(gpus="h200x2", ONLINE="1", extra_env={"HF_ENDPOINT": endpoint})
    assert_verdicts_not_a_traceback(code, checks, output, f"the Hub at {endpoint} could not be reached "
                                                          "(ConnectError: [Errno 111] Connection refused)")
    assert "HF_ENDPOINT=" in checks["token online"][0][1]


def test_online_with_a_hub_that_never_answers_ends_after_the_hubs_own_timeout(host, silent_port):
    """huggingface_hub's client has no timeout of its own: without one, make doctor would wait forever."""
    endpoint = f"http://127.0.0.1:{silent_port}"
    started = time.monotonic()
    code, checks, output = host(gpus="h200x2", ONLINE="1", extra_env={"HF_ENDPOINT": endpoint,
                                                                      "HF_HUB_ETAG_TIMEOUT": "2"})
    assert time.monotonic() - started < 30
    assert_verdicts_not_a_traceback(code, checks, output, f"the Hub at {endpoint} could not be reached (ReadTimeout")


def test_online_with_a_malformed_hf_endpoint_names_it(host):
    code, checks, output = host(gpus="h200x2", ONLINE="1", extra_env={"HF_ENDPOINT": "huggingface.co"})
    assert_verdicts_not_a_traceback(code, checks, output, "the Hub at huggingface.co could not be reached "
                                                          "(UnsupportedProtocol")


def test_online_with_hf_hub_offline_says_the_hub_is_not_asked(host, closed_port):
    code, checks, output = host(gpus="h200x2", ONLINE="1", extra_env={"HF_HUB_OFFLINE": "1",
                                                                      "HF_ENDPOINT": f"http://127.0.0.1:{closed_port}"})
    assert_verdicts_not_a_traceback(code, checks, output, "HF_HUB_OFFLINE is set, so the Hub is not asked")
    assert "unset HF_HUB_OFFLINE" in checks["token online"][0][1]


def test_online_with_a_hub_answering_503_is_no_verdict_on_the_token(host):
    hub = ErrorHub(503)
    hub.start()
    try:
        code, checks, output = host(gpus="h200x2", ONLINE="1", extra_env={"HF_ENDPOINT": hub.url})
    finally:
        hub.server.shutdown()
        hub.server.server_close()
    assert_verdicts_not_a_traceback(code, checks, output, f"the Hub at {hub.url} answered HTTP 503")


# ---- the whole --------------------------------------------------------------------------------------

def test_a_ready_host_passes_every_check_and_exits_0(host):
    blobs = host.tmp / "hf" / "hub" / "models--meta-llama--Llama-3.1-70B-Instruct" / "blobs"
    blobs.mkdir(parents=True)
    with open(blobs / "shards", "wb") as sparse:
        sparse.truncate(LLAMA_70B_BYTES)
    code, checks, output = host(gpus="h200x2")
    assert code == 0, output
    assert {found[0] for found in sum(checks.values(), [])} == {"PASS"}, output
    assert set(checks) == {"docker", "compose", "hardware", "preset", "gpu runtime", "gpu count", "gpu model",
                           "gpu memory", "gpus busy", "driver", "disk", "shm", "port", "token"}
    assert output.rstrip().endswith("0 failed, 0 warning(s), 14 passed")


def test_make_doctor_runs_it_with_the_make_variables(host):
    env = {"PATH": f"{DOCTOR / 'fake-docker'}:{DOCTOR / 'bin'}:{os.environ['PATH']}", "HOME": str(host.tmp),
           "VENV": str(ROOT / ".venv"), "FAKE_GPU_DIR": str(gpu_dir("h200x1-busy")), "FAKE_DOCKER_ENGINE": "20.10.24",
           "FAKE_COMPOSE": "2.40.3", "HF_CACHE": str(host.tmp / "hf")}
    result = subprocess.run([shutil.which("make"), "--no-print-directory", "doctor", "HARDWARE=h200x1",
                             f"SECRETS_DIR={host.token.parent}", f"PORT={free_port()}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    checks = parse(result.stdout)
    assert result.returncode == 2 and "Error 1" in result.stderr            # make reports doctor's exit 1
    assert text(checks, "hardware") == "h200x1 (HARDWARE=)" and verdict(checks, "gpus busy") == "FAIL"
    assert verdict(checks, "token") == "PASS"


def test_a_bad_variable_is_refused_naming_it(host):
    code, checks, output = host(gpus="h200x2", PORT="80000")
    assert code == 2 and "PORT='80000': expected 1-65535" in output
    code, checks, output = host(gpus="h200x2", HF_CACHE="data/hf")
    assert code == 2 and "HF_CACHE='data/hf': expected an absolute folder" in output and not checks


def test_make_deploy_runs_the_host_checks_first_and_stops_before_rendering(tmp_path):
    """This machine has no GPU: make deploy must stop at the doctor's verdicts, having rendered nothing."""
    port = free_test_port()
    env = {k: v for k, v in os.environ.items() if k != "SKIP_DOCTOR"}
    result = subprocess.run(["make", "--no-print-directory", "deploy", "HARDWARE=h100x4", f"PORT={port}",
                             f"SECRETS_DIR={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**env, "VENV": str(ROOT / ".venv")})
    assert result.returncode != 0
    assert "checking the host (make doctor" in result.stdout
    assert re.search(r"^FAIL +gpus +no GPU found", result.stdout, re.M), result.stdout
    assert "the host checks above failed" in result.stderr
    assert not (ROOT / "deploy" / f"port-{port}").exists()


def free_test_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
