"""The gateway container's entrypoint: SGLang's model gateway (`smg`) in front of the engines.

    python3 -m launcher.gateway SMG_FLAGS...     start smg with these flags, plus the keys below
    python3 -m launcher.gateway --healthcheck --port N
                                                 exit 0 when smg says it can route (its /readiness)

The compose file (or Kubernetes manifest) gives smg's ordinary flags as the container's command,
rendered from presets/gateway.yaml: nothing secret. The keys come from files and reach smg
in-process, in its RouterArgs, so they are never in argv, the environment or `docker inspect`:

    GATEWAY_API_KEY_FILE        the key clients must send; smg also sends it to the engines, whose
                                guards check it (each engine is its own second wall)
    GATEWAY_ADMIN_API_KEY_FILE  the key of smg's control plane (/workers, /flush_cache, ...). Without
                                one, a random key that nobody knows closes the control plane: the
                                API key alone must not let a client register engines of its choosing

Standard library only, like the rest of the launcher; smg itself is imported once the keys are read.
"""
from __future__ import annotations

import os
import secrets
import sys
import urllib.error
import urllib.request

from launcher.credentials import file_env
from launcher.settings import EXIT_CONFIG_ERROR, ConfigError

API_KEY = "GATEWAY_API_KEY"
ADMIN_API_KEY = "GATEWAY_ADMIN_API_KEY"
# Flags that carry secrets: refused on the command line, where `docker inspect` shows them.
SECRET_FLAGS = ("--api-key", "--control-plane-api-keys", "--tenant-api-key", "--postgres-db-url",
                "--redis-url", "--oracle-password")
READINESS_PATH = "/readiness"     # smg's: 200 once at least one engine is routable
ADMIN_KEY_ID = "bundle-admin"


def refuse_secret_flags(argv: list[str]) -> None:
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in SECRET_FLAGS:
            raise ConfigError(f"{flag} on the gateway's command line would show the secret in `docker inspect` "
                              f"and the process list: give it as a file ({API_KEY}_FILE, {ADMIN_API_KEY}_FILE)")


def gateway_keys(environ) -> tuple[str | None, str]:
    """(API key or None, control-plane admin key); a fresh random admin key when none is given."""
    api_key = file_env(API_KEY, environ)
    admin_key = file_env(ADMIN_API_KEY, environ) or secrets.token_hex(32)
    if api_key and admin_key == api_key:
        raise ConfigError(f"{ADMIN_API_KEY}_FILE holds the same key as {API_KEY}_FILE: the control plane "
                          "(registering engines, flushing caches) needs a key of its own")
    return api_key, admin_key


def router_args(argv: list[str], api_key: str | None, admin_key: str):
    """smg's own RouterArgs from its own parser, with the keys set in memory."""
    from smg.launch_router import parse_router_args

    args = parse_router_args(argv)
    args.api_key = api_key
    # smg's parsed form of --control-plane-api-keys 'id:name:role:key' (RouterArgs._parse_control_plane_api_keys)
    args.control_plane_api_keys = [(ADMIN_KEY_ID, "bundle admin key", admin_key, "admin")]
    return args


def port_from(argv: list[str], default: int = 30000) -> int:
    """--port as smg reads it (its default is 30000); ValueError when it is not a number."""
    for index, arg in enumerate(argv):
        if arg == "--port" and index + 1 < len(argv):
            return int(argv[index + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    return default


def healthcheck(port: int) -> int:
    url = f"http://127.0.0.1:{port}{READINESS_PATH}"
    try:   # no proxy: the address is this container's own
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as answer:
            return 0 if answer.status == 200 else 1
    except (OSError, urllib.error.URLError):
        return 1


def main(argv: list[str] | None = None, environ=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    if argv[:1] == ["--healthcheck"]:
        try:
            return healthcheck(port_from(argv[1:]))
        except ValueError:
            print(f"gateway: --healthcheck {' '.join(argv[1:])}: --port must be a number", file=sys.stderr)
            return 1
    try:
        refuse_secret_flags(argv)
        api_key, admin_key = gateway_keys(environ)
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    from smg.launch_router import launch_router

    launch_router(router_args(argv, api_key, admin_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
