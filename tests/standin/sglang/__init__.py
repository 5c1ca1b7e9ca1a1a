"""SGLang CPU STAND-IN package (not the real engine, no model).

This package is installed as ``sglang`` only inside the bundle's test image. It
reproduces the command line, the HTTP contract and the startup/shutdown
lifecycle of SGLang 0.5.23 on a CPU, with deterministic placeholder text
instead of a model. See tests/standin/README.md.
"""

from sglang.version import __version__

STANDIN = True
STANDIN_NOTICE = (
    "SGLang CPU STAND-IN (not the real engine, no model): deterministic "
    "placeholder text for testing the deployment bundle"
)

__all__ = ["__version__", "STANDIN", "STANDIN_NOTICE"]
