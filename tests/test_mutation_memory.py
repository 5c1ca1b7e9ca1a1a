"""Behaviour tests for launcher/memory.py, written to kill mutmut's survivors (docs/mutation.md).
Expected values come from independent arithmetic (written out here) and from the published
parameter counts of Llama 3.1 8B (8,030,261,248) and 70B (70,553,706,496)."""
import dataclasses
import json

import pytest

from launcher import memory
from launcher.memory import GIB, KNOWN_MODELS, LLAMA31, ModelShape, is_fp8_quantization, model_shape, plan_memory, \
    shape_from_config

GIB_EXACT = 1073741824
L70_PARAMS = 70_553_706_496
L8_PARAMS = 8_030_261_248
# 70B: per layer q,o (2*8192*64*128) + k,v (2*8192*8*128) + MLP 3*8192*28672, 80 layers.
L70_LINEAR = 80 * (2 * 8192 * 64 * 128 + 2 * 8192 * 8 * 128 + 3 * 8192 * 28672)
L70_OTHER = 2 * 128256 * 8192 + (2 * 80 + 1) * 8192
# KV per token on one GPU: K and V, layers, kv heads, head dim 128, bytes.
L70_KV_BF16_TP1 = 2 * 80 * 8 * 128 * 2


def test_gib_is_two_to_the_thirty():
    assert GIB == GIB_EXACT


def test_parameter_counts_match_the_published_ones():
    assert L70_LINEAR + L70_OTHER == L70_PARAMS
    assert LLAMA31["70B"].linear_params == L70_LINEAR
    assert LLAMA31["70B"].other_params == L70_OTHER
    assert LLAMA31["70B"].linear_params + LLAMA31["70B"].other_params == L70_PARAMS
    assert LLAMA31["8B"].linear_params + LLAMA31["8B"].other_params == L8_PARAMS
    assert LLAMA31["405B"].linear_params + LLAMA31["405B"].other_params == 405_853_388_800


def test_weight_bytes_bf16_and_fp8():
    assert LLAMA31["70B"].weight_bytes(False) == 2 * L70_PARAMS
    assert LLAMA31["70B"].weight_bytes(True) == L70_LINEAR + 2 * L70_OTHER


def test_tied_embeddings_count_the_embedding_once():
    shape = ModelShape(2, 16, 32, 4, 2, 4, 100, 64, tied_embeddings=True)
    assert shape.other_params == 100 * 16 + 5 * 16
    untied = dataclasses.replace(shape, tied_embeddings=False)
    assert untied.other_params == 2 * 100 * 16 + 5 * 16
    # attention 2*16*4*4 + 2*16*2*4 = 768, MLP 3*16*32 = 1536, two layers
    assert shape.linear_params == 2 * (768 + 1536)


def test_known_models_table():
    fp8 = [name for name, shape in KNOWN_MODELS.items() if shape.weight_format == "fp8"]
    assert sorted(fp8) == ["RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8", "RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8",
                           "meta-llama/Llama-3.1-405B-Instruct-FP8", "nvidia/Llama-3.1-70B-Instruct-FP8"]
    assert KNOWN_MODELS["meta-llama/Llama-3.1-70B-Instruct"].weight_format == "bf16"


# --- FP8 detection -------------------------------------------------------------------------------

@pytest.mark.parametrize("quant, expected", [
    ({"quant_method": "fp8"}, True),
    ({"quant_method": "FP8"}, True),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, True),
    ({}, False),
    ({"quant_method": "awq", "bits": 4}, False),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}}}, True),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"a": {"weights": {"num_bits": 4, "type": "int"}},
                        "b": {"weights": {"num_bits": 8, "type": "float"}}}}, True),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "int"}}}}, False),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float"}}}}, False),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": None}}}, False),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {}}}, False),
    ({"quant_method": "compressed-tensors", "config_groups": None}, False),
])
def test_fp8_quantization(quant, expected):
    assert is_fp8_quantization(quant) is expected


