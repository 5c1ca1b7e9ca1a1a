#!/usr/bin/env python3
"""Run the real ``python -m sglang.bench_serving`` (SGLang 0.5.23) against the SGLang CPU stand-in.

    python run_bench_serving.py --backend sglang --host 127.0.0.1 --port 30000 ...

Use it with the Python that has the real ``sglang`` package installed (plus
``transformers``, ``datasets``, ``aiohttp``...). All arguments go to
bench_serving unchanged, and its HTTP client code runs unchanged.

Why a wrapper: ``sglang.benchmark.serving`` imports
``sglang.srt.disaggregation.utils`` only for the constant
``FAKE_BOOTSTRAP_HOST``, and that module pulls in SGLang's model configs, which
import ``torchvision``. A CPU-only client venv often has no torchvision that
matches its CPU torch build. When ``torchvision.transforms`` cannot be
imported, this wrapper pre-loads a one-constant stand-in for that module
(the value is read from the installed SGLang source) so the benchmark can
start. Nothing else is changed; with a working torchvision it does nothing
but ``runpy`` the real module.
"""

import importlib.util
import os
import re
import runpy
import sys
import types


def _torchvision_ok() -> bool:
    try:
        import torchvision.transforms  # noqa: F401
        return True
    except Exception:  # ImportError, or RuntimeError from a torch/torchvision mismatch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False


def _fake_bootstrap_host() -> str:
    spec = importlib.util.find_spec("sglang")
    if spec and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "srt", "disaggregation", "utils.py")
        try:
            with open(path, encoding="utf-8") as f:
                m = re.search(r'^FAKE_BOOTSTRAP_HOST\s*=\s*"([^"]*)"', f.read(), re.M)
            if m:
                return m.group(1)
        except OSError:
            pass
    return "2.2.2.2"


def main():
    # This file sits next to the stand-in's own ``sglang`` stub package: keep
    # that directory off sys.path so the real SGLang is the one imported.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    if not _torchvision_ok():
        stub = types.ModuleType("sglang.srt.disaggregation.utils")
        stub.__doc__ = "run_bench_serving.py: FAKE_BOOTSTRAP_HOST only (torchvision unavailable)"
        stub.FAKE_BOOTSTRAP_HOST = _fake_bootstrap_host()
        sys.modules["sglang.srt.disaggregation.utils"] = stub
    sys.argv = ["sglang.bench_serving"] + sys.argv[1:]
    runpy.run_module("sglang.bench_serving", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
