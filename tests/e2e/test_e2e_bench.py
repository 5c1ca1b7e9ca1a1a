"""`make bench`, `make bench-compare` and `make eval` against a stand-in deployment made by `make deploy`,
with an API key: every column of their tables and every file they keep.

The stand-in image has no SGLang tools (its `sglang` is a stub that serves), so SGLang's real
bench_serving and few_shot_gsm8k run from the test venv on this host (BENCH_CLIENT=/EVAL_CLIENT=),
against the published port, through the guard with the key. The numbers are the stand-in's and are
checked to be labelled so. The default path (the tools inside the engine container) is checked to
reach the container and to say what to do when the image lacks the tools.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from stack import ROOT, STANDIN, STANDIN_JOURNAL, free_port, compose_override, run

pytestmark = pytest.mark.skipif(not STANDIN, reason="drives the stand-in image through make")

FIXTURES = ROOT / "tests" / "fixtures" / "bench"
API_KEY = "sk-bench-e2e-0123456789abcdef"
# The seed's figures, written out from the seed guide (section 4.1), not read from the bundle's data;
# None: the seed's report has no P99 E2E latency.
SEED = {"Request throughput (req/s)": ("request_throughput", 3.64, "higher"),
        "Output token throughput (tok/s)": ("output_throughput", 775.09, "higher"),
        "Total token throughput (tok/s)": ("total_throughput", 1998.28, "higher"),
        "Mean TTFT (ms)": ("mean_ttft_ms", 201.32, "lower"),
        "P99 TTFT (ms)": ("p99_ttft_ms", 267.12, "lower"),
        "Mean TPOT (ms)": ("mean_tpot_ms", 20.35, "lower"),
        "P99 TPOT (ms)": ("p99_tpot_ms", 35.65, "lower"),
        "Median ITL (ms)": ("median_itl_ms", 18.43, "lower"),
        "P99 ITL (ms)": ("p99_itl_ms", 25.18, "lower"),
        "Median E2E latency (ms)": ("median_e2e_latency_ms", 2857.44, "lower"),
        "P99 E2E latency (ms)": ("p99_e2e_latency_ms", None, "lower")}
BENCH_CLIENT = f"{sys.executable} {ROOT / 'tests' / 'standin' / 'run_bench_serving.py'}"


def make(*args, timeout=600):
    env = {**os.environ, "VENV": str(ROOT / ".venv")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def deployment(test_image, tmp_path_factory):
    """A basic stand-in deployment with an API key, made and removed by make."""
    tmp = tmp_path_factory.mktemp("bench-deploy")
    port = free_port()
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "hf_token").write_text("hf_dummy\n")
    (secrets / "api_key").write_text(API_KEY + "\n")
    override = tmp / "override.yml"
    override.write_text(yaml.safe_dump(compose_override(port, {"BUNDLE_PREFLIGHT": "1"}))
                        .replace("build: null", "build: !reset null"))
    args = [f"PORT={port}", f"SECRETS_DIR={secrets}", f"OVERRIDE={override}"]
    tokenizer = tmp / "tokenizer"   # a tiny local one: random-ids needs one, nothing is downloaded
    run(sys.executable, str(ROOT / "tests" / "standin" / "make_tokenizer.py"), str(tokenizer), timeout=120)
    try:
        result = make("deploy", "HARDWARE=h100x4", "PRESET=basic", f"API_KEY_FILE={secrets / 'api_key'}", *args)
        assert result.returncode == 0, result.stdout + result.stderr
        yield {"port": port, "args": args, "tokenizer": tokenizer}
    finally:
        make("down", *args)
        shutil.rmtree(ROOT / "deploy" / f"port-{port}", ignore_errors=True)


def offline_bench(deployment, results, *more):
    return make("bench", *deployment["args"], f"RESULTS_DIR={results}", f"BENCH_CLIENT={BENCH_CLIENT}",
                "BENCH_DATASET=random-ids", f"BENCH_TOKENIZER={deployment['tokenizer']}",
                "BENCH_INPUT_LEN=64", "BENCH_OUTPUT_LEN=16", *more)


def only_folder(results):
    folders = list(results.iterdir())
    assert len(folders) == 1, folders
    return folders[0]


def engine_journal(port) -> list[dict]:
    container = run("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project=llama31-sglang-{port}",
                    "--filter", "label=com.docker.compose.service=engine").stdout.split()[0]
    text = run("docker", "exec", container, "sh", "-c", f"cat {STANDIN_JOURNAL} 2>/dev/null || true").stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def keyed_generations(port) -> int:
    """/generate requests the engine answered that came with the engine's key (so through the guard)."""
    return sum(1 for r in engine_journal(port) if (r["path"], r["status"], r["auth"]) == ("/generate", 200, "valid"))