# --- config.json ---------------------------------------------------------------------------------

def test_shape_from_a_full_config():
    config = {"num_hidden_layers": 80, "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64,
              "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256, "max_position_embeddings": 131072,
              "tie_word_embeddings": False, "quantization_config": {"quant_method": "fp8"}}
    assert shape_from_config(config) == ModelShape(80, 8192, 28672, 64, 8, 128, 128256, 131072, "fp8", False)


def test_shape_from_a_minimal_config_uses_the_defaults():
    config = {"num_hidden_layers": 2, "hidden_size": 96, "intermediate_size": 256, "num_attention_heads": 6,
              "vocab_size": 1000, "tie_word_embeddings": True, "head_dim": None}
    assert shape_from_config(config) == ModelShape(2, 96, 256, 6, 6, 16, 1000, 0, "bf16", True)
    assert type(shape_from_config(config).head_dim) is int      # 96 // 6, not 16.0


def test_shape_from_config_takes_an_explicit_head_dim():
    # Gemma-style: head_dim 256 while hidden/heads = 2304/8 = 288.
    config = {"num_hidden_layers": 2, "hidden_size": 2304, "intermediate_size": 9216, "num_attention_heads": 8,
              "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 1000}
    assert shape_from_config(config).head_dim == 256


def test_shape_from_config_without_quantization_is_bf16():
    config = {"num_hidden_layers": 1, "hidden_size": 8, "intermediate_size": 8, "num_attention_heads": 2,
              "vocab_size": 10, "quantization_config": None}
    shape = shape_from_config(config)
    assert shape.weight_format == "bf16" and shape.tied_embeddings is False and shape.head_dim == 4


def write_config(directory, **overrides):
    config = {"num_hidden_layers": 3, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 500, "max_position_embeddings": 2048, **overrides}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))


def test_model_shape_from_a_local_directory(tmp_path):
    write_config(tmp_path / "model")
    assert model_shape(str(tmp_path / "model"), {}) == ModelShape(3, 64, 128, 4, 2, 16, 500, 2048)


def test_model_shape_from_hf_hub_cache(tmp_path):
    write_config(tmp_path / "hub" / "models--org--name" / "snapshots" / "abc")
    assert model_shape("org/name", {"HF_HUB_CACHE": str(tmp_path / "hub")}).layers == 3


def test_model_shape_from_hf_home(tmp_path):
    write_config(tmp_path / "home" / "hub" / "models--org--name" / "snapshots" / "abc", num_hidden_layers=5)
    assert model_shape("org/name", {"HF_HOME": str(tmp_path / "home")}).layers == 5
    # HF_HUB_CACHE wins over HF_HOME.
    write_config(tmp_path / "cache" / "models--org--name" / "snapshots" / "abc", num_hidden_layers=7)
    assert model_shape("org/name", {"HF_HOME": str(tmp_path / "home"),
                                    "HF_HUB_CACHE": str(tmp_path / "cache")}).layers == 7


def test_model_shape_from_the_default_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_config(tmp_path / ".cache" / "huggingface" / "hub" / "models--org--name" / "snapshots" / "s1",
                 num_hidden_layers=9)
    assert model_shape("org/name", {}).layers == 9


def test_model_shape_skips_a_broken_config_and_falls_back(tmp_path):
    hub = tmp_path / "hub" / "models--org--name" / "snapshots"
    (hub / "a").mkdir(parents=True)
    (hub / "a" / "config.json").write_text("{not json")
    (hub / "b").mkdir()
    (hub / "b" / "config.json").write_text('{"hidden_size": 1}')   # KeyError
    write_config(hub / "c", num_hidden_layers=11)
    assert model_shape("org/name", {"HF_HUB_CACHE": str(tmp_path / "hub")}).layers == 11


def test_model_shape_falls_back_to_the_table_then_none(tmp_path):
    environ = {"HF_HUB_CACHE": str(tmp_path)}
    assert model_shape("meta-llama/Llama-3.1-70B-Instruct", environ) == LLAMA31["70B"]
    assert model_shape("nobody/unknown", environ) is None


