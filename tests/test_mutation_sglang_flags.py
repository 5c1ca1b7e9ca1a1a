"""Behaviour tests for launcher/sglang_flags.py, written to kill mutmut's survivors
(docs/mutation.md). Sizes are checked against the pinned SGLang's own human_readable_int and by
hand-written arithmetic; messages are spelled out."""
import argparse
import json

import pytest
# the same module tests/test_sglang_parser.py imports: no extra import time in the suite
from sglang.srt.server_args import human_readable_int as sglang_human_readable_int

from launcher.settings import ConfigError
from launcher.sglang_flags import Catalogue, Flag, check_scalar, env_name_for_option, env_to_argv, \
    human_readable_int, split_list


def flag(**overrides):
    base = dict(options=("--x",), dest="x", kind="value", type="str", nargs=None, choices=None,
                default=None, help="")
    return Flag(**{**base, **overrides})


# --- the naming rule -----------------------------------------------------------------------------

@pytest.mark.parametrize("option, env", [
    ("--tp-size", "ENGINE_TP_SIZE"), ("--XLA-mode", "ENGINE_XLA_MODE"), ("-X", "ENGINE_X"),
    ("--model", "ENGINE_MODEL"), ("--a-b-c-", "ENGINE_A_B_C_"),
])
def test_env_name_for_option(option, env):
    assert env_name_for_option(option) == env


# --- the catalogue file --------------------------------------------------------------------------

def test_catalogue_load_reads_every_field(tmp_path):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"sglang_version": "9.9.9", "flags": [
        {"options": ["--a", "--alias"], "dest": "a", "kind": "value", "type": "int", "nargs": "+",
         "choices": [1, 2], "default": 1, "help": "A.", "deprecated": "--b"},
        {"options": ["--c"], "dest": "c", "kind": "switch", "type": None, "nargs": 0,
         "choices": None, "default": False, "help": "C."},
        {"options": ["--d"], "dest": "d", "kind": "value", "type": "str", "nargs": None,
         "choices": [], "default": None, "help": "D."},
    ]}))
    catalogue = Catalogue.load(path)
    assert catalogue.sglang_version == "9.9.9"
    assert catalogue.flags == [
        Flag(("--a", "--alias"), "a", "value", "int", "+", (1, 2), 1, "A.", "--b"),
        Flag(("--c",), "c", "switch", None, 0, None, False, "C.", None),
        Flag(("--d",), "d", "value", "str", None, None, None, "D.", None),
    ]
    assert catalogue.by_option["--alias"] is catalogue.flags[0]
    assert catalogue.by_env["ENGINE_ALIAS"] == (catalogue.flags[0], "--alias")


def test_the_real_catalogue_keeps_deprecations(catalogue):
    assert catalogue.by_option["--enable-dp-attention"].deprecated == "--attn-dp-size <dp-size>"
    assert catalogue.by_option["--log-requests-level"].choices == (0, 1, 2, 3)


# --- sizes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("128k", 128_000), ("25.6k", 25_600), ("1M", 1_000_000), ("2G", 2_000_000_000), ("1T", 10 ** 12),
    ("1Ki", 1024), ("128Ki", 131_072), ("3Mi", 3 * 1024 ** 2), ("2Gi", 2 * 1024 ** 3), ("1Ti", 1024 ** 4),
    (" 131072 ", 131_072), ("7", 7),
])
def test_human_readable_int_agrees_with_sglang(text, value):
    ours = human_readable_int(text)
    assert ours == value == sglang_human_readable_int(text) and type(ours) is int


def test_decimals_with_iec_suffixes_are_refused_with_the_reason():
    with pytest.raises(ValueError) as err:
        human_readable_int("1.5Ki")
    assert str(err.value) == "decimals are not allowed with IEC suffixes"
    with pytest.raises(argparse.ArgumentTypeError):
        sglang_human_readable_int("1.5Ki")


@pytest.mark.parametrize("text", ["1.5x", "k", "1kk", "1 k", "1ki", ""])
def test_human_readable_int_refuses_what_sglang_refuses(text):
    with pytest.raises(ValueError):
        human_readable_int(text)
    with pytest.raises(argparse.ArgumentTypeError):
        sglang_human_readable_int(text)


# --- lists ---------------------------------------------------------------------------------------

def test_split_list_forms():
    assert split_list(' ["a", 1, {"b": 2}] ') == ["a", "1", '{"b": 2}']
    assert split_list("a, b  c,,d\n") == ["a", "b", "c", "d"]
    assert split_list("  ") == []


def test_a_list_value_that_is_broken_json_is_refused_with_the_parsers_reason(catalogue):
    numa = catalogue.by_option["--numa-node"]
    with pytest.raises(ConfigError) as err:
        env_to_argv(numa, "--numa-node", "[0, 1", "ENGINE_NUMA_NODE")
    assert str(err.value) == ("ENGINE_NUMA_NODE='[0, 1': --numa-node expects a list: a JSON array or items "
                              "separated by commas (Expecting ',' delimiter: line 1 column 6 (char 5))")


