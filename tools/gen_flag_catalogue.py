#!/usr/bin/env python3
"""Write launcher/sglang_flags.json: every server flag of the installed SGLang, as data.

The entrypoint (env -> argv, type checks), the renderer and the CPU stand-in engine all read this
catalogue instead of importing SGLang, which needs torch. Regenerate it after changing the pinned
SGLang version:

    python tools/gen_flag_catalogue.py > launcher/sglang_flags.json

tests/test_sglang_parser.py fails when the catalogue and the installed parser disagree.
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
        },
        sys.stdout,
        indent=1,
        sort_keys=True,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
