"""Every make variable the host tools read, declared once: variable, flag, type, default, check, help.

`make render` and `make deploy` pass nothing on their command lines: make exports the variables
given to it (`make deploy PORT=8001`) to the environment, and bundle/render.py and
bundle/deploy.py read them from there through this table, the same way; a command-line flag
(`python -m bundle.render render --port 8001`) overrides the environment. From the table come both
tools' argparse flags, `Params` (what the template gets), the "make render ..." line written into
every rendered file and `make options`. The other tools read theirs through the same table
(`read_one`): make doctor (ONLINE, HF_CACHE), make download (HF_CACHE), make k8s (NODES), make hosts
(INVENTORY, OUT), the monitoring URLs (PROMETHEUS_PORT, GRAFANA_PORT); and the variables the
rendered compose file itself reads at `docker compose up` time (RESTART_POLICY, HEALTHCHECK_*,
HF_CACHE, ...) are declared here too, so that `make options` lists them all; so are make bench's and
make eval's (BENCH_*, EVAL_*, RESULTS_DIR: bundle/bench.py and bundle/evaluate.py read them with
`read`, and `make bench-settings` lists just those with the same listing code). The container's own
BUNDLE_* settings are launcher/settings.py's: that table ships in the image, standard library only.

    python -m bundle.options        the table, as `make options` prints it
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import ipaddress
import os
import re
import shlex
import typing
from pathlib import Path

import yaml

from bundle.errors import RenderError
from launcher.settings import FALSE_WORDS, TRUE_WORDS

DATA_DIR = Path(__file__).resolve().parent.parent / "presets"
IMAGE_REFERENCE = re.compile(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
                             r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")


# ---- checks: text -> value, or ValueError saying what was expected --------------------------

def text(value: str) -> str:
    return value


def gpu_list(value: str) -> list[str]:
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not all(part.isdigit() for part in ids) or len(set(ids)) != len(ids):
        raise ValueError("expected distinct GPU indexes separated by commas, like 4,5,6,7")
    return ids


def port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError("expected 1-65535")
    return int(value)


def ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        raise ValueError("expected an IP address such as 127.0.0.1, 0.0.0.0 or a host's interface address") from None
    return value


def switch(value: str) -> bool:
    if value.lower() in TRUE_WORDS | FALSE_WORDS:   # the container's own boolean words
        return value.lower() in TRUE_WORDS
    raise ValueError("expected 1 or 0")


def image_reference(value: str) -> str:
    if not IMAGE_REFERENCE.fullmatch(value):
        raise ValueError("expected an image reference such as lmsysorg/sglang:v0.5.23-cu130-runtime or "
                         "repository:tag@sha256:<64 hex digits>")
    return value


def count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError("expected a whole number, 1 or more")
    return int(value)


def path_list(value: str) -> list[str]:
    return [part for part in value.split(",") if part]


def absolute_folder(value: str) -> str:
    if not value.startswith(("/", "~")):
        raise ValueError("expected an absolute folder such as /data/hf: docker compose takes a relative one "
                         "as a volume name, or relative to deploy/port-<PORT>/")
    return value


def counts(value: str) -> list[int]:
    return [count(part.strip()) for part in value.split(",")]


def rate(value: str) -> float:
    return _above_zero(value, "expected requests per second (a number above 0) or inf")


def one_of(*choices: str) -> typing.Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value
    return check


def _above_zero(value: str, expected: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise ValueError(expected)
    return number


def seconds(value: str) -> float:
    return _above_zero(value, "expected a number of seconds")


# ---- the table ------------------------------------------------------------------------------

RENDER, DEPLOY, EXPLAIN = "render", "deploy", "explain"
K8S, HOSTS, DOCTOR, DOWNLOAD = "k8s", "hosts", "doctor", "download"
BENCH, EVAL = "bench", "eval"
UP = "compose up"     # read by the rendered compose file itself, from the environment or a .env beside it
# The commands whose tools take a flag for each of their variables (make hosts reads positional
# arguments, the compose file none).
FLAG_COMMANDS = (RENDER, DEPLOY, K8S, DOCTOR, DOWNLOAD)


@dataclasses.dataclass(frozen=True)
class Option:
    variable: str                 # the make variable = the environment variable
    type: type                    # of the parsed value (Params' annotation)
    check: typing.Callable        # text -> value; ValueError(what was expected)
    help: str
    default: object = None        # when unset or empty
    commands: tuple = (RENDER, DEPLOY)
    required_by: tuple = ()
    param: bool = True            # a field of Params, written into the rendered file's command line
    flag: str = ""                # default: --variable-in-lower-case
    value_name: str = ""          # an example value, as `make options` shows it (never the default)
    # Where the default lives when it is data, not code: (presets file without .yaml, key, ...),
    # read when shown so that `make options` says what the file says today.
    default_from: tuple = ()
    default_format: str = "{}"    # how a default_from value is written (a number of seconds: "{}s")
    default_text: str = ""        # the default in words, when it is worked out (GPUS: all of the profile's)

    @property
    def field(self) -> str:
        return self.variable.lower()

    @property
    def option(self) -> str:
        return self.flag or "--" + self.variable.lower().replace("_", "-")

    def read(self, value: str | None):
        """The value for this text (from the environment or a flag); the default when unset or empty."""
        if value is None or value == "":
            return list(self.default) if isinstance(self.default, list) else self.default
        try:
            return self.check(value)
        except ValueError as err:
            raise RenderError(f"{self.variable}={value!r}: {err}") from None

    @property
    def has_flag(self) -> bool:
        return any(command in FLAG_COMMANDS for command in self.commands)

    def shown_default(self) -> str:
        """The default as `make options` shows it: the value, or "-" when there is none."""
        if self.default_from:
            return self.default_format.format(data_value(self.default_from))
        if self.default_text:
            return self.default_text
        if isinstance(self.default, bool):
            return "1" if self.default else "0"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return "-" if self.default in (None, "", []) else str(self.default)

    def shown(self, value) -> str | None:
        """The value as a make variable's text; None when unset."""
        if value is True:
            return "1"
        if value in (None, False, "", []):
            return None
        return ",".join(value) if isinstance(value, list) else str(value)


