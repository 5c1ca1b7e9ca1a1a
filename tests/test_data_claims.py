"""What the data files, the Dockerfile and the image evidence say about this checkout is true of it:
the files they cite exist, the code they credit holds what they say, the checks they describe are
the ones the bundle runs; and the latency preset's weights follow one rule on every profile."""
import inspect
import re
from pathlib import Path

import pytest

from paths import ROOT
from bundle import render
from launcher import memory, sglang_flags, supervise

DATA = render.load_data()
CITING = ["Dockerfile", "presets/engine-image.md", *sorted(f"presets/{p.name}" for p in (ROOT / "presets").glob("*.yaml"))]
# A path into this checkout as the files write it (upstream paths are cited as owner/repo@commit:path).
LOCAL_PATH = re.compile(r"(?<![\w/@:.-])((?:presets|launcher|bundle|templates|tools|tests|docs|k8s|monitoring)"
                        r"/[\w./-]*\w|entrypoint\.py|Dockerfile(?:\.gateway)?)(?![\w/-])")


def cited_paths(text: str) -> set[str]:
    return set(LOCAL_PATH.findall(text))


def relative(obj) -> str:
    return str(Path(inspect.getsourcefile(obj)).resolve().relative_to(ROOT))


@pytest.mark.parametrize("name", CITING)
def test_every_local_path_a_data_file_cites_exists(name):
    missing = sorted(path for path in cited_paths((ROOT / name).read_text()) if not (ROOT / path).exists())
    assert not missing, f"{name} cites {missing}, which this checkout does not have"


def test_the_path_pattern_finds_what_it_should():
    assert cited_paths("set their own (presets/deployment.yaml). See launcher/memory.py, entrypoint.py's"
                       " rule, sgl-project/sglang@0221e896:docker/rocm.Dockerfile") == {
        "presets/deployment.yaml", "launcher/memory.py", "entrypoint.py"}


def test_presets_header_credits_the_modules_that_hold_the_rules():
    header = (ROOT / "presets/presets.yaml").read_text().split("\n\n")[0]
    assert relative(sglang_flags.env_name_for_option) in header     # the ENGINE_* naming rule
    assert relative(memory.plan_memory) in header                   # the model table and the arithmetic


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def test_the_starlette_section_describes_the_checks_the_bundle_has():
    text = section((ROOT / "presets/engine-image.md").read_text(), "Starlette Host-header flaw")
    minimum = ".".join(map(str, supervise.STARLETTE_HOST_FIX))
    assert relative(supervise.engine_http_stack) in text and "STARLETTE_HOST_FIX" in text and minimum in text
    for path in cited_paths(text):        # a file the section says does a check must mention Starlette or Host
        body = (ROOT / path).read_text().lower()
        assert "starlette" in body or '"host"' in body, f"the Starlette section credits {path}, which has no such check"


def test_rocm_fallbacks_follow_the_release_naming_and_are_in_the_evidence():
    lane = DATA["hardware"]["images"]["rocm"]
    version = DATA["hardware"]["sglang_version"]
    tags = [tag.format(sglang_version=version) for tag in [lane["tag"], *lane["alternatives"]]]
    assert tags[0] == f"v{version}-rocm10-mi30x"
    assert f"v{version}-rocm1000-mi30x" in tags[1:]        # the Dockerfile stage's own name (gfx942-rocm1000)
    assert f"v{version}-rocm700-mi30x" not in tags          # ROCm 7.0 bases are no longer built
    evidence = (ROOT / "presets/engine-image.md").read_text()
    for tag in tags:
        assert tag in evidence, f"{tag} is tried by make deploy but presets/engine-image.md does not say why"
    rocm = evidence[evidence.index("| ROCm MI300X |"):]
    assert "release-docker-amd.yml" in rocm.split("\n")[0]   # release configuration, not a test's input


def checkpoint_format(model: str) -> str:
    return memory.KNOWN_MODELS[model].weight_format


@pytest.mark.parametrize("hardware", list(DATA["hardware"]["hardware"]))
def test_latency_serves_the_fp8_checkpoint_wherever_the_gpu_has_fp8(hardware):
    gpu = DATA["hardware"]["gpus"][DATA["hardware"]["hardware"][hardware]["gpu"]]
    override = DATA["presets"]["presets"]["latency"].get("hardware", {}).get(hardware) or {}
    if override.get("unsupported"):
        pytest.skip(override["unsupported"])
    deployment = render.resolve(DATA, hardware, "latency")
    assert "quantization" not in deployment.flags, "online quantization reads the 141 GB of BF16 shards first"
    assert checkpoint_format(deployment.flags["model-path"]) == ("fp8" if gpu["fp8"] else "bf16")


@pytest.mark.parametrize("hardware, preset", render.pairs(DATA))
def test_no_pair_quantizes_a_bf16_checkpoint_online(hardware, preset):
    deployment = render.resolve(DATA, hardware, preset)
    if checkpoint_format(deployment.flags["model-path"]) == "bf16":
        assert deployment.flags.get("quantization") not in memory.FP8_QUANTIZATIONS
