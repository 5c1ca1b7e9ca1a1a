"""bundle/bench.py and bundle/evaluate.py without Docker: settings, bench_serving's arguments (checked with
the real bench_serving parser), the comparison tables (expected cells from independent arithmetic on
bench_serving JSON captured against the stand-in: tests/fixtures/bench/README.md), the record, the
results folders, the chart, the in-container client script (run by a real sh) and the streaming runner.
The numbers in the fixtures are the stand-in's, never an engine's."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bundle import bench, evaluate, render
from bundle.bench import BenchError, BenchSettings
from paths import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "bench"
# The seed guide's section 4.1 and 5.2 figures, written out here, not read from bundle/seed_figures.yaml.
SEED = {"request_throughput": 3.64, "output_throughput": 775.09, "total_throughput": 1998.28,
        "mean_ttft_ms": 201.32, "mean_tpot_ms": 20.35, "median_itl_ms": 18.43}
HIGHER = {"request_throughput", "output_throughput", "total_throughput"}


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

def test_every_row_is_seed_measured_ratio_and_direction():
    run = captured()[0]
    table = bench.comparison_table(run, bench.load_seed()["bench"], {}, 100)
    labels = {"request_throughput": "Request throughput (req/s)",
              "output_throughput": "Output token throughput (tok/s)",
              "total_throughput": "Total token throughput (tok/s)", "mean_ttft_ms": "Mean TTFT (ms)",
              "mean_tpot_ms": "Mean TPOT (ms)", "median_itl_ms": "Median ITL (ms)"}
    lines = {label: line for line in table.splitlines() for label in labels.values() if line.startswith(label)}
    assert len(lines) == 6
    # measured / seed by hand for the first row: 58.63901636582677 / 3.64 = 16.109...
    assert cells(lines["Request throughput (req/s)"], "Request throughput (req/s)") == \
        ["3.64", "58.64", "16.11x", "higher", "is", "better"]
    for key, label in labels.items():
        ratio = run[key] / SEED[key]
        ratio_text = f"{ratio:.2g}x" if ratio < 0.1 else f"{ratio:.2f}x"
        direction = "higher" if key in HIGHER else "lower"
        assert cells(lines[label], label) == [f"{SEED[key]:,.2f}", f"{run[key]:,.2f}", ratio_text, direction,
                                              "is", "better"]


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


def test_a_run_of_another_shape_says_the_ratios_compare_different_experiments():
    seed = bench.load_seed()["bench"]
    seed_shaped = {"dataset_name": "sharegpt", "request_rate": math.inf, "max_concurrency": None}
    assert bench.load_differences(seed_shaped, seed["load"], 100) == []
    assert bench.load_differences({**seed_shaped, "request_rate": "inf"}, seed["load"], None) == []
    other = {"dataset_name": "random-ids", "request_rate": 4.0, "max_concurrency": 8}
    assert bench.load_differences(other, seed["load"], 50) == [
        "dataset_name random-ids (seed: sharegpt)", "num_prompts 50 (seed: 100)", "request_rate 4.0 (seed: inf)",
        "max_concurrency 8 (seed: not set)"]
    assert "the ratios compare different experiments" in bench.comparison_table({**captured()[0], **other}, seed,
                                                                                {}, 50)


def test_compare_lays_every_run_of_every_result_side_by_side(tmp_path):
    single = tmp_path / "20261128T000000Z-h100x4-basic-standin"
    single.mkdir()
    (single / "bench_serving.jsonl").write_text((FIXTURES / "standin-bench_serving.jsonl").read_text())
    (single / "deployment.json").write_text(json.dumps({"standin": True}))
    columns = bench.columns([single, FIXTURES / "standin-sweep.jsonl"])
    assert [c["label"] for c in columns] == [single.name, "standin-sweep c=4", "standin-sweep c=16"]
    assert all(c["standin"] for c in columns)
    table = bench.compare_table(columns, bench.load_seed()["bench"])
    runs = captured() + captured("standin-sweep.jsonl")
    line = next(line for line in table.splitlines() if line.startswith("Mean TTFT (ms)"))
    expected = ["201.32"]
    for run in runs:
        ratio = run["mean_ttft_ms"] / 201.32
        expected += [f"{run['mean_ttft_ms']:,.2f}", f"({ratio:.2f}x)"]
    assert cells(line, "Mean TTFT (ms)") == expected + ["lower", "is", "better"]
    assert f"{single.name} (stand-in)" in table.splitlines()[0] and bench.STANDIN_NOTE in table


def test_compare_without_results_or_with_a_wrong_path_says_what_it_expects(tmp_path):
    with pytest.raises(BenchError, match="RESULTS= is empty"):
        bench.compare([], None)
    with pytest.raises(BenchError, match="expected a results folder holding bench_serving.jsonl"):
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
    ({"BENCH_INPUT_LEN": "64"}, "BENCH_INPUT_LEN applies to BENCH_DATASET=random-ids or random"),
    ({"BENCH_DATASET_PATH": "/nonexistent/sg.json"}, "BENCH_DATASET_PATH=/nonexistent/sg.json: no such file"),
    ({"BENCH_TARGET": "engine"}, "the engine answers only its per-start key"),
])
def test_bad_settings_name_the_variable_and_what_was_expected(environ, message):
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BenchSettings.from_environ(environ)


def test_the_engine_target_points_at_the_nearest_honest_measure():
    with pytest.raises(BenchError) as refused:
        BenchSettings.from_environ({"BENCH_TARGET": "engine"})
    assert "docs/security.md" in str(refused.value) and "benchmarks/bench_guard.py" in str(refused.value)
    assert (ROOT / "benchmarks" / "bench_guard.py").is_file() and (ROOT / "docs" / "security.md").is_file()


def test_eval_settings(tmp_path):
    settings = evaluate.EvalSettings.from_environ({})
    assert (settings.questions, settings.shots, settings.data, settings.client) == (200, 5, None, None)
    assert evaluate.tool_args(settings, None) == ["--num-questions", "200", "--num-shots", "5", "--parallel", "128"]
    with pytest.raises(BenchError, match="EVAL_DATA=/nonexistent.jsonl: no such file"):
        evaluate.EvalSettings.from_environ({"EVAL_DATA": "/nonexistent.jsonl"})
    with pytest.raises(BenchError, match="EVAL_QUESTIONS='many'"):
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
