"""SGLang's own GSM8K check (`sglang.test.few_shot_gsm8k`), with the API key it cannot send itself.

`make eval` (bundle/evaluate.py) runs this file against the deployment's guard: fed to python3 on
stdin inside the engine container (the image needs no copy of the bundle's tools), or with
EVAL_CLIENT=python3 on this host against the published port. The tool has no API-key option, but
its RuntimeEndpoint takes one: the key comes from OPENAI_API_KEY (as for sglang.bench_serving).
Everything else is the tool's own, unchanged: its arguments (--port, --num-questions, --data-path,
...), its prompts and scoring (the seed's 0.935 was measured with them), its report lines, which
bundle/evaluate.py reads, and its answers file, tmp_output_gsm8k.txt in the working folder.
"""
import os
import runpy

from sglang.lang.backend import runtime_endpoint

_original_init = runtime_endpoint.RuntimeEndpoint.__init__


def _init_with_key(self, base_url, api_key=None, *args, **kwargs):
    _original_init(self, base_url, api_key or os.environ.get("OPENAI_API_KEY"), *args, **kwargs)


runtime_endpoint.RuntimeEndpoint.__init__ = _init_with_key
runpy.run_module("sglang.test.few_shot_gsm8k", run_name="__main__", alter_sys=True)
