#!/usr/bin/env python3
"""The air-gapped path (docs/day-two.md#air-gapped-hosts): the Python wheels a host without a
package index needs, made on a connected machine, and the host tools' venv made from them.

    python3 -m tools.offline_kit venv VENV KIT   the Makefile's venv rule: from KIT/wheels/host
                                                 with no index when that folder exists, else from
                                                 the package index; one line saying what to do
                                                 when pip cannot install, never pip's traceback
    .venv/bin/python -m tools.offline_kit build  `make offline-kit OUT=dir`: KIT/wheels/host
                                                 (requirements.txt), KIT/wheels/gateway (smg for
                                                 the gateway image), KIT/kit.json, KIT/README.md

`venv` runs before any venv exists, with the host's python3: this file is standard library only,
and `build` imports the bundle (PyYAML) only once it runs in the host venv.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements.txt"
# The kit's folder in the checkout: the Makefile's KIT default, and the one Dockerfile.gateway
# reads (its build context is the checkout; .dockerignore lets this one subfolder in).
DEFAULT_KIT = "offline-kit"
HOST_WHEELS = "wheels/host"
GATEWAY_WHEELS = "wheels/gateway"
DOCS = "docs/day-two.md#air-gapped-hosts"
# glibc of the Debian release a gateway base image names (python:3.12-slim-bookworm): the newest
# manylinux wheels it can load.
DEBIAN_GLIBC = {"bullseye": (2, 31), "bookworm": (2, 36), "trixie": (2, 41)}
PYTHON_VERSION = re.compile(r"\d+\.\d+")


class KitError(Exception):
    """What stops the kit or the venv, with the fix; printed as one line."""


# --- the host tools' venv (the Makefile's $(PY) rule) --------------------------------------------

def last_error(output: str) -> str:
    """pip's own verdict (its last ERROR line), without its retries and tracebacks."""
    errors = [line.strip() for line in output.splitlines() if line.startswith("ERROR:")]
    return errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1].strip()


def create_venv(venv: Path, kit: Path, requirements: Path = REQUIREMENTS) -> None:
    wheels = kit / HOST_WHEELS
    offline = wheels.is_dir()
    source = f"the offline kit {wheels}" if offline else "the package index"
    print(f"creating {venv} for the host-side tools, from {source}", file=sys.stderr)
    existed = venv.exists()
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "-r", str(requirements)]
    if offline:
        pip += ["--no-index", "--find-links", str(wheels)]
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        raise KitError(f"{sys.executable} -m venv {venv} failed: {last_error(made.stdout + made.stderr)} "
                       "(Debian/Ubuntu: install python3-venv)")
    installed = subprocess.run(pip, capture_output=True, text=True)
    if installed.returncode == 0:
        return
    forget(venv, existed)
    why = last_error(installed.stdout + installed.stderr)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if offline:
        raise KitError(f"pip could not install {requirements.name} from {wheels} ({why}): the kit was made for "
                       f"another Python, platform or requirements.txt; make it again on a connected machine with "
                       f"`make offline-kit KIT_PYTHON={here}` from this checkout ({DOCS})")
    raise KitError(f"pip could not install {requirements.name} from the package index ({why}). No index on this "
                   f"host? On a connected machine run `make offline-kit` and copy its {DEFAULT_KIT}/ folder into "
                   f"this checkout (or point KIT= at it), then run make again ({DOCS})")


def forget(venv: Path, existed: bool) -> None:
    """A half-made venv would pass for a made one (its bin/python is the Makefile's target)."""
    if existed:
        (venv / "bin" / "python").unlink(missing_ok=True)
    else:
        shutil.rmtree(venv, ignore_errors=True)


# --- the kit (make offline-kit) -------------------------------------------------------------------

