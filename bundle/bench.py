"""`make bench` and `make bench-compare`: SGLang's own bench_serving against the deployment on PORT=,
kept in a results folder and compared with the seed's table (bundle/seed_figures.yaml).

    python -m bundle.bench run                 one run, or one per BENCH_CONCURRENCY=1,8,32 (a sweep)
    python -m bundle.bench compare RESULT...   results side by side; --chart out.png draws them
    python -m bundle.bench settings            the BENCH_* variables, their defaults and help (bundle/options.py)

Where bench_serving runs. By default inside the engine container: the image has SGLang's own tool,
and the Hugging Face cache is mounted there, so `BENCH_DATASET=random-ids` finds the model's tokenizer
offline. It talks to the guard on the container's port, the listener the published port maps to,
with the deployment's API key read there from its secret file: it measures what clients get, guard
included. `BENCH_CLIENT="python3 -m sglang.bench_serving"` runs it on this host instead, against the
published port (Docker's port forwarding included), with the key from API_KEY_FILE in its
environment. Never the key on an argument list.

Each run writes results/<UTC time>-<hardware>-<preset>/: bench_serving.jsonl (the tool's own JSON,
one line per run), bench_serving.log (its report), deployment.json (what was measured and how, no
secrets) and comparison.txt (the table printed at the end).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import yaml

from bundle import deploy, errors, options, render
from launcher import sglang_flags
from launcher.command import DEFAULT_FLAGS, build_config
from launcher.settings import ConfigError

SEED_FIGURES = Path(__file__).with_name("seed_figures.yaml")
BENCH_TOOL = "sglang.bench_serving"          # the seed's command; a shim of sglang.benchmark.serving in 0.5.23
STANDIN_LABEL = "io.sglang.standin"          # tests/standin/Dockerfile's image label
STANDIN_NOTE = ("STAND-IN ENGINE: the CPU stand-in (tests/standin) answers placeholder words and is not a "
                "model; these numbers measure the bundle's plumbing, never the engine")
# Inside the container: the guard's port (SGLang's --port, from ENGINE_PORT) and the client key from
# the deployment's secret file or variable, exported for the tool only, never on a command line.
CONTAINER_CLIENT = ('cd /tmp && GUARD_PORT="${ENGINE_PORT:-${PORT:-' + DEFAULT_FLAGS["--port"] + '}}" && '
                    'if [ -n "${ENGINE_API_KEY_FILE:-}" ]; then OPENAI_API_KEY=$(cat "$ENGINE_API_KEY_FILE"); '
                    'elif [ -n "${ENGINE_API_KEY:-}" ]; then OPENAI_API_KEY="$ENGINE_API_KEY"; fi; '
                    'if [ -n "${OPENAI_API_KEY:-}" ]; then export OPENAI_API_KEY; fi')
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
DATASETS = ("sharegpt", "random-ids", "random")


class BenchError(Exception):
    pass


# ---- settings: bundle/options.py's rows for make bench, read from the environment it exports -----

@dataclasses.dataclass(frozen=True)
class BenchSettings:
    dataset: str
    dataset_path: str | None
    prompts: int
    rate: float
    concurrency: list | None
    input_len: int | None
    output_len: int | None
    tokenizer: str | None
    client: str | None
    target: str
    extra: list
    results_dir: Path

    @classmethod
    def from_environ(cls, environ=None) -> "BenchSettings":
        values = options.read(options.BENCH, environ=environ)
        settings = cls(dataset=values["bench_dataset"], dataset_path=values["bench_dataset_path"],
                       prompts=values["bench_prompts"], rate=values["bench_rate"],
                       concurrency=values["bench_concurrency"], input_len=values["bench_input_len"],
                       output_len=values["bench_output_len"], tokenizer=values["bench_tokenizer"],
                       client=values["bench_client"], target=values["bench_target"],
                       extra=shlex.split(values["bench_args"] or ""), results_dir=Path(values["results_dir"]))
        settings.check()
        return settings

    def check(self) -> None:
        if self.target == "engine":
            raise render.RenderError(ENGINE_TARGET_REFUSED)
        if self.dataset == "sharegpt" and self.input_len:
            raise render.RenderError("BENCH_INPUT_LEN applies to BENCH_DATASET=random-ids or random; ShareGPT prompts "
                             "keep their own lengths")
        if self.dataset_path and not Path(self.dataset_path).is_file():
            raise render.RenderError(f"BENCH_DATASET_PATH={self.dataset_path}: no such file (expected a ShareGPT JSON file)")

    @property
    def offline(self) -> bool:
        """Nothing to download but the tokenizer, which the mounted cache holds."""
        return self.dataset == "random-ids" or bool(self.dataset_path)

    @property
    def runs(self) -> list:
        """One run per concurrency of a sweep; [None]: no limit, as in the seed's run."""
        return self.concurrency or [None]


