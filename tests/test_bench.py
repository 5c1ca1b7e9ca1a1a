"""bundle/bench.py and bundle/evaluate.py without Docker: settings, bench_serving's arguments (checked with
the real bench_serving parser), the comparison tables (expected cells from independent arithmetic on
bench_serving JSON captured against the stand-in: tests/fixtures/bench/README.md), the record, the
results folders, the chart, the in-container client script (run by a real sh) and the streaming runner.
The numbers in the fixtures are the stand-in's, never an engine's."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bundle import bench, deploy, evaluate, render
from bundle.bench import BenchError, BenchSettings
from paths import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "bench"
# The seed guide's section 4.1 and 5.2 figures, written out here, not read from bundle/seed_figures.yaml;
# None: the seed's report prints no P99 E2E latency. The keys are bench_serving's JSON fields, as
# SGLang 0.5.23's sglang/benchmark/serving.py writes them (the captured fixtures hold every one).
SEED = {"request_throughput": 3.64, "output_throughput": 775.09, "total_throughput": 1998.28,
        "mean_ttft_ms": 201.32, "p99_ttft_ms": 267.12, "mean_tpot_ms": 20.35, "p99_tpot_ms": 35.65,
        "median_itl_ms": 18.43, "p99_itl_ms": 25.18, "median_e2e_latency_ms": 2857.44, "p99_e2e_latency_ms": None}
LABELS = {"request_throughput": "Request throughput (req/s)", "output_throughput": "Output token throughput (tok/s)",
          "total_throughput": "Total token throughput (tok/s)", "mean_ttft_ms": "Mean TTFT (ms)",
          "p99_ttft_ms": "P99 TTFT (ms)", "mean_tpot_ms": "Mean TPOT (ms)", "p99_tpot_ms": "P99 TPOT (ms)",
          "median_itl_ms": "Median ITL (ms)", "p99_itl_ms": "P99 ITL (ms)",
          "median_e2e_latency_ms": "Median E2E latency (ms)", "p99_e2e_latency_ms": "P99 E2E latency (ms)"}
HIGHER = {"request_throughput", "output_throughput", "total_throughput"}
# The captured run is random-ids; the seed's shape is ShareGPT, 100 prompts, rate inf, no concurrency limit.
SEED_SHAPE = {"dataset_name": "sharegpt", "request_rate": math.inf, "max_concurrency": None}


def captured(name="standin-bench_serving.jsonl") -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def cells(line: str, label: str) -> list[str]:
    return line[len(label):].split()


# ---- the seed's figures, as data -----------------------------------------------------------------

def test_the_seed_figures_are_the_seed_guides():
    seed = bench.load_seed()
    figures = seed["bench"]["figures"]
    assert {f["key"]: f["seed"] for f in figures} == SEED
    assert {f["key"] for f in figures if f["better"] == "higher"} == HIGHER
    assert {f["key"] for f in figures if f["better"] == "lower"} == set(SEED) - HIGHER
    assert seed["bench"]["load"] == {"dataset_name": "sharegpt", "num_prompts": 100, "request_rate": "inf",
                                     "max_concurrency": None}
    references = {r["label"]: r["accuracy"] for r in seed["gsm8k"]["references"]}
    assert references == {"seed (4x H100, TP 4)": 0.935, "SGLang nightly threshold": 0.89}
    assert (seed["gsm8k"]["num_questions"], seed["gsm8k"]["num_shots"]) == (200, 5)


def test_the_captured_json_is_consistent_with_itself():
    """The fixture is the real tool's output: its throughputs are its counts over its duration."""
    run = captured()[0]
    assert run["request_throughput"] == pytest.approx(run["completed"] / run["duration"])
    assert run["output_throughput"] == pytest.approx(run["total_output_tokens"] / run["duration"])
    assert run["total_throughput"] == pytest.approx((run["total_input_tokens"] + run["total_output_tokens"])
                                                    / run["duration"])


# ---- the comparison table ------------------------------------------------------------------------

def shown(value) -> str:
    return "-" if value is None else f"{value:,.2f}" if abs(value) < 10_000 else f"{value:,.0f}"


def shown_ratio(measured, seed) -> str:
    if seed is None:
        return "-"
    ratio = measured / seed
    return f"{ratio:.2g}x" if ratio < 0.1 else f"{ratio:.2f}x"


def table_lines(table: str) -> dict:
    return {label: line for line in table.splitlines() for label in LABELS.values()
            if line.startswith(label + " ")}