OPTIONS = (
    Option("HARDWARE", str, text, "hardware profile (`make presets`); deploy, doctor, download: detected from "
           "nvidia-smi when unset", commands=(RENDER, DEPLOY, EXPLAIN, K8S), required_by=(RENDER, EXPLAIN, K8S),
           param=False, value_name="h100x4"),
    Option("PRESET", str, text, "optimization preset", default="basic", commands=(RENDER, DEPLOY, EXPLAIN, K8S),
           param=False, value_name="latency"),
    Option("OUT", Path, Path, "where to write: the compose file (render), the folder (k8s, hosts)",
           commands=(RENDER, K8S, HOSTS), required_by=(RENDER, K8S, HOSTS), param=False, value_name="path.yml"),
    Option("GPUS", list, gpu_list, "GPU indexes to use, as many as the profile has",
           default=[], default_text="all", value_name="4,5,6,7"),
    Option("REPLICAS", int, count,
           "engines behind SGLang's gateway, each on GPUs/REPLICAS of the profile (1: one engine, no gateway)",
           commands=(RENDER, DEPLOY, EXPLAIN, K8S), default_text="1", value_name="2"),
    Option("PORT", int, port, "host port of the deployment (make status, bench, eval, down find it by it)",
           default_from=("container", "default_port"), value_name="8001"),
    Option("BIND_ADDRESS", str, ip_address,
           "host address to publish on; beyond loopback it needs API_KEY_FILE=",
           default_from=("container", "default_bind_address"), value_name="0.0.0.0"),
    Option("API_KEY_FILE", str, text, "file holding the API key clients must send", value_name="secrets/api_key"),
    Option("ADMIN_API_KEY_FILE", str, text, "file holding the key for the engine's admin endpoints",
           value_name="secrets/admin_api_key"),
    Option("ALLOW_NO_API_KEY", bool, switch, "1: publish beyond loopback without an API key", default=False,
           value_name="1"),
    Option("LORA_DIR", str, text, "folder of LoRA adapters, mounted read-only at /adapters",
           value_name="/data/adapters"),
    Option("SECRETS_DIR", str, text, "folder holding hf_token", default_from=("container", "secrets_dir"),
           value_name="/etc/llama-secrets"),
    Option("ENV_FILE", str, text, "file of extra ENGINE_*/BUNDLE_* settings for the engine container",
           value_name="site.env"),
    Option("BASE_IMAGE", str, image_reference,
           "the SGLang image to build FROM (the lanes' are in presets/hardware.yaml); repository:tag@sha256:... "
           "pins it", default_text="the lane's", value_name="registry.local/sglang:tag"),
    Option("MONITORING", bool, switch,
           "1: Prometheus and Grafana beside the deployment, on 127.0.0.1 (monitoring.yml; docs/monitoring.md)",
           default=False, value_name="1"),
    Option("OVERRIDE", list, path_list, "compose files merged over the rendered one (tests, site tweaks)",
           default=[], commands=(DEPLOY,), param=False, value_name="a.yml,b.yml"),
    Option("SKIP_DOCTOR", bool, switch, "1: make deploy skips make doctor's host checks", default=False,
           commands=(DEPLOY,), param=False, value_name="1"),
    Option("DEPLOY_TIMEOUT", float, seconds, "seconds to wait until the engine is ready", default=3600.0,
           commands=(DEPLOY,), param=False, flag="--timeout", value_name="7200"),
    Option("ONLINE", bool, switch, "1: make doctor asks the Hub whether the token opens the model's repository",
           default=False, commands=(DOCTOR,), param=False, value_name="1"),
    Option("NODES", int, count, "nodes one engine spans (a LeaderWorkerSet of NODES pods)", default_text="1",
           commands=(K8S,), param=False, value_name="2"),
    # render.TP_ACROSS_NODES names it in render's refusals.
    Option("ALLOW_TP_ACROSS_NODES", bool, switch,
           "1, with NODES=: tensor parallel over every node's GPUs instead of one pipeline stage per node (every "
           "layer's all-reduce crosses the network; TP may exceed the model's KV heads)", default=False,
           commands=(K8S,), param=False, value_name="1"),
    Option("INVENTORY", Path, Path, "the inventory file of make hosts (see inventory.example.yml)",
           commands=(HOSTS,), required_by=(HOSTS,), param=False, value_name="inventory.yml"),
    # Read by the rendered compose file at `docker compose up` time (${VAR:-default} in
    # templates/docker-compose.yml.j2 and monitoring.yml.j2), and by the tools named.
    Option("HF_CACHE", str, absolute_folder,
           "host folder of the Hugging Face cache the engine mounts; read by docker compose at up time",
           commands=(UP, DOCTOR, DOWNLOAD), param=False, default_from=("container", "hf_cache_default"),
           value_name="/data/hf"),
    Option("RESTART_POLICY", str, text, "Docker's restart policy for the engine and the gateway; "
           "unless-stopped: always back, retrying even a configuration error forever",
           commands=(UP,), param=False, default_from=("container", "restart"), value_name="unless-stopped"),
    Option("HEALTHCHECK_INTERVAL", str, text, "time between the engine's healthchecks", commands=(UP,),
           param=False, default_from=("container", "healthcheck", "interval"), value_name="10s"),
    Option("HEALTHCHECK_TIMEOUT", str, text, "how long one healthcheck may take", commands=(UP,), param=False,
           default_from=("container", "healthcheck", "timeout"), value_name="60s"),
    Option("HEALTHCHECK_RETRIES", str, text, "failed healthchecks in a row before the engine is unhealthy",
           commands=(UP,), param=False, default_from=("container", "healthcheck", "retries"), value_name="5"),
    Option("HEALTHCHECK_START_PERIOD", str, text, "time to load before failed healthchecks count (engine and "
           "gateway)", commands=(UP,), param=False, default_from=("container", "healthcheck", "start_period"),
           value_name="3600s"),
    Option("GATEWAY_HEALTHCHECK_INTERVAL", str, text, "time between the gateway's healthchecks (REPLICAS=)",
           commands=(UP,), param=False, default_from=("gateway", "health_check_interval_secs"),
           default_format="{}s", value_name="30s"),
    Option("PROMETHEUS_PORT", int, port, "host port of Prometheus, on 127.0.0.1 (MONITORING=1); make deploy's "
           "message shows it", commands=(UP,), param=False, default_from=("monitoring", "prometheus", "host_port"),
           value_name="9091"),
    Option("GRAFANA_PORT", int, port, "host port of Grafana, on 127.0.0.1 (MONITORING=1); make deploy's "
           "message shows it", commands=(UP,), param=False, default_from=("monitoring", "grafana", "host_port"),
           value_name="3001"),
    # make bench's and make eval's, from the environment only (bundle/bench.py, bundle/evaluate.py).
    Option("BENCH_DATASET", str, one_of("sharegpt", "random-ids", "random"),
           "sharegpt (the seed's, downloaded from the Hub unless BENCH_DATASET_PATH), random-ids (offline: "
           "random token ids, the model's tokenizer from the mounted cache), random", default="sharegpt",
           commands=(BENCH,), param=False, value_name="random-ids"),
    Option("BENCH_DATASET_PATH", str, text, "a local ShareGPT JSON file (copied into the container)",
           commands=(BENCH,), param=False, value_name="sharegpt.json"),
    Option("BENCH_PROMPTS", int, count, "requests per run", default=100, commands=(BENCH,), param=False,
           value_name="20"),
    Option("BENCH_RATE", float, rate, "requests per second (Poisson arrivals); inf sends them all at once",
           default=float("inf"), commands=(BENCH,), param=False, value_name="4"),
    Option("BENCH_CONCURRENCY", list, counts, "most requests in flight; a list (1,8,32) runs a sweep",
           commands=(BENCH,), param=False, value_name="1,8,32"),
    Option("BENCH_INPUT_LEN", int, count, "prompt tokens (random-ids, random)", commands=(BENCH,), param=False,
           value_name="1024"),
    Option("BENCH_OUTPUT_LEN", int, count, "output tokens (random-ids, random; sharegpt: a fixed output length)",
           commands=(BENCH,), param=False, value_name="256"),
    Option("BENCH_TOKENIZER", str, text, "tokenizer folder or id (default: the served model's; in the container "
           "with random-ids, from the mounted cache)", commands=(BENCH,), param=False,
           value_name="/models/tokenizer"),
    Option("BENCH_CLIENT", str, text, "a command that runs bench_serving on this host, against the published "
           "port (default: SGLang's own, inside the engine container)", commands=(BENCH,), param=False,
           value_name="python3 -m sglang.bench_serving"),
    Option("BENCH_TARGET", str, one_of("guard", "engine"),
           "guard (what clients get); engine is refused, and says why and what to run instead", default="guard",
           commands=(BENCH,), param=False),
    Option("BENCH_ARGS", str, text, "more bench_serving arguments, appended last", commands=(BENCH,), param=False,
           value_name="--seed 7"),
    Option("EVAL_QUESTIONS", int, count, "questions (the seed's 200)", default=200, commands=(EVAL,), param=False,
           value_name="50"),
    Option("EVAL_SHOTS", int, count, "worked examples before each question (the seed's 5)", default=5,
           commands=(EVAL,), param=False, value_name="8"),
    Option("EVAL_DATA", str, text, "a local copy of GSM8K's test.jsonl (offline); default: downloaded from GitHub",
           commands=(EVAL,), param=False, value_name="test.jsonl"),
    Option("EVAL_PARALLEL", int, count, "questions in flight", default=128, commands=(EVAL,), param=False,
           value_name="32"),
    Option("EVAL_CLIENT", str, text, "a Python with SGLang on this host, e.g. python3, to run it here against "
           "the published port (default: inside the engine container)", commands=(EVAL,), param=False,
           value_name="python3"),
    Option("EVAL_ARGS", str, text, "more few_shot_gsm8k arguments, appended last", commands=(EVAL,), param=False,
           value_name="--max-new-tokens 256"),
    Option("RESULTS_DIR", str, text, "folder the results folders are written under", default="results",
           commands=(BENCH, EVAL), param=False, value_name="/data/results"),
)
BY_VARIABLE = {option.variable: option for option in OPTIONS}
PARAMS = tuple(option for option in OPTIONS if option.param)