def table_rows(text: str) -> dict:
    """label -> the cells after it, for the rows of the seed's figures."""
    rows = {}
    for line in text.splitlines():
        for label in SEED:
            if line.startswith(label + " "):
                rows[label] = line[len(label):].split()
    return rows


def shown(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}" if abs(value) < 10_000 else f"{value:,.0f}"


def test_make_bench_keeps_the_tools_json_a_record_and_prints_the_seed_table(deployment, tmp_path):
    before = keyed_generations(deployment["port"])
    result = offline_bench(deployment, tmp_path, "BENCH_PROMPTS=20")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"100%\|.*\| 20/20", result.stderr), "bench_serving's progress bar is not shown"

    folder = only_folder(tmp_path)
    assert re.fullmatch(r"\d{8}T\d{6}Z-h100x4-basic-standin", folder.name)
    assert sorted(p.name for p in folder.iterdir()) == ["bench_serving.jsonl", "bench_serving.log",
                                                        "comparison.txt", "deployment.json"]
    runs = [json.loads(line) for line in (folder / "bench_serving.jsonl").read_text().splitlines()]
    assert len(runs) == 1 and runs[0]["completed"] == 20 and runs[0]["dataset_name"] == "random-ids"
    assert runs[0]["server_info"]["standin"], "the tool's own JSON says it measured the stand-in"
    # through the guard, with the key: the engine received the 20 requests and the tool's warm-up one
    assert keyed_generations(deployment["port"]) - before == 21
    assert "Serving Benchmark Result" in (folder / "bench_serving.log").read_text()

    record = json.loads((folder / "deployment.json").read_text())
    assert (record["hardware"], record["preset"], record["standin"], record["api_key"]) == ("h100x4", "basic",
                                                                                             True, True)
    assert record["image"] == "llama31-sglang-bundle:test" and record["image_id"].startswith("sha256:")
    assert record["gpu"]["count"] == 4 and "H100" in record["gpu"]["name"]
    assert record["engine_settings"]["ENGINE_MODEL_PATH"] == "meta-llama/Llama-3.1-70B-Instruct"
    assert record["flags"][:2] == ["--model-path", "meta-llama/Llama-3.1-70B-Instruct"]
    assert "--tp-size" in record["flags"] and record["gateway"] is False
    assert record["bench"]["settings"]["BENCH_PROMPTS"] == "20"
    assert "--num-prompts 20" in record["bench"]["commands"][0]
    for file in folder.iterdir():
        assert API_KEY not in file.read_text(), f"the API key is in {file.name}"

    table = (folder / "comparison.txt").read_text()
    assert table.strip() in result.stdout
    assert "measured (stand-in)" in table and "STAND-IN ENGINE" in table
    assert ("note: not the seed's load shape (dataset_name random-ids (seed: sharegpt); num_prompts 20 (seed: 100)), "
            "so no ratios to the seed: they would compare different experiments") in table
    rows = table_rows(table)
    assert rows.keys() == SEED.keys()
    for label, (key, seed, better) in SEED.items():   # another load shape: no ratio
        assert rows[label] == [shown(seed), shown(runs[0][key]), "-", better, "is", "better"]


def test_a_sweep_runs_once_per_concurrency_and_compare_lays_results_side_by_side(deployment, tmp_path):
    sweep, single = tmp_path / "sweep", tmp_path / "single"
    result = offline_bench(deployment, sweep, "BENCH_PROMPTS=8", "BENCH_CONCURRENCY=2,4")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = [json.loads(line) for line in (only_folder(sweep) / "bench_serving.jsonl").read_text().splitlines()]
    assert [r["max_concurrency"] for r in runs] == [2, 4] and all(r["completed"] == 8 for r in runs)
    assert result.stdout.count("bench_serving vs the seed") == 2
    assert "concurrency 2" in result.stdout and "concurrency 4" in result.stdout
    assert offline_bench(deployment, single, "BENCH_PROMPTS=8").returncode == 0

    chart = tmp_path / "chart.png"
    folders = [only_folder(sweep), only_folder(single)]
    compare = make("bench-compare", f"RESULTS={folders[0]} {folders[1]}", f"CHART={chart}")
    assert compare.returncode == 0, compare.stderr
    header = compare.stdout.splitlines()[0]
    for label in (f"{folders[0].name} c=2 (stand-in)", f"{folders[0].name} c=4 (stand-in)",
                  f"{folders[1].name} (stand-in)"):
        assert label in header
    every = runs + [json.loads((folders[1] / "bench_serving.jsonl").read_text())]
    rows = table_rows(compare.stdout)
    for label, (key, seed, better) in SEED.items():   # random-ids, 8 prompts: no ratios, a note for each
        cells = [shown(r[key]) for r in every]
        assert " ".join(rows[label]) == f"{shown(seed)} " + " ".join(cells) + f" {better} is better"
    assert compare.stdout.count("so no ratios to the seed") == 3
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


