#!/usr/bin/env python3
"""Container entrypoint: environment -> checked SGLang command line -> supervised engine.

SGLang reads no environment variables as flag defaults, and a 70B engine loads for minutes before
it says that a flag was wrong. This file turns the environment into a validated SGLang argv in
well under a second, refuses bad configuration before anything starts, keeps secrets out of argv,
logs and HTTP responses, then runs the engine behind the guard (guard.py) and hands its exit code
back to Docker. The engine has keys of its own, made anew at every start and handed over in a
private file (`--config`), so that it refuses whatever did not come through the guard.

One rule covers every SGLang flag: ``--some-flag`` is set by ``ENGINE_SOME_FLAG``. The flags, their
types and choices come from sglang_flags.json, generated from the pinned SGLang's own parser by
tools/gen_flag_catalogue.py. The bundle's own settings are the BUNDLE_SETTINGS table below.

Modes (standard library only, Python >= 3.11):
    entrypoint.py [SGLANG FLAGS...]   check, preflight, start the engine (the container's default)
    entrypoint.py --print-command     print the final engine argv as one JSON array and exit
    entrypoint.py --healthcheck       exit 0 when the server answers its health probe (compose)
    entrypoint.py --list-env          print every setting: env name, flag, type, default, help
Exit codes: 0 and the engine's own codes; 78 (EX_CONFIG) for configuration errors, before any
process starts; 128+N when the engine died of signal N.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from guard import DEFAULT_MAX_CONNECTIONS, EngineKeys, Guard

EXIT_CONFIG_ERROR = 78
FLAG_ENV_PREFIX = "ENGINE_"
CATALOGUE_PATH = Path(__file__).with_name("sglang_flags.json")
ENGINE_LAUNCH_COMMAND = ("python3", "-m", "sglang.launch_server")
SECRET_PLACEHOLDER = "<redacted>"
# Where the running entrypoint notes the guard's port, for --healthcheck (which Docker runs without
# the container's arguments, so it cannot rebuild the configuration itself).
GUARD_STATE_FILE = Path("/tmp/bundle-guard.json")
DEFAULT_MODEL = "meta-llama/Llama-3.1-70B-Instruct"

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off"})


def env_name_for_option(option: str) -> str:
    """The one naming rule: --tp-size -> ENGINE_TP_SIZE."""
    return FLAG_ENV_PREFIX + option.lstrip("-").upper().replace("-", "_")


class ConfigError(Exception):
    """Configuration that cannot work; reported before any process starts."""


# ---------------------------------------------------------------------------------------------
# The configuration surface: the bundle's own settings, short aliases, defaults, secrets.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    env: str
    type: type
    default: object
    help: str
    minimum: float | None = None


BUNDLE_SETTINGS = (
    Setting("BUNDLE_PREFLIGHT", bool, True,
            "Check GPUs (count, memory, driver) and the memory arithmetic before starting the engine."),
    Setting("BUNDLE_PARSE_CHECK", bool, True,
            "Parse the final argv with the installed SGLang's own parser before starting, so a "
            "bundle/image version mismatch fails in seconds with SGLang's message."),
    Setting("BUNDLE_ENGINE_PORT", int, 30000,
            "Port of the engine inside the container, bound to 127.0.0.1 only; the guard serves "
            "--host:--port and forwards to it."),
    Setting("BUNDLE_HEALTHCHECK_PATH", str, "/health",
            "Route probed by --healthcheck. /health runs a one-token generation (proves the model "
            "answers, 1-20 s); /ready is a cheap status-flag check."),
    Setting("BUNDLE_HEALTHCHECK_TIMEOUT", float, 25.0,
            "Seconds --healthcheck waits; above SGLang's own 20 s /health generation timeout."),
    Setting("BUNDLE_GPU_DRIVER_MIN", int, 0,
            "Lowest NVIDIA driver major the image needs; 0 derives it from the image's CUDA_VERSION."),
    Setting("BUNDLE_GUARD_MAX_CONNECTIONS", int, DEFAULT_MAX_CONNECTIONS,
            "Most client connections the guard holds open at once; beyond it a client gets 503. "
            "Lowered at start to what the open-file limit allows.", minimum=1),
)

# Short names for the two settings everybody types; an error when given with their long form.
ALIASES = {"MODEL": "--model-path", "PORT": "--port"}

# What the bundle passes when neither arguments nor environment say otherwise.
DEFAULT_FLAGS = {"--model-path": DEFAULT_MODEL, "--host": "0.0.0.0", "--port": "8000"}

# postgres-style secrets: NAME or NAME_FILE, never both. None of them ever reaches the engine's
# argv: the guard checks API keys, and the Hugging Face token reaches huggingface_hub as a file.
SECRET_FLAGS = ("--api-key", "--admin-api-key")
SECRET_ENVS = ("HF_TOKEN", *(env_name_for_option(flag) for flag in SECRET_FLAGS))

# Flags the bundle owns: the guard publishes --host/--port, the engine stays on loopback.
GUARD_FLAGS = ("--host", "--port")
_NO_HTTP = ("it replaces the HTTP server with gRPC, so the OpenAI API, the guard and the healthcheck "
            "would have nothing to talk to")
_TLS = ("TLS on the engine would break the guard, which talks plain HTTP to it on loopback: terminate "
        "TLS in front of the published port (a reverse proxy or load balancer)")
REFUSED_FLAGS = {
    "--grpc-mode": _NO_HTTP,
    "--smg-grpc-mode": _NO_HTTP,
    "--ssl-keyfile": _TLS,
    "--ssl-certfile": _TLS,
    "--ssl-ca-certs": _TLS,
    "--ssl-keyfile-password": _TLS,
    "--enable-ssl-refresh": _TLS,
    "--fastapi-root-path": "the guard checks API keys by route path; serve under a prefix from the proxy in front",
    "--config": "the bundle hands the engine its per-start keys in a config file of its own, and SGLang "
                "takes only one; set flags as ENGINE_* variables or container arguments",
}

# Where --print-command and rendered files show the engine's key file; the real one is made at start.
ENGINE_KEY_FILE_PLACEHOLDER = "<per-start engine key file>"

# Kubernetes (and legacy Docker links) inject <SERVICE>_PORT=tcp://..., <SERVICE>_SERVICE_HOST and
# friends for every service in the namespace; a service named "engine" would look like our flags.
SERVICE_LINK = re.compile(r"ENGINE_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)")
SERVICE_LINK_VALUE = re.compile(r"(tcp|udp|sctp)://")


def is_service_link(name: str, value: str) -> bool:
    return bool(SERVICE_LINK.fullmatch(name)) or (name == "ENGINE_PORT" and bool(SERVICE_LINK_VALUE.match(value)))


def parse_bool(text: str, where: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{where}={text!r}: expected a boolean "
                      f"({'/'.join(sorted(TRUE_WORDS))} or {'/'.join(sorted(FALSE_WORDS))})")


def bundle_setting(name: str, environ) -> object:
    setting = next(s for s in BUNDLE_SETTINGS if s.env == name)
    raw = environ.get(name)
    if raw is None or raw == "":
        return setting.default
    if setting.type is bool:
        return parse_bool(raw, name)
    try:
        value = setting.type(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected {setting.type.__name__}. {setting.help}") from None
    if setting.minimum is not None and value < setting.minimum:
        raise ConfigError(f"{name}={raw!r}: expected at least {setting.minimum:g}. {setting.help}")
    return value


def file_env(name: str, environ) -> str | None:
    """Value of NAME, or the contents of the file NAME_FILE names (postgres' file_env)."""
    plain, file_var = environ.get(name), environ.get(name + "_FILE")
    if plain and file_var:
        raise ConfigError(f"both {name} and {name}_FILE are set; set only one "
                          f"({name}_FILE is the one that keeps the value out of `docker inspect`)")
    if file_var:
        try:
            value = Path(file_var).read_text().strip()
        except OSError as err:
            raise ConfigError(f"{name}_FILE={file_var}: cannot read the file ({err.strerror})") from None
        if not value:
            raise ConfigError(f"{name}_FILE={file_var}: the file is empty")
        return value
    return plain or None


# ---------------------------------------------------------------------------------------------
# The flag catalogue and value conversion.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Flag:
    options: tuple
    dest: str
    kind: str  # switch | negatable | value
    type: str | None
    nargs: object
    choices: tuple | None
    default: object
    help: str
    deprecated: str | None = None

    @property
    def option(self) -> str:
        return self.options[0]


class Catalogue:
    def __init__(self, flags):
        self.flags = flags
        self.by_option = {opt: f for f in flags for opt in f.options}
        self.by_env = {env_name_for_option(opt): (f, opt) for f in flags for opt in f.options}

    @classmethod
    def load(cls, path: Path = CATALOGUE_PATH) -> "Catalogue":
        data = json.loads(path.read_text())
        flags = [Flag(options=tuple(f["options"]), dest=f["dest"], kind=f["kind"], type=f["type"],
                      nargs=f["nargs"], choices=tuple(f["choices"]) if f["choices"] else None,
                      default=f["default"], help=f["help"], deprecated=f.get("deprecated"))
                 for f in data["flags"]]
        catalogue = cls(flags)
        catalogue.sglang_version = data["sglang_version"]
        return catalogue


_HUMAN_INT = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)")


