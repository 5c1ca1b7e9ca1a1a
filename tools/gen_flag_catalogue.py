#!/usr/bin/env python3
"""Write launcher/sglang_flags.json: every server flag of the installed SGLang, as data.

The entrypoint (env -> argv, type checks), the renderer and the CPU stand-in engine all read this
catalogue instead of importing SGLang, which needs torch. Regenerate it after changing the pinned
SGLang version:

    python tools/gen_flag_catalogue.py > launcher/sglang_flags.json

tests/test_sglang_parser.py fails when the catalogue and the installed parser disagree.

Besides the flags, "short_forms": what SGLang's parser makes of the short names its docs and users
type for the parallelism sizes (`--tp 4` for --tp-size): argparse takes any unique prefix of an
option, so `--tp` is --tp-size while `--pp` is refused as ambiguous (--pp-size,
--pp-max-micro-batch-size, ...). Recorded from the parser, not listed by hand, so a release that
adds a --tp-* flag turns ENGINE_TP into a refusal when the catalogue is regenerated.
"""
import argparse
import json
import sys

# Argparse `type=` callables of SGLang, by name, mapped to the kinds of value the catalogue knows.
VALUE_TYPES = {
    "str": "str",
    "int": "int",
    "float": "float",
    "human_readable_int": "human_readable_int",
    "loads": "json",
    "json_list_type": "json",
    "nullable_str": "str",
    "parse_cuda_graph_backend_arg": "str",
    "parse_cuda_graph_config_arg": "json",
}


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def describe(action):
    kind_by_class = {
        "_StoreTrueAction": "switch",
        "BooleanOptionalAction": "negatable",
        "DeprecatedStoreTrueAction": "switch",
        "DeprecatedStoreConstAction": "switch",
        "_StoreAction": "value",
        "LoRAPathAction": "value",
    }
    cls = type(action).__name__
    # A flag is a switch when it takes no value (nargs=0), whatever its action class says:
    # DeprecatedStoreConstAction retires booleans and valued flags alike (--monokernel-backend amd).
    kind = kind_by_class[cls] if action.nargs == 0 else "value"
    type_name = getattr(action.type, "__name__", None) or "str"
    entry = {
        "options": list(action.option_strings),
        "dest": action.dest,
        "kind": kind,
        "type": VALUE_TYPES[type_name] if kind == "value" else None,
        "nargs": action.nargs if kind == "value" else None,
        "choices": sorted((_jsonable(c) for c in action.choices), key=str) if action.choices else None,
        "default": _jsonable(action.default),
        "help": (action.help or "").strip(),
    }
    if cls.startswith("Deprecated"):
        entry["deprecated"] = getattr(action, "new_flag", None) or "deprecated"
    return entry


def short_forms(parser):
    """--X of every --X-size that has a --*-parallel-size spelling -> the options the parser
    matches it to (one: SGLang takes it; several: SGLang refuses it as ambiguous)."""
    forms = {}
    for action in parser._actions:
        if not any(o.endswith("-parallel-size") for o in action.option_strings):
            continue
        for option in action.option_strings:
            stem = option.removesuffix("-size")
            if stem == option or option.endswith("-parallel-size") or stem in parser._option_string_actions:
                continue   # not a short size option, or the stem is a real alias (--ep) already
            # element 1 of each tuple is the matched option string (3- or 4-tuples by Python version)
            forms[stem] = {"for": option,
                           "matches": sorted({match[1] for match in parser._get_option_tuples(stem)})}
    return forms


def main():
    from sglang.srt.server_args import ServerArgs
    from sglang.version import __version__

    parser = argparse.ArgumentParser(prog="sglang serve")
    ServerArgs.add_cli_args(parser)
    flags = [describe(a) for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    json.dump(
        {
            "generated_by": "python tools/gen_flag_catalogue.py > launcher/sglang_flags.json (do not edit)",
            "sglang_version": __version__,
            "flags": flags,
            "short_forms": short_forms(parser),
        },
        sys.stdout,
        indent=1,
        sort_keys=True,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
