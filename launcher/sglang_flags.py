"""SGLang's flags as data (sglang_flags.json, generated from the pinned SGLang's own parser by
tools/gen_flag_catalogue.py), the one naming rule (--tp-size is ENGINE_TP_SIZE), and the
conversion of one environment value into argv tokens, checked like SGLang's parser would."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from launcher.settings import ConfigError, parse_bool

FLAG_ENV_PREFIX = "ENGINE_"
CATALOGUE_PATH = Path(__file__).with_name("sglang_flags.json")


def env_name_for_option(option: str) -> str:
    """The one naming rule: --tp-size -> ENGINE_TP_SIZE."""
    return FLAG_ENV_PREFIX + option.lstrip("-").upper().replace("-", "_")


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
    def __init__(self, flags, short_forms=None):
        self.flags = flags
        self.by_option = {opt: f for f in flags for opt in f.options}
        self.by_env = {env_name_for_option(opt): (f, opt) for f in flags for opt in f.options}
        # ENGINE_TP: SGLang's parser reads --tp as --tp-size (a unique prefix), so the short name
        # sets that flag, written out in full in the argv.
        self.short_forms = short_forms or {}
        for stem, form in self.short_forms.items():
            if len(form["matches"]) == 1:
                option = form["matches"][0]
                self.by_env.setdefault(env_name_for_option(stem), (self.by_option[option], option))

    def ambiguous_short_form(self, name: str) -> str | None:
        """Why ENGINE_PP sets nothing: SGLang's own parser refuses --pp as ambiguous."""
        for stem, form in self.short_forms.items():
            if env_name_for_option(stem) == name and len(form["matches"]) > 1:
                return (f"SGLang {self.sglang_version}'s parser refuses {stem} as ambiguous "
                        f"({', '.join(form['matches'])}). Set {env_name_for_option(form['for'])} for {form['for']}")
        return None

    @classmethod
    def load(cls, path: Path = CATALOGUE_PATH) -> "Catalogue":
        data = json.loads(path.read_text())
        flags = [Flag(options=tuple(f["options"]), dest=f["dest"], kind=f["kind"], type=f["type"],
                      nargs=f["nargs"], choices=tuple(f["choices"]) if f["choices"] else None,
                      default=f["default"], help=f["help"], deprecated=f.get("deprecated"))
                 for f in data["flags"]]
        catalogue = cls(flags, data.get("short_forms"))
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
