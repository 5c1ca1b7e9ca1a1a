"""presets/*.yaml are checked against bundle/schema.py before anything renders: a typo in a key or a
name, a missing key or a wrong type is refused with the file, the path and the closest valid name,
instead of rendering something else silently or crashing with a KeyError."""
import copy
import json
import shutil
import subprocess
import sys

import jsonschema
import pytest
import yaml

from paths import ROOT
from bundle import deploy, render, schema

DATA = render.load_data()
MI300_TYPO = ("presets/presets.yaml: presets.throughput.hardware.mi300: no such hardware profile; "
              "did you mean mi300x?")
NO_SUMMARY = "presets/presets.yaml: presets.basic: missing required key 'summary'"


def problems(mutate) -> str:
    data = copy.deepcopy(DATA)
    mutate(data)
    with pytest.raises(schema.SchemaError) as raised:
        render.validate(data)
    return str(raised.value)


def rename_mi300x(data):
    overrides = data["presets"]["presets"]["throughput"]["hardware"]
    overrides["mi300"] = overrides.pop("mi300x")


def test_the_committed_data_passes():
    assert render.validate(copy.deepcopy(DATA)) == DATA


def test_a_misspelt_hardware_override_is_refused_not_ignored():
    # Unchecked, this rendered one TP8 engine on mi300x instead of four TP2 replicas.
    assert problems(rename_mi300x) == MI300_TYPO


def test_a_missing_summary_is_named_not_a_key_error():
    assert problems(lambda data: data["presets"]["presets"]["basic"].pop("summary")) == NO_SUMMARY


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["hardware"]["hardware"]["h100x4"].update(count="4"),
     "presets/hardware.yaml: hardware.h100x4.count: expected an integer, got the string '4'"),
    (lambda d: d["hardware"]["gpus"]["a100"].update(fp8="no"),
     "presets/hardware.yaml: gpus.a100.fp8: expected true or false, got the string 'no'"),
    (lambda d: d["presets"]["presets"]["latency"]["flags"].update({"context-length": [32768]}),
     "presets/presets.yaml: presets.latency.flags.context-length: expected a string, a number or true or false, "
     "got a list"),
    (lambda d: d["container"]["logging"].update(max_file=5),
     "presets/container.yaml: logging.max_file: expected a string, got the number 5"),
    (lambda d: d["hardware"]["images"]["cuda"].update(vendor="intel"),
     "presets/hardware.yaml: images.cuda.vendor: expected one of 'nvidia', 'amd', got the string 'intel'"),
], ids=["int", "bool", "flag-value", "string", "choice"])
def test_wrong_types_are_refused(mutate, message):
    assert problems(mutate) == message


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["hardware"]["hardware"]["h100x4"].update(gpu="h10"),
     "presets/hardware.yaml: hardware.h100x4.gpu: no such GPU 'h10'; did you mean h100?"),
    (lambda d: d["hardware"]["gpus"]["mi300x"].update(image="amd"),
     "presets/hardware.yaml: gpus.mi300x.image: no such image lane 'amd'; image lanes: cuda, rocm"),
    (lambda d: d["hardware"]["images"]["cuda"].update(tag="v0.5.23-cu130-runtime"),
     "presets/hardware.yaml: images.cuda.tag: 'v0.5.23-cu130-runtime' does not contain {sglang_version}: "
     "tags are made from the pinned sglang_version"),
    (lambda d: d["hardware"]["images"]["rocm"].update(digest="sha256:abc"),
     "presets/hardware.yaml: images.rocm.digest: 'sha256:abc': expected sha256:<64 hex digits> or null"),
    (lambda d: d["hardware"]["hardware"]["h200x4"].update(cuont=4),
     "presets/hardware.yaml: hardware.h200x4.cuont: unknown key; did you mean count?"),
    (lambda d: d["presets"]["presets"]["basic"].update(flgs={}),
     "presets/presets.yaml: presets.basic.flgs: unknown key; did you mean flags?"),
    (lambda d: d["presets"]["presets"]["throughput"]["flags"].update({"mem-fraction-statc": 0.8}),
     "presets/presets.yaml: presets.throughput.flags.mem-fraction-statc: no such SGLang flag; "
     "did you mean mem-fraction-static?"),
    (lambda d: d["presets"]["presets"]["latency"]["hardware"]["mi300x"].pop("unsupported"),
     "presets/presets.yaml: presets.latency.hardware.mi300x: missing required key 'rationale' (or 'unsupported')"),
    (lambda d: d["container"].pop("healthcheck"),
     "presets/container.yaml: missing required key 'healthcheck'"),
], ids=["gpu", "image-lane", "tag", "digest", "unknown-key", "preset-key", "flag", "override-why", "top-level"])
def test_names_references_and_values_are_checked(mutate, message):
    assert problems(mutate) == message