ENGINE_TARGET_REFUSED = (
    "BENCH_TARGET=engine: the engine answers only its per-start key, which the entrypoint hands it in a "
    "private file deleted once the engine listens (docs/security.md); reaching it directly would mean "
    "exposing that key, so the bundle offers no way to. The nearest honest measure: make bench measures the "
    "guard and the engine together, and benchmarks/bench_guard.py measures what the guard alone adds per "
    "request and per streamed token (figures in docs/testing.md); subtract it from TTFT and ITL.")


# ---- bench_serving's arguments -----------------------------------------------------------------

def rate_text(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g}"


def bench_serving_args(settings: BenchSettings, concurrency: int | None, tokenizer: str | None,
                       dataset_path: str | None, output_file: str) -> list[str]:
    """The tool's arguments but --host/--port: the seed's run (sglang backend, ShareGPT, 100 prompts,
    rate inf), with this run's load shape."""
    args = ["--backend", "sglang", "--dataset-name", settings.dataset, "--num-prompts", str(settings.prompts),
            "--request-rate", rate_text(settings.rate)]
    if concurrency:
        args += ["--max-concurrency", str(concurrency)]
    if settings.input_len:
        args += ["--random-input-len", str(settings.input_len)]
    if settings.output_len:
        args += [("--sharegpt-output-len" if settings.dataset == "sharegpt" else "--random-output-len"),
                 str(settings.output_len)]
    if dataset_path:
        args += ["--dataset-path", dataset_path]
    if tokenizer:
        args += ["--tokenizer", tokenizer]
    return args + ["--output-file", output_file] + settings.extra


# ---- the deployment on PORT= -------------------------------------------------------------------

@dataclasses.dataclass
class Target:
    """The deployment on PORT= (`make deploy`'s or the top-level docker-compose.yml's), as make bench/eval
    reach it."""
    files: list
    url: str                      # http://host:port, as a client on this host reaches it
    api_key_file: Path | None     # on this host
    service: str
    config: dict                  # `docker compose config` of its files
    project: str | None = None    # its Compose project

    def compose(self, *args) -> list[str]:
        return deploy.compose(self.files, *args, project=self.project)


def find_target() -> Target:
    data = render.load_data()
    chosen = options.read(options.DEPLOY)
    params = options.params(chosen)
    port = params.port or data["container"]["default_port"]
    try:
        found = deploy.locate(data, port, [Path(o).resolve() for o in chosen["override"]])
    except deploy.DeployError as err:
        raise BenchError(str(err)) from None
    if not found.started:
        raise BenchError(f"the deployment on PORT={port} is not running ({found.describe()}): start it with "
                         f"`make deploy PORT={port}`")
    result = deploy.run(found.compose("config", "--format", "json"))
    if result.returncode != 0:
        raise BenchError(f"docker compose rejects {found.describe()}:\n{result.stderr.strip()}")
    config = json.loads(result.stdout)
    service = engine_service(config)
    return Target(files=found.files, url=deploy.local_url(params, data), api_key_file=api_key_file(config, service),
                  service=service, config=config, project=found.project)


def container_endpoint(config: dict) -> tuple[str, str]:
    """Host and port that bench/eval talk to from inside the engine container: its own guard, or, when
    the deployment has SGLang's gateway in front of several engines (REPLICAS=), the gateway by its
    service name on the deployment's network, the one endpoint clients have."""
    gateway = config["services"].get(deploy.GATEWAY_SERVICE)
    if gateway and gateway.get("ports"):
        return deploy.GATEWAY_SERVICE, str(gateway["ports"][0]["target"])
    return "127.0.0.1", '"$GUARD_PORT"'