def test_every_row_is_seed_measured_ratio_and_direction():
    run = {**captured()[0], **SEED_SHAPE}
    table = bench.comparison_table(run, bench.load_seed()["bench"], {}, 100)
    lines = table_lines(table)
    assert len(lines) == len(LABELS) == 11
    # measured / seed by hand for the first row: 58.63901636582677 / 3.64 = 16.109...
    assert cells(lines["Request throughput (req/s)"], "Request throughput (req/s)") == \
        ["3.64", "58.64", "16.11x", "higher", "is", "better"]
    # the seed prints no P99 E2E latency: the measured figure, no ratio
    assert cells(lines["P99 E2E latency (ms)"], "P99 E2E latency (ms)") == \
        ["-", "899.69", "-", "lower", "is", "better"]
    for key, label in LABELS.items():
        direction = "higher" if key in HIGHER else "lower"
        assert cells(lines[label], label) == [shown(SEED[key]), shown(run[key]), shown_ratio(run[key], SEED[key]),
                                              direction, "is", "better"]
    assert "note:" not in table


def test_the_p99_and_e2e_rows_read_bench_servings_own_fields():
    """P99 TTFT 899.43, P99 TPOT 1.17, P99 ITL 0.31, median E2E 789.97, P99 E2E 899.69: the captured
    run's report (bench_serving.log of the same run) printed these."""
    lines = table_lines(bench.comparison_table(captured()[0], bench.load_seed()["bench"], {}, 100))
    measured = {label: cells(lines[label], label)[1] for label in
                ("P99 TTFT (ms)", "P99 TPOT (ms)", "P99 ITL (ms)", "Median E2E latency (ms)", "P99 E2E latency (ms)")}
    assert measured == {"P99 TTFT (ms)": "899.43", "P99 TPOT (ms)": "1.17", "P99 ITL (ms)": "0.31",
                        "Median E2E latency (ms)": "789.97", "P99 E2E latency (ms)": "899.69"}


def spans(line: str) -> list[tuple[int, int]]:
    """(start, end) of each cell: cells hold single spaces, columns are two or more apart."""
    return [match.span() for match in re.finditer(r"\S+(?: \S+)*", line)]


def assert_aligned(lines: list[str], columns: int) -> None:
    """Every line has the same cells: labels and the direction start together, numbers end together."""
    rows = [spans(line) for line in lines]
    assert all(len(row) == columns for row in rows[1:]), lines
    header = rows[0]
    for row in rows[1:]:
        assert row[0][0] == header[0][0] and row[-1][0] == rows[1][-1][0], lines
        for index in range(1, len(header)):
            assert row[index][1] == header[index][1], (index, lines)


def test_a_tiny_ratio_keeps_two_significant_digits():
    assert bench.shown_ratio(0.0042) == "0.0042x"
    assert bench.shown_ratio(0.5) == "0.50x"
    assert bench.shown_ratio(None) == "-"
    assert bench.number(22221.4) == "22,221" and bench.number(1998.28) == "1,998.28"


def test_stand_in_numbers_are_labelled_and_engine_numbers_are_not():
    run = captured()[0]
    seed = bench.load_seed()["bench"]
    standin = bench.comparison_table(run, seed, {}, 100)     # the stand-in says so in /server_info
    assert "measured (stand-in)" in standin and bench.STANDIN_NOTE in standin
    labelled = bench.comparison_table({**run, "server_info": {}}, seed, {"standin": True}, 100)  # image label
    assert "measured (stand-in)" in labelled
    engine = bench.comparison_table({**run, "server_info": {"model_path": "m"}}, seed, {"standin": False}, 100)
    assert "stand-in" not in engine and "STAND-IN" not in engine and " measured " in engine