def test_every_problem_is_listed_one_per_line():
    def both(data):
        rename_mi300x(data)
        data["presets"]["presets"]["basic"].pop("summary")
    assert problems(both).splitlines() == [NO_SUMMARY, MI300_TYPO]


@pytest.fixture
def data_copy(tmp_path):
    """A copy of presets/ whose presets.yaml has the mi300x typo."""
    folder = tmp_path / "presets"
    shutil.copytree(ROOT / "presets", folder)
    text = (folder / "presets.yaml").read_text()
    typo = "      mi300x:\n        rationale: >-\n          BF16 at TP2 fits a 192 GB MI300X"
    assert text.count(typo) == 1
    (folder / "presets.yaml").write_text(text.replace(typo, typo.replace("mi300x:", "mi300:")))
    return folder


@pytest.mark.parametrize("command", [["presets"], ["render", "--hardware", "mi300x", "--preset", "throughput"]])
def test_the_cli_prints_the_problem_and_exits_nonzero(data_copy, command, tmp_path):
    out = tmp_path / "c.yml"
    args = command + (["--out", str(out)] if command[0] == "render" else [])
    result = subprocess.run([sys.executable, "-m", "bundle.render", "--data", str(data_copy), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == "" and not out.exists()
    assert result.stderr == "render: " + MI300_TYPO.replace("presets/presets.yaml",
                                                            str(data_copy / "presets.yaml")) + "\n"


def test_deploy_stops_on_the_problem_before_docker(data_copy, monkeypatch, capsys):
    load = render.load_data
    monkeypatch.setattr(render, "load_data", lambda data_dir=data_copy: load(data_dir))
    monkeypatch.setattr(deploy, "check_docker", lambda: pytest.fail("docker was asked"))
    assert deploy.main(["--hardware", "mi300x", "--preset", "throughput"]) == 2   # bad data: USAGE
    assert capsys.readouterr().err == "deploy: " + MI300_TYPO.replace("presets/presets.yaml",
                                                                      str(data_copy / "presets.yaml")) + "\n"


def test_a_yaml_syntax_error_names_the_file(tmp_path):
    folder = tmp_path / "presets"
    shutil.copytree(ROOT / "presets", folder)
    (folder / "container.yaml").write_text("default_port: [8000\n")
    with pytest.raises(render.RenderError, match=f"^{folder / 'container.yaml'}: while parsing"):
        render.load_data(folder)


def test_the_schema_describes_every_key_with_its_help():
    text = schema.describe()
    assert "  presets.<name>.hardware: a mapping, optional (names hardware profiles): per hardware profile" in text
    assert "  hardware.<name>.gpu: a string, required (names GPUs): which GPU" in text


# ---- every data file's JSON Schema (schemas/<name>.schema.json, `make schemas`) ---------------
# The same refusals from bundle/schema.py and from jsonschema on the exported file: the export
# cannot drift from the checker. jsonschema checks formats (ipv4/ipv6) only with a format checker.

VALIDATOR = jsonschema.Draft202012Validator
NAMES = ["hardware", "presets", "container", "gateway", "kubernetes", "monitoring", "queries", "inventory"]


def exported_schema(name: str) -> dict:
    return json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())


def real_data(name: str):
    return yaml.safe_load((ROOT / schema.DATA_FILES[name][0]).read_text())


def json_errors(name: str, value) -> list:
    validator = VALIDATOR(exported_schema(name), format_checker=VALIDATOR.FORMAT_CHECKER)
    return list(validator.iter_errors(value))


def python_problems(name: str, value) -> list[str]:
    """bundle/schema.py's problems, without the file's name (references are checked elsewhere)."""
    file, record = schema.DATA_FILES[name]
    try:
        schema.check_record(value, record, file, {})
    except schema.SchemaError as err:
        return [line.removeprefix(f"{file}: ") for line in str(err).splitlines()]
    return []


def test_every_data_file_has_its_schema_and_no_other():
    assert list(schema.DATA_FILES) == NAMES
    assert sorted(path.name for path in (ROOT / "schemas").iterdir()) == sorted(f"{n}.schema.json" for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_real_data_file_validates_against_its_exported_schema(name):
    exported = exported_schema(name)
    VALIDATOR.check_schema(exported)
    assert exported["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert exported["$comment"].startswith("GENERATED FILE, do not edit: make schemas")
    assert json_errors(name, real_data(name)) == []
    assert python_problems(name, real_data(name)) == []


def changed(name, edit):
    data = copy.deepcopy(real_data(name))
    edit(data)
    return data


# (file, edit, bundle/schema.py's problem, the JSON Schema keyword that refuses it)
REFUSED = [
    ("hardware", lambda d: d["hardware"]["h200x4"].update(cuont=4),
     "hardware.h200x4.cuont: unknown key; did you mean count?", "additionalProperties"),
    ("monitoring", lambda d: d["jobs"]["engine"].update(path="/metrics"),
     "jobs.engine.path: unknown key; expected one of: name, metrics_path", "additionalProperties"),
    ("hardware", lambda d: d["hardware"]["h100x4"].update(count="4"),
     "hardware.h100x4.count: expected an integer, got the string '4'", "type"),
    ("hardware", lambda d: d["hardware"]["h100x4"].update(count=True),
     "hardware.h100x4.count: expected an integer, got true", "type"),
    ("monitoring", lambda d: d["prometheus"].update(port="9090"),
     "prometheus.port: expected an integer, got the string '9090'", "type"),
    ("presets", lambda d: d["presets"]["latency"]["flags"].update({"context-length": [32768]}),
     "presets.latency.flags.context-length: expected a string, a number or true or false, got a list", "type"),
    ("queries", lambda d: d["alerts"][3].update(severity=None),
     "alerts[3].severity: expected a string, got null", "type"),
    ("container", lambda d: d.pop("healthcheck"), "missing required key 'healthcheck'", "required"),
    ("queries", lambda d: d["alerts"][0].pop("for"), "alerts[0]: missing required key 'for'", "required"),
    ("kubernetes", lambda d: d["gpu_resources"].pop("amd"),
     "gpu_resources: missing amd: one resource name per image vendor", "required"),
    ("presets", lambda d: d["presets"]["latency"]["hardware"]["mi300x"].pop("unsupported"),
     "presets.latency.hardware.mi300x: missing required key 'rationale' (or 'unsupported')", "anyOf"),
    ("hardware", lambda d: d["images"]["cuda"].update(vendor="intel"),
     "images.cuda.vendor: expected one of 'nvidia', 'amd', got the string 'intel'", "enum"),
    ("kubernetes", lambda d: d.update(service_type="Ingress"),
     "service_type: expected one of 'ClusterIP', 'NodePort', 'LoadBalancer', got the string 'Ingress'", "enum"),
    ("container", lambda d: d.update(default_port=0), "default_port: 0: expected a port number 1-65535", "minimum"),
    ("container", lambda d: d.update(default_port=65536),
     "default_port: 65536: expected a port number 1-65535", "maximum"),
    ("gateway", lambda d: d.update(metrics_port=70000), "metrics_port: 70000: expected a port number 1-65535",
     "maximum"),
    ("monitoring", lambda d: d["grafana"].update(host_port=0), "grafana.host_port: 0: expected a port number 1-65535",
     "minimum"),
    ("inventory", lambda d: d["nodes"].update(dist_init_port=-1),
     "nodes.dist_init_port: -1: expected a port number 1-65535", "minimum"),
    ("hardware", lambda d: d["hardware"]["h100x4"].update(count=0),
     "hardware.h100x4.count: 0: expected a positive number", "exclusiveMinimum"),
    ("hardware", lambda d: d["images"]["rocm"].update(digest="sha256:abc"),
     "images.rocm.digest: 'sha256:abc': expected sha256:<64 hex digits> or null", "pattern"),
    ("hardware", lambda d: d["images"]["rocm"].update(digest="sha256:" + "A" * 64),
     f"images.rocm.digest: 'sha256:{'A' * 64}': expected sha256:<64 hex digits> or null", "pattern"),
    ("hardware", lambda d: d["images"]["cuda"].update(tag="v0.5.23-cu130"),
     "images.cuda.tag: 'v0.5.23-cu130' does not contain {sglang_version}: tags are made from the pinned "
     "sglang_version", "pattern"),
    ("hardware", lambda d: d["images"]["cuda"].update(alternatives=["v0.5.23"]),
     "images.cuda.alternatives: 'v0.5.23' does not contain {sglang_version}: tags are made from the pinned "
     "sglang_version", "pattern"),
    ("hardware", lambda d: d.update(gpus={}), "gpus: empty: expected at least one entry", "minProperties"),
    ("hardware", lambda d: d["gpus"]["a100"].update(match=[]), "gpus.a100.match: empty: expected at least one entry",
     "minItems"),
    ("queries", lambda d: d["dashboard"]["panels"][2].update(title=""),
     "dashboard.panels[2].title: empty: expected text", "minLength"),
    ("monitoring", lambda d: d["grafana"].update(image="grafana/grafana"),
     "grafana.image: 'grafana/grafana': expected an image pinned by tag, repository:tag", "pattern"),
    ("monitoring", lambda d: d["prometheus"].update(image="registry:5000/prometheus"),
     "prometheus.image: 'registry:5000/prometheus': expected an image pinned by tag, repository:tag", "pattern"),
    ("gateway", lambda d: d.update(health_check_endpoint="ready"),
     "health_check_endpoint: 'ready': expected an absolute URL path such as /ready", "pattern"),
    ("kubernetes", lambda d: d.update(shm_size="64G"), "shm_size: '64G': expected a size such as 400Gi", "pattern"),
    ("kubernetes", lambda d: d.update(name="Llama"),
     "name: 'Llama': expected a DNS label (lower case letters, digits and -, at most 42 characters)", "pattern"),
    ("kubernetes", lambda d: d.update(name="a" * 43),
     f"name: '{'a' * 43}': expected a DNS label (lower case letters, digits and -, at most 42 characters)", "pattern"),
    ("container", lambda d: d.update(default_bind_address="localhost"),
     "default_bind_address: 'localhost': expected an IP address such as 10.0.0.11 or fd00::11 (no brackets, no port, "
     "not empty)", "anyOf"),
    ("inventory", lambda d: d["hosts"]["gpu-a"].update(address="10.0.0.256"),
     "hosts.gpu-a.address: '10.0.0.256': expected an IP address such as 10.0.0.11 or fd00::11 (no brackets, no port, "
     "not empty)", "anyOf"),
    ("inventory", lambda d: d["gateway"].update(host="10.0.0"),
     "gateway.host: '10.0.0': expected an IP address or a host name such as gpu-gateway.internal (not empty)", "anyOf"),
    ("inventory", lambda d: d["gateway"].update(host="gpu_gateway"),
     "gateway.host: 'gpu_gateway': expected an IP address or a host name such as gpu-gateway.internal (not empty)",
     "anyOf"),
    ("inventory", lambda d: d["nodes"].update(interface=".."),
     "nodes.interface: '..': expected a network interface name such as eth0 (`ip -br link` lists them)", "not"),
    ("inventory", lambda d: d["nodes"].update(interface="eth0:1"),
     "nodes.interface: 'eth0:1': expected a network interface name such as eth0 (`ip -br link` lists them)",
     "pattern"),
    ("inventory", lambda d: d["nodes"].update(interface="a" * 16),
     f"nodes.interface: '{'a' * 16}': expected a network interface name such as eth0 (`ip -br link` lists them)",
     "pattern"),
]


@pytest.mark.parametrize("name,edit,problem,keyword", REFUSED,
                         ids=[f"{case[0]}-{case[3]}-{number}" for number, case in enumerate(REFUSED)])
def test_bad_data_is_refused_by_the_checker_and_by_the_exported_schema(name, edit, problem, keyword):
    data = changed(name, edit)
    assert python_problems(name, data) == [problem]
    errors = json_errors(name, data)
    assert [error.validator for error in errors] == [keyword]
    # The same place, or one inside the other (a list's check is one problem, JSON Schema's per item).
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in errors[0].absolute_path)
    where = where.lstrip(".")
    assert problem.startswith(where) or where.startswith(problem.partition(": ")[0]), (where, problem)


# Values at the edge of what the checks allow: the export must not refuse what the checker takes.
ACCEPTED = [
    ("container", lambda d: d.update(default_port=1)),
    ("container", lambda d: d.update(default_port=65535)),
    ("container", lambda d: d.update(default_bind_address="::")),
    ("hardware", lambda d: d["hardware"]["h100x4"].update(count=1)),
    ("hardware", lambda d: d["images"]["rocm"].update(digest="sha256:" + "0f" * 32)),
    ("hardware", lambda d: d["images"]["cuda"].update(digest=None, min_driver=None)),
    ("monitoring", lambda d: d["prometheus"].update(image="localhost:5000/prom/prometheus:v3.5.0")),
    ("kubernetes", lambda d: d.update(name="a" * 42, shm_size="1Ki")),
    ("inventory", lambda d: d["gateway"].update(host="gpu-gateway.internal")),
    ("inventory", lambda d: d["gateway"].update(host="fd00::10")),
    ("inventory", lambda d: d["nodes"].update(interface="a" * 15)),
    ("inventory", lambda d: d["nodes"].update(interface="bond0.100")),
    ("inventory", lambda d: (d.pop("gateway"), d["hosts"]["gpu-a"].pop("replicas"))),
    ("queries", lambda d: d["dashboard"]["panels"][0]["queries"][0].update(legend="")),
    ("queries", lambda d: (d["dashboard"].pop("gateway_panels"), d.update(alerts=[]))),
    ("presets", lambda d: d["presets"]["latency"]["hardware"]["mi300x"].update(rationale="why")),
]


@pytest.mark.parametrize("name,edit", ACCEPTED, ids=[f"{case[0]}-{n}" for n, case in enumerate(ACCEPTED)])
def test_edge_values_are_accepted_by_both(name, edit):
    data = changed(name, edit)
    assert python_problems(name, data) == []
    assert json_errors(name, data) == []


def test_the_checks_only_python_makes_are_named_in_the_description():
    assert exported_schema("hardware")["description"].endswith(
        "Checked by bundle/schema.py alone: gpus.<name>.image: names one of the image lanes; "
        "hardware.<name>.gpu: names one of the GPUs.")
    assert "presets.<name>.flags: its keys name SGLang flags" in exported_schema("presets")["description"]
    assert "alone" not in exported_schema("container")["description"]


def test_a_check_json_schema_cannot_state_is_listed_not_dropped():
    def _even(value):
        return None if value % 2 == 0 else "odd"

    @schema.record
    class Even:
        n: int = schema.key("an even number", check=_even)

    assert schema.python_only(Even) == ["n: _even"]
    assert schema._json_record(Even, {})["properties"]["n"] == {"type": "integer", "description": "an even number"}


def test_the_exported_files_are_what_a_fresh_export_writes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bundle.schema", "export", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in NAMES:
        assert (tmp_path / f"{name}.schema.json").read_text() == (ROOT / "schemas" / f"{name}.schema.json").read_text()


def test_the_data_files_that_name_a_schema_name_their_own():
    for name in ("monitoring", "queries"):
        file = ROOT / schema.DATA_FILES[name][0]
        first = file.read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema=../schemas/{name}.schema.json"
        assert (file.parent / first.split("=", 1)[1]).resolve() == ROOT / "schemas" / f"{name}.schema.json"
