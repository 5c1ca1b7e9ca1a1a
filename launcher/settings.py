"""The bundle's own settings (BUNDLE_*), parsed once into a typed, frozen object, and the error
every configuration check raises. One table is the whole surface: name, type, default, help."""
from __future__ import annotations

import dataclasses
import difflib


# The guard's default cap on open client connections; lowered at start to what the open-file
# limit allows (each connection holds two descriptors while its request is at the engine).
DEFAULT_MAX_CONNECTIONS = 4096
EXIT_CONFIG_ERROR = 78   # EX_CONFIG: configuration errors, before any process starts
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off"})


class ConfigError(Exception):
    """Configuration that cannot work; reported before any process starts."""


def suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(close)}?" if close else ""


@dataclasses.dataclass(frozen=True)
class Setting:
    env: str
    type: type
    default: object
    help: str
    minimum: float | None = None


BUNDLE_SETTINGS = (
    Setting("BUNDLE_PREFLIGHT", bool, True,
            "Check GPUs (count, memory, driver) and the memory arithmetic before starting the engine."),
    Setting("BUNDLE_PARSE_CHECK", bool, True,
            "Parse the final argv with the installed SGLang's own parser before starting, so a "
            "bundle/image version mismatch fails in seconds with SGLang's message."),
    Setting("BUNDLE_ENGINE_PORT", int, 30000,
            "Port of the engine inside the container, bound to 127.0.0.1 only; the guard serves "
            "--host:--port and forwards to it."),
    Setting("BUNDLE_HEALTHCHECK_PATH", str, "/health",
            "Route probed by --healthcheck. /health runs a one-token generation (proves the model "
            "answers, 1-20 s); /ready is a cheap status-flag check."),
    Setting("BUNDLE_HEALTHCHECK_GENERATE_SECONDS", float, 30.0,
            "--healthcheck checks the cheap /ready at every probe (Docker runs it every few seconds, "
            "so readiness is noticed fast) and the healthcheck path's generation at most this often.",
            minimum=0),
    Setting("BUNDLE_HEALTHCHECK_TIMEOUT", float, 25.0,
            "Seconds --healthcheck waits; above SGLang's own 20 s /health generation timeout."),
    Setting("BUNDLE_GPU_DRIVER_MIN", int, 0,
            "Lowest NVIDIA driver major the image needs; 0 derives it from the image's CUDA_VERSION."),
    Setting("BUNDLE_GUARD_MAX_CONNECTIONS", int, DEFAULT_MAX_CONNECTIONS,
            "Most client connections the guard holds open at once; beyond it a client gets 503. "
            "Lowered at start to what the open-file limit allows.", minimum=1),
)


def parse_bool(text: str, where: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{where}={text!r}: expected a boolean "
                      f"({'/'.join(sorted(TRUE_WORDS))} or {'/'.join(sorted(FALSE_WORDS))})")


def bundle_setting(name: str, environ) -> object:
    setting = next(s for s in BUNDLE_SETTINGS if s.env == name)
    raw = environ.get(name)
    if raw is None or raw == "":
        return setting.default
    if setting.type is bool:
        return parse_bool(raw, name)
    try:
        value = setting.type(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected {setting.type.__name__}. {setting.help}") from None
    if setting.minimum is not None and value < setting.minimum:
        raise ConfigError(f"{name}={raw!r}: expected at least {setting.minimum:g}. {setting.help}")
    return value


@dataclasses.dataclass(frozen=True)
class BundleSettings:
    """The BUNDLE_* settings, parsed and checked once. Field names are the env names without the
    prefix, lowercased; BUNDLE_SETTINGS above says what each means (a test keeps the two equal)."""
    preflight: bool
    parse_check: bool
    engine_port: int
    healthcheck_path: str
    healthcheck_generate_seconds: float
    healthcheck_timeout: float
    gpu_driver_min: int
    guard_max_connections: int

    @classmethod
    def from_environ(cls, environ) -> "BundleSettings":
        known = {setting.env for setting in BUNDLE_SETTINGS}
        unknown = sorted(name for name in environ if name.startswith("BUNDLE_") and name not in known)
        if unknown:
            raise ConfigError(f"{unknown[0]} is not a setting." + suggest(unknown[0], known))
        return cls(**{field_name(setting.env): bundle_setting(setting.env, environ) for setting in BUNDLE_SETTINGS})


def field_name(env: str) -> str:
    return env.removeprefix("BUNDLE_").lower()


def markdown_table() -> str:
    """The README's table of BUNDLE_* settings (`make readme`)."""
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for setting in BUNDLE_SETTINGS:
        rows.append(f"| `{setting.env}` | {setting.type.__name__} | `{setting.default}` | {setting.help} |")
    return "\n".join(rows)
