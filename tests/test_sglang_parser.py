"""The real SGLang 0.5.23 parser (installed in the test venv) against everything the bundle emits."""
import argparse
import json
import logging
import re
from pathlib import Path

import pytest
import sglang
from sglang.srt.server_args import ServerArgs

from paths import ROOT
from launcher import sglang_flags, command, credentials, settings, supervise
from bundle import render
from tools import gen_flag_catalogue

SGLANG_DIR = Path(sglang.__file__).parent


def strict_parser():
    parser = argparse.ArgumentParser(prog="sglang serve", allow_abbrev=False, exit_on_error=False)
    ServerArgs.add_cli_args(parser)
    return parser


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def parse_strictly(flags):
    """Parse with abbreviations off, and return SGLang's warnings (deprecations print through logging)."""
    handler = Captured()
    logging.getLogger().addHandler(handler)
    try:
        namespace = strict_parser().parse_args(flags)
    finally:
        logging.getLogger().removeHandler(handler)
    return namespace, handler.messages


def test_installed_sglang_is_the_pinned_version(catalogue):
    from sglang.version import __version__
    assert __version__ == catalogue.sglang_version == "0.5.23"


def test_catalogue_matches_the_real_parser():
    parser = argparse.ArgumentParser(prog="sglang serve")
    ServerArgs.add_cli_args(parser)
    fresh = [gen_flag_catalogue.describe(a) for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    stored = json.loads((ROOT / "launcher" / "sglang_flags.json").read_text())["flags"]
    assert json.loads(json.dumps(fresh, sort_keys=True)) == stored, "regenerate with `make catalogue`"


SAMPLE_VALUES = {"int": "2", "float": "0.5", "str": "x", "human_readable_int": "4k", "json": "{}"}


def sample_value(flag):
    if flag.kind != "value":
        return "true"
    return str(flag.choices[0]) if flag.choices else SAMPLE_VALUES[flag.type]


def test_every_env_name_yields_argv_the_real_parser_accepts(catalogue):
    """All 559 ENGINE_* names, each through the entrypoint's conversion, into the strict real parser."""
    parser = strict_parser()
    rejected = []
    for flag in catalogue.flags:
        for option in flag.options:
            name = sglang_flags.env_name_for_option(option)
            tokens, _ = sglang_flags.env_to_argv(flag, option, sample_value(flag), name)
            try:
                namespace = parser.parse_args(["--model-path", "m", *tokens])
            except (SystemExit, argparse.ArgumentError) as err:
                rejected.append(f"{name}: {tokens}: {err}")
                continue
            assert hasattr(namespace, flag.dest)
    assert not rejected, "\n".join(rejected)


ALL_PAIRS = render.pairs(render.load_data())


@pytest.mark.parametrize("hardware,preset", ALL_PAIRS, ids=[f"{h}-{p}" for h, p in ALL_PAIRS])
def test_every_rendered_deployment_parses_cleanly(hardware, preset):
    deployment = render.resolve(render.load_data(), hardware, preset)
    flags = deployment.engine_argv[len(command.ENGINE_LAUNCH_COMMAND):]
    namespace, warnings = parse_strictly(flags)
    assert not [w for w in warnings if "deprecated" in w.lower()], warnings
    assert namespace.tp_size == deployment.flags["tp-size"]
    assert namespace.model_path == deployment.flags["model-path"]


def test_the_entrypoints_own_parse_check_uses_the_real_parser():
    supervise.check_with_engine_parser([*command.ENGINE_LAUNCH_COMMAND, "--model-path", "m", "--tp-size", "4"])
    with pytest.raises(settings.ConfigError, match="unrecognized arguments: --cpu-offload-gigabytes"):
        supervise.check_with_engine_parser([*command.ENGINE_LAUNCH_COMMAND, "--model-path", "m",
                                             "--cpu-offload-gigabytes", "16"])


@pytest.mark.parametrize("flags,problem", [
    (["--tp", "4"], "unrecognized arguments: --tp"),             # an abbreviation, refused when strict
    (["--cpu-offload-gigabytes", "16"], "unrecognized arguments"),
])
def test_the_seeds_wrong_flags_fail_the_real_parser(flags, problem):
    with pytest.raises(SystemExit):
        strict_parser().parse_args(["--model-path", "m", *flags])


def test_seed_deprecated_flags_warn_in_the_real_parser():
    _, warnings = parse_strictly(["--model-path", "m", "--enable-dp-attention", "--disable-cuda-graph"])
    assert len([w for w in warnings if "deprecated" in w]) == 2


def sglang_env_names() -> set:
    """Every environment variable name the pinned SGLang reads: its Envs table plus literal lookups."""
    from sglang.srt import environ as sgl_environ
    names = {name for name, value in vars(sgl_environ.Envs).items() if isinstance(value, sgl_environ.EnvField)}
    # Over-approximates on purpose: any upper-case name passed first to a call or indexed
    # (os.getenv, environ[...], get_bool_env_var, _optional_env_int...), and any SGLANG_/SGL_ literal.
    lookups = (re.compile(r"""[\w.\]]+[(\[]\s*["']([A-Z][A-Z0-9]*_[A-Z0-9_]+)["']"""),
               re.compile(r"""["']((?:SGLANG|SGL)_[A-Z0-9_]+)["']"""))
    for path in SGLANG_DIR.rglob("*.py"):
        text = path.read_text(errors="replace")
        for lookup in lookups:
            names.update(lookup.findall(text))
    return names


def test_env_prefix_collides_with_nothing_sglang_reads(catalogue):
    sglang_names = sglang_env_names()
    assert len(sglang_names) > 1000 and "SGLANG_PORT" in sglang_names  # the scan works
    ours = {sglang_flags.env_name_for_option(o) for f in catalogue.flags for o in f.options}
    ours |= {s.env for s in settings.BUNDLE_SETTINGS} | set(command.ALIASES)
    assert not ours & sglang_names
    assert not [n for n in sglang_names if n.startswith((sglang_flags.FLAG_ENV_PREFIX, "BUNDLE_"))]
    # Why not SGLANG_<FLAG>: that rule would collide, SGLANG_PORT (base of internal ports) included.
    naive = {"SGLANG_" + o[2:].upper().replace("-", "_") for f in catalogue.flags for o in f.options}
    assert {"SGLANG_PORT", "SGLANG_DP_SIZE"} <= naive & sglang_names
    assert len(naive & sglang_names) == 9


def test_the_engine_key_file_gives_the_real_sglang_its_keys():
    """What SGLang's own --config handling (prepare_server_args) makes of the bundle's key file."""
    from sglang.srt.utils.server_args_config_parser import ConfigArgumentMerger
    keys = credentials.EngineKeys.generate()
    path = supervise.write_engine_key_file(keys)
    try:
        argv = command.build_config({}, [], sglang_flags.Catalogue.load()).engine_argv(settings.BundleSettings.from_environ({}), str(path))
        flags = argv[len(command.ENGINE_LAUNCH_COMMAND):]
        parser = argparse.ArgumentParser(prog="sglang serve")
        ServerArgs.add_cli_args(parser)
        merged = ConfigArgumentMerger(parser).merge_config_with_args(flags)
        namespace, warnings = parse_strictly(merged)
    finally:
        supervise.remove_key_file(path)
    assert (namespace.api_key, namespace.admin_api_key) == (keys.api_key, keys.admin_api_key)
    assert "--config" not in merged and warnings == []