def _param_field(option: Option):
    annotation = option.type if option.default is not None else option.type | None
    default = (dataclasses.field(default_factory=list) if isinstance(option.default, list)
               else dataclasses.field(default=option.default))
    return option.field, annotation, default


Params = dataclasses.make_dataclass("Params", [_param_field(option) for option in PARAMS],
                                    namespace={"__module__": __name__})
Params.__doc__ = "What the operator chooses at render time; one field per option with param=True, named as " \
                 "its make variable in lower case."


@functools.cache
def _data_file(name: str) -> dict:
    return yaml.safe_load((DATA_DIR / f"{name}.yaml").read_text())


def data_value(where: tuple):
    """A value of presets/<file>.yaml by its keys; where the file cannot say it, where to look."""
    name, *keys = where
    try:
        value = _data_file(name)
        for key in keys:
            value = value[key]
        return value
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return f"presets/{name}.yaml: {'.'.join(keys)}"


def read_one(variable: str, environ=None):
    """One variable's value from the environment, checked by its table entry; the default when unset."""
    environ = os.environ if environ is None else environ
    return BY_VARIABLE[variable].read(environ.get(variable))


def for_command(command: str) -> tuple:
    return tuple(option for option in OPTIONS if command in option.commands)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The command's flags, all text (checked by `read`), None when not given."""
    for option in for_command(command):
        help = f"{option.help} [{option.variable}=]"
        if option.type is bool:
            parser.add_argument(option.option, dest=option.field, action="store_const", const="1", help=help)
        elif option.type is list and option.check is path_list:
            parser.add_argument(option.option, dest=option.field, action="append", metavar=option.variable,
                                help=help + " (repeatable)")
        else:
            parser.add_argument(option.option, dest=option.field, metavar=option.variable, help=help)


