"""Secrets: postgres-style NAME / NAME_FILE values, the engine's own per-start keys, and their
redaction from the engine's output (lines) and from HTTP answers (bodies)."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from launcher.sglang_flags import env_name_for_option
from launcher.settings import ConfigError
from launcher.sglang_auth import ADMIN_FORCE, ADMIN_OPTIONAL

SECRET_PLACEHOLDER = "<redacted>"
REDACTED = SECRET_PLACEHOLDER.encode()

# postgres-style secrets: NAME or NAME_FILE, never both. None of them ever reaches the engine's
# argv: the guard checks API keys, and the Hugging Face token reaches huggingface_hub as a file.
SECRET_FLAGS = ("--api-key", "--admin-api-key")
SECRET_ENVS = ("HF_TOKEN", *(env_name_for_option(flag) for flag in SECRET_FLAGS))


def file_env(name: str, environ) -> str | None:
    """Value of NAME, or the contents of the file NAME_FILE names (postgres' file_env)."""
    plain, file_var = environ.get(name), environ.get(name + "_FILE")
    if plain and file_var:
        raise ConfigError(f"both {name} and {name}_FILE are set; set only one "
                          f"({name}_FILE is the one that keeps the value out of `docker inspect`)")
    if file_var:
        try:
            value = Path(file_var).read_text().strip()
        except OSError as err:
            raise ConfigError(f"{name}_FILE={file_var}: cannot read the file ({err.strerror})") from None
        if not value:
            raise ConfigError(f"{name}_FILE={file_var}: the file is empty")
        return value
    return plain or None


@dataclass(frozen=True)
class EngineKeys:
    """The engine's own keys. The guard sends them in place of the client's credentials, after
    checking those. They are made anew at every start and exist only in this process, in the
    engine's memory and, until the engine has read it, in a private file (entrypoint.py)."""
    api_key: str
    admin_api_key: str

    @classmethod
    def generate(cls) -> "EngineKeys":
        return cls(secrets.token_hex(32), secrets.token_hex(32))

    def for_level(self, level: str) -> str:
        return self.admin_api_key if level in (ADMIN_OPTIONAL, ADMIN_FORCE) else self.api_key


def secret_needles(secrets) -> tuple[bytes, ...]:
    """Every byte form in which a secret can appear in a JSON body: raw UTF-8, and JSON-escaped
    with or without \\u escapes. The longest comes first, so a secret that contains another
    secret is replaced whole."""
    needles = set()
    for secret in secrets:
        if not secret:
            continue
        needles.add(secret.encode("utf-8"))
        needles.add(json.dumps(secret)[1:-1].encode("ascii"))
        needles.add(json.dumps(secret, ensure_ascii=False)[1:-1].encode("utf-8"))
    return tuple(sorted(needles, key=len, reverse=True))


def redact_body(body: bytes, needles: tuple[bytes, ...]) -> bytes:
    for needle in needles:
        body = body.replace(needle, REDACTED)
    return body


def redact(line: str, secrets) -> str:
    """A line of the engine's output with every secret value replaced."""
    for secret in secrets:
        line = line.replace(secret, SECRET_PLACEHOLDER)
    return line