def container_client(config: dict, service: str) -> str:
    """Where the in-container run goes, in words."""
    host, port = container_endpoint(config)
    return (f"the engine container ({service}) -> the gateway on {host}:{port}" if host == deploy.GATEWAY_SERVICE
            else f"the engine container ({service}) -> its guard on 127.0.0.1")


def api_key_file(config: dict, service: str) -> Path | None:
    """The host file behind the engine's ENGINE_API_KEY_FILE (a Compose secret, /run/secrets/<name>)."""
    inside = (config["services"][service].get("environment") or {}).get("ENGINE_API_KEY_FILE")
    if not inside:
        return None
    secret = (config.get("secrets") or {}).get(Path(inside).name) or {}
    return Path(secret["file"]) if secret.get("file") else None


def engine_service(config: dict) -> str:
    """The (first) service that runs an engine: it carries ENGINE_MODEL_PATH."""
    engines = sorted(name for name, service in config["services"].items()
                     if "ENGINE_MODEL_PATH" in (service.get("environment") or {}))
    if not engines:
        raise BenchError("the deployment has no engine service (no ENGINE_MODEL_PATH in its compose file)")
    return engines[0]


def generated_by(compose_file: Path) -> dict:
    """HARDWARE= and PRESET= from the rendered file's first line ('# GENERATED FILE, ...: make ...')."""
    first = compose_file.read_text().splitlines()[0]
    words = shlex.split(first.split(":", 1)[1]) if ":" in first else []
    pairs = dict(word.split("=", 1) for word in words if "=" in word)
    return {"hardware": pairs.get("HARDWARE", "unknown"), "preset": pairs.get("PRESET", "basic"),
            "rendered_by": first.split(":", 1)[-1].strip()}


def public_settings(environment: dict) -> dict:
    """The engine's ENGINE_*/SGLANG_*/BUNDLE_* settings without anything that could be a secret."""
    return {name: value for name, value in sorted(environment.items())
            if name.startswith(("ENGINE_", "SGLANG_", "BUNDLE_")) and not any(w in name for w in SECRET_WORDS)}


def hardware_profile(name: str) -> dict | None:
    """The profile's GPUs as presets/hardware.yaml describes them (what was rendered for, not probed)."""
    hardware = render.load_data()["hardware"]
    profile = hardware["hardware"].get(name)
    if not profile:
        return None
    gpu = hardware["gpus"][profile["gpu"]]
    return {"name": gpu["name"], "count": profile["count"], "memory_mib": gpu["memory_mib"],
            "summary": profile["summary"]}


def container_id(target: Target) -> str:
    return deploy.run(target.compose("ps", "-q", target.service)).stdout.strip()


def image_facts(target: Target) -> dict:
    service = target.config["services"][target.service]
    facts = {"image": service.get("image"),
             "base_image": ((service.get("build") or {}).get("args") or {}).get("BASE_IMAGE"),
             "image_id": None, "standin": False}
    container = container_id(target)
    if container:
        result = deploy.run(["docker", "inspect", "--format", "{{json .Image}}|{{json .Config.Labels}}", container])
        if result.returncode == 0 and "|" in result.stdout:
            image_id, labels = result.stdout.strip().split("|", 1)
            facts["image_id"] = json.loads(image_id)
            facts["standin"] = (json.loads(labels) or {}).get(STANDIN_LABEL) == "true"
    return facts


def says_standin(target: Target) -> bool:
    """The stand-in says what it is on /model_info (a `standin` field); a real engine has no such field."""
    headers = {}
    if target.api_key_file and target.api_key_file.is_file():
        headers["Authorization"] = "Bearer " + target.api_key_file.read_text().strip()
    request = urllib.request.Request(target.url + "/model_info", headers=headers)
    try:   # no proxy: the address is this host's
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as answer:
            return "standin" in json.loads(answer.read())
    except (OSError, ValueError):
        return False