def test_a_run_of_another_shape_gets_no_ratios_and_a_note_naming_what_differs():
    seed = bench.load_seed()["bench"]
    assert bench.load_differences(SEED_SHAPE, seed["load"], 100) == []
    assert bench.load_differences({**SEED_SHAPE, "request_rate": "inf"}, seed["load"], None) == []
    other = {"dataset_name": "random-ids", "request_rate": 4.0, "max_concurrency": 8}
    assert bench.load_differences(other, seed["load"], 50) == [
        "dataset_name random-ids (seed: sharegpt)", "num_prompts 50 (seed: 100)", "request_rate 4.0 (seed: inf)",
        "max_concurrency 8 (seed: not set)"]
    table = bench.comparison_table({**captured()[0], **other}, seed, {}, 50)
    for label, line in table_lines(table).items():
        assert cells(line, label)[2] == "-", line          # the ratio column
    assert table.splitlines()[-1] == (
        "note: not the seed's load shape (dataset_name random-ids (seed: sharegpt); num_prompts 50 (seed: 100); "
        "request_rate 4.0 (seed: inf); max_concurrency 8 (seed: not set)), so no ratios to the seed: they would "
        "compare different experiments")
    # the seed's shape but 20 prompts: a different experiment too
    fewer = bench.comparison_table({**captured()[0], **SEED_SHAPE}, seed, {}, 20)
    assert "num_prompts 20 (seed: 100)" in fewer and "16.11x" not in fewer


def test_the_bench_table_is_aligned_whatever_the_widths():
    run = {**captured()[0], **SEED_SHAPE, "request_throughput": 123456789.5, "mean_ttft_ms": 0.00001}
    table = bench.comparison_table(run, bench.load_seed()["bench"], {"standin": False}, 100).splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("figure"))
    rows = [table[header]] + table[header + 2:header + 2 + len(LABELS)]
    assert set(table[header + 1]) == {"-"} and len(table[header + 1]) == max(len(line) for line in rows)
    assert_aligned(rows, 5)


def result_folder(tmp_path, name, runs: list[dict], record: dict) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "bench_serving.jsonl").write_text("".join(json.dumps(run) + "\n" for run in runs))
    (folder / "deployment.json").write_text(json.dumps(record))
    return folder


def test_compare_lays_every_run_of_every_result_side_by_side_with_ratios_only_for_the_seeds_shape(tmp_path):
    seed_shaped = result_folder(tmp_path, "a", [{**captured()[0], **SEED_SHAPE, "server_info": {}}],
                                {"standin": False, "bench": {"num_prompts": 100}})
    single = result_folder(tmp_path, "20261128T000000Z-h100x4-basic-standin", captured(), {"standin": True})
    columns = bench.columns([seed_shaped, single, FIXTURES / "standin-sweep.jsonl"])
    assert [c["label"] for c in columns] == ["a", single.name, "standin-sweep c=4", "standin-sweep c=16"]
    assert [c["standin"] for c in columns] == [False, True, True, True]
    table = bench.compare_table(columns, bench.load_seed()["bench"])
    lines = table.splitlines()
    runs = [{**captured()[0], **SEED_SHAPE}] + captured() + captured("standin-sweep.jsonl")
    ttft = next(line for line in lines if line.startswith("Mean TTFT (ms)"))
    # the seed-shaped run with its ratio in brackets; the others, of other shapes, without
    expected = ["201.32", f"{runs[0]['mean_ttft_ms']:,.2f}", f"({runs[0]['mean_ttft_ms'] / 201.32:.2f}x)"]
    expected += [f"{run['mean_ttft_ms']:,.2f}" for run in runs[1:]]
    assert cells(ttft, "Mean TTFT (ms)") == expected + ["lower", "is", "better"]
    assert f"{single.name} (stand-in)" in lines[0] and bench.STANDIN_NOTE in table
    assert "(ratio to the seed in brackets)" in lines
    assert (f"note: {single.name}: not the seed's load shape (dataset_name random-ids (seed: sharegpt)), so no "
            "ratios to the seed: they would compare different experiments") in lines
    assert ("note: standin-sweep c=16: not the seed's load shape (dataset_name random-ids (seed: sharegpt); "
            "max_concurrency 16 (seed: not set)), so no ratios to the seed: they would compare different "
            "experiments") in lines
    assert not any(line.startswith("note: a:") for line in lines)
    assert_aligned(lines[:1] + lines[2:2 + len(LABELS)], 2 + len(columns) + 1)


def test_compare_columns_stay_aligned_with_short_and_long_labels(tmp_path):
    shaped = {**captured()[0], **SEED_SHAPE, "server_info": {}}
    short = result_folder(tmp_path, "x", [shaped], {"bench": {"num_prompts": 100}})
    long = result_folder(tmp_path, "a-rather-long-results-folder-name-for-one-run-of-the-seeds-shape",
                         [{**shaped, "total_throughput": 123456.0}], {"bench": {"num_prompts": 100}})
    lines = bench.compare_table(bench.columns([short, long]), bench.load_seed()["bench"]).splitlines()
    assert_aligned(lines[:1] + lines[2:2 + len(LABELS)], 5)
    assert "note:" not in "\n".join(lines)


