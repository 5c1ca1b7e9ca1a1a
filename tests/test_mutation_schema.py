"""Behaviour tests for bundle/schema.py, written to kill mutmut's survivors (docs/mutation.md).
The checker is driven with small records declared here and with copies of the committed data;
every message is spelled out, every check is tried on both sides of its bound."""
import copy
from pathlib import Path
from typing import Literal, Optional, Union

import pytest
import yaml

from bundle import schema
from bundle.schema import SchemaError, key, record

ROOT = Path(__file__).resolve().parent.parent


def data():
    return {name: yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text()) for name in schema.FILES}


# --- the value checks ----------------------------------------------------------------------------

def test_tag_checks():
    assert schema._tag_check("v{sglang_version}-cu130") is None
    assert schema._tag_check("v0.5.23") == "'v0.5.23' does not contain {sglang_version}: tags are made from the " \
                                           "pinned sglang_version"
    assert schema._tags_check(["a{sglang_version}", "b", "c"]) == schema._tag_check("b")
    assert schema._tags_check(["a{sglang_version}", "b{sglang_version}"]) is None
    assert schema._tags_check([]) is None


def test_digest_check():
    good = "sha256:" + "0123456789abcdef" * 4
    assert schema._digest_check(None) is None and schema._digest_check(good) is None
    for bad in (good + "0", good[:-1], good.upper().replace("SHA256", "sha256"), "md5:" + "0" * 64, ""):
        assert schema._digest_check(bad) == f"{bad!r}: expected sha256:<64 hex digits> or null"


def test_number_checks_on_both_sides():
    assert schema._positive(1) is None and schema._positive(0) == "0: expected a positive number"
    assert schema._port(1) is None and schema._port(65535) is None
    assert schema._port(0) == "0: expected a port number 1-65535"
    assert schema._port(65536) == "65536: expected a port number 1-65535"
    assert schema._not_empty({"a": 1}) is None and schema._not_empty([]) == "empty: expected at least one entry"


def test_kubernetes_checks():
    assert schema._k8s_quantity("400Gi") is None and schema._k8s_quantity("1Ki") is None
    assert schema._k8s_quantity("400G") == "'400G': expected a size such as 400Gi"
    assert schema._k8s_quantity("1.5Gi") == "'1.5Gi': expected a size such as 400Gi"
    assert schema._k8s_name("a") is None and schema._k8s_name("a" * 42) is None and schema._k8s_name("a-1") is None
    for bad in ("a" * 43, "-a", "a-", "A", "a_b", ""):
        assert schema._k8s_name(bad) == (f"{bad!r}: expected a DNS label (lower case letters, digits and -, "
                                         "at most 42 characters)")
    assert schema._vendors({"nvidia": "x", "amd": "y", "other": "z"}) is None
    assert schema._vendors({"nvidia": "x"}) == "missing amd: one resource name per image vendor"
    assert schema._vendors({}) == "missing amd, nvidia: one resource name per image vendor"


# --- describing types and values -----------------------------------------------------------------

@pytest.mark.parametrize("hint, text", [
    (str, "a string"), (int, "an integer"), (float, "a number"), (bool, "true or false"), (type(None), "null"),
    (Optional[str], "a string or null"), (Union[str, int, float, bool], "a string, a number or true or false"),
    (Literal["a", "b"], "one of 'a', 'b'"), (list[str], "a list"), (dict[str, int], "a mapping"),
    (schema.Probe, "a mapping"), (Optional[int], "an integer or null"), (int | None, "an integer or null"),
])
def test_describe_hint(hint, text):
    assert schema._describe(hint) == text


@pytest.mark.parametrize("value, text", [
    (None, "null"), (True, "true"), (False, "false"), ("x", "the string 'x'"), (3, "the number 3"),
    (2.5, "the number 2.5"), ([1], "a list"), ({}, "a mapping"),
])
def test_shown_value(value, text):
    assert schema._shown(value) == text


@pytest.mark.parametrize("value, hint, matches", [
    (True, int, False), (1, int, True), (1.0, int, False), (1, float, True), (True, float, False),
    (2.5, float, True), (True, bool, True), (1, bool, False), (None, type(None), True), (0, type(None), False),
    ("a", str, True), (1, str, False), ("a", Literal["a"], True), ("b", Literal["a"], False),
    ([], list[str], True), ({}, list[str], False), ({}, dict[str, int], True), ([], dict[str, int], False),
    ({}, schema.Probe, True), ([], schema.Probe, False), (None, Optional[str], True), (1, Optional[str], False),
])
def test_matches(value, hint, matches):
    assert schema._matches(value, hint) is matches