def human_readable_int(text: str) -> int:
    """SGLang's human_readable_int: 128k = 128000, 128Ki = 131072, decimals for SI only."""
    match = _HUMAN_INT.fullmatch(text.strip())
    if match:
        number, suffix = match.groups()
        if suffix.endswith("i"):
            if "." in number:
                raise ValueError("decimals are not allowed with IEC suffixes")
            return int(number) * 2 ** (10 * ("KMGT".index(suffix[0]) + 1))
        from decimal import Decimal
        return int(Decimal(number) * 10 ** (3 * ("kMGT".index(suffix) + 1)))
    return int(text.strip())


SCALAR_PARSERS = {"str": str, "int": int, "float": float, "human_readable_int": human_readable_int,
                  "json": json.loads}
TYPE_HINTS = {"str": "a string", "int": "an integer", "float": "a number",
              "human_readable_int": "an integer, optionally with k/M/G or Ki/Mi/Gi (128k, 128Ki)",
              "json": "a JSON value"}


def split_list(text: str) -> list[str]:
    """A list value: a JSON array, or items separated by commas or whitespace."""
    text = text.strip()
    if text.startswith("["):
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("not a JSON array")
        return [item if isinstance(item, str) else json.dumps(item) for item in items]
    return [item for item in re.split(r"[,\s]+", text) if item]


def check_scalar(flag: Flag, text: str, where: str, whole: str | None = None):
    shown = f"{where}={text!r}" if whole is None else f"{where}={whole!r}: item {text!r}"
    try:
        value = SCALAR_PARSERS[flag.type](text)
    except (ValueError, json.JSONDecodeError) as err:
        raise ConfigError(f"{shown}: {flag.option} expects {TYPE_HINTS[flag.type]} ({err})") from None
    if flag.choices is not None and value not in flag.choices:
        allowed = ", ".join(str(c) for c in flag.choices)
        raise ConfigError(f"{shown}: {flag.option} must be one of: {allowed}")
    return value