def manylinux_platforms(arch: str, glibc: tuple[int, int]) -> list[str]:
    """pip's --platform takes exact tags: every manylinux one a glibc of that version loads."""
    legacy = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(5, glibc[1] + 1)]
    return tags + [f"{name}_{arch}" for (major, minor), name in legacy.items() if minor <= glibc[1]]


def gateway_target(base_image: str, python: str | None, arch: str) -> tuple[str, list[str]]:
    """The gateway base image's Python and platforms, read from its tag (python:3.12-slim-bookworm)."""
    tag = base_image.rsplit("/", 1)[-1]
    if python is None:
        match = re.match(r"python:(\d+\.\d+)", tag)
        if not match:
            raise KitError(f"presets/gateway.yaml base_image={base_image!r}: not a python:X.Y image, so its "
                           "Python is unknown; set KIT_GATEWAY_PYTHON=X.Y")
        python = match.group(1)
    release = next((name for name in DEBIAN_GLIBC if name in tag), None)
    if release is None:
        raise KitError(f"presets/gateway.yaml base_image={base_image!r}: names none of the Debian releases "
                       f"{', '.join(DEBIAN_GLIBC)}, so its glibc is unknown")
    return python, manylinux_platforms(arch, DEBIAN_GLIBC[release])


def check_python(name: str, value: str | None) -> str | None:
    if value is not None and not PYTHON_VERSION.fullmatch(value):
        raise KitError(f"{name}={value!r}: expected a Python version X.Y, for example 3.11")
    return value


def download(dest: Path, wanted: list[str], python: str | None, platforms: list[str]) -> list[str]:
    """Binary wheels only: an air-gapped host has no compiler toolchain to build an sdist with."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--dest", str(dest)]
    if python:
        command += ["--python-version", python, "--implementation", "cp"]
    for tag in platforms:
        command += ["--platform", tag]
    result = subprocess.run(command + wanted, capture_output=True, text=True)
    if result.returncode != 0:
        raise KitError(f"pip download {' '.join(wanted)} for Python {python or 'of this machine'} "
                       f"({', '.join(platforms) or 'this platform'}) failed: {last_error(result.stdout + result.stderr)}")
    return sorted(path.name for path in dest.glob("*.whl"))


def engine_images(data: dict) -> list[tuple[str, list[str]]]:
    from bundle import render
    profiles = data["hardware"]["hardware"]
    gpus = data["hardware"]["gpus"]
    return [(render.base_image(data, lane), sorted(name for name, p in profiles.items() if gpus[p["gpu"]]["image"] == lane))
            for lane in data["hardware"]["images"]]


def build(out: Path, python: str | None, platforms: list[str], gateway_python: str | None, arch: str) -> dict:
    from bundle import render
    data = render.load_data()
    gateway = data["gateway"]
    gateway_python, gateway_platforms = gateway_target(gateway["base_image"], gateway_python, arch)
    host = download(out / HOST_WHEELS, ["-r", str(REQUIREMENTS)], python, platforms)
    smg = download(out / GATEWAY_WHEELS, [f"smg=={gateway['smg_version']}"], gateway_python, gateway_platforms)
    manifest = {
        "generated_by": "make offline-kit (python -m tools.offline_kit build)",
        "host": {"python": python or f"{sys.version_info.major}.{sys.version_info.minor}",
                 "platforms": platforms or [sysconfig.get_platform()],
                 "requirements_sha256": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest(), "wheels": host},
        "gateway": {"base_image": gateway["base_image"], "python": gateway_python, "platforms": gateway_platforms,
                    "smg_version": gateway["smg_version"], "wheels": smg},
    }
    (out / "kit.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "README.md").write_text(instructions(out, manifest, engine_images(data), data))
    return manifest


def instructions(out: Path, manifest: dict, images: list, data: dict) -> str:
    host, gateway = manifest["host"], manifest["gateway"]
    engine_lines = "\n".join(f"docker pull {image} && docker save {image} | gzip > engine-{index}.tar.gz"
                             f"   # {', '.join(profiles)}"
                             for index, (image, profiles) in enumerate(images, 1))
    return f"""# Offline kit (generated by `make offline-kit`; do not edit)