def test_compare_without_results_or_with_a_wrong_path_says_what_it_expects(tmp_path):
    with pytest.raises(render.RenderError, match="RESULTS= is empty"):
        bench.compare([], None)
    with pytest.raises(render.RenderError, match="expected a results folder holding bench_serving.jsonl"):
        bench.columns([tmp_path])


def test_the_chart_is_a_png_of_throughput_and_latency(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "chart.png"
    bench.draw_chart(bench.columns([FIXTURES / "standin-sweep.jsonl"]), bench.load_seed()["bench"], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


# ---- settings and bench_serving's arguments ------------------------------------------------------

def test_the_defaults_are_the_seeds_run():
    settings = BenchSettings.from_environ({})
    assert (settings.dataset, settings.prompts, settings.rate, settings.runs, settings.target) == \
        ("sharegpt", 100, math.inf, [None], "guard")
    assert not settings.offline
    assert bench.bench_serving_args(settings, None, None, None, "out.jsonl") == [
        "--backend", "sglang", "--dataset-name", "sharegpt", "--num-prompts", "100", "--request-rate", "inf",
        "--output-file", "out.jsonl"]


PARSE_WITH_REAL_BENCH_SERVING = r"""
import json, sys, types
sys.path.insert(0, sys.argv[1])
import run_bench_serving
if not run_bench_serving._torchvision_ok():
    stub = types.ModuleType("sglang.srt.disaggregation.utils")
    stub.FAKE_BOOTSTRAP_HOST = run_bench_serving._fake_bootstrap_host()
    sys.modules["sglang.srt.disaggregation.utils"] = stub
sys.path.pop(0)
from sglang.benchmark import serving

class Parser(serving.ArgumentParser):
    def parse_args(self, args=None, namespace=None):
        namespace = super().parse_args(args, namespace)
        print(json.dumps(vars(namespace), default=str))
        raise SystemExit(0)

serving.ArgumentParser = Parser
for argv in json.loads(sys.argv[2]):
    sys.argv = ["bench_serving"] + argv
    try:
        serving.cli_main()
    except SystemExit:
        pass
"""


def test_the_default_arguments_parse_as_the_seeds_command_in_the_real_bench_serving():
    """The seed's command and make bench's defaults give SGLang 0.5.23's parser the same run."""
    seed = ["--backend", "sglang", "--num-prompt", "100", "--host", "127.0.0.1", "--port", "8000"]
    ours = ["--host", "127.0.0.1", "--port", "8000"] + bench.bench_serving_args(
        BenchSettings.from_environ({}), None, None, None, "out.jsonl")
    result = subprocess.run([sys.executable, "-c", PARSE_WITH_REAL_BENCH_SERVING, str(ROOT / "tests" / "standin"),
                             json.dumps([seed, ours])], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(parsed) == 2
    seed_run, our_run = parsed
    assert our_run.pop("output_file") == "out.jsonl" and seed_run.pop("output_file") is None
    assert our_run == seed_run
    assert (seed_run["dataset_name"], seed_run["num_prompts"], seed_run["request_rate"]) == ("sharegpt", 100, math.inf)


def test_load_shapes_become_bench_serving_arguments(tmp_path):
    sharegpt = tmp_path / "sharegpt.json"
    sharegpt.write_text("[]")
    settings = BenchSettings.from_environ({"BENCH_DATASET": "random-ids", "BENCH_PROMPTS": "50", "BENCH_RATE": "4",
                                           "BENCH_CONCURRENCY": "1,8,32", "BENCH_INPUT_LEN": "1024",
                                           "BENCH_OUTPUT_LEN": "256", "BENCH_ARGS": "--seed 7 --flush-cache"})
    assert settings.runs == [1, 8, 32] and settings.offline
    assert bench.bench_serving_args(settings, 8, "tok", None, "o.jsonl") == [
        "--backend", "sglang", "--dataset-name", "random-ids", "--num-prompts", "50", "--request-rate", "4",
        "--max-concurrency", "8", "--random-input-len", "1024", "--random-output-len", "256", "--tokenizer", "tok",
        "--output-file", "o.jsonl", "--seed", "7", "--flush-cache"]
    fixed = BenchSettings.from_environ({"BENCH_OUTPUT_LEN": "128", "BENCH_DATASET_PATH": str(sharegpt)})
    assert fixed.offline
    args = bench.bench_serving_args(fixed, None, None, "/tmp/d.json", "o.jsonl")
    assert args[args.index("--sharegpt-output-len") + 1] == "128" and "--random-output-len" not in args
    assert args[args.index("--dataset-path") + 1] == "/tmp/d.json"


@pytest.mark.parametrize("environ, message", [
    ({"BENCH_PROMPTS": "0"}, "BENCH_PROMPTS='0': expected a whole number, 1 or more"),
    ({"BENCH_RATE": "fast"}, "BENCH_RATE='fast': expected requests per second"),
    ({"BENCH_RATE": "-1"}, "BENCH_RATE='-1': expected requests per second"),
    ({"BENCH_CONCURRENCY": "8,x"}, "BENCH_CONCURRENCY='8,x': expected a whole number"),
    ({"BENCH_DATASET": "mmlu"}, "BENCH_DATASET='mmlu': expected one of sharegpt, random-ids, random"),
    ({"BENCH_TARGET": "mine"}, "BENCH_TARGET='mine': expected one of guard, engine"),
])
def test_bad_values_are_refused_by_the_options_table_like_a_bad_port(environ, message):
    """The same check and the same error as PORT='80o0' (bundle/options.py's Option.read)."""
    with pytest.raises(render.RenderError, match="^" + re.escape(message)):
        BenchSettings.from_environ(environ)


@pytest.mark.parametrize("environ, message", [
    ({"BENCH_INPUT_LEN": "64"}, "BENCH_INPUT_LEN applies to BENCH_DATASET=random-ids or random"),
    ({"BENCH_DATASET_PATH": "/nonexistent/sg.json"}, "BENCH_DATASET_PATH=/nonexistent/sg.json: no such file"),
    ({"BENCH_TARGET": "engine"}, "the engine answers only its per-start key"),
])
def test_settings_that_cannot_work_together_name_the_variable(environ, message):
    with pytest.raises(render.RenderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BenchSettings.from_environ(environ)


def docker_recorder(tmp_path) -> dict:
    """An environment whose `docker` only writes down that it was called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'docker-calls'}\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "EVAL_", "PORT"))},
            "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("tool, variable, value, message", [
    ("bench", "BENCH_PROMPTS", "many", "bench: BENCH_PROMPTS='many': expected a whole number, 1 or more"),
    ("bench", "BENCH_RATE", "0", "bench: BENCH_RATE='0': expected requests per second (a number above 0) or inf"),
    ("bench", "PORT", "80o0", "bench: PORT='80o0': expected 1-65535"),
    ("evaluate", "EVAL_SHOTS", "five", "eval: EVAL_SHOTS='five': expected a whole number, 1 or more"),
    ("evaluate", "EVAL_PARALLEL", "0", "eval: EVAL_PARALLEL='0': expected a whole number, 1 or more"),
    ("evaluate", "PORT", "0", "eval: PORT='0': expected 1-65535"),
])
def test_make_bench_and_eval_refuse_a_bad_variable_by_name_before_docker(tmp_path, tool, variable, value, message):
    """A bad BENCH_*/EVAL_* value reads like a bad PORT=: the variable, its value, what was expected; and
    nothing asks Docker for the deployment first."""
    env = {**docker_recorder(tmp_path), variable: value}
    result = subprocess.run([sys.executable, "-m", f"bundle.{tool}", "run"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == message
    assert not (tmp_path / "docker-calls").exists()


def test_the_engine_target_points_at_the_nearest_honest_measure():
    with pytest.raises(render.RenderError) as refused:
        BenchSettings.from_environ({"BENCH_TARGET": "engine"})
    assert "docs/security.md" in str(refused.value) and "benchmarks/bench_guard.py" in str(refused.value)
    assert (ROOT / "benchmarks" / "bench_guard.py").is_file() and (ROOT / "docs" / "security.md").is_file()


def test_eval_settings(tmp_path):
    settings = evaluate.EvalSettings.from_environ({})
    assert (settings.questions, settings.shots, settings.data, settings.client) == (200, 5, None, None)
    assert evaluate.tool_args(settings, None) == ["--num-questions", "200", "--num-shots", "5", "--parallel", "128"]
    with pytest.raises(render.RenderError, match="EVAL_DATA=/nonexistent.jsonl: no such file"):
        evaluate.EvalSettings.from_environ({"EVAL_DATA": "/nonexistent.jsonl"})
    with pytest.raises(render.RenderError, match="^EVAL_QUESTIONS='many': expected a whole number, 1 or more$"):
        evaluate.EvalSettings.from_environ({"EVAL_QUESTIONS": "many"})


# ---- GSM8K ---------------------------------------------------------------------------------------

def test_the_gsm8k_report_is_read_from_the_tools_own_lines():
    figures = evaluate.parse_report((FIXTURES / "standin-gsm8k.log").read_text())
    assert figures == {"accuracy": 0.0, "invalid": 1.0, "latency_s": 0.047, "output_throughput": 2723.858}
    with pytest.raises(BenchError, match="no '.*Accuracy"):
        evaluate.parse_report("Invalid: 0.000\n")


def test_the_gsm8k_table_compares_with_the_seed_and_the_nightly_threshold():
    references = bench.load_seed()["gsm8k"]["references"]
    table = evaluate.comparison_table({"accuracy": 0.92, "invalid": 0.005, "latency_s": 7.5,
                                       "output_throughput": 2400.0}, references, False, 200, 5)
    seed_line = next(line for line in table.splitlines() if line.startswith("seed (4x H100, TP 4)"))
    nightly_line = next(line for line in table.splitlines() if line.startswith("SGLang nightly threshold"))
    # 0.92 / 0.935 = 0.98395..., 0.92 / 0.89 = 1.03370...
    assert cells(seed_line, "seed (4x H100, TP 4)")[:5] == ["0.935", "0.920", "0.98x", "higher", "is"]
    assert cells(nightly_line, "SGLang nightly threshold")[:5] == ["0.890", "0.920", "1.03x", "higher", "is"]
    assert "test_text_models_gsm8k_eval.py line 34" in nightly_line
    assert "stand-in" not in table and "invalid answers 0.005, 7.5 s, 2,400 output tok/s" in table
    # two standard errors at 200 questions near 0.935: 2 * sqrt(0.935 * 0.065 / 200) = 0.03487
    assert ("verdict: 0.920 is BELOW seed (4x H100, TP 4) (0.935); at or above SGLang nightly threshold (0.890) "
            "(noise at 200 questions: +/-0.035)") in table


# ---- the deployment record and the results folders -----------------------------------------------

def test_the_record_reads_hardware_and_preset_from_the_rendered_file(tmp_path):
    data = render.load_data()
    out = tmp_path / "docker-compose.yml"
    params = render.Params(port=8123)
    render.write(data, "h200x4", "throughput", params,
                 out, render.render_command("h200x4", "throughput", str(out), params, "deploy"))
    facts = bench.generated_by(out)
    assert (facts["hardware"], facts["preset"]) == ("h200x4", "throughput")
    assert facts["rendered_by"].startswith("make deploy HARDWARE=h200x4 PRESET=throughput")
    profile = bench.hardware_profile("h200x4")
    assert profile["count"] == 4 and profile["name"] == "NVIDIA H200"
    assert bench.hardware_profile("nonexistent") is None


def test_the_record_keeps_settings_but_nothing_that_could_be_a_secret():
    environment = {"ENGINE_MODEL_PATH": "meta-llama/Llama-3.1-70B-Instruct", "ENGINE_TP_SIZE": "4",
                   "ENGINE_API_KEY": "sk-x", "ENGINE_API_KEY_FILE": "/run/secrets/api_key",
                   "ENGINE_ADMIN_API_KEY_FILE": "/run/secrets/admin", "HF_TOKEN_FILE": "/run/secrets/hf_token",
                   "SGLANG_SOMETHING": "1", "BUNDLE_PREFLIGHT": "1", "PATH": "/usr/bin"}
    assert bench.public_settings(environment) == {"BUNDLE_PREFLIGHT": "1", "ENGINE_MODEL_PATH":
                                                  "meta-llama/Llama-3.1-70B-Instruct", "ENGINE_TP_SIZE": "4",
                                                  "SGLANG_SOMETHING": "1"}


def test_the_api_key_comes_from_the_deployments_own_secret():
    config = {"services": {"engine": {"environment": {"ENGINE_MODEL_PATH": "m",
                                                      "ENGINE_API_KEY_FILE": "/run/secrets/api_key"}}},
              "secrets": {"api_key": {"name": "p_api_key", "file": "/srv/secrets/api_key"}}}
    assert bench.engine_service(config) == "engine"
    assert bench.api_key_file(config, "engine") == Path("/srv/secrets/api_key")
    del config["services"]["engine"]["environment"]["ENGINE_API_KEY_FILE"]
    assert bench.api_key_file(config, "engine") is None
    with pytest.raises(BenchError, match="no engine service"):
        bench.engine_service({"services": {"gateway": {"environment": {}}}})


def compose_config(tmp_path, hardware, replicas) -> dict:
    """The rendered file as the real Compose reads it (what make bench reads)."""
    out = tmp_path / f"{hardware}-{replicas}.yml"
    params = render.Params(port=8123, replicas=replicas, api_key_file="secrets/api_key")
    render.write(render.load_data(), hardware, "basic", params, out, "test")
    result = subprocess.run(["docker", "compose", "-f", str(out), "config", "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_in_the_container_the_tools_talk_to_the_guard_or_to_the_gateway_in_front_of_the_engines(tmp_path):
    single = compose_config(tmp_path, "h100x4", 1)
    assert bench.engine_service(single) == "engine"
    assert bench.container_endpoint(single) == ("127.0.0.1", '"$GUARD_PORT"')
    assert bench.api_key_file(single, "engine") == ROOT / "secrets" / "api_key"
    replicas = compose_config(tmp_path, "h100x8", 2)
    assert bench.engine_service(replicas) == "engine-1"
    assert bench.container_endpoint(replicas) == ("gateway", "8000")   # the gateway's port on the network
    assert bench.api_key_file(replicas, "engine-1") == ROOT / "secrets" / "api_key"
    assert "the gateway on gateway:8000" in bench.container_client(replicas, "engine-1")


def test_the_record_gives_the_engine_flags_the_container_builds_from_the_compose_file(tmp_path):
    service = compose_config(tmp_path, "h100x4", 1)["services"]["engine"]
    flags = bench.engine_flags(service["environment"], service.get("command"))
    # what render computed for the same preset, but for the private --host/--port/--config the engine gets
    engine = render.resolve(render.load_data(), "h100x4", "basic").engine_argv
    assert flags[:flags.index("--host")] == engine[3:engine.index("--host")]
    assert flags[flags.index("--host"):] == ["--host", "0.0.0.0", "--port", "8000"]
    assert bench.engine_flags({"ENGINE_NOPE": "1"}, None).startswith("not derived: ENGINE_NOPE is not a setting")


def test_results_folders_are_named_by_time_hardware_preset_and_never_reused(tmp_path):
    import datetime
    now = datetime.datetime(2026, 11, 28, 21, 5, 9, tzinfo=datetime.timezone.utc)
    record = {"hardware": "h100x4", "preset": "basic", "standin": False}
    first = bench.results_folder(tmp_path, record, now)
    second = bench.results_folder(tmp_path, record, now)
    standin = bench.results_folder(tmp_path, {**record, "standin": True}, now)
    assert [first.name, second.name, standin.name] == [
        "20261128T210509Z-h100x4-basic", "20261128T210509Z-h100x4-basic-2", "20261128T210509Z-h100x4-basic-standin"]
    assert all(folder.is_dir() for folder in (first, second, standin))


# ---- the client script in the container, and the runner -------------------------------------------

def client_script_env(tmp_path, environ) -> dict:
    script = bench.CONTAINER_CLIENT + ' && printf "%s|%s|%s" "$GUARD_PORT" "${OPENAI_API_KEY:-}" ' \
                                      '"$(env | grep -c ^OPENAI_API_KEY=)"'
    result = subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"], **environ},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    port, key, exported = result.stdout.split("|")
    return {"port": port, "key": key, "exported": exported == "1"}


def test_the_container_client_reads_the_key_from_the_deployments_secret_and_exports_it(tmp_path):
    key_file = tmp_path / "api_key"
    key_file.write_text("sk-from-file\n")
    assert client_script_env(tmp_path, {"ENGINE_API_KEY_FILE": str(key_file), "ENGINE_PORT": "9000"}) == \
        {"port": "9000", "key": "sk-from-file", "exported": True}
    assert client_script_env(tmp_path, {"ENGINE_API_KEY": "sk-plain", "PORT": "8100"}) == \
        {"port": "8100", "key": "sk-plain", "exported": True}
    assert client_script_env(tmp_path, {}) == {"port": "8000", "key": "", "exported": False}


def test_the_runner_shows_and_keeps_the_report_and_keeps_the_end_of_stderr_on_failure(tmp_path, capfd):
    child = ("import sys\nprint('report line 1'); print('report line 2', flush=True)\n"
             "sys.stderr.write(' 50%|#####     | 1/2\\r100%|##########| 2/2\\n'); sys.stderr.write('boom\\n')\n"
             "sys.exit(int(sys.argv[1]))\n")
    log = tmp_path / "tool.log"
    assert bench.stream([sys.executable, "-c", child, "0"], log) == 0
    shown = capfd.readouterr()
    assert shown.out == "report line 1\nreport line 2\n" and "100%|##########| 2/2" in shown.err
    assert log.read_text() == "report line 1\nreport line 2\n"
    assert bench.stream([sys.executable, "-c", child, "3"], log) == 3
    kept = log.read_text()
    assert "--- exit 3; the end of its stderr ---" in kept and kept.rstrip().endswith("boom")


# ---- the deployment on PORT=, however it was started (make deploy, or docker compose up -d) -------

def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compose_labels(monkeypatch, labels: str):
    """`docker ps` answering with Compose's config_files label of the project's containers."""
    calls = []

    def answer(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, labels, "")
    monkeypatch.setattr(deploy, "run", answer)
    return calls


def test_a_project_started_with_docker_compose_up_is_found_by_its_containers_labels(monkeypatch, tmp_path):
    top_level, override = ROOT / "docker-compose.yml", tmp_path / "override.yml"
    override.write_text("services: {}\n")
    calls = compose_labels(monkeypatch, f"{top_level},{override}\n{top_level},{override}\n")
    found = deploy.locate(render.load_data(), 8123, [override, tmp_path / "more.yml"])
    # presets/container.yaml's project_prefix llama31-sglang, -<port>
    assert calls[0][:4] == ["docker", "ps", "-a", "--filter"] and \
        calls[0][4] == "label=com.docker.compose.project=llama31-sglang-8123"
    assert found.files == [top_level, override, tmp_path / "more.yml"] and found.started
    assert found.compose("ps")[:4] == ["docker", "compose", "-p", "llama31-sglang-8123"]
    assert found.compose("ps")[4:] == ["-f", str(top_level), "-f", str(override), "-f", str(tmp_path / "more.yml"),
                                       "ps"]
    assert found.describe().startswith("Compose project llama31-sglang-8123 (docker-compose.yml, ")


def test_a_started_project_whose_files_are_gone_says_how_to_remove_it(monkeypatch, tmp_path):
    compose_labels(monkeypatch, f"{tmp_path / 'gone.yml'}\n")
    with pytest.raises(deploy.DeployError, match=r"started from files that are gone \(.*gone\.yml\): "
                                                 r"`docker compose -p llama31-sglang-8124 down`"):
        deploy.locate(render.load_data(), 8124, [])


def test_a_rendered_file_without_containers_is_found_but_bench_says_it_is_not_running(monkeypatch):
    port = free_port()
    own = ROOT / "deploy" / f"port-{port}" / "docker-compose.yml"
    own.parent.mkdir(parents=True)
    try:
        own.write_text("# GENERATED FILE\nname: x\nservices: {}\n")
        compose_labels(monkeypatch, "")
        found = deploy.locate(render.load_data(), port, [])
        assert (found.files, found.started) == ([own], False)
        monkeypatch.setenv("PORT", str(port))
        with pytest.raises(BenchError, match=f"the deployment on PORT={port} is not running .*"
                                             f"`make deploy PORT={port}`"):
            bench.find_target()
    finally:
        own.unlink()
        own.parent.rmdir()


@pytest.mark.docker
@pytest.mark.skipif(subprocess.run(["docker", "info"], capture_output=True).returncode != 0,
                    reason="needs the Docker engine")
def test_with_nothing_on_the_port_bench_and_eval_say_so_in_one_line_with_both_ways_to_start_one(monkeypatch):
    port = free_port()
    monkeypatch.setenv("PORT", str(port))
    with pytest.raises(BenchError) as missing:
        bench.find_target()
    message = str(missing.value)
    assert "\n" not in message and message.startswith(f"no deployment on PORT={port} ")
    assert f"make deploy PORT={port}" in message and "`docker compose up -d`" in message
    assert "docker-compose.yml, PORT=8000" in message     # the top-level file serves the default port