def test_inner_picks_the_matching_member():
    assert schema._inner({}, Optional[schema.Probe]) is schema.Probe
    assert schema._inner(None, Optional[schema.Probe]) is type(None)
    assert schema._inner(1, int) is int
    assert schema._inner(1, Optional[Union[str, int]]) is int


def test_closest():
    assert schema._closest("mi300", ["mi300x", "h100"], "hardware profiles") == "did you mean mi300x?"
    assert schema._closest("zzz", ["mi300x", "h100"], "hardware profiles") == "hardware profiles: mi300x, h100"
    assert schema._closest(5, [1, 2], "numbers") == "numbers: 1, 2"
    # one suggestion only, the closest
    assert schema._closest("abcd", ["abce", "abcf", "abcd1"], "x") == "did you mean abcd1?"


def test_join():
    assert schema._join("", "a") == "a" and schema._join("a", "b") == "a.b" and schema._join("a", 0) == "a[0]"
    assert schema._join("", 3) == "[3]"


# --- the checker on small records ----------------------------------------------------------------

@record
class Leaf:
    n: int = key("a number", check=schema._positive)
    ref: str = key("a GPU", ref="GPU", optional=True)


@record
class Root:
    name: str = key("a name")
    leaf: Optional[Leaf] = key("a leaf or null")
    items: list[int] = key("numbers", optional=True)
    named: dict[str, Leaf] = key("leaves by GPU", keys="GPU", optional=True)
    mode: Literal["a", "b"] = key("a mode", optional=True)


REFS = {"GPU": ["h100", "h200"]}


def problems(value, hint=Root, refs=REFS):
    return list(schema._check(value, hint, "", refs))


def test_a_valid_value_has_no_problem():
    assert problems({"name": "x", "leaf": {"n": 1, "ref": "h100"}, "items": [1, 2], "named": {"h200": {"n": 2}},
                     "mode": "b"}) == []
    assert problems({"name": "x", "leaf": None}) == []


def test_every_problem_with_its_path():
    found = problems({"nme": "x", "leaf": {"n": 0, "ref": "h10"}, "items": [1, "2"], "named": {"a100": {"n": 1},
                      "h100": {"n": "1"}, 5: {"n": 1}}, "mode": "c"})
    # unknown keys first, then the fields in declaration order, each with what is inside it
    assert found == [
        ("nme", "unknown key; did you mean name?"),
        ("", "missing required key 'name'"),
        ("leaf.n", "0: expected a positive number"),
        ("leaf.ref", "no such GPU 'h10'; did you mean h100?"),
        ("items[1]", "expected an integer, got the string '2'"),
        ("named.a100", "no such GPU; did you mean h100?"),
        ("named.h100.n", "expected an integer, got the string '1'"),
        ("named[5]", "expected a name, got the number 5"),
        ("mode", "expected one of 'a', 'b', got the string 'c'"),
    ]


def test_problems_in_order_exactly():
    assert problems({"name": 1, "leaf": {"n": 0}}) == [("name", "expected a string, got the number 1"),
                                                       ("leaf.n", "0: expected a positive number")]
    assert problems({"leaf": {"ref": "h300"}}) == [("", "missing required key 'name'"),
                                                   ("leaf", "missing required key 'n'"),
                                                   # a tie (0.75 each): difflib keeps the larger name
                                                   ("leaf.ref", "no such GPU 'h300'; did you mean h200?")]
    assert problems({"name": "x", "leaf": None, "named": {5: {"n": 0}}}) == [
        ("named[5]", "expected a name, got the number 5"), ("named[5].n", "0: expected a positive number")]


def test_a_dangling_name_key_is_not_checked_further():
    assert problems({"name": "x", "leaf": None, "named": {"zzzz": {"n": "bad"}}}) == \
        [("named.zzzz", "no such GPU; GPUs: h100, h200")]


def test_unknown_key_without_a_close_name_lists_the_keys():
    assert problems({"name": "x", "leaf": None, "qqqqqq": 1}) == \
        [("qqqqqq", "unknown key; expected one of: name, leaf, items, named, mode")]


def test_wrong_outer_type_stops_there():
    assert problems([1], Root) == [("", "expected a mapping, got a list")]
    assert problems({"name": "x", "leaf": 5}) == [("leaf", "expected a mapping or null, got the number 5")]


def test_references_absent_from_refs_are_not_checked():
    assert problems({"name": "x", "leaf": {"n": 1, "ref": "anything"}, "named": {"any": {"n": 1}}}, refs={}) == []


def test_override_needs_a_rationale_or_a_reason():
    assert problems({"flags": {}}, schema.Override) == [("", "missing required key 'rationale' (or 'unsupported')")]
    assert problems({"rationale": "r"}, schema.Override) == []
    assert problems({"unsupported": "u"}, schema.Override) == []


# --- the files -----------------------------------------------------------------------------------

