"""--mem-fraction-static against SGLang 0.5.23's own sizing code, run from the installed package.

The oracle is SGLang's handle_gpu_memory_settings (sglang/srt/arg_groups/memory_hook.py), after its
handle_cuda_graph_config, on a ServerArgs parsed by SGLang from the bundle's own engine argv. Only
what needs a GPU or the downloaded model is supplied: the profile's GPU memory (what nvidia-smi or
rocminfo reports), the platform's prefill CUDA graph default (default_prefill_backend: breakable on
CUDA, off on ROCm), and the model's description as SGLang would read it from config.json for Llama
3.1 (dense, text only, no MLA). disable_breakable_cudagraph_if_incompatible is skipped because its
rules need that config and none fits Llama 3.1 (KDA, DeepSeek-V4, context/decode-context parallel,
two-batch overlap, MoE all-to-all, multimodal). The rest is SGLang's code as installed.
"""
import contextlib
import types
from unittest import mock

import pytest
import sglang.srt.arg_groups.cuda_graph_hook as cuda_graph_hook
import sglang.srt.arg_groups.memory_hook as memory_hook
import sglang.srt.arg_groups.overrides as overrides
import sglang.srt.model_executor.cuda_graph_config as cuda_graph_config
from sglang.srt.server_args import prepare_server_args

from bundle import render
from launcher import memory
from launcher.command import ENGINE_LAUNCH_COMMAND

LLAMA31 = types.SimpleNamespace(is_multimodal=False, is_hybrid_swa=False, context_len=131072,
                                attention_arch=None, hf_config=types.SimpleNamespace(architectures=["LlamaForCausalLM"]))
DATA = render.load_data()


def sglang_default(gpu_memory_mib: float, cuda: bool, flags: list[str]) -> float:
    """The mem_fraction_static SGLang resolves for these flags on this GPU, by SGLang's code."""
    args = prepare_server_args([*flags, "--device", "cuda"])
    prefill = cuda_graph_config.Backend.BREAKABLE if cuda else cuda_graph_config.Backend.DISABLED
    with contextlib.ExitStack() as patches:
        for target, name, value in [
                (memory_hook, "get_device_memory_capacity", lambda *_: gpu_memory_mib),
                (memory_hook, "model_config_of", lambda *_: LLAMA31),
                (memory_hook, "use_mla_backend", lambda *_: False),
                (overrides, "use_mla_backend", lambda *_: False),
                (cuda_graph_config, "default_prefill_backend", lambda: prefill),
                (cuda_graph_hook, "disable_breakable_cudagraph_if_incompatible", lambda *_: None)]:
            patches.enter_context(mock.patch.object(target, name, value))
        args._input_frozen = True        # what resolve_once sets while its hooks run
        cuda_graph_hook.handle_cuda_graph_config(args)
        memory_hook.handle_gpu_memory_settings(args)
        return overrides.resolving_view(args).mem_fraction_static


def engine_flags_without_fraction(deployment) -> list[str]:
    """The engine's own argv, less the launcher, the per-start key file and --mem-fraction-static."""
    argv, flags = list(deployment.engine_argv[len(ENGINE_LAUNCH_COMMAND):]), []
    while argv:
        flag = argv.pop(0)
        if flag in ("--config", "--mem-fraction-static"):
            argv.pop(0)
        else:
            flags.append(flag)
    return flags


def default_for(deployment) -> float:
    return sglang_default(deployment.gpu["memory_mib"], deployment.vendor == "nvidia",
                          engine_flags_without_fraction(deployment))


PAIRS = render.pairs(DATA)
THROUGHPUT_PAIRS = [(hardware, preset) for hardware, preset in PAIRS if preset.startswith("throughput")]


def test_the_oracle_reproduces_the_figure_the_issue_measured():
    # Issue 22 item 3: about 0.90 on H200 where the throughput preset pinned 0.85.
    assert sglang_default(143771, True, ["--model-path", "m", "--tp-size", "2"]) == pytest.approx(0.90, abs=0.005)


UNSET_PAIRS = [pair for pair in PAIRS if "mem-fraction-static" not in render.resolve(DATA, *pair).flags]


@pytest.mark.parametrize("hardware, preset", UNSET_PAIRS)
def test_presets_that_leave_the_fraction_unset_are_planned_with_sglangs_default(hardware, preset):
    # What the README's KV-token column and the compose header's arithmetic use.
    deployment = render.resolve(DATA, hardware, preset)
    assert deployment.plan.mem_fraction == pytest.approx(default_for(deployment), abs=1e-9)
    assert deployment.plan.mem_fraction_is_sglang_default
    assert "SGLang's own default" in " ".join(deployment.memory_lines)


def test_the_unset_pairs_cover_every_profile():
    assert {hardware for hardware, _ in UNSET_PAIRS} == set(DATA["hardware"]["hardware"])


@pytest.mark.parametrize("hardware, preset", THROUGHPUT_PAIRS)
def test_no_throughput_preset_configures_less_kv_cache_than_sglangs_default(hardware, preset):
    deployment = render.resolve(DATA, hardware, preset)
    default = default_for(deployment)
    assert deployment.plan.mem_fraction >= default, (
        f"{preset} on {hardware} pins --mem-fraction-static {deployment.plan.mem_fraction}, below SGLang's own "
        f"{default} for this shape: leave it to SGLang (mem-fraction-static: null) in presets/presets.yaml")
    values = {name.replace("-", "_"): value for name, value in deployment.flags.items()}
    with_default = memory.plan_memory(deployment.plan.model, memory.KNOWN_MODELS[deployment.plan.model],
                                      {**values, "mem_fraction_static": default}, deployment.gpu["memory_mib"] / 1024)
    assert deployment.plan.kv_tokens >= with_default.kv_tokens


GPU_SIZES = [16384, 24576, 46068, 81559, 143771, 183359, 196592]
SHAPES = [{"tp-size": 1}, {"tp-size": 2}, {"tp-size": 4}, {"tp-size": 8}, {"tp-size": 2, "pp-size": 2},
          {"tp-size": 8, "pp-size": 2}]
VARIANTS = [{}, {"max-running-requests": 64}, {"max-running-requests": 1024}, {"chunked-prefill-size": 4096},
            {"chunked-prefill-size": 32768}, {"cuda-graph-backend-decode": "disabled"},
            {"cuda-graph-backend-prefill": "disabled"}, {"cuda-graph-max-bs-decode": 128},
            {"cuda-graph-max-bs-prefill": 2048}, {"disable-cuda-graph": True},
            {"cuda-graph-backend-prefill": "breakable", "pp-size": 2, "tp-size": 2}]


@pytest.mark.parametrize("cuda", [True, False], ids=["cuda", "rocm"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={w}" for k, w in v.items()) or "defaults")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: ",".join(f"{k}={w}" for k, w in s.items()))
def test_the_arithmetics_default_is_sglangs_own(shape, variant, cuda):
    flags = {"model-path": "meta-llama/Llama-3.1-70B-Instruct", **shape, **variant}
    argv = [part for name, value in flags.items()
            for part in (["--" + name] if value is True else ["--" + name, str(value)])]
    values = {name.replace("-", "_"): value for name, value in flags.items()}
    for gpu_memory_mib in GPU_SIZES:
        assert memory.sglang_default_mem_fraction(gpu_memory_mib, values, cuda) == pytest.approx(
            sglang_default(gpu_memory_mib, cuda, argv), abs=1e-9), f"{gpu_memory_mib} MiB"