def engine_flags(environment: dict, command) -> list | str:
    """The engine's SGLang flags as the container builds them from its settings (launcher/command.py;
    without the private --host/--port/--config it adds at start), or why they could not be built."""
    try:
        return build_config(public_settings(environment), list(command or []), sglang_flags.Catalogue.load()).argv
    except ConfigError as err:
        return f"not derived: {err}"


def deployment_record(target: Target) -> dict:
    """What was measured: hardware profile, preset, image, the engine's settings (flags). No secrets."""
    service = target.config["services"][target.service]
    environment = service.get("environment") or {}
    record = {**generated_by(target.files[0]), **image_facts(target)}
    record["standin"] = record["standin"] or says_standin(target)
    record.update({
        "gpu": hardware_profile(record["hardware"]),
        "url": target.url,
        "api_key": any(name.startswith("ENGINE_API_KEY") for name in environment),
        "gateway": deploy.GATEWAY_SERVICE in target.config["services"],
        "engine_settings": public_settings(environment),
        "flags": engine_flags(environment, service.get("command")),
        "overrides": [str(f) for f in target.files[1:]],
    })
    return record


# ---- results -----------------------------------------------------------------------------------

def results_folder(root: Path, record: dict, now: datetime.datetime | None = None) -> Path:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    name = f"{now:%Y%m%dT%H%M%SZ}-{record['hardware']}-{record['preset']}" + ("-standin" if record["standin"] else "")
    folder = root / name
    suffix = 1
    while folder.exists():   # two runs in the same second
        suffix += 1
        folder = root / f"{name}-{suffix}"
    folder.mkdir(parents=True)
    return folder


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_runs(path: Path) -> list[dict]:
    """bench_serving's JSONL (one run a line), from a results folder or the file itself."""
    path = Path(path)
    file = path / "bench_serving.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise render.RenderError(f"{path}: expected a results folder holding bench_serving.jsonl, or such a file")
    runs = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    if not runs:
        raise render.RenderError(f"{file}: no runs in it")
    return runs


def read_record(path: Path) -> dict:
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    record_file = folder / "deployment.json"
    return json.loads(record_file.read_text()) if record_file.is_file() else {}


def is_standin(run: dict, record: dict) -> bool:
    """Stand-in numbers are labelled: the image's label, or the stand-in's own word in /server_info."""
    return bool(record.get("standin")) or bool((run.get("server_info") or {}).get("standin"))


# ---- the table ---------------------------------------------------------------------------------

def load_seed() -> dict:
    return yaml.safe_load(SEED_FIGURES.read_text())


def ratio(measured: float | None, seed: float | None) -> float | None:
    return None if measured is None or not seed else measured / seed


def shown_ratio(value: float | None) -> str:
    """measured / seed; two significant digits below 0.1, so a tiny ratio is not shown as 0.00x."""
    if value is None:
        return "-"
    return f"{value:.2g}x" if value < 0.1 else f"{value:.2f}x"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) < 10_000 else f"{value:,.0f}"


def run_load(run: dict, prompts: int | None) -> dict:
    """The run's load shape in the seed's terms; its JSON has no prompt count (the record has)."""
    request_rate = run.get("request_rate")
    infinite = request_rate in (None, "inf") or (isinstance(request_rate, float) and math.isinf(request_rate))
    return {"dataset_name": run.get("dataset_name"), "num_prompts": prompts,
            "request_rate": "inf" if infinite else request_rate, "max_concurrency": run.get("max_concurrency")}


def load_differences(run: dict, seed_load: dict, prompts: int | None) -> list[str]:
    load = run_load(run, prompts)
    def shown(value) -> str:
        return "not set" if value is None else str(value)
    return [f"{key} {shown(load[key])} (seed: {shown(seed_load[key])})" for key in seed_load
            if not (key == "num_prompts" and prompts is None) and shown(load[key]) != shown(seed_load[key])]


def comparison_rows(run: dict, seed: dict, with_ratios: bool = True) -> list[dict]:
    rows = []
    for figure in seed["figures"]:
        measured = run.get(figure["key"])
        rows.append({"label": figure["label"], "seed": figure["seed"], "measured": measured,
                     "ratio": ratio(measured, figure["seed"]) if with_ratios else None,
                     "better": f"{figure['better']} is better"})
    return rows


