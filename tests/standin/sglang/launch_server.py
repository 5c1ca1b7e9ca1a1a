"""SGLang CPU STAND-IN: ``python3 -m sglang.launch_server <SGLang flags>`` (not the real engine, no model).

Same command line as SGLang 0.5.23 (the flags come from the bundle's flag
catalogue, see sglang/srt/server_args.py); runs the stand-in HTTP server of
sglang/srt/standin_server.py instead of the inference engine.
"""

import sys
import warnings

from sglang.srt.server_args import prepare_server_args

BANNER = (
    "SGLang CPU STAND-IN (not the real engine, no model): imitates the command line, "
    "HTTP API and lifecycle of SGLang 0.5.23 for tests; every answer is deterministic "
    "placeholder text."
)


def run_server(server_args) -> int:
    from sglang.srt.standin_server import launch_server

    return launch_server(server_args)


def main(argv=None) -> int:
    from sglang.srt.standin_http import http_parser_from_env, http_stack_line

    sys.stderr.write(BANNER + "\n")
    # Second line: which HTTP parser and loop answer (STANDIN_HTTP), for attack-suite logs.
    sys.stderr.write(http_stack_line(http_parser_from_env()) + "\n")
    sys.stderr.flush()
    warnings.warn(
        "'python -m sglang.launch_server' is still supported, but "
        "'sglang serve' is the recommended entrypoint.\n"
        "  Example: sglang serve --model-path <model> [options]",
        UserWarning,
        stacklevel=1,
    )
    server_args = prepare_server_args(sys.argv[1:] if argv is None else list(argv))
    return run_server(server_args)


if __name__ == "__main__":
    sys.exit(main())
