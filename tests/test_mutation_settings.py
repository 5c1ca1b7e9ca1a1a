"""Behaviour tests for launcher/settings.py, written to kill mutmut's survivors (docs/mutation.md).
In-process: the entrypoint tests reach these functions only through a subprocess, which mutmut's
per-test selection cannot see. Expected texts are the messages spelled out by hand."""
import pytest

from launcher import settings
from launcher.settings import BundleSettings, ConfigError, bundle_setting, parse_bool, suggest

BOOL_WORDS = "(1/on/true/y/yes or 0/false/n/no/off)"


def test_suggest_lists_up_to_three_close_names_joined_by_or():
    names = ["BUNDLE_PORT_A", "BUNDLE_PORT_B", "BUNDLE_PORT_C", "BUNDLE_PORT_D", "UNRELATED"]
    # difflib ranks by similarity, ties by order of appearance (all four score the same here)
    assert suggest("BUNDLE_PORT_X", names) == \
        " Did you mean BUNDLE_PORT_D or BUNDLE_PORT_C or BUNDLE_PORT_B?"


def test_suggest_cutoff_is_six_tenths():
    # "abcde" vs "abcxy": 2*3/10 = 0.6 similar, just at the cutoff; "abxyz": 2*2/10 = 0.4
    assert suggest("abcde", ["abcxy"]) == " Did you mean abcxy?"
    assert suggest("abcde", ["abxyz"]) == ""


def test_suggest_without_a_close_name_is_empty():
    assert suggest("BUNDLE_NOTHING_LIKE_IT", ["ENGINE_TP_SIZE"]) == ""


@pytest.mark.parametrize("text", ["1", "true", "TRUE", " yes ", "Y", "on", "\ton\r\n"])
def test_parse_bool_true_words_any_case_and_surrounding_whitespace(text):
    assert parse_bool(text, "X") is True


@pytest.mark.parametrize("text", ["0", "false", "False", " no", "N", "off\r\n"])
def test_parse_bool_false_words(text):
    assert parse_bool(text, "X") is False


@pytest.mark.parametrize("text", ["", "2", "t", "f", "enable", "yes please"])
def test_parse_bool_refuses_other_words_with_the_whole_vocabulary(text):
    with pytest.raises(ConfigError) as err:
        parse_bool(text, "BUNDLE_PREFLIGHT")
    assert str(err.value) == f"BUNDLE_PREFLIGHT={text!r}: expected a boolean {BOOL_WORDS}"


def test_bundle_setting_unset_or_empty_is_the_default():
    assert bundle_setting("BUNDLE_ENGINE_PORT", {}) == 30000
    assert bundle_setting("BUNDLE_ENGINE_PORT", {"BUNDLE_ENGINE_PORT": ""}) == 30000
    assert bundle_setting("BUNDLE_PREFLIGHT", {"BUNDLE_PREFLIGHT": ""}) is True


def test_bundle_setting_parses_each_type():
    assert bundle_setting("BUNDLE_PREFLIGHT", {"BUNDLE_PREFLIGHT": "no"}) is False
    assert bundle_setting("BUNDLE_ENGINE_PORT", {"BUNDLE_ENGINE_PORT": "31000"}) == 31000
    value = bundle_setting("BUNDLE_HEALTHCHECK_TIMEOUT", {"BUNDLE_HEALTHCHECK_TIMEOUT": "2.5"})
    assert value == 2.5 and type(value) is float
    assert bundle_setting("BUNDLE_HEALTHCHECK_PATH", {"BUNDLE_HEALTHCHECK_PATH": "/ready"}) == "/ready"


def test_bundle_setting_bad_boolean_names_the_variable():
    with pytest.raises(ConfigError) as err:
        bundle_setting("BUNDLE_PARSE_CHECK", {"BUNDLE_PARSE_CHECK": "maybe"})
    assert str(err.value) == f"BUNDLE_PARSE_CHECK='maybe': expected a boolean {BOOL_WORDS}"