def aligned(rows: list[list[str]], left: int = 1) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell: the first `left` columns
    left-aligned (labels), the others right-aligned (numbers), the last one left-aligned (words)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1
    return ["  ".join(cell.ljust(width) if i < left or i == last else cell.rjust(width)
                      for i, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in rows]


def with_rule(lines: list[str]) -> list[str]:
    """The header, a rule as wide as the widest line, the rows."""
    return [lines[0], "-" * max(len(line) for line in lines), *lines[1:]]


def not_the_seeds_shape(differences: list[str]) -> str:
    return ("not the seed's load shape (" + "; ".join(differences) + "), so no ratios to the seed: they would "
            "compare different experiments")


def comparison_table(run: dict, seed: dict, record: dict, prompts: int | None = None) -> str:
    standin = is_standin(run, record)
    measured = "measured (stand-in)" if standin else "measured"
    shape = f"concurrency {run.get('max_concurrency') or 'not limited'}"
    lines = [f"bench_serving vs the seed ({seed['setup']}), {shape}"]
    if standin:
        lines.append(STANDIN_NOTE)
    differences = load_differences(run, seed["load"], prompts)
    rows = [["figure", "seed", measured, "ratio", ""]]
    rows += [[row["label"], number(row["seed"]), number(row["measured"]), shown_ratio(row["ratio"]), row["better"]]
             for row in comparison_rows(run, seed, with_ratios=not differences)]
    lines += with_rule(aligned(rows))
    if differences:
        lines.append("note: " + not_the_seeds_shape(differences))
    return "\n".join(lines)


# ---- running bench_serving ---------------------------------------------------------------------

STDERR_KEPT = 4000   # characters of a failed tool's stderr kept in its log (the reason it failed)


def stream(argv: list[str], log: Path, env=None, stdin=None, cwd=None) -> int:
    """Run, showing its report as it comes (and keeping it in `log`). Its stderr, where the progress bar
    redraws itself with carriage returns, goes to the terminal as it comes; when the tool fails, the end
    of it is added to `log`."""
    tail = bytearray()

    def forward_stderr(pipe) -> None:
        for chunk in iter(lambda: os.read(pipe.fileno(), 4096), b""):
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()
            tail.extend(chunk)
            del tail[:-STDERR_KEPT]

    with open(log, "a") as kept, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                  stdin=stdin, text=True, env=env, cwd=cwd,
                                                  bufsize=1) as process:
        reader = threading.Thread(target=forward_stderr, args=(process.stderr,), daemon=True)
        reader.start()
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            kept.write(line)
        process.wait()
        reader.join()
        if process.returncode != 0:
            kept.write(f"\n--- exit {process.returncode}; the end of its stderr ---\n"
                       + tail.decode(errors="replace").replace("\r", "\n") + "\n")
    return process.returncode


def client_environment(target: Target, offline: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "API_KEY")}
    if target.api_key_file:
        try:
            env["OPENAI_API_KEY"] = target.api_key_file.read_text().strip()
        except OSError as err:
            raise BenchError(f"API_KEY_FILE={target.api_key_file}: cannot read it ({err.strerror})") from None
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def host_and_port(url: str) -> tuple[str, str]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host.strip("[]"), port


def run_on_host(target: Target, settings: BenchSettings, folder: Path, concurrency) -> tuple[list, int]:
    host, port = host_and_port(target.url)
    args = bench_serving_args(settings, concurrency, settings.tokenizer, settings.dataset_path,
                              str((folder / "bench_serving.jsonl").resolve()))
    argv = shlex.split(settings.client) + ["--host", host, "--port", port] + args
    code = stream(argv, folder / "bench_serving.log", env=client_environment(target, settings.offline), cwd=folder)
    return argv, code


def copy_into_container(target: Target, source: Path, name: str) -> str:
    inside = f"/tmp/{name}"
    result = deploy.run(target.compose("cp", str(source.resolve()), f"{target.service}:{inside}"))
    if result.returncode != 0:
        raise BenchError(f"could not copy {source} into the engine container:\n{result.stderr.strip()}")
    return inside


