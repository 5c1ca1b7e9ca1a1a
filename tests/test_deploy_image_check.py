"""`make deploy` checks the SGLang image it will build FROM before building (issue: a tag that does
not exist must fail in seconds, with the fix). A fake `docker` (tests/fixtures/fake-docker) plays
the registry: it never contacts one, and `compose up` in it fails with 99 so that each test can
tell whether deploy stopped before the build or went on to it. Compose itself is the real one."""
import json
import os
import shutil
import subprocess

import pytest

from paths import FIXTURES, ROOT
from bundle import render

DATA = render.load_data()
CUDA_IMAGE = render.base_image(DATA, "cuda")
DIGEST = "sha256:" + "ab" * 32
REAL_DOCKER = shutil.which("docker")

pytestmark = pytest.mark.skipif(REAL_DOCKER is None, reason="needs the docker CLI with Compose v2")


def deploy(tmp_path, registry, *variables, buildx=True):
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "hf_token").write_text("hf_dummy\n")
    log = tmp_path / "docker.log"
    env = {**os.environ, "PATH": f"{FIXTURES / 'fake-docker'}:{os.environ['PATH']}", "VENV": str(ROOT / ".venv"),
           "FAKE_DOCKER_LOG": str(log), "FAKE_DOCKER_REAL": REAL_DOCKER, "FAKE_BUILDX": "1" if buildx else "0"}
    if registry == "offline":
        env["FAKE_REGISTRY"] = "offline"
    else:
        (tmp_path / "registry.json").write_text(json.dumps(registry))
        env["FAKE_REGISTRY"] = str(tmp_path / "registry.json")
    port = 20000 + os.getpid() % 20000
    result = subprocess.run(["make", "--no-print-directory", "deploy", "HARDWARE=h100x4", f"PORT={port}",
                             f"SECRETS_DIR={secrets}", *variables], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    shutil.rmtree(ROOT / "deploy" / f"port-{port}", ignore_errors=True)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def built(calls) -> bool:
    return any(call[:1] == ["compose"] and ("up" in call or "build" in call) for call in calls)


def test_the_data_pins_the_cuda13_runtime_tag_of_the_sglang_release():
    assert CUDA_IMAGE == "lmsysorg/sglang:v0.5.23-cu130-runtime"
    assert render.base_image(DATA, "rocm") == "lmsysorg/sglang:v0.5.23-rocm10-mi30x"


def test_a_tag_that_does_not_resolve_stops_before_any_build_and_names_the_fix(tmp_path):
    alternative = "lmsysorg/sglang:v0.5.23-runtime"
    result, calls = deploy(tmp_path, {alternative: DIGEST})
    assert result.returncode != 0
    assert not built(calls)
    assert f"{CUDA_IMAGE}: no such manifest" in result.stderr
    assert f"{alternative}: found" in result.stderr
    assert f"deploy with BASE_IMAGE={alternative}" in result.stderr
    assert "presets/engine-image.md" in result.stderr


def test_a_tag_that_resolves_prints_its_digest_and_how_to_pin_it(tmp_path):
    result, calls = deploy(tmp_path, {CUDA_IMAGE: DIGEST})
    assert f"base image {CUDA_IMAGE} resolves, digest {DIGEST}" in result.stdout
    assert f"BASE_IMAGE={CUDA_IMAGE}@{DIGEST}" in result.stdout
    assert built(calls) and "compose up/build is where this test stops" in result.stderr


def test_without_buildx_the_manifest_command_answers(tmp_path):
    result, calls = deploy(tmp_path, {}, buildx=False)
    assert not built(calls)
    assert f"docker manifest inspect {CUDA_IMAGE}" in result.stderr
    assert "set BASE_IMAGE= to an SGLang image of the pinned release that exists" in result.stderr


def test_offline_the_check_is_skipped_and_says_so(tmp_path):
    result, calls = deploy(tmp_path, "offline")
    assert "base image check skipped, the registry could not be asked" in result.stdout
    assert "no such host" in result.stdout
    assert built(calls)


def test_a_digest_pinned_base_image_is_rendered_and_checked(tmp_path):
    pinned = f"{CUDA_IMAGE}@{DIGEST}"
    result, calls = deploy(tmp_path, {pinned: DIGEST}, f"BASE_IMAGE={pinned}")
    assert f"base image {pinned} resolves" in result.stdout
    assert "to freeze" not in result.stdout   # already frozen
    assert ["buildx", "imagetools", "inspect", pinned] in calls


def test_a_malformed_base_image_is_refused_before_docker_is_asked(tmp_path):
    result, calls = deploy(tmp_path, {}, "BASE_IMAGE=lmsysorg/sglang:v0.5.23 runtime")
    assert result.returncode != 0 and "BASE_IMAGE='lmsysorg/sglang:v0.5.23 runtime': expected an image reference" in result.stderr
    assert calls == []   # refused with the other variables, before docker is asked anything


def test_digest_in_the_data_is_appended_and_checked():
    data = json.loads(json.dumps(DATA))
    data["hardware"]["images"]["cuda"]["digest"] = DIGEST
    assert render.base_image(data, "cuda") == f"{CUDA_IMAGE}@{DIGEST}"
    data["hardware"]["images"]["cuda"]["digest"] = "sha256:short"
    with pytest.raises(render.RenderError, match="images.cuda.digest='sha256:short': expected sha256:<64 hex digits>"):
        render.base_image(data, "cuda")


def test_the_pinned_release_is_the_catalogue_and_the_venv_release(catalogue):
    from importlib.metadata import version
    assert DATA["hardware"]["sglang_version"] == catalogue.sglang_version == version("sglang")
