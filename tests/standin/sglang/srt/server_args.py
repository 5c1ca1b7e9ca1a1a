"""SGLang CPU STAND-IN: the ``sglang serve`` command line (not the real engine, no model).

The real SGLang 0.5.23 builds its parser from ~550 msgspec fields and needs
torch to import. The stand-in builds the same argparse parser from the flag
catalogue (``sglang_flags.json``, written by ``tools/gen_flag_catalogue.py``
from the real parser): same option strings, dest, nargs, choices, defaults,
types, switches, ``--[no-]`` pairs and deprecated switches, and the same
``argparse.ArgumentParser(prog="sglang serve")`` with ``allow_abbrev`` left on,
so abbreviations (``--tp 4``), ambiguity errors (``--pp 2``) and unknown flags
fail exactly like the real parser (exit code 2, argparse's message).

The catalogue is read from ``$STANDIN_FLAG_CATALOGUE``, or
``/opt/bundle/launcher/sglang_flags.json`` (where the bundle image puts it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from decimal import Decimal
from typing import Any, Dict, List, Optional

logger = logging.getLogger(__name__)

DEFAULT_CATALOGUE = "/opt/bundle/launcher/sglang_flags.json"

# ---------------------------------------------------------------------------
# What the catalogue does not record, taken from the real 0.5.23 parser.
# (tests/standin/test_standin_unit.py compares the two parsers when the real
# package is available.)
# ---------------------------------------------------------------------------
# `--model-path` is `required=True` in the real parser.
REQUIRED_DESTS = {"model_path"}
# `nargs="?"` flags and their `const` (the value used when the flag is given bare).
CONST_BY_DEST = {"model_checksum": ""}
# Catalogue type "json" covers two SGLang callables with different error texts.
JSON_LIST_DESTS = {
    "sidecar_args",
    "decoupled_spec_connect_endpoints",
    "remote_instance_weight_loader_send_weights_group_ports",
    "forward_hooks",
}
# Catalogue type "str" covers these special SGLang callables.
NULLABLE_STR_DESTS = {"quantization_param_path"}
CUDA_GRAPH_BACKEND_DESTS = {"cuda_graph_backend_decode", "cuda_graph_backend_prefill"}
CUDA_GRAPH_CONFIG_DESTS = {"cuda_graph_config"}
LORA_PATHS_DESTS = {"lora_paths"}


# ---------------------------------------------------------------------------
# argparse `type=` callables, with SGLang's names (argparse puts the callable's
# __name__ into "invalid <name> value" errors) and semantics.
# ---------------------------------------------------------------------------
def human_readable_int(value: str) -> int:
    """Copy of sglang.srt.utils.common.human_readable_int (SI and IEC suffixes)."""
    value = value.strip()

    si_multiplier = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    iec_multiplier = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}

    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)", value)
    if match:
        number, suffix = match.groups()
        if suffix in iec_multiplier:
            if "." in number:
                raise argparse.ArgumentTypeError(
                    f"Decimals are not allowed with IEC suffixes like '{suffix}'. "
                    f"Use an integer IEC value such as '{int(Decimal(number))}{suffix}', "
                    f"or an SI value such as '{number}{suffix[0]}'."
                )
            return int(number) * iec_multiplier[suffix]
        return int(Decimal(number) * si_multiplier[suffix])

    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"Invalid integer value: '{value}'. "
            "Use a plain integer, SI suffixes (1k, 1M), or IEC suffixes (1Ki, 1Mi). "
            "Suffixes are case-sensitive."
        ) from None


def loads(value: str):
    """json.loads under the name argparse reports ("invalid loads value")."""
    return json.loads(value)


def json_list_type(value):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(
            f"Invalid JSON list: {value}. Please provide a valid JSON list."
        ) from None


def nullable_str(val: str):
    if not val or val == "None":
        return None
    return val


def parse_cuda_graph_backend_arg(raw: str) -> str:
    """Reject the retired backend before argparse checks supported choices."""
    if raw == "tc_piecewise":
        raise argparse.ArgumentTypeError(
            "tc_piecewise was removed; select breakable, full, or disabled"
        )
    return raw


_CUDA_GRAPH_PHASES = ("decode", "prefill")
_CUDA_GRAPH_ALLOWED_KEYS = {
    "decode": ("backend", "max_bs", "bs"),
    "prefill": (
        "backend",
        "max_bs",
        "bs",
        "max_context_size",
        "full_prefill_max_req",
        "full_prefill_prefix_chunk_tokens",
        "max_seq_len",
    ),
}


def parse_cuda_graph_config_arg(raw: str) -> Dict[str, Dict[str, Any]]:
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"--cuda-graph-config must be JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            f"--cuda-graph-config must be a JSON object, got {type(parsed).__name__}"
        )
    result: Dict[str, Dict[str, Any]] = {}
    for phase, phase_settings in parsed.items():
        phase = str(phase)
        if phase not in _CUDA_GRAPH_PHASES:
            raise argparse.ArgumentTypeError(
                f"--cuda-graph-config: unknown phase '{phase}', expected one of {_CUDA_GRAPH_PHASES}"
            )
        if not isinstance(phase_settings, dict):
            raise argparse.ArgumentTypeError(
                f"--cuda-graph-config['{phase}'] must be a JSON object, got "
                f"{type(phase_settings).__name__}"
            )
        if "backend" in phase_settings:
            parse_cuda_graph_backend_arg(phase_settings["backend"])
        allowed = _CUDA_GRAPH_ALLOWED_KEYS[phase]
        result[phase] = {}
        for key, value in phase_settings.items():
            if key not in allowed:
                raise argparse.ArgumentTypeError(
                    f"--cuda-graph-config['{phase}']: unknown key '{key}', expected one of {allowed}"
                )
            result[phase][key] = value
    return result


# ---------------------------------------------------------------------------
# argparse actions, copied in behaviour from sglang/srt/arg_groups/argparse_actions.py
# ---------------------------------------------------------------------------
def print_deprecated_warning(message: str):
    # The real one is logger.warning() before logging is configured, which
    # Python's last-resort handler prints to stderr as the bare message.
    sys.stderr.write(f"\033[1;33m{message}\033[0m\n")
    sys.stderr.flush()


class LoRAPathAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        lora_paths = []
        if values:
            assert isinstance(values, list), "Expected a list of LoRA paths."
            for lora_path in values:
                lora_path = lora_path.strip()
                if lora_path.startswith("{") and lora_path.endswith("}"):
                    obj = json.loads(lora_path)
                    assert "lora_path" in obj and "lora_name" in obj, (
                        f"{repr(lora_path)} looks like a JSON str, "
                        "but it does not contain 'lora_name' and 'lora_path' keys."
                    )
                    lora_paths.append(obj)
                else:
                    lora_paths.append(lora_path)

        setattr(namespace, self.dest, lora_paths)


class DeprecatedStoreTrueAction(argparse.Action):
    """Deprecated flag that still stores True and prints a warning."""

    def __init__(self, option_strings, dest, new_flag=None, nargs=0, const=True,
                 default=False, **kwargs):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, nargs=nargs, const=const,
                         default=default, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        replacement = f" Use '{self.new_flag}' instead." if self.new_flag else ""
        print_deprecated_warning(
            f"'{option_string}' is deprecated and will be removed in a future release.{replacement}"
        )
        setattr(namespace, self.dest, True)


class DeprecatedStoreConstAction(argparse.Action):
    """An old valued flag whose one accepted value became a boolean (or the reverse)."""

    def __init__(self, option_strings, dest, new_flag=None, const_value=None, nargs=0,
                 default=None, **kwargs):
        self.new_flag = new_flag
        self.const_value = const_value
        super().__init__(option_strings, dest, nargs=nargs, default=default, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        replacement = f" Use '{self.new_flag}' instead." if self.new_flag else ""
        print_deprecated_warning(
            f"'{option_string}' is deprecated and will be removed in a future "
            f"release.{replacement}"
        )
        setattr(namespace, self.dest, self.const_value)


# ---------------------------------------------------------------------------
# Catalogue
# ---------------------------------------------------------------------------
_CATALOGUE_CACHE: Dict[str, Any] = {}


def catalogue_path() -> str:
    return os.environ.get("STANDIN_FLAG_CATALOGUE") or DEFAULT_CATALOGUE


def load_catalogue(path: Optional[str] = None) -> Dict[str, Any]:
    path = path or catalogue_path()
    if path not in _CATALOGUE_CACHE:
        try:
            with open(path, encoding="utf-8") as f:
                _CATALOGUE_CACHE[path] = json.load(f)
        except FileNotFoundError:
            sys.stderr.write(
                "SGLang CPU STAND-IN (not the real engine, no model): flag catalogue "
                f"not found at {path}. Set STANDIN_FLAG_CATALOGUE to the bundle's "
                "sglang_flags.json.\n"
            )
            raise SystemExit(1) from None
    return _CATALOGUE_CACHE[path]


def catalogue_flags(path: Optional[str] = None) -> List[Dict[str, Any]]:
    return load_catalogue(path)["flags"]


_DEFAULT_SUFFIX = " (default: %(default)s)"


def _value_type(flag: Dict[str, Any]):
    dest = flag["dest"]
    if dest in NULLABLE_STR_DESTS:
        return nullable_str
    if dest in CUDA_GRAPH_BACKEND_DESTS:
        return parse_cuda_graph_backend_arg
    if dest in CUDA_GRAPH_CONFIG_DESTS:
        return parse_cuda_graph_config_arg
    kind = flag.get("type") or "str"
    if kind == "json":
        return json_list_type if dest in JSON_LIST_DESTS else loads
    return {
        "str": str,
        "int": int,
        "float": float,
        "human_readable_int": human_readable_int,
    }[kind]


def _add_flag(parser: argparse.ArgumentParser, flag: Dict[str, Any]) -> None:
    options = list(flag["options"])
    dest = flag["dest"]
    kind = flag["kind"]
    default = flag.get("default")
    help_text = flag.get("help") or None
    if help_text == argparse.SUPPRESS:
        help_text = argparse.SUPPRESS  # argparse tests `is SUPPRESS`
    choices = flag.get("choices")

    if kind == "negatable":
        if help_text and help_text.endswith(_DEFAULT_SUFFIX):
            # Python versions that append this suffix themselves would double it.
            help_text = help_text[: -len(_DEFAULT_SUFFIX)]
        positive = [o for o in options if not o.startswith("--no-")]
        parser.add_argument(*positive, dest=dest, action=argparse.BooleanOptionalAction,
                            default=default, help=help_text)
        return

    if flag.get("deprecated"):
        new_flag = flag["deprecated"] if flag["deprecated"] != "deprecated" else None
        if kind == "value":
            # Valued flag whose single accepted value became a boolean
            # (`--monokernel-backend amd` -> enable_amd_monokernel=True).
            parser.add_argument(*options, dest=dest, action=DeprecatedStoreConstAction,
                                new_flag=new_flag, const_value=True, nargs=None,
                                choices=choices, default=default, help=help_text)
        else:
            parser.add_argument(*options, dest=dest, action=DeprecatedStoreTrueAction,
                                new_flag=new_flag, default=default, help=help_text)
        return

    if kind == "switch":
        parser.add_argument(*options, dest=dest, action="store_true", default=default,
                            help=help_text)
        return

    # kind == "value"
    kwargs: Dict[str, Any] = dict(dest=dest, default=default, help=help_text)
    if dest in LORA_PATHS_DESTS:
        kwargs.update(action=LoRAPathAction, nargs=flag.get("nargs"), type=str)
    else:
        kwargs["type"] = _value_type(flag)
        if flag.get("nargs") is not None:
            kwargs["nargs"] = flag["nargs"]
        if flag.get("nargs") == "?":
            kwargs["const"] = CONST_BY_DEST.get(dest)
    if choices:
        kwargs["choices"] = choices
    if dest in REQUIRED_DESTS:
        kwargs["required"] = True
    parser.add_argument(*options, **kwargs)


# ---------------------------------------------------------------------------
# ServerArgs
# ---------------------------------------------------------------------------
class ServerArgs:
    """The parsed command line of the stand-in: one attribute per catalogue dest."""

    def __init__(self, **values):
        self.__dict__["_fields"] = list(values)
        self.__dict__.update(values)
        self.__dict__["_launch_command"] = None

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser, catalogue: Optional[str] = None):
        for flag in catalogue_flags(catalogue):
            _add_flag(parser, flag)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> "ServerArgs":
        values = {}
        for flag in catalogue_flags():
            if flag["dest"] in values or flag["dest"] == "config":
                continue
            values[flag["dest"]] = getattr(args, flag["dest"], flag.get("default"))
        return cls(**values)

    @property
    def launch_command(self) -> Optional[str]:
        return self._launch_command

    def fields(self) -> List[str]:
        return list(self._fields)

    def resolved_dict(self) -> Dict[str, Any]:
        """The stand-in's "resolution": the parsed values plus the few defaults
        SGLang derives without a GPU or model config (served_model_name,
        tokenizer_path, enable_dp_attention as attn_dp_size > 1)."""
        resolved = {name: getattr(self, name) for name in self._fields}
        if resolved.get("served_model_name") is None:
            resolved["served_model_name"] = resolved.get("model_path")
        if resolved.get("tokenizer_path") is None:
            resolved["tokenizer_path"] = resolved.get("model_path")
        if "enable_dp_attention" in resolved:
            attn_dp = resolved.get("attn_dp_size") or 1
            resolved["enable_dp_attention"] = bool(
                (isinstance(attn_dp, int) and attn_dp > 1)
            )
        if resolved.get("watermark_config") is not None:
            resolved["watermark_config"] = "<redacted>"
        return resolved

    def url(self) -> str:
        host = self.host
        if not host or host == "0.0.0.0":
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if getattr(self, "ssl_certfile", None) else "http"
        return f"{scheme}://{host}:{self.port}"

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"ServerArgs({values})"


def redact_watermark_command_line(argv, watermark_config=None) -> str:
    result = []
    redact_next = False
    for argument in argv:
        if redact_next:
            result.append("<redacted>")
            redact_next = False
        elif watermark_config is not None and argument == watermark_config:
            result.append("<redacted>")
        elif (
            watermark_config is not None
            and "=" in argument
            and argument.split("=", 1)[1] == watermark_config
        ):
            result.append(f"{argument.split('=', 1)[0]}=<redacted>")
        elif argument == "--watermark-config":
            result.append(argument)
            redact_next = True
        elif argument.startswith("--watermark-config="):
            result.append("--watermark-config=<redacted>")
        else:
            result.append(argument)
    return " ".join(result)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sglang serve")
    ServerArgs.add_cli_args(parser)
    return parser


def prepare_server_args(argv: List[str]) -> ServerArgs:
    """Parse argv like SGLang 0.5.23's prepare_server_args (exit 2 on a bad flag)."""
    parser = build_parser()

    if "--config" in argv:
        # As SGLang does: the YAML file's arguments go before the command line's.
        from sglang.srt.utils.server_args_config_parser import ConfigArgumentMerger

        argv = ConfigArgumentMerger(parser).merge_config_with_args(argv)

    raw_args = parser.parse_args(argv)

    logging.basicConfig(
        level=getattr(logging, str(raw_args.log_level).upper(), logging.INFO),
        format="[%(asctime)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        force=True,
    )

    server_args = ServerArgs.from_cli_args(raw_args)
    server_args.__dict__["_launch_command"] = redact_watermark_command_line(
        argv, getattr(raw_args, "watermark_config", None)
    )
    return server_args