def read(command: str, args: argparse.Namespace | None = None, environ=None) -> dict:
    """field -> value for the command's options: the flag when given, else the environment
    variable, else the default."""
    environ = os.environ if environ is None else environ
    values = {}
    for option in for_command(command):
        given = getattr(args, option.field, None) if args is not None else None
        if isinstance(given, list):
            given = ",".join(given)
        values[option.field] = option.read(environ.get(option.variable) if given is None else given)
    missing = [o for o in for_command(command) if command in o.required_by and not values[o.field]]
    if missing:
        raise RenderError(f"{command} needs " + " and ".join(f"{o.variable}= ({o.option})" for o in missing))
    return values


def params(values: dict):
    return Params(**{option.field: values[option.field] for option in PARAMS})


def command_line(hardware: str, preset: str, out: str, chosen, target: str = RENDER) -> str:
    """The `make` command that renders this file again, written into it."""
    parts = [f"HARDWARE={hardware}", f"PRESET={preset}"]
    for option in PARAMS:
        shown = option.shown(getattr(chosen, option.field))
        if shown is not None:
            parts.append(f"{option.variable}={shown}")
    parts.append(f"OUT={out}")
    return f"make {target} " + " ".join(shlex.quote(part) for part in parts)


def _used_by(option: Option) -> list[str]:
    """The commands that read it, a star on those that need it."""
    return [command + ("*" if command in option.required_by else "") for command in option.commands
            if command != EXPLAIN]


