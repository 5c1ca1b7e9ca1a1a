"""Time from starting entrypoint.py to handing over to the engine, without preflight.

    .venv/bin/python benchmarks/bench_entrypoint.py
Runs the real start-up path (environment of the latency preset -> checks -> guard bound -> engine
spawned) with a throw-away `sglang.launch_server` that only prints a line, in fresh interpreters
of the system python3 (as in the image), N times. Also times the optional parse check with the real
SGLang parser of the test venv. Prints numbers; asserts nothing.
"""
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from launcher import supervise  # noqa: E402
from bundle import render  # noqa: E402

FAKE_ENGINE = "import sys; print('FAKE ENGINE STARTED', flush=True)\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_start(env: dict) -> tuple[float, float]:
    """Seconds until the entrypoint announced the engine, and until the engine's first line."""
    began = time.perf_counter()
    process = subprocess.Popen(["python3", str(ROOT / "entrypoint.py")], env={**env, "PORT": str(free_port())},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    announced = None
    for line in process.stdout:
        if "starting engine" in line and announced is None:
            announced = time.perf_counter() - began
        if "FAKE ENGINE STARTED" in line:
            started = time.perf_counter() - began
            break
    process.wait(timeout=30)
    return announced, started


def main(runs: int = 20) -> None:
    deployment = render.resolve(render.load_data(), "h100x4", "latency")
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "sglang"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "launch_server.py").write_text(FAKE_ENGINE)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": tmp, **deployment.engine_env,
               "BUNDLE_PREFLIGHT": "0", "BUNDLE_PARSE_CHECK": "0"}
        results = [one_start(env) for _ in range(runs)]
    handover = [r[0] for r in results]
    first_line = [r[1] for r in results]
    began = time.perf_counter()
    supervise.check_with_engine_parser(deployment.engine_argv)
    parse_check = time.perf_counter() - began
    print(f"entrypoint start -> engine spawned (latency preset, no preflight, {runs} runs): "
          f"median {statistics.median(handover)*1000:.0f} ms, max {max(handover)*1000:.0f} ms")
    print(f"... -> the engine's first output line (its own interpreter start included): "
          f"median {statistics.median(first_line)*1000:.0f} ms")
    print(f"optional parse check with the real SGLang parser ({sys.executable}): {parse_check*1000:.0f} ms")


if __name__ == "__main__":
    main()
