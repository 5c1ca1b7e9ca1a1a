"""The README's first command: the top-level docker-compose.yml started by `docker compose up -d`, not by
make. `make status`, `make bench`, `make eval` and `make down` find it on its PORT= (by the Compose
project its containers carry), and with nothing on a port they say so in one line, with both ways to
start one.

The top-level file publishes the default port; on this shared Docker engine the test keeps that port
free: `-p` gives the project the name the file would have on the test's port (presets/container.yaml's
prefix, -<port>), and the override publishes that port and swaps in the stand-in image, as every e2e
test does. The file itself is the checkout's, unchanged.
"""
import os
import subprocess
import sys

import pytest
import yaml

from stack import READY_TIMEOUT, ROOT, STANDIN, compose_override, free_port, run

pytestmark = pytest.mark.skipif(not STANDIN, reason="drives the stand-in image through make")

TOP_LEVEL = ROOT / "docker-compose.yml"
BENCH_CLIENT = f"{sys.executable} {ROOT / 'tests' / 'standin' / 'run_bench_serving.py'}"


def make(*args, timeout=300):
    env = {**os.environ, "VENV": str(ROOT / ".venv")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def containers(project: str) -> list[str]:
    return run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.split()


@pytest.fixture
def started_by_compose(test_image, tmp_path):
    port = free_port()
    project = f"llama31-sglang-{port}"
    token = tmp_path / "hf_token"
    token.write_text("hf_dummy\n")
    override = compose_override(port, {"BUNDLE_PREFLIGHT": "1"})
    override["secrets"] = {"hf_token": {"file": str(token)}}   # the checkout's secrets/ may not exist
    override_file = tmp_path / "override.yml"
    override_file.write_text(yaml.safe_dump(override))
    compose = ["docker", "compose", "-p", project, "-f", str(TOP_LEVEL), "-f", str(override_file)]
    try:
        run(*compose, "up", "-d", "--wait", "--wait-timeout", str(READY_TIMEOUT), timeout=READY_TIMEOUT + 60)
        assert not (ROOT / "deploy" / f"port-{port}").exists()
        yield {"port": port, "project": project}
    finally:
        run(*compose, "down", "-v", "--remove-orphans", "--timeout", "20", check=False)


def test_make_status_bench_eval_and_down_find_the_top_level_compose_project(started_by_compose, tmp_path):
    port, project = started_by_compose["port"], started_by_compose["project"]
    status = make("status", f"PORT={port}")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "no such file" not in status.stdout + status.stderr
    first = status.stdout.splitlines()[0]
    assert first.startswith(f"deployment on PORT={port}: Compose project {project} (docker-compose.yml, "), first
    assert "healthy" in status.stdout and "readiness /ready: HTTP 200" in status.stdout, status.stdout

    tokenizer = tmp_path / "tokenizer"   # random-ids needs one; a tiny local one, nothing is downloaded
    run(sys.executable, str(ROOT / "tests" / "standin" / "make_tokenizer.py"), str(tokenizer), timeout=120)
    results = tmp_path / "results"
    bench = make("bench", f"PORT={port}", f"RESULTS_DIR={results}", f"BENCH_CLIENT={BENCH_CLIENT}",
                 "BENCH_DATASET=random-ids", f"BENCH_TOKENIZER={tokenizer}", "BENCH_INPUT_LEN=32",
                 "BENCH_OUTPUT_LEN=8", "BENCH_PROMPTS=4", timeout=600)
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    folder, = results.iterdir()
    # what the top-level file was rendered for, read from its own first line
    assert folder.name.endswith("-h100x4-basic-standin") and "bench_serving vs the seed" in bench.stdout

    # make eval reaches the same engine container (the stand-in's image has no SGLang frontend: it says so)
    evaluation = make("eval", f"PORT={port}", f"RESULTS_DIR={tmp_path / 'eval'}", "EVAL_QUESTIONS=2",
                      f"EVAL_DATA={ROOT / 'tests' / 'fixtures' / 'bench' / 'gsm8k-mini.jsonl'}")
    assert "from the engine container (engine)" in evaluation.stdout, evaluation.stdout + evaluation.stderr
    assert "EVAL_CLIENT=python3" in evaluation.stderr

    down = make("down", f"PORT={port}")
    assert down.returncode == 0, down.stdout + down.stderr
    assert containers(project) == []


def test_with_nothing_on_the_port_each_tool_says_so_in_one_line_with_both_ways_to_start_one():
    port = free_port()
    for target in ("status", "bench", "eval", "down", "logs"):
        result = make(target, f"PORT={port}")
        assert result.returncode != 0, target
        assert "no such file" not in result.stdout + result.stderr, target
        lines = [line for line in result.stderr.splitlines() if not line.startswith("make")]
        assert len(lines) == 1, (target, result.stderr)
        assert f"no deployment on PORT={port}" in lines[0], (target, lines[0])
        assert f"make deploy PORT={port}" in lines[0] and "docker compose up -d" in lines[0], (target, lines[0])
