"""presets/*.yaml are checked against bundle/schema.py before anything renders: a typo in a key or a
name, a missing key or a wrong type is refused with the file, the path and the closest valid name,
instead of rendering something else silently or crashing with a KeyError."""
import copy
import shutil
import subprocess
import sys

import pytest

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
    assert deploy.main(["--hardware", "mi300x", "--preset", "throughput"]) == 1
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