def test_references_of_the_data():
    refs = schema.references(data(), flag_names=["tp-size"])
    hardware = yaml.safe_load((ROOT / "presets" / "hardware.yaml").read_text())
    assert refs == {"hardware profile": list(hardware["hardware"]), "GPU": list(hardware["gpus"]),
                    "image lane": list(hardware["images"]), "SGLang flag": ["tp-size"]}
    assert schema.references({}) == {}
    assert schema.references({"hardware": [1]}) == {}
    assert schema.references({"hardware": {"gpus": {"g": {}}, "hardware": []}}) == {"GPU": ["g"]}


def test_validate_returns_the_data_and_names_each_file():
    good = data()
    assert schema.validate(good) is good
    broken = copy.deepcopy(good)
    del broken["container"]
    broken["gateway"]["port"] = 0
    with pytest.raises(SchemaError) as err:
        schema.validate(broken, files={"gateway": "gw.yaml"})
    assert str(err.value) == ("presets/container.yaml: missing\n"
                              "gw.yaml: port: 0: expected a port number 1-65535")


def test_validate_problem_at_the_top_has_no_path():
    broken = copy.deepcopy(data())
    broken["presets"] = []
    with pytest.raises(SchemaError) as err:
        schema.validate(broken)
    assert str(err.value) == "presets/presets.yaml: expected a mapping, got a list"


def test_validate_checks_flag_names_only_when_given():
    good = data()
    schema.validate(copy.deepcopy(good))
    with pytest.raises(SchemaError, match=r"no such SGLang flag; "):
        schema.validate(copy.deepcopy(good), flag_names=["no-such-flag"])


def test_check_record():
    schema.check_record({"n": 1}, Leaf, "inv.yml", REFS)
    with pytest.raises(SchemaError) as err:
        schema.check_record({"n": 0, "x": 1}, Leaf, "inv.yml", REFS)
    assert str(err.value) == "inv.yml: x: unknown key; expected one of: n, ref\ninv.yml: n: 0: expected a positive number"
    with pytest.raises(SchemaError) as err:
        schema.check_record([], Leaf, "inv.yml", REFS)
    assert str(err.value) == "inv.yml: expected a mapping, got a list"


def test_describe_lines():
    lines = schema.describe().splitlines()
    assert lines[0] == "presets/hardware.yaml"
    assert "  sglang_version: a string, required: the SGLang release the bundle is built for" in lines
    assert "  images.<name>.digest: a string or null, optional: sha256:<64 hex> to freeze the exact build, or null" \
        in lines
    assert "  gpus.<name>.image: a string, required (names image lanes): engine image lane" in lines
    assert "  presets.<name>.flags: a mapping, required (names SGLang flags): SGLang flags, long names without --; " \
           "'gpus' or 'gpus/N' for GPU counts" in lines
    assert "  healthcheck.retries: an integer, required: failed probes before unhealthy" in lines
    assert "  alerts[].for: a string, required: how long the condition holds before the alert fires" in lines
    assert "  dashboard.panels: a list, required: the engines' row" in lines
    assert [line for line in lines if not line.startswith("  ")] == [
        "presets/hardware.yaml", "presets/presets.yaml", "presets/container.yaml", "presets/gateway.yaml",
        "presets/kubernetes.yaml", "presets/monitoring.yaml", "monitoring/queries.yaml", "inventory.example.yml"]


# --- the declarations themselves -----------------------------------------------------------------

def fresh_schema():
    """bundle/schema.py executed anew, under its own name but outside sys.modules: its records are
    built by key() at import time, which an already imported module has long done."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bundle.schema", schema.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_key_declares_help_reference_check_and_whether_required():
    import dataclasses
    fresh = fresh_schema()
    image = {f.name: f for f in dataclasses.fields(fresh.Image)}
    assert dict(image["tag"].metadata) == {"help": "tag, made from the pinned release: contains {sglang_version}",
                                           "ref": None, "keys": None, "check": fresh._tag_check, "name": None}
    assert image["tag"].default is dataclasses.MISSING and image["digest"].default is None
    gpu = {f.name: f for f in dataclasses.fields(fresh.Gpu)}
    assert dict(gpu["image"].metadata) == {"help": "engine image lane", "ref": "image lane", "keys": None,
                                           "check": None, "name": None}
    alert = {f.name: f for f in dataclasses.fields(fresh.Alert)}
    assert alert["for_"].metadata["name"] == "for" and fresh._key_name(alert["for_"]) == "for"
    preset = {f.name: f for f in dataclasses.fields(fresh.Preset)}
    assert preset["flags"].metadata["keys"] == "SGLang flag" and preset["env"].default is None
    assert "  gpus.<name>.image: a string, required (names image lanes): engine image lane" in \
        fresh.describe().splitlines()
