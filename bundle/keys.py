"""A new API key in a file only its owner can read: `make api-key [API_KEY_FILE=secrets/api_key]`.

Any deployment beyond loopback (BIND_ADDRESS=, REPLICAS= on hosts, Kubernetes) needs one; the same
command makes an admin key (`make api-key API_KEY_FILE=secrets/admin_api_key`). It never
overwrites a key (rotating one is a decision: remove the file first) and never prints the key: a
terminal's scrollback and CI logs are not where secrets belong.
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from bundle import errors, options, render

KEY_BYTES = 32              # 256 random bits, as urlsafe base64
KEY_PREFIX = "sk-"          # what OpenAI clients and their users expect a key to look like


def default_path(data: dict) -> Path:
    return Path(data["container"]["secrets_dir"]) / "api_key"


def create(path: Path) -> None:
    """A new key in path, mode 600 from its first byte; FileExistsError when path holds one already."""
    if path.is_file() and not path.read_text().strip():
        path.unlink()                                  # an empty file is no key: replace it
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES) + "\n")


def main(argv=None, environ=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    try:
        chosen = argv[0] if argv else options.BY_VARIABLE["API_KEY_FILE"].read(environ.get("API_KEY_FILE"))
        path = Path(chosen) if chosen else default_path(render.load_data())
    except errors.RenderError as err:
        print(f"api-key: {err}", file=sys.stderr)
        return errors.USAGE
    try:
        create(path)
    except FileExistsError:
        print(f"api-key: {path} already holds a key; to rotate it, remove the file first "
              "(then restart or re-render what reads it)", file=sys.stderr)
        return errors.FAILED
    except OSError as err:
        print(f"api-key: cannot write {path}: {err.strerror}", file=sys.stderr)
        return errors.FAILED
    print(f"wrote a new API key to {path} (mode 600); clients send it as "
          f"`Authorization: Bearer $(cat {path})`; deployments read it with API_KEY_FILE={path}")
    return 0


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
