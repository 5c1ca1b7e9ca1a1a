"""Running: the parse check with the image's own SGLang, the guard, then the engine as a
supervised child with its per-start keys, its output filtered, signals forwarded, its exit code
returned. Also the container healthcheck."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from launcher.sglang_flags import FLAG_ENV_PREFIX, Catalogue
from launcher.command import ALIASES, DEFAULT_FLAGS, ENGINE_LAUNCH_COMMAND, EngineConfig, collect_environment
from launcher.credentials import EngineKeys, redact
from launcher.settings import BundleSettings, ConfigError

# Where the running entrypoint notes the guard's port, for --healthcheck (which Docker runs without
# the container's arguments, so it cannot rebuild the configuration itself).
GUARD_STATE_FILE = Path("/tmp/bundle-guard.json")
# When --healthcheck last saw the healthcheck path (/health: a generation) answer 200.
GENERATION_STATE_FILE = Path("/tmp/bundle-healthcheck-generated")
# SGLang's cheap status flag: 200 once the engine serves and is not paused; no generation.
READY_PATH = "/ready"

PARSE_CHECK = (
    "import argparse, sys\n"
    "from sglang.srt.server_args import ServerArgs\n"
    "parser = argparse.ArgumentParser(prog='sglang serve', allow_abbrev=False)\n"
    "ServerArgs.add_cli_args(parser)\n"
    "parser.parse_args(sys.argv[1:])\n"
)


def installed_engine_version(catalogue: Catalogue) -> str:
    from importlib import metadata
    try:
        installed = metadata.version("sglang")
    except metadata.PackageNotFoundError:
        installed = "not installed as a distribution"
    same = "" if installed == catalogue.sglang_version else " (differs: the parse check decides)"
    return f"SGLang in this image: {installed}; flag catalogue: {catalogue.sglang_version}{same}"


HTTP_STACK = ("fastapi", "starlette", "uvicorn", "httptools", "h11", "uvloop")
# Starlette < 1.0.1 builds request.url from the Host header (CVE-2026-48710); SGLang's key check
# reads request.url.path, so "Host: x/health?" makes any route look exempt to it.
STARLETTE_HOST_FIX = (1, 0, 1)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def engine_http_stack(version_of=None) -> list[str]:
    """What serves the engine's HTTP in this image, and a warning when it weakens the engine's own
    key check. The guard replaces the Host header, so only requests that bypass it are at stake."""
    from importlib import metadata

    def installed(name):
        try:
            return (version_of or metadata.version)(name)
        except metadata.PackageNotFoundError:
            return None

    versions = {name: installed(name) for name in HTTP_STACK}
    parser = "httptools" if versions["httptools"] else "h11"
    lines = ["engine HTTP stack: " + ", ".join(f"{name} {version or 'absent'}" for name, version in versions.items())
             + f" (uvicorn parses with {parser})"]
    starlette = versions["starlette"]
    if starlette and _version_tuple(starlette) < STARLETTE_HOST_FIX:
        lines.append(f"warning: Starlette {starlette} is older than 1.0.1 (CVE-2026-48710): the engine's own "
                     "key check can be fooled by a malformed Host header. The guard replaces Host, so requests "
                     "through it are safe; use an image with Starlette >= 1.0.1 to keep the second wall whole")
    return lines


def check_with_engine_parser(engine_argv: list[str]) -> None:
    flags = engine_argv[len(ENGINE_LAUNCH_COMMAND):]
    result = subprocess.run([sys.executable, "-c", PARSE_CHECK, *flags], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError("the installed SGLang's parser rejects the command (bundle and image "
                          f"versions differ?):\n{result.stderr.strip()}")


def engine_environment(environ, hf_token: str | None) -> dict:
    """The engine's environment: no ENGINE_*/BUNDLE_* settings, no secret values."""
    env = {k: v for k, v in environ.items()
           if not k.startswith((FLAG_ENV_PREFIX, "BUNDLE_")) and k not in ALIASES
           and k not in ("HF_TOKEN", "HF_TOKEN_FILE")}
    if environ.get("HF_TOKEN_FILE"):
        env["HF_TOKEN_PATH"] = environ["HF_TOKEN_FILE"]   # huggingface_hub reads the file itself
    elif hf_token:
        env["HF_TOKEN"] = hf_token                          # the user chose the plain form
    return env


def relay_output(stream, sink, secrets) -> None:
    """Copy the engine's output line by line, with any secret value replaced."""
    for raw in iter(stream.readline, b""):
        sink.write(redact(raw.decode("utf-8", "replace"), secrets))
        sink.flush()