def env_to_argv(flag: Flag, option: str, text: str, where: str) -> tuple[list[str], object]:
    """One environment value -> (argv tokens, parsed value)."""
    if flag.kind == "switch":
        return ([option], True) if parse_bool(text, where) else ([], False)
    if flag.kind == "negatable":
        wanted = parse_bool(text, where)
        if option.startswith("--no-"):
            wanted = not wanted
        positive = next(o for o in flag.options if not o.startswith("--no-"))
        negative = next(o for o in flag.options if o.startswith("--no-"))
        return ([positive] if wanted else [negative]), wanted
    if flag.nargs in ("+", "*"):
        try:
            items = split_list(text)
        except (ValueError, json.JSONDecodeError) as err:
            raise ConfigError(f"{where}={text!r}: {flag.option} expects a list: a JSON array or "
                              f"items separated by commas ({err})") from None
        if flag.nargs == "+" and not items:
            raise ConfigError(f"{where} is empty: {flag.option} expects at least one item")
        return [option, *items], [check_scalar(flag, item, where, text) for item in items]
    if flag.nargs == "?" and text == "":
        return [option], flag.default
    return [option, text], check_scalar(flag, text, where)


# ---------------------------------------------------------------------------------------------
# Building the engine command: arguments > environment > bundle defaults.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class EngineConfig:
    argv: list            # SGLang flags only, public --host/--port included
    values: dict          # dest -> parsed value, defaults filled in from the catalogue
    sources: dict         # dest -> where the value came from, for error messages
    api_key: str | None
    admin_api_key: str | None
    warnings: list

    def engine_argv(self, environ, key_file: str = ENGINE_KEY_FILE_PLACEHOLDER) -> list[str]:
        """The argv the engine really gets: loopback host, the internal port, its key file."""
        argv, skip = [], 0
        for token in self.argv:
            if skip:
                skip -= 1
                continue
            name = token.split("=", 1)[0]
            if name in GUARD_FLAGS:
                skip = 0 if "=" in token else 1
                continue
            argv.append(token)
        port = str(bundle_setting("BUNDLE_ENGINE_PORT", environ))
        return [*ENGINE_LAUNCH_COMMAND, *argv, "--host", "127.0.0.1", "--port", port, "--config", key_file]


def suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(close)}?" if close else ""


def collect_environment(environ, catalogue: Catalogue) -> dict:
    """dest -> (flag, argv tokens, value, source) for every ENGINE_* variable and alias."""
    chosen: dict = {}
    secret_names = {s for s in SECRET_ENVS} | {s + "_FILE" for s in SECRET_ENVS}
    for name in sorted(environ):
        text = environ[name]
        if name in ALIASES:
            flag = catalogue.by_option[ALIASES[name]]
            option = ALIASES[name]
        elif name.startswith(FLAG_ENV_PREFIX):
            if name in secret_names or is_service_link(name, text):
                continue
            if name not in catalogue.by_env:
                raise ConfigError(f"{name} is not a setting: no SGLang {catalogue.sglang_version} flag "
                                  f"is called --{name[len(FLAG_ENV_PREFIX):].lower().replace('_', '-')}."
                                  + suggest(name, list(catalogue.by_env) + list(ALIASES)))
            flag, option = catalogue.by_env[name]
        else:
            continue
        if flag.dest in chosen:
            other = chosen[flag.dest][3]
            raise ConfigError(f"{name} and {other} both set {flag.option}; set only one")
        tokens, value = env_to_argv(flag, option, text, name)
        chosen[flag.dest] = (flag, tokens, value, name)
    return chosen


def collect_arguments(args: list[str], catalogue: Catalogue) -> dict:
    """dest -> (flag, argv tokens, value, source) for flags given as container arguments."""
    chosen, index = {}, 0
    while index < len(args):
        token = args[index]
        option, inline = (token.split("=", 1) + [None])[:2] if token.startswith("--") else (token, None)
        flag = catalogue.by_option.get(option)
        if flag is None:
            matches = [o for o in catalogue.by_option if o.startswith(option)] if option.startswith("--") else []
            hint = (f" It abbreviates {', '.join(matches[:4])}; write the full option name."
                    if matches else suggest(option, catalogue.by_option))
            raise ConfigError(f"container argument {token!r} is not an SGLang {catalogue.sglang_version} "
                              f"flag.{hint}")
        index += 1
        values = [inline] if inline is not None else []
        if inline is None and flag.kind == "value":
            while index < len(args) and not args[index].startswith("--"):
                values.append(args[index])
                index += 1
                if flag.nargs is None:
                    break
        where = f"argument {option}"
        if flag.kind in ("switch", "negatable"):
            if values:
                raise ConfigError(f"{where} takes no value (got {values[0]!r})")
            tokens, value = [option], not option.startswith("--no-")
        elif flag.nargs in ("+", "*"):
            if flag.nargs == "+" and not values:
                raise ConfigError(f"{where} expects at least one value")
            tokens, value = [option, *values], [check_scalar(flag, v, where) for v in values]
        elif not values:
            if flag.nargs != "?":
                raise ConfigError(f"{where} expects a value")
            tokens, value = [option], flag.default
        else:
            tokens, value = [option, values[0]], check_scalar(flag, values[0], where)
        if flag.dest in chosen:
            raise ConfigError(f"{where} is given twice (also as {chosen[flag.dest][3]})")
        chosen[flag.dest] = (flag, tokens, value, where)
    return chosen


