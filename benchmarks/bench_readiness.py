"""How long after the engine is ready does Docker (and so `up --wait`, `make deploy`, the gateway)
call the container healthy? With the rendered file's own healthcheck timings, not the tests' fast ones.

    .venv/bin/python benchmarks/bench_readiness.py [RUNS] [INTERVAL]

INTERVAL (e.g. 30s, the earlier default) overrides the rendered interval through the compose
file's HEALTHCHECK_INTERVAL, for a before/after comparison.

Starts the stand-in deployment (the project's image over the CPU stand-in: a stand-in, not the
engine) RUNS times, and measures from the engine's "fired up and ready to roll" log line (SGLang's
own message) to the first time `docker inspect` reports healthy, polling every 0.1 s. Prints numbers;
asserts nothing. Needs `make provision`.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from bundle import render  # noqa: E402
from stack import Stack, build_test_images  # noqa: E402

READY_LINE = "The server is fired up and ready to roll!"


def one_run(workdir: Path) -> float:
    stack = Stack(workdir, fast_healthcheck=False)      # the rendered file's own healthcheck timings
    try:
        stack.up(wait=False)
        ready_at = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            state = stack.inspect()["State"]
            if ready_at is None:
                for line in stack.logs().splitlines():
                    if READY_LINE in line:
                        stamp = line.split("]")[0].lstrip("[")
                        ready_at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp()
            if (state.get("Health") or {}).get("Status") == "healthy" and ready_at is not None:
                return time.time() - ready_at
            time.sleep(0.1)
        raise RuntimeError("not healthy within 300 s")
    finally:
        stack.down()


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    build_test_images()
    interval = render.load_data()["container"]["healthcheck"]["interval"]
    if len(sys.argv) > 2:
        interval = os.environ["HEALTHCHECK_INTERVAL"] = sys.argv[2]
    delays = []
    for number in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            delays.append(one_run(Path(folder)))
        print(f"run {number + 1}: healthy {delays[-1]:.1f} s after the engine's ready line", flush=True)
    print(f"stand-in, healthcheck interval {interval}: median {statistics.median(delays):.1f} s, "
          f"max {max(delays):.1f} s over {runs} runs (log timestamps have 1 s resolution)")


if __name__ == "__main__":
    main()