# --- scalars -------------------------------------------------------------------------------------

def test_check_scalar_parses_and_checks_choices():
    level = flag(options=("--log-requests-level",), type="int", choices=(0, 1, 2, 3))
    assert check_scalar(level, "3", "ENGINE_LOG_REQUESTS_LEVEL") == 3
    with pytest.raises(ConfigError) as err:
        check_scalar(level, "4", "ENGINE_LOG_REQUESTS_LEVEL")
    assert str(err.value) == "ENGINE_LOG_REQUESTS_LEVEL='4': --log-requests-level must be one of: 0, 1, 2, 3"
    with pytest.raises(ConfigError) as err:
        check_scalar(level, "x", "E", whole="1,x")
    assert str(err.value) == ("E='1,x': item 'x': --log-requests-level expects an integer "
                              "(invalid literal for int() with base 10: 'x')")


# --- one environment value -> argv ---------------------------------------------------------------

def test_switch_false_gives_nothing_and_false():
    switch = flag(kind="switch", type=None, nargs=0, default=False)
    assert env_to_argv(switch, "--x", "yes", "E") == (["--x"], True)
    assert env_to_argv(switch, "--x", "no", "E") == ([], False)


def test_negatable_forms_whatever_the_order_of_options():
    negatable = flag(options=("--no-y", "--y"), kind="negatable", type=None)
    assert env_to_argv(negatable, "--y", "1", "E") == (["--y"], True)
    assert env_to_argv(negatable, "--y", "0", "E") == (["--no-y"], False)
    assert env_to_argv(negatable, "--no-y", "1", "E") == (["--no-y"], False)
    assert env_to_argv(negatable, "--no-y", "off", "E") == (["--y"], True)


def test_negatable_bad_boolean_names_the_variable():
    negatable = flag(options=("--y", "--no-y"), kind="negatable", type=None)
    with pytest.raises(ConfigError) as err:
        env_to_argv(negatable, "--y", "maybe", "ENGINE_Y")
    assert str(err.value).startswith("ENGINE_Y='maybe': expected a boolean")


def test_one_or_more_needs_an_item_zero_or_more_does_not(catalogue):
    numa = catalogue.by_option["--numa-node"]
    with pytest.raises(ConfigError) as err:
        env_to_argv(numa, "--numa-node", " , ", "ENGINE_NUMA_NODE")
    assert str(err.value) == "ENGINE_NUMA_NODE is empty: --numa-node expects at least one item"
    assert env_to_argv(numa, "--numa-node", "0,1", "E") == (["--numa-node", "0", "1"], [0, 1])
    star = catalogue.by_option["--lora-paths"]
    assert env_to_argv(star, "--lora-paths", "", "E") == (["--lora-paths"], [])


def test_optional_value_empty_gives_the_bare_option_and_the_default():
    optional = flag(options=("--model-checksum",), nargs="?", default="DEFAULT")
    assert env_to_argv(optional, "--model-checksum", "", "E") == (["--model-checksum"], "DEFAULT")
    assert env_to_argv(optional, "--model-checksum", "abc", "E") == (["--model-checksum", "abc"], "abc")
    plain = flag(options=("--served-model-name",), default="DEFAULT")
    assert env_to_argv(plain, "--served-model-name", "", "E") == (["--served-model-name", ""], "")


# --- short forms (--tp for --tp-size), as SGLang's own parser reads them ------------------------

def test_short_forms_agree_with_sglangs_own_parser(catalogue, capsys):
    """SGLang parses with argparse's default allow_abbrev: a unique prefix is the option."""
    import argparse
    from sglang.srt.server_args import ServerArgs
    parser = argparse.ArgumentParser(prog="sglang serve")
    ServerArgs.add_cli_args(parser)
    assert catalogue.by_env["ENGINE_TP"][1] == "--tp-size" and catalogue.by_env["ENGINE_DP"][1] == "--dp-size"
    assert catalogue.by_env["ENGINE_EP"][1] == "--ep"   # a real alias of --ep-size, not a short form
    assert "ENGINE_PP" not in catalogue.by_env
    for stem in catalogue.short_forms:
        env = env_name_for_option(stem)
        if env in catalogue.by_env:
            flag, _option = catalogue.by_env[env]
            assert getattr(parser.parse_args(["--model-path", "m", stem, "3"]), flag.dest) == 3, stem
        else:
            with pytest.raises(SystemExit):
                parser.parse_args(["--model-path", "m", stem, "3"])
            assert f"ambiguous option: {stem} could match" in capsys.readouterr().err, stem