def build_config(environ, args: list[str], catalogue: Catalogue) -> EngineConfig:
    for alias, option in ALIASES.items():
        long_name = env_name_for_option(option)
        if environ.get(alias) and environ.get(long_name):
            raise ConfigError(f"both {alias} and {long_name} are set; {alias} is a short alias of "
                              f"{long_name}, set only one")
    from_env = collect_environment(environ, catalogue)
    from_args = collect_arguments(args, catalogue)
    for dest, (flag, _tokens, _value, where) in from_args.items():
        if flag.option in SECRET_FLAGS:
            raise ConfigError(f"{where}: a secret on the command line shows in `docker inspect` and "
                              f"`ps`; use {env_name_for_option(flag.option)}_FILE instead")
    chosen = {**from_env, **from_args}
    for option, default in DEFAULT_FLAGS.items():
        flag = catalogue.by_option[option]
        if flag.dest not in chosen:
            chosen[flag.dest] = (flag, [option, default], check_scalar(flag, default, "default"),
                                 "bundle default")

    warnings, argv = [], []
    model_first = sorted(chosen.items(), key=lambda item: item[0] != "model_path")
    for dest, (flag, tokens, _value, where) in model_first:
        if flag.option in REFUSED_FLAGS:
            raise ConfigError(f"{where}: {flag.option} is not supported by the bundle: "
                              f"{REFUSED_FLAGS[flag.option]}")
        if flag.deprecated and tokens:
            warnings.append(f"{where}: {flag.option} is deprecated in SGLang; use {flag.deprecated}")
        argv.extend(tokens)

    values = {f.dest: f.default for f in catalogue.flags}
    values.update({dest: entry[2] for dest, entry in chosen.items()})
    sources = {dest: entry[3] for dest, entry in chosen.items()}
    config = EngineConfig(argv=argv, values=values, sources=sources,
                          api_key=file_env(env_name_for_option("--api-key"), environ),
                          admin_api_key=file_env(env_name_for_option("--admin-api-key"), environ),
                          warnings=warnings)
    check_conflicts(config)
    return config


def check_conflicts(config: EngineConfig) -> None:
    """What SGLang only finds after loading (or never): refuse it now, in under a second."""
    v, src = config.values, config.sources

    def origin(*dests):
        return ", ".join(f"{src[d]}" for d in dests if d in src) or "defaults"

    algorithm = (v.get("speculative_algorithm") or "").upper()
    steps = ("speculative_num_steps", "speculative_eagle_topk", "speculative_num_draft_tokens")
    if algorithm in ("EAGLE", "EAGLE3", "NEXTN", "STANDALONE") and not v.get("speculative_draft_model_path"):
        raise ConfigError(
            f"speculative decoding {algorithm} needs a draft model ({origin('speculative_algorithm')}): "
            f"set {env_name_for_option('--speculative-draft-model-path')}. Without it SGLang 0.5.23 loads the target model "
            "a second time as its own draft and crashes after minutes (sglang issue #36528)")
    given = [s for s in steps if v.get(s) is not None]
    if given and len(given) != len(steps):
        missing = [env_name_for_option("--" + s.replace("_", "-")) for s in steps if s not in given]
        raise ConfigError(f"speculative step parameters are all-or-nothing: {origin(*given)} set "
                          f"but {', '.join(missing)} not (SGLang asserts after loading)")
    if given and not algorithm:
        raise ConfigError(f"{origin(*given)} set without {env_name_for_option('--speculative-algorithm')}")
    if algorithm and v.get("max_running_requests") is None:
        config.warnings.append(f"speculative decoding without {env_name_for_option('--max-running-requests')}: "
                               "SGLang caps concurrency at 48 on its own; set it explicitly")
    nnodes = int(v.get("nnodes") or 1)
    tp, pp, dp = int(v.get("tp_size") or 1), int(v.get("pp_size") or 1), int(v.get("dp_size") or 1)
    if nnodes > 1 and dp > 1:
        raise ConfigError(f"data-parallel replicas across nodes are not supported by SGLang "
                          f"({origin('dp_size', 'nnodes')}): use attention DP, or one deployment per node")
    if (tp * pp) % nnodes:
        raise ConfigError(f"tp_size*pp_size = {tp}*{pp} = {tp * pp} is not divisible by nnodes = {nnodes} "
                          f"({origin('tp_size', 'pp_size', 'nnodes')})")
    attn_dp = int(v.get("attn_dp_size") or 1)
    if attn_dp > 1 and dp > 1:
        raise ConfigError(f"attention DP ({origin('attn_dp_size')}) cannot be combined with "
                          f"dp_size > 1 ({origin('dp_size')})")
    if attn_dp > 1 and tp % attn_dp:
        raise ConfigError(f"attn_dp_size {attn_dp} must divide tp_size {tp} ({origin('attn_dp_size', 'tp_size')})")
    if v.get("enable_dp_attention") and dp == 1:
        config.warnings.append("--enable-dp-attention without a dp size does nothing; use "
                               f"{env_name_for_option('--attn-dp-size')}")
    if int(v.get("tokenizer_worker_num") or 1) > 1:
        raise ConfigError(f"tokenizer_worker_num > 1 ({origin('tokenizer_worker_num')}) is not supported by the "
                          "bundle: SGLang runs several tokenizer workers only without an API key, and the engine's "
                          "own per-start key is what refuses requests that did not come through the guard. "
                          "Scale with dp_size or replicas instead")
    if ":" in (v.get("served_model_name") or ""):
        raise ConfigError(f"served model name {v['served_model_name']!r} must not contain ':' "
                          f"({origin('served_model_name')})")


# ---------------------------------------------------------------------------------------------
# Memory arithmetic: weights per GPU plus the KV cache, against usable memory.
# ---------------------------------------------------------------------------------------------

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_context: int
    weight_format: str = "bf16"      # bf16 | fp8 (linear layers in FP8, the rest in BF16)
    tied_embeddings: bool = False

    @property
    def linear_params(self) -> int:
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    @property
    def other_params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return embeddings + (2 * self.layers + 1) * self.hidden

    def weight_bytes(self, fp8: bool) -> int:
        return self.linear_params * (1 if fp8 else 2) + self.other_params * 2


