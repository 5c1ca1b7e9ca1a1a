"""Behaviour tests for launcher/credentials.py, written to kill mutmut's survivors (docs/mutation.md).
Expected values are literals worked out by hand, never computed by the code under test."""
import re

import pytest

from launcher import credentials
from launcher.credentials import EngineKeys, file_env, redact, redact_body, secret_needles
from launcher.settings import ConfigError
from launcher.sglang_auth import ADMIN_FORCE, ADMIN_OPTIONAL, NORMAL


def test_secret_names_are_the_three_documented_ones():
    assert credentials.SECRET_FLAGS == ("--api-key", "--admin-api-key")
    assert credentials.SECRET_ENVS == ("HF_TOKEN", "ENGINE_API_KEY", "ENGINE_ADMIN_API_KEY")
    assert credentials.SECRET_PLACEHOLDER == "<redacted>" and credentials.REDACTED == b"<redacted>"


# --- file_env: acceptance next to every refusal ------------------------------------------------

def test_file_env_plain_value_is_returned():
    assert file_env("TOKEN", {"TOKEN": "plain-value"}) == "plain-value"


def test_file_env_unset_and_empty_are_none():
    assert file_env("TOKEN", {}) is None
    assert file_env("TOKEN", {"TOKEN": ""}) is None
    assert file_env("TOKEN", {"OTHER_FILE": "/nonexistent"}) is None


def test_file_env_reads_and_strips_the_file(tmp_path):
    path = tmp_path / "secret"
    path.write_text("  from-file \n\n")
    assert file_env("TOKEN", {"TOKEN_FILE": str(path)}) == "from-file"
    # An empty plain value next to a file is "not set": the file wins, no conflict.
    assert file_env("TOKEN", {"TOKEN": "", "TOKEN_FILE": str(path)}) == "from-file"


def test_file_env_refuses_both(tmp_path):
    path = tmp_path / "secret"
    path.write_text("x")
    with pytest.raises(ConfigError) as err:
        file_env("TOKEN", {"TOKEN": "plain", "TOKEN_FILE": str(path)})
    assert str(err.value) == ("both TOKEN and TOKEN_FILE are set; set only one "
                              "(TOKEN_FILE is the one that keeps the value out of `docker inspect`)")


def test_file_env_refuses_an_unreadable_file(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError) as err:
        file_env("TOKEN", {"TOKEN_FILE": str(missing)})
    assert str(err.value) == f"TOKEN_FILE={missing}: cannot read the file (No such file or directory)"
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_file_env_refuses_an_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_text(" \n\t\n")
    with pytest.raises(ConfigError) as err:
        file_env("TOKEN", {"TOKEN_FILE": str(path)})
    assert str(err.value) == f"TOKEN_FILE={path}: the file is empty"


# --- the engine's keys -------------------------------------------------------------------------

def test_generated_keys_are_two_distinct_256_bit_hex_strings():
    seen = set()
    for _ in range(3):
        keys = EngineKeys.generate()
        assert re.fullmatch(r"[0-9a-f]{64}", keys.api_key)
        assert re.fullmatch(r"[0-9a-f]{64}", keys.admin_api_key)
        assert keys.api_key != keys.admin_api_key
        seen |= {keys.api_key, keys.admin_api_key}
    assert len(seen) == 6


def test_for_level_picks_the_admin_key_only_for_admin_routes():
    keys = EngineKeys("user-key", "admin-key")
    assert keys.for_level(NORMAL) == "user-key"
    assert keys.for_level(ADMIN_OPTIONAL) == "admin-key"
    assert keys.for_level(ADMIN_FORCE) == "admin-key"
    assert keys.for_level("anything else") == "user-key"


# --- redaction: every byte form, longest first ---------------------------------------------------

def test_needles_of_an_ascii_secret_are_the_secret_once():
    assert secret_needles(["abc"]) == (b"abc",)


def test_needles_cover_json_escapes():
    # 'a"b\' : raw, and JSON-escaped (quote and backslash escaped); ensure_ascii makes no difference.
    assert secret_needles(['a"b\\']) == (b'a\\"b\\\\', b'a"b\\')


def test_needles_cover_unicode_escapes():
    # "é/x": raw UTF-8 (C3 A9), \u00e9 escaped; JSON does not escape "/".
    assert secret_needles(["\u00e9/x"]) == (b"\\u00e9/x", b"\xc3\xa9/x")


def test_needles_of_a_non_bmp_secret_use_surrogate_pairs():
    assert secret_needles(["\U0001F600"]) == (b"\\ud83d\\ude00", b"\xf0\x9f\x98\x80")


def test_needles_with_a_control_character_in_every_form():
    # "\n" inside: raw newline, and "\\n" in both JSON forms; "é" differs between the JSON forms.
    assert set(secret_needles(["\u00e9\n"])) == {b"\xc3\xa9\n", b"\\u00e9\\n", b"\xc3\xa9\\n"}
    assert len(secret_needles(["\u00e9\n"])) == 3
    assert secret_needles(["\u00e9\n"])[0] == b"\\u00e9\\n"


def test_needles_skip_empty_and_none_and_sort_longest_first():
    assert secret_needles(["", None, "ab", "abcd", "abc"]) == (b"abcd", b"abc", b"ab")
    assert secret_needles([]) == ()
    assert secret_needles(["", None]) == ()


def test_redact_body_replaces_a_containing_secret_whole():
    needles = secret_needles(["abc", "abcdef"])
    assert redact_body(b"x abcdef y abc z", needles) == b"x <redacted> y <redacted> z"


def test_redact_body_replaces_every_form_and_every_occurrence():
    needles = secret_needles(['k"\u00e9'])
    body = b'{"a": "k\\"\\u00e9", "b": "k\\"\xc3\xa9", "c": "k"\xc3\xa9", "d": "k\\"\\u00e9"}'
    assert redact_body(body, needles) == b'{"a": "<redacted>", "b": "<redacted>", "c": "<redacted>", "d": "<redacted>"}'


def test_redact_body_without_needles_is_unchanged():
    assert redact_body(b"abc", ()) == b"abc"


def test_redact_replaces_every_secret_everywhere():
    assert redact("key=s1 admin=s2 again s1", ["s1", "s2"]) == "key=<redacted> admin=<redacted> again <redacted>"
    assert redact("nothing here", ["s1"]) == "nothing here"
    assert redact("nothing here", []) == "nothing here"