# --- the plan ------------------------------------------------------------------------------------

def plan70(values, gpu_gib=80.0, model="meta-llama/Llama-3.1-70B-Instruct"):
    return plan_memory(model, LLAMA31["70B"], values, gpu_gib)


def test_plan_tp4_bf16_defaults():
    plan = plan70({"tp_size": 4})
    weights = 2 * L70_PARAMS / 4
    pool = 80 * GIB_EXACT * 0.819 - weights   # SGLang's own fraction for 80 GiB at TP4 (test_sglang_memory_default)
    kv = 2 * 80 * 2 * 128 * 2          # 8 kv heads over 4 GPUs = 2 per GPU
    assert plan.model == "meta-llama/Llama-3.1-70B-Instruct"
    assert plan.gpu_memory_gib == 80.0
    assert plan.mem_fraction == 0.819 and plan.mem_fraction_is_sglang_default is True
    assert plan.weights_gib == pytest.approx(weights / GIB_EXACT, rel=1e-12)
    assert plan.kv_pool_gib == pytest.approx(pool / GIB_EXACT, rel=1e-12)
    assert plan.kv_bytes_per_token == kv == 81920
    assert plan.kv_tokens == int(pool // kv)
    assert plan.needed_tokens == 131072
    assert plan.fp8_weights is False and plan.kv_dtype_bytes == 2
    assert plan.fits


def test_plan_with_pipeline_parallel_fraction_context_and_fp8_kv():
    plan = plan70({"tp_size": 2, "pp_size": 2, "mem_fraction_static": 0.9, "context_length": 8192,
                   "kv_cache_dtype": "fp8_e5m2"})
    weights = 2 * L70_PARAMS / 4
    kv = 2 * 40 * 4 * 128 * 1
    pool = 80 * GIB_EXACT * 0.9 - weights
    assert plan.mem_fraction == 0.9 and plan.mem_fraction_is_sglang_default is False
    assert plan.kv_bytes_per_token == kv
    assert plan.kv_tokens == int(pool // kv)
    assert plan.needed_tokens == 8192 and plan.kv_dtype_bytes == 1


@pytest.mark.parametrize("dtype, size", [("auto", 2), ("bf16", 2), ("bfloat16", 2), ("fp8_e4m3", 1),
                                         ("fp8_e5m2", 1), (None, 2), ("", 2), ("something-new", 2)])
def test_plan_kv_dtype_bytes(dtype, size):
    plan = plan70({"tp_size": 8, "kv_cache_dtype": dtype})
    assert plan.kv_dtype_bytes == size
    assert plan.kv_bytes_per_token == 2 * 80 * 1 * 128 * size


@pytest.mark.parametrize("quantization", ["fp8", "w8a8_fp8", "modelopt", "modelopt_fp8", "compressed-tensors"])
def test_plan_fp8_quantizations_halve_the_linear_weights(quantization):
    plan = plan70({"tp_size": 4, "quantization": quantization})
    assert plan.fp8_weights is True
    assert plan.weights_gib == pytest.approx((L70_LINEAR + 2 * L70_OTHER) / 4 / GIB_EXACT, rel=1e-12)


def test_plan_other_quantization_keeps_bf16_weights():
    plan = plan70({"tp_size": 4, "quantization": "awq"})
    assert plan.fp8_weights is False and plan.weights_gib == pytest.approx(2 * L70_PARAMS / 4 / GIB_EXACT)


def test_plan_fp8_checkpoint_without_the_flag():
    plan = plan_memory("m", dataclasses.replace(LLAMA31["70B"], weight_format="fp8"), {"tp_size": 4}, 80.0)
    assert plan.fp8_weights is True
    assert plan.weights_gib == pytest.approx((L70_LINEAR + 2 * L70_OTHER) / 4 / GIB_EXACT, rel=1e-12)


def test_plan_draft_models_add_their_weights():
    base = plan70({"tp_size": 4}).weights_gib * GIB_EXACT
    known = plan70({"tp_size": 4, "speculative_draft_model_path": "yuhuili/EAGLE3-LLaMA3.3-Instruct-70B"})
    other = plan70({"tp_size": 4, "speculative_draft_model_path": "someone/draft"})
    lmsys = plan70({"tp_size": 4,
                    "speculative_draft_model_path": "lmsys/SGLang-EAGLE3-Llama-3.3-70B-Instruct-SpecForge"})
    assert known.weights_gib * GIB_EXACT - base == pytest.approx(2_810_000_000)
    assert lmsys.weights_gib * GIB_EXACT - base == pytest.approx(2_810_000_000)
    assert other.weights_gib * GIB_EXACT - base == pytest.approx(3_000_000_000)


def test_plan_uneven_splits_round_down():
    # 8 KV heads over tp 3: 2 per GPU (integer); 80 layers over pp 3: 26 per stage.
    plan = plan70({"tp_size": 3, "pp_size": 3})
    assert plan.kv_bytes_per_token == 2 * 26 * 2 * 128 * 2 == 26624
    assert isinstance(plan.kv_bytes_per_token, int)


def test_plan_more_gpus_than_kv_heads_keeps_one_head_per_gpu():
    plan = plan70({"tp_size": 16})
    assert plan.kv_bytes_per_token == 2 * 80 * 1 * 128 * 2


def test_plan_defaults_to_one_gpu():
    plan = plan70({}, gpu_gib=200.0)
    assert plan.weights_gib == pytest.approx(2 * L70_PARAMS / GIB_EXACT)
    assert plan.kv_bytes_per_token == L70_KV_BF16_TP1
    plan = plan70({"tp_size": None, "pp_size": None}, gpu_gib=200.0)
    assert plan.kv_bytes_per_token == L70_KV_BF16_TP1


def test_plan_weights_above_the_pool_give_zero_tokens():
    plan = plan70({"tp_size": 1})          # 131 GiB of weights on one 80 GB GPU
    assert plan.kv_pool_gib < 0 and plan.kv_tokens == 0 and not plan.fits


def test_fits_at_the_bound():
    plan = plan70({"tp_size": 8})
    exact = dataclasses.replace(plan, needed_tokens=plan.kv_tokens)
    over = dataclasses.replace(plan, needed_tokens=plan.kv_tokens + 1)
    assert exact.fits is True and over.fits is False


def test_explain_spells_out_the_arithmetic():
    plan = memory.MemoryPlan(model="m", gpu_memory_gib=79.6, mem_fraction=0.819, mem_fraction_is_sglang_default=True,
                             weights_gib=32.85, kv_pool_gib=34.81, kv_bytes_per_token=81920, kv_tokens=456_000,
                             needed_tokens=131_072, fp8_weights=False, kv_dtype_bytes=2)
    assert plan.explain() == (
        "BF16 weights 32.9 GiB per GPU; usable 79.6 GiB x mem-fraction-static 0.819 (SGLang's own default for "
        "this GPU and shape) = 65.2 GiB; 34.8 GiB left for the BF16 KV cache at 80 KiB per token per GPU = 456,000 tokens "
        "(one 131,072-token sequence needs 131,072)")
    fp8 = dataclasses.replace(plan, mem_fraction=0.9, mem_fraction_is_sglang_default=False, fp8_weights=True,
                              kv_dtype_bytes=1, kv_bytes_per_token=40960)
    big = dataclasses.replace(plan, kv_bytes_per_token=1024 * 1000)
    assert "at 1000 KiB per token per GPU" in big.explain()
    assert fp8.explain() == (
        "FP8 weights 32.9 GiB per GPU; usable 79.6 GiB x mem-fraction-static 0.90 = 71.6 GiB; "
        "34.8 GiB left for the FP8 KV cache at 40 KiB per token per GPU = 456,000 tokens "
        "(one 131,072-token sequence needs 131,072)")