def read_from_container(target: Target, path: str) -> str:
    result = deploy.run(target.compose("exec", "-T", target.service, "sh", "-c", f"cat {path} && rm -f {path}"))
    if result.returncode != 0:
        raise BenchError(f"bench_serving left no result in the container ({path}):\n{result.stderr.strip()}")
    return result.stdout


def run_in_container(target: Target, settings: BenchSettings, folder: Path, concurrency) -> tuple[list, int]:
    service = target.config["services"][target.service]
    tokenizer = settings.tokenizer
    if not tokenizer and settings.dataset == "random-ids":
        tokenizer = (service.get("environment") or {}).get("ENGINE_MODEL_PATH")   # from the mounted cache
    dataset = copy_into_container(target, Path(settings.dataset_path), "bundle-bench-dataset.json") \
        if settings.dataset_path else None
    output = f"/tmp/bundle-bench-{folder.name}.jsonl"
    args = bench_serving_args(settings, concurrency, tokenizer, dataset, output)
    host, port = container_endpoint(target.config)
    script = f'{CONTAINER_CLIENT} && exec python3 -m {BENCH_TOOL} --host {host} --port {port} ' + shlex.join(args)
    offline = ["-e", "HF_HUB_OFFLINE=1"] if settings.offline else []
    argv = target.compose("exec", "-T", *offline, target.service, "sh", "-c", script)
    code = stream(argv, folder / "bench_serving.log")
    if code == 0:
        with open(folder / "bench_serving.jsonl", "a") as kept:
            kept.write(read_from_container(target, output))
    return argv, code


def failure_hint(settings: BenchSettings, folder: Path) -> str:
    log = (folder / "bench_serving.log").read_text() if (folder / "bench_serving.log").is_file() else ""
    if not settings.client and "No module named" in log:
        return ("; this engine image has no sglang.bench_serving (the CPU stand-in's has none): run it on this "
                "host with BENCH_CLIENT=\"python3 -m sglang.bench_serving\"")
    return ""


def run(environ=None) -> int:
    settings = BenchSettings.from_environ(environ)
    target = find_target()
    record = deployment_record(target)
    seed = load_seed()["bench"]
    folder = results_folder(settings.results_dir, record)
    where = (f"this host ({settings.client}) -> {target.url}" if settings.client
             else container_client(target.config, target.service))
    print(f"==> bench_serving from {where}; results in {folder}", flush=True)
    commands = []
    for concurrency in settings.runs:
        runner = run_on_host if settings.client else run_in_container
        argv, code = runner(target, settings, folder, concurrency)
        commands.append(argv)
        if code != 0:
            write_json(folder / "deployment.json", {**record, "bench": bench_facts(settings, commands, where)})
            raise BenchError(f"bench_serving failed (exit {code}); its output is in {folder / 'bench_serving.log'}"
                             + failure_hint(settings, folder))
    write_json(folder / "deployment.json", {**record, "bench": bench_facts(settings, commands, where)})
    tables = [comparison_table(run_, seed, record, settings.prompts) for run_ in read_runs(folder)]
    (folder / "comparison.txt").write_text("\n\n".join(tables) + "\n")
    print("\n" + "\n\n".join(tables))
    print(f"\n==> kept in {folder}")
    return 0


def bench_facts(settings: BenchSettings, commands: list, where: str) -> dict:
    shown = {o.variable: os.environ.get(o.variable) or o.shown(o.default) or ""
             for o in options.for_command(options.BENCH)}
    return {"tool": BENCH_TOOL, "client": where, "settings": shown, "num_prompts": settings.prompts,
            "commands": [shlex.join(argv) for argv in commands]}


# ---- make bench-compare ------------------------------------------------------------------------

def columns(paths: list) -> list[dict]:
    """One column per run in each result: its label, its figures, stand-in or not, and how its load
    differs from the seed's (its prompt count from the result's record, when there is one)."""
    out = []
    seed_load = load_seed()["bench"]["load"]
    for path in paths:
        record = read_record(Path(path))
        prompts = (record.get("bench") or {}).get("num_prompts")
        for run_ in read_runs(Path(path)):
            name = Path(path).name if Path(path).is_dir() else Path(path).stem
            concurrency = run_.get("max_concurrency")
            label = name + (f" c={concurrency}" if concurrency else "")
            out.append({"label": label, "run": run_, "standin": is_standin(run_, record),
                        "differences": load_differences(run_, seed_load, prompts)})
    return out


