"""The gateway image built with no network at all (`docker build --network none`), its smg from the
kit `make offline-kit` made (docs/day-two.md#air-gapped-hosts), FROM a local base that has Python
and pip but no smg, as python:3.12-slim-bookworm has on a GPU host. Never pulls."""
import ensurepip
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from bundle import render
from stack import DEBIAN_IMAGE, ROOT, STANDIN, run

pytestmark = pytest.mark.skipif(not STANDIN, reason="builds FROM the local Debian base of the stand-in setup")


def pip_wheel(folder: Path) -> Path:
    """pip itself, for the base: the wheel this Python's ensurepip carries, else from the mirror."""
    bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if bundled:
        return Path(shutil.copy(bundled[-1], folder))
    run(str(ROOT / ".venv" / "bin" / "python"), "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--dest", str(folder), "pip")
    return next(folder.glob("pip-*.whl"))


@pytest.fixture(scope="module")
def python_base(tmp_path_factory):
    """The Debian base plus pip, not Debian-managed (as in the python: images): no smg in it."""
    folder = tmp_path_factory.mktemp("pip-base")
    pip_wheel(folder)
    (folder / "Dockerfile").write_text(
        f"FROM {DEBIAN_IMAGE}\nCOPY pip-*.whl /tmp/\n"
        'RUN set -e; rm -f /usr/lib/python3*/EXTERNALLY-MANAGED; set -- /tmp/pip-*.whl; '
        'python3 "$1/pip" install --quiet --no-index --no-cache-dir "$1"; rm "$1"\n')
    tag = f"bundle-pip-base:test-{uuid.uuid4().hex[:8]}"
    run("docker", "build", "--pull=false", "--network", "none", "-q", "-t", tag, str(folder))
    yield tag
    run("docker", "rmi", "-f", tag, check=False)


def build_context(folder: Path) -> Path:
    """The checkout's files the gateway build sees (.dockerignore lets only these in)."""
    for name in ("Dockerfile.gateway", ".dockerignore", "entrypoint.py"):
        shutil.copy(ROOT / name, folder / name)
    shutil.copytree(ROOT / "launcher", folder / "launcher", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def build_gateway(context: Path, base: str, tag: str) -> subprocess.CompletedProcess:
    version = render.load_data()["gateway"]["smg_version"]
    return run("docker", "build", "--pull=false", "--network", "none", "-f", str(context / "Dockerfile.gateway"),
               "--build-arg", f"GATEWAY_BASE_IMAGE={base}", "--build-arg", f"SMG_VERSION={version}",
               "-t", tag, str(context), check=False)


def test_gateway_image_builds_with_no_network_from_the_kit(python_base, tmp_path):
    python = run("docker", "run", "--rm", "--pull=never", "--network", "none", "--entrypoint", "python3", python_base,
                 "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')").stdout.strip()
    context = build_context(tmp_path)
    made = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "offline-kit",
                           f"OUT={context / 'offline-kit'}", f"KIT_GATEWAY_PYTHON={python}"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "VENV": str(ROOT / ".venv")})
    assert made.returncode == 0, made.stderr
    tag = f"llama31-sglang-gateway:offline-test-{uuid.uuid4().hex[:8]}"
    try:
        built = build_gateway(context, python_base, tag)
        assert built.returncode == 0, built.stdout + built.stderr
        installed = run("docker", "run", "--rm", "--pull=never", "--network", "none", "--entrypoint", "python3", tag,
                        "-c", "import importlib.metadata as m, smg.launch_router; print(m.version('smg'))")
        assert installed.stdout.strip() == render.load_data()["gateway"]["smg_version"]
    finally:
        run("docker", "rmi", "-f", tag, check=False)


def test_gateway_build_without_the_kit_and_no_network_says_how_to_get_it(python_base, tmp_path):
    tag = f"llama31-sglang-gateway:offline-test-{uuid.uuid4().hex[:8]}"
    try:
        built = build_gateway(build_context(tmp_path), python_base, tag)
        assert built.returncode != 0
        assert "put the wheels of `make offline-kit` in offline-kit/wheels/gateway/" in built.stdout + built.stderr
    finally:
        run("docker", "rmi", "-f", tag, check=False)