LLAMA31 = {
    "8B": ModelShape(32, 4096, 14336, 32, 8, 128, 128256, 131072),
    "70B": ModelShape(80, 8192, 28672, 64, 8, 128, 128256, 131072),
    "405B": ModelShape(126, 16384, 53248, 128, 8, 128, 128256, 131072),
}
FP8 = {"weight_format": "fp8"}
# Built-in table for when the model's config.json is not cached yet.
KNOWN_MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": LLAMA31["8B"],
    "meta-llama/Llama-3.1-70B-Instruct": LLAMA31["70B"],
    "meta-llama/Llama-3.1-405B-Instruct": LLAMA31["405B"],
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8": dataclasses.replace(LLAMA31["8B"], **FP8),
    "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8": dataclasses.replace(LLAMA31["70B"], **FP8),
    "nvidia/Llama-3.1-70B-Instruct-FP8": dataclasses.replace(LLAMA31["70B"], **FP8),
    "meta-llama/Llama-3.1-405B-Instruct-FP8": dataclasses.replace(LLAMA31["405B"], **FP8),
}
# EAGLE3 drafts: one decoder layer plus their own LM head; sizes from the model cards.
KNOWN_DRAFT_BYTES = {
    "lmsys/SGLang-EAGLE3-Llama-3.3-70B-Instruct-SpecForge": int(2.81e9),
    "yuhuili/EAGLE3-LLaMA3.3-Instruct-70B": int(2.81e9),
}
FP8_QUANTIZATIONS = {"fp8", "w8a8_fp8", "modelopt", "modelopt_fp8", "compressed-tensors"}
KV_BYTES = {"auto": None, "bf16": 2, "bfloat16": 2, "fp8_e4m3": 1, "fp8_e5m2": 1}
# SGLang sizes mem_fraction_static itself when it is unset; the arithmetic assumes this value.
ASSUMED_MEM_FRACTION = 0.85


def is_fp8_quantization(quant: dict) -> bool:
    """FP8 in any of the checkpoint formats: fp8/ModelOpt name it; compressed-tensors (RedHatAI)
    describes it as 8-bit float weights in its config groups."""
    if "fp8" in json.dumps(quant).lower():
        return True
    groups = (quant.get("config_groups") or {}).values()
    return any((group.get("weights") or {}).get("num_bits") == 8 and
               (group.get("weights") or {}).get("type") == "float" for group in groups)


def shape_from_config(config: dict) -> ModelShape:
    heads = config["num_attention_heads"]
    is_fp8 = is_fp8_quantization(config.get("quantization_config") or {})
    return ModelShape(layers=config["num_hidden_layers"], hidden=config["hidden_size"],
                      intermediate=config["intermediate_size"], heads=heads,
                      kv_heads=config.get("num_key_value_heads", heads),
                      head_dim=config.get("head_dim") or config["hidden_size"] // heads,
                      vocab=config["vocab_size"], max_context=config.get("max_position_embeddings", 0),
                      weight_format="fp8" if is_fp8 else "bf16",
                      tied_embeddings=bool(config.get("tie_word_embeddings")))


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    model: str
    gpu_memory_gib: float
    mem_fraction: float
    mem_fraction_assumed: bool
    weights_gib: float          # per GPU, draft model included
    kv_pool_gib: float          # per GPU
    kv_bytes_per_token: int     # per GPU
    kv_tokens: int
    needed_tokens: int          # one full-length sequence
    fp8_weights: bool
    kv_dtype_bytes: int

    @property
    def fits(self) -> bool:
        return self.kv_tokens >= self.needed_tokens

    def explain(self) -> str:
        fraction = f"{self.mem_fraction:.2f}" + (" (assumed, SGLang picks its own when unset)"
                                                  if self.mem_fraction_assumed else "")
        weights = "FP8" if self.fp8_weights else "BF16"
        kv = {1: "FP8", 2: "BF16"}[self.kv_dtype_bytes]
        return (f"{weights} weights {self.weights_gib:.1f} GiB per GPU; usable {self.gpu_memory_gib:.1f} GiB "
                f"x mem-fraction-static {fraction} = {self.gpu_memory_gib * self.mem_fraction:.1f} GiB; "
                f"{self.kv_pool_gib:.1f} GiB left for the {kv} KV cache at "
                f"{self.kv_bytes_per_token / 1024:.0f} KiB per token per GPU = {self.kv_tokens:,} tokens "
                f"(one {self.needed_tokens:,}-token sequence needs {self.needed_tokens:,})")