def compare_cell(value: float | None, seed: float | None, with_ratio: bool) -> str:
    shown = ratio(value, seed) if with_ratio else None
    return number(value) + ("" if shown is None else f" ({shown_ratio(shown)})")


def compare_table(cols: list[dict], seed: dict) -> str:
    heads = [c["label"] + (" (stand-in)" if c["standin"] else "") for c in cols]
    rows = [["figure", "seed", *heads, ""]]
    for figure in seed["figures"]:
        rows.append([figure["label"], number(figure["seed"]),
                     *[compare_cell(c["run"].get(figure["key"]), figure["seed"], not c["differences"]) for c in cols],
                     f"{figure['better']} is better"])
    lines = with_rule(aligned(rows))
    if any(c["standin"] for c in cols):
        lines.append(STANDIN_NOTE)
    if any(not c["differences"] for c in cols):
        lines.append("(ratio to the seed in brackets)")
    lines += [f"note: {c['label']}: " + not_the_seeds_shape(c["differences"]) for c in cols if c["differences"]]
    return "\n".join(lines)


def draw_chart(cols: list[dict], seed: dict, out: Path) -> None:
    """Throughput and latency per result, with the seed's figures as the first bars."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("CHART= needs matplotlib (an optional dependency): "
                         f"{sys.executable} -m pip install -r requirements-chart.txt") from None
    groups = (("Throughput (higher is better)", "tok/s or req/s", "higher"),
              ("Latency (lower is better)", "ms", "lower"))
    names = [f"seed ({seed['setup']})"] + [c["label"] + (" (stand-in)" if c["standin"] else "") for c in cols]
    figure, axes = plt.subplots(1, 2, figsize=(6 + 1.6 * len(names), 4.8))
    for axis, (title, unit, better) in zip(axes, groups):
        figures = [f for f in seed["figures"] if f["better"] == better]
        bar = 0.8 / len(names)
        for index, name in enumerate(names):
            values = [(f["seed"] if index == 0 else cols[index - 1]["run"].get(f["key"])) or 0 for f in figures]
            axis.bar([i + index * bar for i in range(len(figures))], values, bar, label=name)
        axis.set_xticks([i + bar * (len(names) - 1) / 2 for i in range(len(figures))])
        axis.set_xticklabels([f["label"].split(" (")[0] for f in figures], rotation=15, fontsize=8)
        axis.set_title(title)
        axis.set_ylabel(unit)
        axis.set_yscale("log")
    axes[1].legend(fontsize=7)
    if any(c["standin"] for c in cols):
        figure.suptitle("stand-in numbers: the CPU stand-in is not a model", color="red")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def compare(paths: list, chart: Path | None) -> int:
    if not paths:
        raise render.RenderError("RESULTS= is empty: give results folders (or bench_serving.jsonl files), "
                         "e.g. make bench-compare RESULTS=\"results/a results/b\"")
    cols = columns(paths)
    seed = load_seed()["bench"]
    print(compare_table(cols, seed))
    if chart:
        draw_chart(cols, seed, chart)
        print(f"==> chart: {chart}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="make bench")
    compare_cmd = commands.add_parser("compare", help="make bench-compare")
    compare_cmd.add_argument("results", nargs="*", help="results folders or bench_serving.jsonl files")
    compare_cmd.add_argument("--chart", type=Path, help="also draw a PNG chart here (needs matplotlib)")
    commands.add_parser("settings", help="the BENCH_* variables")
    args = parser.parse_args(argv)
    try:
        if args.command == "settings":
            print(options.command_listing(options.BENCH))
            return 0
        if args.command == "compare":
            return compare(args.results, args.chart)
        return run()
    except (BenchError, render.RenderError) as err:
        print(f"bench: {err}", file=sys.stderr)
        return errors.status(err)


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
