#!/usr/bin/env python3
"""Container entrypoint: environment -> checked SGLang command line -> supervised engine.

SGLang reads no environment variables as flag defaults, and a 70B engine loads for minutes before
it says that a flag was wrong. This file turns the environment into a validated SGLang argv in
well under a second, refuses bad configuration before anything starts, keeps secrets out of argv,
logs and HTTP responses, then runs the engine behind the guard (guard.py) and hands its exit code
back to Docker. The engine has keys of its own, made anew at every start and handed over in a
private file (`--config`), so that it refuses whatever did not come through the guard.

One rule covers every SGLang flag: ``--some-flag`` is set by ``ENGINE_SOME_FLAG``. The flags, their
types and choices come from launcher/sglang_flags.json, generated from the pinned SGLang's own
parser by tools/gen_flag_catalogue.py. The bundle's own settings are the BUNDLE_SETTINGS table in
launcher/settings.py. The `launcher` package (standard library only, copied into the image beside
this file) does the work; this file is the order of the steps.

Modes (standard library only, Python >= 3.11):
    entrypoint.py [SGLANG FLAGS...]   check, preflight, start the engine (the container's default)
    entrypoint.py --print-command     print the final engine argv as one JSON array and exit
    entrypoint.py --healthcheck       exit 0 when the server answers its health probe (compose)
    entrypoint.py --list-env          print every setting: env name, flag, type, default, help
Exit codes: 0 and the engine's own codes; 78 (EX_CONFIG) for configuration errors, before any
process starts; 128+N when the engine died of signal N.
"""
from __future__ import annotations

import json
import os
import sys

from launcher.sglang_flags import Catalogue
from launcher.command import build_config, environment_reference
from launcher.credentials import file_env, redact
from launcher.gpus import detect_gpus, preflight
from launcher.settings import EXIT_CONFIG_ERROR, BundleSettings, ConfigError
from launcher.supervise import (check_with_engine_parser, engine_http_stack, healthcheck,
                                installed_engine_version, log, run_engine)

MODES = ("--print-command", "--healthcheck", "--list-env")


def main(argv: list[str]) -> int:
    environ = dict(os.environ)
    mode = argv[0] if argv and argv[0] in MODES else None
    args = argv[1:] if mode else argv
    try:
        catalogue = Catalogue.load()
        settings = BundleSettings.from_environ(environ)
        if mode == "--healthcheck":
            return healthcheck(settings, environ, catalogue)
        if mode == "--list-env":
            print(environment_reference(catalogue))
            return 0
        config = build_config(environ, args, catalogue)
        hf_token = file_env("HF_TOKEN", environ)
        secrets = [s for s in (config.api_key, config.admin_api_key, hf_token) if s]
        engine_argv = config.engine_argv(settings)
        for warning in config.warnings:
            log(f"warning: {warning}")
        # --print-command runs preflight only when asked for explicitly; a start runs it by default.
        asked = environ.get("BUNDLE_PREFLIGHT") is not None if mode else True
        if asked and settings.preflight:
            for note in preflight(config, settings, environ, detect_gpus()):
                log(note)
        if mode == "--print-command":
            print(json.dumps([redact(token, secrets) for token in engine_argv]))
            return 0
        log(installed_engine_version(catalogue))
        for line in engine_http_stack():
            log(line)
        if settings.parse_check:
            check_with_engine_parser(engine_argv)
    except ConfigError as err:
        log(f"configuration error: {err}")
        return EXIT_CONFIG_ERROR
    log(f"starting engine: {json.dumps([redact(t, secrets) for t in engine_argv])}")
    return run_engine(config, settings, environ, secrets, hf_token)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
