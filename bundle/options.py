"""Every render-time option, declared once: make variable, flag, type, default, check, help.

`make render` and `make deploy` pass nothing on their command lines: make exports the variables
given to it (`make deploy PORT=8001`) to the environment, and bundle/render.py and
bundle/deploy.py read them from there through this table, the same way; a command-line flag
(`python -m bundle.render render --port 8001`) overrides the environment. From the table come both
tools' argparse flags, `Params` (what the template gets), the "make render ..." line written into
every rendered file and `make options`.

    python -m bundle.options        the table, as `make options` prints it
"""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import shlex
import typing
from pathlib import Path

from bundle.errors import RenderError
from launcher.settings import FALSE_WORDS, TRUE_WORDS

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


def seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0
    if not number > 0:
        raise ValueError("expected a number of seconds")
    return number


# ---- the table ------------------------------------------------------------------------------

RENDER, DEPLOY, EXPLAIN = "render", "deploy", "explain"


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
    value_name: str = ""          # how `make options` shows a value

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

    def shown(self, value) -> str | None:
        """The value as a make variable's text; None when unset."""
        if value is True:
            return "1"
        if value in (None, False, "", []):
            return None
        return ",".join(value) if isinstance(value, list) else str(value)


OPTIONS = (
    Option("HARDWARE", str, text, "hardware profile (`make presets`); deploy: detected from nvidia-smi when unset",
           commands=(RENDER, DEPLOY, EXPLAIN), required_by=(RENDER, EXPLAIN), param=False, value_name="h100x4"),
    Option("PRESET", str, text, "optimization preset", default="basic", commands=(RENDER, DEPLOY, EXPLAIN),
           param=False, value_name="basic"),
    Option("OUT", Path, Path, "where to write the compose file", commands=(RENDER,), required_by=(RENDER,),
           param=False, value_name="path.yml"),
    Option("GPUS", list, gpu_list, "GPU indexes to use, as many as the profile has (default: all)",
           default=[], value_name="4,5,6,7"),
    Option("REPLICAS", int, count,
           "engines behind SGLang's gateway, each on GPUs/REPLICAS of the profile (default 1: one engine, "
           "no gateway)", commands=(RENDER, DEPLOY, EXPLAIN), value_name="2"),
    Option("PORT", int, port, "host port (default: presets/container.yaml's default_port)", value_name="8000"),
    Option("BIND_ADDRESS", str, ip_address,
           "host address to publish on (default: 127.0.0.1); beyond loopback it needs API_KEY_FILE=",
           value_name="0.0.0.0"),
    Option("API_KEY_FILE", str, text, "file holding the API key clients must send", value_name="secrets/api_key"),
    Option("ADMIN_API_KEY_FILE", str, text, "file holding the key for the engine's admin endpoints",
           value_name="file"),
    Option("ALLOW_NO_API_KEY", bool, switch, "1: publish beyond loopback without an API key", default=False,
           value_name="1"),
    Option("LORA_DIR", str, text, "folder of LoRA adapters, mounted read-only at /adapters", value_name="folder"),
    Option("SECRETS_DIR", str, text, "folder holding hf_token (default: secrets)", value_name="folder"),
    Option("ENV_FILE", str, text, "file of extra ENGINE_*/BUNDLE_* settings for the engine container",
           value_name="file"),
    Option("BASE_IMAGE", str, image_reference,
           "the SGLang image to build FROM (default: the lane's, from presets/hardware.yaml); "
           "repository:tag@sha256:... pins it", value_name="image"),
    Option("MONITORING", bool, switch,
           "1: Prometheus and Grafana beside the deployment, on 127.0.0.1 (monitoring.yml; docs/monitoring.md)",
           default=False, value_name="1"),
    Option("OVERRIDE", list, path_list, "compose files merged over the rendered one (tests, site tweaks)",
           default=[], commands=(DEPLOY,), param=False, value_name="a.yml,b.yml"),
    Option("SKIP_DOCTOR", bool, switch, "1: make deploy skips make doctor's host checks", default=False,
           commands=(DEPLOY,), param=False, value_name="1"),
    Option("DEPLOY_TIMEOUT", float, seconds, "seconds to wait until the engine is ready", default=3600.0,
           commands=(DEPLOY,), param=False, flag="--timeout", value_name="3600"),
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


def listing() -> str:
    """`make options`."""
    lines = ["Variables of make render / make deploy (also read from the environment; the flags of",
             "python -m bundle.render render / python -m bundle.deploy override them):"]
    for option in OPTIONS:
        usage = f"{option.variable}={option.value_name}"
        where = "/".join(c for c in option.commands if c != EXPLAIN)
        needed = " (required)" if RENDER in option.required_by else ""
        lines.append(f"  {usage:<30} {option.option:<22} {where + needed:<25} {option.help}")
    return "\n".join(lines)


def markdown_table() -> str:
    """The README's render-time options (`make readme`)."""
    rows = ["| variable | flag | used by | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        where = ", ".join(f"`make {c}`" for c in option.commands if c != EXPLAIN)
        needed = " (required)" if RENDER in option.required_by else ""
        rows.append(f"| `{option.variable}={option.value_name}` | `{option.option}` | {where}{needed} | "
                    f"{option.help.replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(listing())