def test_bundle_setting_bad_number_names_variable_type_and_meaning():
    help_text = next(s.help for s in settings.BUNDLE_SETTINGS if s.env == "BUNDLE_ENGINE_PORT")
    with pytest.raises(ConfigError) as err:
        bundle_setting("BUNDLE_ENGINE_PORT", {"BUNDLE_ENGINE_PORT": "3e4"})
    assert str(err.value) == f"BUNDLE_ENGINE_PORT='3e4': expected int. {help_text}"


def test_bundle_setting_minimum_is_inclusive():
    env = "BUNDLE_GUARD_MAX_CONNECTIONS"
    help_text = next(s.help for s in settings.BUNDLE_SETTINGS if s.env == env)
    assert bundle_setting(env, {env: "1"}) == 1
    with pytest.raises(ConfigError) as err:
        bundle_setting(env, {env: "0"})
    assert str(err.value) == f"{env}='0': expected at least 1. {help_text}"


def test_unknown_bundle_setting_is_refused_in_process_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        BundleSettings.from_environ({"BUNDLE_ENGINE_PORTS": "1", "BUNDLE_PREFLIGHT": "1"})
    assert str(err.value) == "BUNDLE_ENGINE_PORTS is not a setting. Did you mean BUNDLE_ENGINE_PORT?"


def test_the_first_unknown_setting_in_sorted_order_is_named():
    with pytest.raises(ConfigError) as err:
        BundleSettings.from_environ({"BUNDLE_ZZZ": "1", "BUNDLE_ENGINE_PORTT": "1"})
    assert str(err.value) == "BUNDLE_ENGINE_PORTT is not a setting. Did you mean BUNDLE_ENGINE_PORT?"


def test_unknown_setting_without_a_close_name():
    with pytest.raises(ConfigError) as err:
        BundleSettings.from_environ({"BUNDLE_QQQQQQQQQQQQQQQQQQQQQQQQ": "1"})
    assert str(err.value) == "BUNDLE_QQQQQQQQQQQQQQQQQQQQQQQQ is not a setting."


def test_only_the_upper_case_prefix_is_the_bundles():
    parsed = BundleSettings.from_environ({"bundle_whatever": "1", "XBUNDLE_Y": "1", "ENGINE_TP_SIZE": "2"})
    assert (parsed.preflight, parsed.parse_check, parsed.engine_port, parsed.healthcheck_path,
            parsed.healthcheck_timeout, parsed.gpu_driver_min, parsed.guard_max_connections) == \
        (True, True, 30000, "/health", 25.0, 0, 4096)


def test_from_environ_reads_every_field():
    parsed = BundleSettings.from_environ({
        "BUNDLE_PREFLIGHT": "0", "BUNDLE_PARSE_CHECK": "off", "BUNDLE_ENGINE_PORT": "30001",
        "BUNDLE_HEALTHCHECK_PATH": "/ready", "BUNDLE_HEALTHCHECK_TIMEOUT": "3",
        "BUNDLE_GPU_DRIVER_MIN": "570", "BUNDLE_GUARD_MAX_CONNECTIONS": "10"})
    assert (parsed.preflight, parsed.parse_check, parsed.engine_port, parsed.healthcheck_path,
            parsed.healthcheck_timeout, parsed.gpu_driver_min, parsed.guard_max_connections) == \
        (False, False, 30001, "/ready", 3.0, 570, 10)


def test_markdown_table_rows():
    table = settings.markdown_table().splitlines()
    assert table[:2] == ["| variable | type | default | meaning |", "|---|---|---|---|"]
    assert len(table) == 2 + len(settings.BUNDLE_SETTINGS)
    port = next(s for s in settings.BUNDLE_SETTINGS if s.env == "BUNDLE_ENGINE_PORT")
    assert table[4] == f"| `BUNDLE_ENGINE_PORT` | int | `30000` | {port.help} |"
