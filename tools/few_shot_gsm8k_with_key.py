"""SGLang's own GSM8K check (`sglang.test.few_shot_gsm8k`), with the API key it cannot send itself.

`make eval` feeds this file to python3 on stdin inside the engine container and points it at the
guard's port there, so the run measures what clients get. The tool has no API-key option, but its
RuntimeEndpoint takes one: the key comes from OPENAI_API_KEY (as for sglang.bench_serving).
Arguments are few_shot_gsm8k's own (--port, --num-questions, --data-path, ...).
"""
import os
import runpy

from sglang.lang.backend import runtime_endpoint

_original_init = runtime_endpoint.RuntimeEndpoint.__init__


def _init_with_key(self, base_url, api_key=None, *args, **kwargs):
    _original_init(self, base_url, api_key or os.environ.get("OPENAI_API_KEY"), *args, **kwargs)


runtime_endpoint.RuntimeEndpoint.__init__ = _init_with_key
runpy.run_module("sglang.test.few_shot_gsm8k", run_name="__main__", alter_sys=True)
