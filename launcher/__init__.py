"""The container's runtime, standard library only: from the environment to a checked SGLang
command, then the engine supervised behind the API-key guard. entrypoint.py runs the steps.

    settings     BUNDLE_* settings, one table, parsed once (BundleSettings); ConfigError
    sglang_flags SGLang's flags as data (sglang_flags.json), the ENGINE_* naming rule, values
    command      the engine's argv: arguments > environment > defaults; refusals; conflicts
    memory       weights and KV cache per GPU against usable memory
    gpus         nvidia-smi / rocm-smi parsing, preflight
    credentials  *_FILE secrets, the engine's per-start keys, redaction
    supervise    parse check, guard + engine process, signals, exit codes, healthcheck
    guard        the API-key guard (HTTP/1.1 reverse proxy) in front of the engine
    sglang_auth  SGLang's key rules and admin routes, as the guard applies them
    http1        strict HTTP/1.1 message parsing and framing for the guard
    streams      the guard's client and engine connections
"""