def write_engine_key_file(keys: EngineKeys) -> Path:
    """The engine's keys as an SGLang `--config` YAML file, readable by this user only, in a fresh
    private folder; in /dev/shm when possible, so that the keys never touch a disk."""
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="bundle-engine-",
                                   dir=shm if os.access(shm, os.W_OK) else None))
    path = folder / "engine-keys.yaml"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        # SGLang's ConfigArgumentMerger turns each key into "--<key>" as written: option names.
        file.write(f'api-key: "{keys.api_key}"\nadmin-api-key: "{keys.admin_api_key}"\n')
    return path


def remove_key_file(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


def remove_key_file_once_listening(path: Path, engine: subprocess.Popen, port: int) -> None:
    """SGLang reads its config file once, while parsing its arguments, long before it listens: once
    its port answers (or it has exited), the file has served its purpose."""
    while engine.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    remove_key_file(path)


def run_engine(config: EngineConfig, settings: BundleSettings, environ, secrets, hf_token) -> int:
    """Guard first (a busy port fails before minutes of loading), then the engine, supervised."""
    from launcher.guard import Guard   # asyncio: only a start needs it, not --healthcheck every 30 s
    v = config.values
    engine_port = settings.engine_port
    engine_keys = EngineKeys.generate()
    secrets = [*secrets, engine_keys.api_key, engine_keys.admin_api_key]
    guard = Guard(listen_host=str(v["host"]), listen_port=int(v["port"]), upstream_host="127.0.0.1",
                  upstream_port=engine_port, api_key=config.api_key, admin_api_key=config.admin_api_key,
                  secrets=tuple(secrets), engine_keys=engine_keys,
                  max_connections=settings.guard_max_connections,
                  log=lambda message: print(f"[bundle guard] {message}", file=sys.stderr, flush=True))
    try:
        guard.start()
    except OSError as err:
        log(f"cannot listen on {v['host']}:{v['port']}: {err}")
        return 1
    try:
        GUARD_STATE_FILE.write_text(json.dumps({"port": int(v["port"])}))
    except OSError:  # a read-only root filesystem: the healthcheck falls back to the configured port
        pass

    log(f"guard on {v['host']}:{v['port']}, at most {guard.max_connections} client connections")
    key_file = write_engine_key_file(engine_keys)
    engine = subprocess.Popen(config.engine_argv(settings, str(key_file)),
                              env=engine_environment(environ, hf_token),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    relays = [threading.Thread(target=relay_output, args=(engine.stdout, sys.stdout, secrets), daemon=True),
              threading.Thread(target=relay_output, args=(engine.stderr, sys.stderr, secrets), daemon=True)]
    for relay in relays:
        relay.start()
    threading.Thread(target=remove_key_file_once_listening, args=(key_file, engine, engine_port),
                     daemon=True).start()

    def forward(signum, _frame):
        try:
            os.killpg(engine.pid, signum)   # the engine and its scheduler/detokenizer processes
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = engine.wait()
    remove_key_file(key_file)
    for relay in relays:
        relay.join(timeout=5)
    guard.stop()
    log(f"engine exited with {code}")
    return code if code >= 0 else 128 - code


def healthcheck(settings: BundleSettings, environ, catalogue: Catalogue, now=time.time) -> int:
    """0 when healthy. Docker runs it every few seconds so that readiness is noticed fast; the
    expensive path (/health: a one-token generation) runs only when the cheap /ready says the engine
    serves, and then at most every BUNDLE_HEALTHCHECK_GENERATE_SECONDS."""
    try:
        port = json.loads(GUARD_STATE_FILE.read_text())["port"]
    except (OSError, ValueError, KeyError):  # not started yet: the configured port
        given = collect_environment(environ, catalogue).get("port")
        port = given.value if given else int(DEFAULT_FLAGS["--port"])
    if settings.healthcheck_path != READY_PATH:
        if not probe(port, READY_PATH, settings.healthcheck_timeout):
            return 1                    # loading, paused or gone: no generation needed to know
        if generated_within(settings.healthcheck_generate_seconds, now()):
            return 0
    if not probe(port, settings.healthcheck_path, settings.healthcheck_timeout):
        return 1
    if settings.healthcheck_path != READY_PATH:
        note_generation(now())
    return 0


def probe(port: int, path: str, timeout: float) -> bool:
    import urllib.error    # here, not at the top: urllib.request (ssl, email) is slow to import
    import urllib.request
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except urllib.error.HTTPError as err:
        print(f"{url}: HTTP {err.code}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as err:
        print(f"{url}: {getattr(err, 'reason', err)}", file=sys.stderr)
    return False


def generated_within(seconds: float, now: float) -> bool:
    try:
        last = float(GENERATION_STATE_FILE.read_text())
    except (OSError, ValueError):
        return False
    return 0 <= now - last < seconds


def note_generation(now: float) -> None:
    try:
        GENERATION_STATE_FILE.write_text(repr(now))
    except OSError:   # a read-only filesystem: every probe then generates, as before
        pass


def log(message: str) -> None:
    print(f"[bundle] {message}", file=sys.stderr, flush=True)

