"""`make dockerfiles`: write Dockerfile and Dockerfile.gateway from the data, so that their
defaults (the engine's base image, the healthcheck timings, the gateway's base and smg release, the
HF cache, the port) are the ones the rendered compose files use, not copies of them.

    python -m bundle.dockerfiles            write both at the top of the checkout
    python -m bundle.dockerfiles --out DIR  write them into DIR instead
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jinja2

from bundle import errors, names, render
from launcher.command import DEFAULT_FLAGS
from tools import offline_kit

COMMAND = "make dockerfiles"
# Generated file -> its template (templates/) and the data files it reads, for its header.
FILES = {
    "Dockerfile": ("Dockerfile.j2", ("hardware", "container")),
    "Dockerfile.gateway": ("Dockerfile.gateway.j2", ("gateway",)),
}


def header(name: str) -> str:
    template, sources = FILES[name]
    data = ", ".join(f"presets/{source}.yaml" for source in sources)
    return (f"# GENERATED FILE, do not edit: {COMMAND}\n"
            f"# From {data} and templates/{template} by bundle/dockerfiles.py.")


def default_lane(data: dict) -> str:
    """The image lane of the top-level docker-compose.yml's hardware: what `docker build .` should make."""
    hardware = data["hardware"]
    return hardware["gpus"][hardware["hardware"][render.TOP_LEVEL["hardware"]]["gpu"]]["image"]


def view(data: dict) -> dict:
    lane = default_lane(data)
    return {"names": names.view(), "lane": lane, "base_image": render.base_image(data, lane),
            "sglang_version": data["hardware"]["sglang_version"], "healthcheck": data["container"]["healthcheck"],
            "port": DEFAULT_FLAGS["--port"],   # the guard's port inside the container
            "gateway": data["gateway"], "wheels": f"{offline_kit.DEFAULT_KIT}/{offline_kit.GATEWAY_WHEELS}"}


def generate(data: dict) -> dict[str, str]:
    """file name -> its text."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(render.ROOT / "templates"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    context = view(data)
    return {name: env.get_template(template).render(header=header(name), **context)
            for name, (template, _) in FILES.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.dockerfiles", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=render.DATA_DIR, help="folder of the preset YAML files")
    parser.add_argument("--out", type=Path, default=render.ROOT, help="folder to write the Dockerfiles into")
    args = parser.parse_args(argv)
    try:
        files = generate(render.load_data(args.data))
    except render.RenderError as err:
        print(f"dockerfiles: {err}", file=sys.stderr)
        return errors.status(err)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
    return 0


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
