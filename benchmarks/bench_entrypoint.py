"""Time from starting entrypoint.py to handing the engine its argv, without preflight.

    .venv/bin/python benchmarks/bench_entrypoint.py
Runs `entrypoint.py --print-command` (everything the start-up does before spawning the engine,
except the optional preflight and parse check) with a full latency-preset environment, N times,
in fresh interpreters, with the system python3 (as in the image). Prints numbers; asserts nothing.
"""
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bundle import render  # noqa: E402


def main(runs: int = 30) -> None:
    deployment = render.resolve(render.load_data(), "h100x4", "latency")
    env = {"PATH": "/usr/bin:/bin", **deployment.engine_env, "BUNDLE_PREFLIGHT": "0"}
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(["python3", str(ROOT / "entrypoint.py"), "--print-command"], env=env, check=True,
                       capture_output=True)
        timings.append(time.perf_counter() - began)
    baseline = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(["python3", "-c", "pass"], env=env, check=True)
        baseline.append(time.perf_counter() - began)
    print(f"entrypoint start -> engine argv ready (latency preset, {runs} runs): "
          f"median {statistics.median(timings)*1000:.0f} ms, p90 {sorted(timings)[int(runs*0.9)]*1000:.0f} ms")
    print(f"bare `python3 -c pass` on this machine: median {statistics.median(baseline)*1000:.0f} ms")


if __name__ == "__main__":
    main()