LISTING_HEAD = """\
The variables of the make targets, as `make deploy PORT=8001` takes them (make passes them to the
environment, where the tools read them; a tool's flag overrides its variable). "used by": the make
targets that read it (* where it is required; make doctor and make download also read make deploy's);
"compose up": the rendered compose file reads it at `docker compose up` time, from the environment or
a .env file beside it. "default": what applies when it is unset ("-": nothing, or see the meaning);
"e.g.": an example value, not a default. `make bench-settings` lists only make bench's and make eval's."""
COLUMNS = ("variable", "flag", "used by", "default", "e.g.", "meaning")


def rows(table: tuple = OPTIONS) -> list[tuple]:
    return [(option.variable, option.option if option.has_flag else "-", "/".join(_used_by(option)),
             option.shown_default(), option.value_name or "-", option.help) for option in table]


def listing(table: tuple = OPTIONS, head: str = LISTING_HEAD) -> str:
    """`make options` (and `make bench-settings`, for their commands' rows): one line per variable, in
    columns as wide as their widest entry."""
    cells = [COLUMNS, *rows(table)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    lines = ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
             for row in cells]
    return head + "\n\n" + "\n".join(line.rstrip() for line in lines)


def command_listing(command: str) -> str:
    """The listing of one tool's variables (make bench's, make eval's)."""
    return listing(for_command(command),
                   f"make {command} variables (with PORT= and OVERRIDE= of the deployment), from the environment:")


def markdown_table() -> str:
    """The README's table of the make variables (`make readme`)."""
    def code(cell: str) -> str:
        return "-" if cell == "-" else f"`{cell}`"

    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for option, (variable, flag, _, default, example, meaning) in zip(OPTIONS, rows()):
        used = ", ".join(("`docker compose up`" if command == UP else f"`make {command}`")
                         + (" (required)" if command in option.required_by else "")
                         for command in option.commands if command != EXPLAIN)
        table.append(f"| `{variable}` | {code(flag)} | {used} | {code(default)} | {code(example)} | "
                     f"{meaning.replace('|', '/')} |")
    return "\n".join(table)


if __name__ == "__main__":
    from bundle import cli
    cli.run(lambda: print(listing()))