def plan_memory(model: str, shape: ModelShape, values: dict, gpu_memory_gib: float) -> MemoryPlan:
    """Weights and KV cache per GPU for one engine replica, from the resolved flag values."""
    tp, pp = int(values.get("tp_size") or 1), int(values.get("pp_size") or 1)
    quantization = values.get("quantization")
    fp8_weights = shape.weight_format == "fp8" or quantization in FP8_QUANTIZATIONS
    weights = shape.weight_bytes(fp8_weights) / (tp * pp)
    draft = values.get("speculative_draft_model_path")
    if draft:
        weights += KNOWN_DRAFT_BYTES.get(draft, 3 * 10 ** 9)
    kv_dtype_bytes = KV_BYTES.get(values.get("kv_cache_dtype") or "auto") or 2
    kv_heads_per_gpu = max(1, shape.kv_heads // tp)
    kv_per_token = 2 * (shape.layers // pp) * kv_heads_per_gpu * shape.head_dim * kv_dtype_bytes
    fraction = values.get("mem_fraction_static")
    pool = gpu_memory_gib * GIB * (fraction or ASSUMED_MEM_FRACTION) - weights
    needed = int(values.get("context_length") or shape.max_context)
    return MemoryPlan(model=model, gpu_memory_gib=gpu_memory_gib, mem_fraction=fraction or ASSUMED_MEM_FRACTION,
                      mem_fraction_assumed=fraction is None, weights_gib=weights / GIB,
                      kv_pool_gib=pool / GIB, kv_bytes_per_token=kv_per_token,
                      kv_tokens=max(0, int(pool // kv_per_token)), needed_tokens=needed,
                      fp8_weights=fp8_weights, kv_dtype_bytes=kv_dtype_bytes)


def model_shape(model: str, environ) -> ModelShape | None:
    """From the model's config.json when it is cached or local, else the built-in table."""
    candidates = [Path(model) / "config.json"]
    hub = Path(environ.get("HF_HUB_CACHE") or Path(environ.get("HF_HOME") or
               Path.home() / ".cache" / "huggingface") / "hub")
    candidates += sorted((hub / ("models--" + model.replace("/", "--")) / "snapshots").glob("*/config.json"))
    for path in candidates:
        try:
            return shape_from_config(json.loads(path.read_text()))
        except (OSError, KeyError, ValueError):
            continue
    return KNOWN_MODELS.get(model)


# ---------------------------------------------------------------------------------------------
# Preflight: the GPUs as the driver reports them.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mib: int
    driver: str
    vendor: str = "nvidia"


# The same fields as the real captures in tests/fixtures/gpu/, so the parser is tested on real output.
NVIDIA_FIELDS = ("index", "name", "memory.total", "memory.used", "memory.free", "driver_version", "uuid",
                 "compute_cap", "pci.bus_id", "power.limit")
NVIDIA_QUERY = ("nvidia-smi", "--query-gpu=" + ",".join(NVIDIA_FIELDS), "--format=csv,noheader,nounits")


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """Rows of `nvidia-smi --query-gpu=<NVIDIA_FIELDS> --format=csv[,noheader][,nounits]`."""
    fields, gpus = list(NVIDIA_FIELDS), []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if cells and not cells[0].isdigit():
            fields = [re.sub(r"\s*\[.*\]$", "", c) for c in cells]   # header: "memory.total [MiB]"
            continue
        row = dict(zip(fields, cells))
        gpus.append(Gpu(index=int(row["index"]), name=row["name"],
                        memory_mib=int(row["memory.total"].split()[0]), driver=row["driver_version"]))
    return gpus


def parse_amd_smi_json(text: str) -> list[Gpu]:
    """`rocm-smi --showproductname --showmeminfo vram --showdriverversion --json`."""
    data = json.loads(text)
    driver = str(data.get("system", {}).get("Driver version", ""))
    gpus = []
    for key, card in sorted(data.items()):
        match = re.fullmatch(r"card(\d+)", key)
        if not match:
            continue
        total = int(card.get("VRAM Total Memory (B)", 0))
        name = card.get("Card Series") or card.get("Card series") or card.get("Card model", "AMD GPU")
        gpus.append(Gpu(index=int(match.group(1)), name=name, memory_mib=total // 2 ** 20,
                        driver=driver, vendor="amd"))
    return gpus


def detect_gpus() -> list[Gpu]:
    if shutil.which("nvidia-smi"):
        out = subprocess.run(NVIDIA_QUERY, capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            return parse_nvidia_smi_csv(out.stdout)
        raise ConfigError(f"nvidia-smi failed ({out.stderr.strip() or out.returncode}): is the NVIDIA "
                          "Container Toolkit installed and the GPU reservation in the compose file?")
    if shutil.which("rocm-smi"):
        out = subprocess.run(("rocm-smi", "--showproductname", "--showmeminfo", "vram",
                              "--showdriverversion", "--json"), capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            return parse_amd_smi_json(out.stdout)
    return []


# Lowest driver branch for a CUDA major.minor (NVIDIA's CUDA toolkit release notes, table 3).
CUDA_MIN_DRIVER = {(13, 0): 580, (12, 9): 575, (12, 8): 570, (12, 6): 560, (12, 4): 550}


def required_driver(environ) -> int:
    explicit = bundle_setting("BUNDLE_GPU_DRIVER_MIN", environ)
    if explicit:
        return int(explicit)
    match = re.match(r"(\d+)\.(\d+)", environ.get("CUDA_VERSION", ""))
    if not match:
        return 0
    major, minor = int(match.group(1)), int(match.group(2))
    fitting = [drv for (ma, mi), drv in CUDA_MIN_DRIVER.items() if (ma, mi) <= (major, minor)]
    return max(fitting) if fitting else 0


def preflight(config: EngineConfig, environ, gpus: list[Gpu], shm_bytes: int | None = None) -> list[str]:
    """Refuse what cannot start; return warnings for what might be slow or fragile."""
    v, notes = config.values, []
    if not gpus:
        raise ConfigError("no GPU visible: nvidia-smi / rocm-smi found none. Check the GPU reservation "
                          "(GPUS in make deploy) and the container toolkit, or set BUNDLE_PREFLIGHT=0")
    nnodes = int(v.get("nnodes") or 1)
    world = int(v.get("tp_size") or 1) * int(v.get("pp_size") or 1) * int(v.get("dp_size") or 1)
    per_node = world // nnodes
    first = int(v.get("base_gpu_id") or 0)
    step = int(v.get("gpu_id_step") or 1)
    needed_index = first + (per_node - 1) * step
    if needed_index >= len(gpus):
        raise ConfigError(f"tp*pp*dp/nnodes = {per_node} GPUs (base_gpu_id {first}, step {step}) but "
                          f"{len(gpus)} visible: {', '.join(g.name for g in gpus)}")
    needed_driver = required_driver(environ)
    for gpu in gpus:
        major = int(gpu.driver.split(".")[0]) if gpu.driver[:1].isdigit() else 0
        if gpu.vendor == "nvidia" and needed_driver and major < needed_driver:
            raise ConfigError(f"GPU {gpu.index} driver {gpu.driver} is older than {needed_driver}, which "
                              f"the image's CUDA {environ.get('CUDA_VERSION')} needs (CUDA error 804 at start)")
    model = v.get("model_path") or DEFAULT_MODEL
    shape = model_shape(model, environ)
    used = [gpus[first + k * step] for k in range(per_node)]
    if shape is None:
        notes.append(f"memory check skipped: {model} is not cached and not in the built-in table")
    else:
        plan = plan_memory(model, shape, v, min(g.memory_mib for g in used) / 1024)
        if not plan.fits:
            raise ConfigError(f"{model} does not fit on {used[0].name} x{per_node}: {plan.explain()}")
        notes.append(f"memory: {plan.explain()}")
    if shm_bytes is None:
        shm_bytes = shutil.disk_usage("/dev/shm").total if os.path.exists("/dev/shm") else 0
    if per_node > 1 and shm_bytes < GIB:
        notes.append(f"/dev/shm is {shm_bytes // 2 ** 20} MiB and IPC looks private: tensor parallelism needs "
                     "shared memory; use `ipc: host` (the rendered compose files do)")
    return notes


# ---------------------------------------------------------------------------------------------
# Running: the parse check, the engine under supervision, signals, exit code.
# ---------------------------------------------------------------------------------------------

PARSE_CHECK = (
    "import argparse, sys\n"
    "from sglang.srt.server_args import ServerArgs\n"
    "parser = argparse.ArgumentParser(prog='sglang serve', allow_abbrev=False)\n"
    "ServerArgs.add_cli_args(parser)\n"
    "parser.parse_args(sys.argv[1:])\n"
)


def installed_engine_version(catalogue: Catalogue) -> str:
    from importlib import metadata
    try:
        installed = metadata.version("sglang")
    except metadata.PackageNotFoundError:
        installed = "not installed as a distribution"
    same = "" if installed == catalogue.sglang_version else " (differs: the parse check decides)"
    return f"SGLang in this image: {installed}; flag catalogue: {catalogue.sglang_version}{same}"


HTTP_STACK = ("fastapi", "starlette", "uvicorn", "httptools", "h11", "uvloop")
# Starlette < 1.0.1 builds request.url from the Host header (CVE-2026-48710); SGLang's key check
# reads request.url.path, so "Host: x/health?" makes any route look exempt to it.
STARLETTE_HOST_FIX = (1, 0, 1)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def engine_http_stack(version_of=None) -> list[str]:
    """What serves the engine's HTTP in this image, and a warning when it weakens the engine's own
    key check. The guard replaces the Host header, so only requests that bypass it are at stake."""
    from importlib import metadata

    def installed(name):
        try:
            return (version_of or metadata.version)(name)
        except metadata.PackageNotFoundError:
            return None

    versions = {name: installed(name) for name in HTTP_STACK}
    parser = "httptools" if versions["httptools"] else "h11"
    lines = ["engine HTTP stack: " + ", ".join(f"{name} {version or 'absent'}" for name, version in versions.items())
             + f" (uvicorn parses with {parser})"]
    starlette = versions["starlette"]
    if starlette and _version_tuple(starlette) < STARLETTE_HOST_FIX:
        lines.append(f"warning: Starlette {starlette} is older than 1.0.1 (CVE-2026-48710): the engine's own "
                     "key check can be fooled by a malformed Host header. The guard replaces Host, so requests "
                     "through it are safe; use an image with Starlette >= 1.0.1 to keep the second wall whole")
    return lines


def check_with_engine_parser(engine_argv: list[str]) -> None:
    flags = engine_argv[len(ENGINE_LAUNCH_COMMAND):]
    result = subprocess.run([sys.executable, "-c", PARSE_CHECK, *flags], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError("the installed SGLang's parser rejects the command (bundle and image "
                          f"versions differ?):\n{result.stderr.strip()}")


def engine_environment(environ, hf_token: str | None) -> dict:
    """The engine's environment: no ENGINE_*/BUNDLE_* settings, no secret values."""
    env = {k: v for k, v in environ.items()
           if not k.startswith((FLAG_ENV_PREFIX, "BUNDLE_")) and k not in ALIASES
           and k not in ("HF_TOKEN", "HF_TOKEN_FILE")}
    if environ.get("HF_TOKEN_FILE"):
        env["HF_TOKEN_PATH"] = environ["HF_TOKEN_FILE"]   # huggingface_hub reads the file itself
    elif hf_token:
        env["HF_TOKEN"] = hf_token                          # the user chose the plain form
    return env


def redact(line: str, secrets) -> str:
    for secret in secrets:
        line = line.replace(secret, SECRET_PLACEHOLDER)
    return line


def relay_output(stream, sink, secrets) -> None:
    """Copy the engine's output line by line, with any secret value replaced."""
    for raw in iter(stream.readline, b""):
        sink.write(redact(raw.decode("utf-8", "replace"), secrets))
        sink.flush()


def write_engine_key_file(keys: EngineKeys) -> Path:
    """The engine's keys as an SGLang `--config` YAML file, readable by this user only, in a fresh
    private folder; in /dev/shm when possible, so that the keys never touch a disk."""
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="bundle-engine-",
                                   dir=shm if os.access(shm, os.W_OK) else None))
    path = folder / "engine-keys.yaml"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        # SGLang's ConfigArgumentMerger turns each key into "--<key>" as written: option names.
        file.write(f'api-key: "{keys.api_key}"\nadmin-api-key: "{keys.admin_api_key}"\n')
    return path


def remove_key_file(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


def remove_key_file_once_listening(path: Path, engine: subprocess.Popen, port: int) -> None:
    """SGLang reads its config file once, while parsing its arguments, long before it listens: once
    its port answers (or it has exited), the file has served its purpose."""
    while engine.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    remove_key_file(path)


def run_engine(config: EngineConfig, environ, secrets, hf_token) -> int:
    """Guard first (a busy port fails before minutes of loading), then the engine, supervised."""
    v = config.values
    engine_port = int(bundle_setting("BUNDLE_ENGINE_PORT", environ))
    engine_keys = EngineKeys.generate()
    secrets = [*secrets, engine_keys.api_key, engine_keys.admin_api_key]
    guard = Guard(listen_host=str(v["host"]), listen_port=int(v["port"]), upstream_host="127.0.0.1",
                  upstream_port=engine_port, api_key=config.api_key, admin_api_key=config.admin_api_key,
                  secrets=tuple(secrets), engine_keys=engine_keys,
                  max_connections=bundle_setting("BUNDLE_GUARD_MAX_CONNECTIONS", environ),
                  log=lambda message: print(f"[bundle guard] {message}", file=sys.stderr, flush=True))
    try:
        guard.start()
    except OSError as err:
        log(f"cannot listen on {v['host']}:{v['port']}: {err}")
        return 1
    try:
        GUARD_STATE_FILE.write_text(json.dumps({"port": int(v["port"])}))
    except OSError:  # a read-only root filesystem: the healthcheck falls back to the configured port
        pass

    log(f"guard on {v['host']}:{v['port']}, at most {guard.max_connections} client connections")
    key_file = write_engine_key_file(engine_keys)
    engine = subprocess.Popen(config.engine_argv(environ, str(key_file)),
                              env=engine_environment(environ, hf_token),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    relays = [threading.Thread(target=relay_output, args=(engine.stdout, sys.stdout, secrets), daemon=True),
              threading.Thread(target=relay_output, args=(engine.stderr, sys.stderr, secrets), daemon=True)]
    for relay in relays:
        relay.start()
    threading.Thread(target=remove_key_file_once_listening, args=(key_file, engine, engine_port),
                     daemon=True).start()

    def forward(signum, _frame):
        try:
            os.killpg(engine.pid, signum)   # the engine and its scheduler/detokenizer processes
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = engine.wait()
    remove_key_file(key_file)
    for relay in relays:
        relay.join(timeout=5)
    guard.stop()
    log(f"engine exited with {code}")
    return code if code >= 0 else 128 - code


def healthcheck(environ, catalogue: Catalogue) -> int:
    try:
        port = json.loads(GUARD_STATE_FILE.read_text())["port"]
    except (OSError, ValueError, KeyError):  # not started yet: the configured port
        port_entry = collect_environment(environ, catalogue).get("port")
        port = port_entry[2] if port_entry else int(DEFAULT_FLAGS["--port"])
    path = bundle_setting("BUNDLE_HEALTHCHECK_PATH", environ)
    timeout = float(bundle_setting("BUNDLE_HEALTHCHECK_TIMEOUT", environ))
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as err:
        print(f"{url}: HTTP {err.code}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as err:
        print(f"{url}: {getattr(err, 'reason', err)}", file=sys.stderr)
    return 1


def list_environment(catalogue: Catalogue) -> str:
    rows = [("ENV", "FLAG / MEANING", "TYPE", "DEFAULT")]
    for setting in BUNDLE_SETTINGS:
        rows.append((setting.env, setting.help, setting.type.__name__, str(setting.default)))
    for alias, option in ALIASES.items():
        rows.append((alias, f"alias of {env_name_for_option(option)}", "", DEFAULT_FLAGS.get(option, "")))
    for name in SECRET_ENVS:
        rows.append((f"{name} / {name}_FILE", "secret: the value, or a file holding it", "secret", ""))
    for flag in catalogue.flags:
        for option in flag.options:
            kind = flag.type if flag.kind == "value" else "bool"
            if flag.nargs in ("+", "*"):
                kind = f"list of {kind}"
            default = DEFAULT_FLAGS.get(option, flag.default)
            rows.append((env_name_for_option(option), option, kind, "" if default is None else str(default)))
    return "\n".join("\t".join(row) for row in rows)


def log(message: str) -> None:
    print(f"[bundle] {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    environ = dict(os.environ)
    mode = argv[0] if argv and argv[0] in ("--print-command", "--healthcheck", "--list-env") else None
    args = argv[1:] if mode else argv
    try:
        catalogue = Catalogue.load()
        if mode == "--healthcheck":
            return healthcheck(environ, catalogue)
        if mode == "--list-env":
            print(list_environment(catalogue))
            return 0
        for setting in BUNDLE_SETTINGS:
            bundle_setting(setting.env, environ)
        unknown = [k for k in environ if k.startswith("BUNDLE_") and k not in {s.env for s in BUNDLE_SETTINGS}]
        if unknown:
            raise ConfigError(f"{unknown[0]} is not a setting." +
                              suggest(unknown[0], [s.env for s in BUNDLE_SETTINGS]))
        config = build_config(environ, args, catalogue)
        hf_token = file_env("HF_TOKEN", environ)
        secrets = [s for s in (config.api_key, config.admin_api_key, hf_token) if s]
        engine_argv = config.engine_argv(environ)
        for warning in config.warnings:
            log(f"warning: {warning}")
        # --print-command runs preflight only when asked for explicitly; a start runs it by default.
        wants_preflight = (environ.get("BUNDLE_PREFLIGHT") is not None if mode else True) \
            and bundle_setting("BUNDLE_PREFLIGHT", environ)
        if wants_preflight:
            for note in preflight(config, environ, detect_gpus()):
                log(note)
        if mode == "--print-command":
            print(json.dumps([redact(token, secrets) for token in engine_argv]))
            return 0
        log(installed_engine_version(catalogue))
        for line in engine_http_stack():
            log(line)
        if bundle_setting("BUNDLE_PARSE_CHECK", environ):
            check_with_engine_parser(engine_argv)
    except ConfigError as err:
        log(f"configuration error: {err}")
        return EXIT_CONFIG_ERROR
    log(f"starting engine: {json.dumps([redact(t, secrets) for t in engine_argv])}")
    return run_engine(config, environ, secrets, hf_token)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
