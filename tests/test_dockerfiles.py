"""Dockerfile and Dockerfile.gateway are generated from the data (bundle/dockerfiles.py, `make
dockerfiles`): a change in the data reaches them, and the image they build agrees with the compose
file the same data renders, as Docker and Compose themselves read the two."""
import copy
import json
import os
import re
import shutil
import subprocess
import uuid

import pytest
import yaml
from paths import ROOT

from bundle import dockerfiles, render

DATA = render.load_data()
HAVE_DOCKER = shutil.which("docker") is not None
LOCAL_BASE = "bundle-debian:bookworm"     # any local image: the bundle Dockerfile only COPYs onto it


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each logical line, continuations joined, comments dropped."""
    result, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            keyword, _, rest = pending.partition(" ")
            result.append((keyword.upper(), rest.strip()))
            pending = ""
    return result


def arg_defaults(text: str) -> dict:
    return dict(rest.split("=", 1) for keyword, rest in instructions(text) if keyword == "ARG" and "=" in rest)


def healthcheck_options(text: str) -> dict:
    [rest] = [rest for keyword, rest in instructions(text) if keyword == "HEALTHCHECK"]
    return dict(re.findall(r"--([a-z-]+)=(\S+)", rest.split(" CMD ")[0]))


def planted(**changes) -> dict:
    data = copy.deepcopy(DATA)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return data


def test_every_generated_file_says_it_is_generated_and_by_which_command():
    for name, text in dockerfiles.generate(DATA).items():
        assert text.startswith("# GENERATED FILE, do not edit: make dockerfiles\n"), name
        assert "bundle/dockerfiles.py" in text.splitlines()[1], name


def test_the_sglang_release_and_digest_reach_the_default_base_image():
    data = planted(hardware__sglang_version="9.8.7")
    base = arg_defaults(dockerfiles.generate(data)["Dockerfile"])["BASE_IMAGE"]
    assert base == "lmsysorg/sglang:v9.8.7-cu130-runtime"
    data["hardware"]["images"]["cuda"]["digest"] = "sha256:" + "ab" * 32
    assert (arg_defaults(dockerfiles.generate(data)["Dockerfile"])["BASE_IMAGE"]
            == "lmsysorg/sglang:v9.8.7-cu130-runtime@sha256:" + "ab" * 32)


def test_the_default_base_image_follows_the_top_level_compose_files_hardware():
    """h100x4 (the top-level docker-compose.yml's) moved to the ROCm lane: so does `docker build .`'s default."""
    data = planted(hardware__gpus__h100__image="rocm")
    base = arg_defaults(dockerfiles.generate(data)["Dockerfile"])["BASE_IMAGE"]
    assert base == "lmsysorg/sglang:v0.5.23-rocm10-mi30x"


def test_the_healthcheck_timings_come_from_the_container_data():
    data = planted(container__healthcheck={"interval": "7s", "timeout": "11s", "retries": 4, "start_period": "90s"})
    assert healthcheck_options(dockerfiles.generate(data)["Dockerfile"]) == {
        "interval": "7s", "timeout": "11s", "retries": "4", "start-period": "90s"}


def test_the_gateway_base_and_smg_release_come_from_the_gateway_data():
    data = planted(gateway__base_image="python:3.13-slim-trixie", gateway__smg_version="2.0.1")
    text = dockerfiles.generate(data)["Dockerfile.gateway"]
    assert arg_defaults(text) == {"GATEWAY_BASE_IMAGE": "python:3.13-slim-trixie", "SMG_VERSION": "2.0.1"}
    # The offline kit's wheels stay the first choice when the base lacks this smg (commit c845341).
    [run] = [rest for keyword, rest in instructions(text) if keyword == "RUN"]
    assert "--no-index --find-links /tmp/smg-wheels" in run and "offline-kit/wheels/gateway/" in run


def test_bad_data_is_refused_naming_the_file(tmp_path, capsys):
    for path in (ROOT / "presets").glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "gateway.yaml").write_text("smg_version: [\n")
    assert dockerfiles.main(["--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "gateway.yaml" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_committed_dockerfiles_are_a_fresh_generation():
    """A drift check (CI's `make generate` diff does the same): edit the template or the data, not the file."""
    for name, text in dockerfiles.generate(DATA).items():
        assert (ROOT / name).read_text() == text, f"{name} differs from `make dockerfiles`: run it"


GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


def nanoseconds(duration: str) -> int:
    """Compose's normalised durations ("1m30s") in nanoseconds, as Docker stores them."""
    assert GO_DURATION.sub("", duration) == "", duration
    unit = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6}
    return round(sum(float(n) * unit[u] for n, u in GO_DURATION.findall(duration)))


@pytest.mark.skipif(not HAVE_DOCKER, reason="needs the docker CLI with Compose v2")
def test_the_built_image_and_the_compose_file_agree(tmp_path):
    """Built by Docker from planted data, the image's healthcheck runs at the pace the compose file
    declares by default, its HF_HOME is where the compose file mounts the cache, and it exposes the
    port the compose file publishes."""
    if subprocess.run(["docker", "image", "inspect", LOCAL_BASE], check=False, capture_output=True).returncode:
        pytest.skip(f"no local {LOCAL_BASE} (make provision)")
    data = planted(container__healthcheck={"interval": "7s", "timeout": "11s", "retries": 4, "start_period": "90s"})
    context = tmp_path / "context"
    shutil.copytree(ROOT / "launcher", context / "launcher", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "entrypoint.py", context)
    (context / "Dockerfile").write_text(dockerfiles.generate(data)["Dockerfile"])
    tag = f"llama31-sglang-bundle:dockerfile-test-{uuid.uuid4().hex[:8]}"
    built = subprocess.run(["docker", "build", "--pull=false", "-q", "--build-arg", f"BASE_IMAGE={LOCAL_BASE}",
                            "-t", tag, str(context)], check=False, capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr
    try:
        config = json.loads(subprocess.run(["docker", "image", "inspect", tag, "--format", "{{json .Config}}"],
                                           capture_output=True, text=True, check=True).stdout)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], check=False, capture_output=True)

    (tmp_path / "hf_token").write_text("x")
    cache = tmp_path / "hf-cache"
    out = tmp_path / "docker-compose.yml"
    deployment = render.resolve(data, render.TOP_LEVEL["hardware"], render.TOP_LEVEL["preset"])
    out.write_text(render.render(data, deployment, render.Params(secrets_dir=str(tmp_path)), out, "t"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HEALTHCHECK_", "RESTART_"))}
    composed = subprocess.run(["docker", "compose", "-f", str(out), "config", "--format", "json"], check=False,
                              capture_output=True, text=True, env={**environ, "HF_CACHE": str(cache)}, timeout=60)
    assert composed.returncode == 0, composed.stderr
    engine = yaml.safe_load(composed.stdout)["services"]["engine"]

    image_check, compose_check = config["Healthcheck"], engine["healthcheck"]
    assert image_check["Test"][0] == "CMD" and "--healthcheck" in image_check["Test"]
    assert image_check["Interval"] == nanoseconds(compose_check["interval"]) == 7 * 10**9
    assert image_check["Timeout"] == nanoseconds(compose_check["timeout"]) == 11 * 10**9
    assert image_check["StartPeriod"] == nanoseconds(compose_check["start_period"]) == 90 * 10**9
    assert image_check["Retries"] == compose_check["retries"] == 4

    hf_home = dict(entry.split("=", 1) for entry in config["Env"])["HF_HOME"]
    [mount] = [volume for volume in engine["volumes"] if volume["source"] == str(cache)]
    assert mount["target"] == hf_home
    assert {f"{port['target']}/tcp" for port in engine["ports"]} <= set(config["ExposedPorts"])