What a host with no package index needs from PyPI, for this checkout of the bundle
(docs/day-two.md#air-gapped-hosts):

- `{HOST_WHEELS}/`: the host tools (requirements.txt) for Python {host['python']} on {', '.join(host['platforms'])};
  `make` on the host installs them with no index when this folder is at `{DEFAULT_KIT}/` in the
  checkout (or `KIT=` points at it).
- `{GATEWAY_WHEELS}/`: smg {gateway['smg_version']} for the gateway image (`REPLICAS=`), Python {gateway['python']}
  of `{gateway['base_image']}`; Dockerfile.gateway installs them with no index when they are at
  `{DEFAULT_KIT}/{GATEWAY_WHEELS}/` in the checkout.

Besides the kit, copy these to the host (not made here: each is many GB, and only you know which
you need):

```sh
# the engine image of your profile's lane, then `docker load < engine-N.tar.gz` on the host
{engine_lines}
# with REPLICAS= (the gateway image is built FROM it on the host)
docker pull {gateway['base_image']} && docker save {gateway['base_image']} | gzip > gateway-base.tar.gz
# the weights: `make download` here, then copy the cache's hub/ folder (docs/day-two.md)
make download HARDWARE=<profile> PRESET=<preset> HF_CACHE=/data/hf-export
```

and a non-empty `secrets/hf_token` (any text will do offline).
"""


# --- command line ---------------------------------------------------------------------------------

def main(argv=None) -> int:
    environ = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    venv = sub.add_parser("venv", help="the host tools' venv, from the kit when present")
    venv.add_argument("venv", type=Path)
    venv.add_argument("kit", type=Path)
    kit = sub.add_parser("build", help="the kit's wheels, on a connected machine")
    kit.add_argument("--kit", type=Path, default=Path(DEFAULT_KIT), help="the Makefile's KIT=, where OUT= is not given")
    kit.add_argument("--out", type=Path, default=Path(environ["OUT"]) if environ.get("OUT") else None,
                     help="OUT: the kit's folder (default: --kit)")
    kit.add_argument("--python-version", default=environ.get("KIT_PYTHON") or None,
                     help="KIT_PYTHON: the host's Python X.Y (default: this machine's)")
    kit.add_argument("--platform", default=environ.get("KIT_PLATFORM") or "",
                     help="KIT_PLATFORM: the host's pip platform tags, comma-separated (default: this machine's)")
    kit.add_argument("--gateway-python", default=environ.get("KIT_GATEWAY_PYTHON") or None,
                     help="KIT_GATEWAY_PYTHON: the gateway base image's Python (default: from its tag)")
    kit.add_argument("--gateway-arch", default=environ.get("KIT_GATEWAY_ARCH") or None,
                     help="KIT_GATEWAY_ARCH: x86_64 or aarch64 (default: this machine's)")
    args = parser.parse_args(argv)
    try:
        if args.command == "venv":
            create_venv(args.venv, args.kit)
            return 0
        args.out = args.out or args.kit
        arch = args.gateway_arch or {"arm64": "aarch64", "amd64": "x86_64"}.get(platform.machine(), platform.machine())
        manifest = build(args.out, check_python("KIT_PYTHON", args.python_version),
                         [tag for tag in args.platform.split(",") if tag],
                         check_python("KIT_GATEWAY_PYTHON", args.gateway_python), arch)
    except KitError as err:
        print(f"offline kit: {err}", file=sys.stderr)
        return 1
    print(f"{args.out}: {len(manifest['host']['wheels'])} wheels for the host tools (Python "
          f"{manifest['host']['python']}), {len(manifest['gateway']['wheels'])} for the gateway image "
          f"(Python {manifest['gateway']['python']}); next steps in {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
