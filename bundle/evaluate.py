"""`make eval`: GSM8K, 200 questions, 5-shot, with SGLang's own tool, against the deployment on PORT=,
kept like `make bench`'s results and compared with the seed's 0.935 and SGLang's nightly threshold
(bundle/seed_figures.yaml).

    python -m bundle.evaluate run        make eval
    python -m bundle.evaluate settings   the EVAL_* variables (bundle/options.py)

The tool is `sglang.test.few_shot_gsm8k`, the seed's: the same prompts, shots and scoring as the
seed's 0.935, so the ratio compares like with like. It is deprecated (for `sgl-eval`, which the
image does not carry) and sends no API key, so tools/few_shot_gsm8k_with_key.py hands its
RuntimeEndpoint the key from OPENAI_API_KEY and runs it unchanged. Like bench_serving it runs in the
engine container by default (against the guard, the key read there from the deployment's secret
file), or on this host with EVAL_CLIENT="python3" (against the published port). Online, the tool
downloads the GSM8K test set from GitHub; EVAL_DATA=test.jsonl (a local copy) works offline.

Each run writes results/<UTC time>-<hardware>-<preset>/: gsm8k.json (the tool's figures),
gsm8k.log (its report), gsm8k_answers.txt (every prompt and answer), deployment.json and
comparison.txt.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import shlex
import sys
from pathlib import Path

from bundle import bench, errors, options, render
from bundle.bench import BenchError

RUNNER = render.ROOT / "tools" / "few_shot_gsm8k_with_key.py"
TOOL = "sglang.test.few_shot_gsm8k"
ANSWERS = "tmp_output_gsm8k.txt"       # what the tool writes to its working folder
# The tool's report lines (few_shot_gsm8k.py, run_eval's prints) -> gsm8k.json's fields.
REPORT = {"accuracy": re.compile(r"^Accuracy: ([0-9.]+)$", re.M),
          "invalid": re.compile(r"^Invalid: ([0-9.]+)$", re.M),
          "latency_s": re.compile(r"^Latency: ([0-9.]+) s$", re.M),
          "output_throughput": re.compile(r"^Output throughput: ([0-9.]+) token/s$", re.M)}

@dataclasses.dataclass(frozen=True)
class EvalSettings:
    questions: int
    shots: int
    data: Path | None
    parallel: int
    client: str | None
    extra: list
    results_dir: Path

    @classmethod
    def from_environ(cls, environ=None) -> "EvalSettings":
        values = options.read(options.EVAL, environ=environ)
        data = Path(values["eval_data"]) if values["eval_data"] else None
        if data and not data.is_file():
            raise render.RenderError(f"EVAL_DATA={data}: no such file (expected GSM8K's test.jsonl, one JSON question a line)")
        return cls(questions=values["eval_questions"], shots=values["eval_shots"], data=data,
                   parallel=values["eval_parallel"], client=values["eval_client"],
                   extra=shlex.split(values["eval_args"] or ""), results_dir=Path(values["results_dir"]))


def tool_args(settings: EvalSettings, data_path: str | None) -> list[str]:
    args = ["--num-questions", str(settings.questions), "--num-shots", str(settings.shots),
            "--parallel", str(settings.parallel)]
    if data_path:
        args += ["--data-path", data_path]
    return args + settings.extra


def parse_report(report: str) -> dict:
    """The four figures few_shot_gsm8k prints; a clear error when its report is not there."""
    figures = {}
    for name, pattern in REPORT.items():
        found = pattern.search(report)
        if not found:
            raise BenchError(f"few_shot_gsm8k's report has no {pattern.pattern!r} line; see gsm8k.log")
        figures[name] = float(found.group(1))
    return figures


def run_on_host(target: bench.Target, settings: EvalSettings, folder: Path) -> tuple[list, int]:
    host, port = bench.host_and_port(target.url)
    data = str(settings.data.resolve()) if settings.data else None
    argv = shlex.split(settings.client) + [str(RUNNER), "--host", host, "--port", port] + tool_args(settings, data)
    env = bench.client_environment(target, offline=False)
    work = folder / "work"          # the tool writes its answers to its working folder
    work.mkdir()
    code = bench.stream(argv, folder / "gsm8k.log", env=env, cwd=work)
    if (work / ANSWERS).is_file():
        (work / ANSWERS).rename(folder / "gsm8k_answers.txt")
    work.rmdir()
    return argv, code


def run_in_container(target: bench.Target, settings: EvalSettings, folder: Path) -> tuple[list, int]:
    data = bench.copy_into_container(target, settings.data, "bundle-gsm8k.jsonl") if settings.data else None
    work = f"/tmp/bundle-eval-{folder.name}"
    host, port = bench.container_endpoint(target.config)
    script = (f'{bench.CONTAINER_CLIENT} && mkdir -p {work} && cd {work} && exec python3 - --host {host} '
              f'--port {port} ' + shlex.join(tool_args(settings, data)))
    argv = target.compose("exec", "-T", target.service, "sh", "-c", script)
    with open(RUNNER) as runner:   # fed on stdin: the image needs no copy of the bundle's tools
        code = bench.stream(argv, folder / "gsm8k.log", stdin=runner)
    if code == 0:
        answers = bench.read_from_container(target, f"{work}/{ANSWERS}")
        (folder / "gsm8k_answers.txt").write_text(answers)
        bench.deploy.run(target.compose("exec", "-T", target.service, "rm", "-rf", work))
    return argv, code


def failure_hint(settings: EvalSettings, folder: Path) -> str:
    if not settings.client and "No module named" in (folder / "gsm8k.log").read_text():
        return ("; this engine image has no SGLang frontend (the CPU stand-in's has none): run it on this host "
                "with EVAL_CLIENT=python3 (a Python with sglang installed)")
    return ""


def verdict(accuracy: float, references: list, questions: int) -> str:
    """Above or below each reference, and how much 'questions' answers can tell apart (two standard
    errors of an accuracy near the first reference's)."""
    sides = [f"{'at or above' if accuracy >= r['accuracy'] else 'BELOW'} {r['label']} ({r['accuracy']:.3f})"
             for r in references]
    p = references[0]["accuracy"]
    noise = 2 * math.sqrt(p * (1 - p) / questions)
    return f"verdict: {accuracy:.3f} is " + "; ".join(sides) + f" (noise at {questions} questions: +/-{noise:.3f})"


def comparison_table(figures: dict, references: list, standin: bool, questions: int, shots: int) -> str:
    measured = "measured (stand-in)" if standin else "measured"
    lines = [f"GSM8K, {questions} questions, {shots}-shot ({TOOL}), accuracy"]
    if standin:
        lines.append(bench.STANDIN_NOTE)
    header = f"{'reference':<28} {'accuracy':>9} {measured:>20} {'ratio':>9}  "
    lines += [header, "-" * (len(header) + 18)]
    for reference in references:
        ratio = bench.ratio(figures["accuracy"], reference["accuracy"])
        lines.append(f"{reference['label']:<28} {reference['accuracy']:>9.3f} {figures['accuracy']:>20.3f} "
                     f"{bench.shown_ratio(ratio):>9}  higher is better  ({reference['note']})")
    lines.append(verdict(figures["accuracy"], references, questions))
    lines.append(f"invalid answers {figures['invalid']:.3f}, {figures['latency_s']:.1f} s, "
                 f"{figures['output_throughput']:,.0f} output tok/s")
    return "\n".join(lines)


def run(environ=None) -> int:
    settings = EvalSettings.from_environ(environ)
    target = bench.find_target()
    record = bench.deployment_record(target)
    seed = bench.load_seed()["gsm8k"]
    folder = bench.results_folder(settings.results_dir, record)
    where = (f"this host ({settings.client}) -> {target.url}" if settings.client
             else bench.container_client(target.config, target.service))
    print(f"==> {TOOL} from {where}; results in {folder}", flush=True)
    runner = run_on_host if settings.client else run_in_container
    argv, code = runner(target, settings, folder)
    facts = {"tool": TOOL, "runner": "tools/few_shot_gsm8k_with_key.py", "client": where,
             "command": shlex.join(argv), "questions": settings.questions, "shots": settings.shots,
             "dataset": str(settings.data) if settings.data else "downloaded by the tool (openai/grade-school-math)"}
    bench.write_json(folder / "deployment.json", {**record, "eval": facts})
    if code != 0:
        raise BenchError(f"few_shot_gsm8k failed (exit {code}); its output is in {folder / 'gsm8k.log'}"
                         + failure_hint(settings, folder))
    figures = parse_report((folder / "gsm8k.log").read_text())
    bench.write_json(folder / "gsm8k.json", {**figures, "questions": settings.questions, "shots": settings.shots,
                                              "standin": record["standin"]})
    table = comparison_table(figures, seed["references"], record["standin"], settings.questions, settings.shots)
    if (settings.questions, settings.shots) != (seed["num_questions"], seed["num_shots"]):
        table += (f"\nnote: not the seed's {seed['num_questions']} questions, {seed['num_shots']}-shot: "
                  "the ratios compare different experiments")
    (folder / "comparison.txt").write_text(table + "\n")
    print("\n" + table + f"\n\n==> kept in {folder}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "settings"))
    args = parser.parse_args(argv)
    try:
        if args.command == "settings":
            print(options.command_listing(options.EVAL))
            return 0
        return run()
    except (BenchError, render.RenderError) as err:
        print(f"eval: {err}", file=sys.stderr)
        return errors.status(err)


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