def test_make_eval_runs_gsm8k_with_the_key_and_compares_with_the_seed_and_sglang(deployment, tmp_path):
    result = make("eval", *deployment["args"], f"RESULTS_DIR={tmp_path}", f"EVAL_CLIENT={sys.executable}",
                  f"EVAL_DATA={FIXTURES / 'gsm8k-mini.jsonl'}", "EVAL_QUESTIONS=8", "EVAL_SHOTS=2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"100%\|.*\| 8/8", result.stderr), "few_shot_gsm8k's progress bar is not shown"
    folder = only_folder(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["comparison.txt", "deployment.json", "gsm8k.json",
                                                        "gsm8k.log", "gsm8k_answers.txt"]
    figures = json.loads((folder / "gsm8k.json").read_text())
    # the stand-in answers words, never numbers: every answer is invalid
    assert (figures["accuracy"], figures["invalid"], figures["questions"], figures["shots"], figures["standin"]) \
        == (0.0, 1.0, 8, 2, True)
    assert figures["latency_s"] > 0 and figures["output_throughput"] > 0
    assert (folder / "gsm8k_answers.txt").read_text().count("Question: ") >= 8
    record = json.loads((folder / "deployment.json").read_text())
    assert record["eval"]["dataset"] == str(FIXTURES / "gsm8k-mini.jsonl") and record["standin"]
    table = (folder / "comparison.txt").read_text()
    assert table.strip() in result.stdout and "measured (stand-in)" in table
    assert re.search(r"^seed \(4x H100, TP 4\)\s+0\.935\s+0\.000\s+0x\s+higher is better", table, re.M)
    assert re.search(r"^SGLang nightly threshold\s+0\.890\s+0\.000\s+0x\s+higher is better .*"
                     r"test_text_models_gsm8k_eval\.py line 34", table, re.M)
    assert "not the seed's 200 questions, 5-shot" in table
    for file in folder.iterdir():
        assert API_KEY not in file.read_text()


def test_the_default_path_runs_in_the_engine_container_and_says_when_the_image_lacks_the_tool(deployment,
                                                                                           tmp_path):
    result = make("bench", *deployment["args"], f"RESULTS_DIR={tmp_path}", "BENCH_PROMPTS=2")
    assert result.returncode != 0
    assert "from the engine container (engine)" in result.stdout
    assert "No module named sglang.bench_serving" in (only_folder(tmp_path) / "bench_serving.log").read_text()
    assert 'BENCH_CLIENT="python3 -m sglang.bench_serving"' in result.stderr
    evaluation = make("eval", *deployment["args"], f"RESULTS_DIR={tmp_path / 'eval'}", "EVAL_QUESTIONS=2",
                      f"EVAL_DATA={FIXTURES / 'gsm8k-mini.jsonl'}")
    assert evaluation.returncode != 0
    assert "No module named 'sglang.lang'" in (only_folder(tmp_path / "eval") / "gsm8k.log").read_text()
    assert "EVAL_CLIENT=python3" in evaluation.stderr


def test_bad_settings_and_the_engine_target_stop_before_anything_runs(deployment, tmp_path):
    for setting, expected in (("BENCH_PROMPTS=0", "BENCH_PROMPTS='0': expected a whole number"),
                              ("BENCH_RATE=fast", "BENCH_RATE='fast': expected requests per second"),
                              ("BENCH_TARGET=engine", "the engine answers only its per-start key")):
        result = make("bench", *deployment["args"], f"RESULTS_DIR={tmp_path}", setting)
        assert result.returncode != 0 and expected in result.stderr, result.stderr
    assert not tmp_path.exists() or not list(tmp_path.iterdir())
    missing = make("bench", f"PORT={free_port()}", f"RESULTS_DIR={tmp_path}")
    assert missing.returncode != 0 and "no deployment on PORT=" in missing.stderr
    assert "docker compose up -d" in missing.stderr
