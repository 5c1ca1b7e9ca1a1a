"""Memory arithmetic: weights per GPU plus the KV cache, against usable memory. The renderer and
the preflight use the same code."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_context: int
    weight_format: str = "bf16"      # bf16 | fp8 (linear layers in FP8, the rest in BF16)
    tied_embeddings: bool = False

    @property
    def linear_params(self) -> int:
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    @property
    def other_params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return embeddings + (2 * self.layers + 1) * self.hidden

    def weight_bytes(self, fp8: bool) -> int:
        return self.linear_params * (1 if fp8 else 2) + self.other_params * 2


LLAMA31 = {
    "8B": ModelShape(32, 4096, 14336, 32, 8, 128, 128256, 131072),
    "70B": ModelShape(80, 8192, 28672, 64, 8, 128, 128256, 131072),
    "405B": ModelShape(126, 16384, 53248, 128, 8, 128, 128256, 131072),
}
FP8 = {"weight_format": "fp8"}
# Built-in table for when the model's config.json is not cached yet.
KNOWN_MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": LLAMA31["8B"],
    "meta-llama/Llama-3.1-70B-Instruct": LLAMA31["70B"],
    "meta-llama/Llama-3.1-405B-Instruct": LLAMA31["405B"],
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8": dataclasses.replace(LLAMA31["8B"], **FP8),
    "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8": dataclasses.replace(LLAMA31["70B"], **FP8),
    "nvidia/Llama-3.1-70B-Instruct-FP8": dataclasses.replace(LLAMA31["70B"], **FP8),
    "meta-llama/Llama-3.1-405B-Instruct-FP8": dataclasses.replace(LLAMA31["405B"], **FP8),
}
# EAGLE3 drafts: one decoder layer plus their own LM head; sizes from the model cards.
KNOWN_DRAFT_BYTES = {
    "lmsys/SGLang-EAGLE3-Llama-3.3-70B-Instruct-SpecForge": int(2.81e9),
    "yuhuili/EAGLE3-LLaMA3.3-Instruct-70B": int(2.81e9),
}
FP8_QUANTIZATIONS = {"fp8", "w8a8_fp8", "modelopt", "modelopt_fp8", "compressed-tensors"}
KV_BYTES = {"auto": None, "bf16": 2, "bfloat16": 2, "fp8_e4m3": 1, "fp8_e5m2": 1}

# SGLang 0.5.23 sizes --mem-fraction-static itself when it is unset
# (sglang/srt/arg_groups/memory_hook.py, handle_gpu_memory_settings): it reserves room for
# activations and CUDA graphs from the GPU's memory and the parallel shape, and keeps the rest.
# The arithmetic uses the same figure, so a preset that leaves the flag to SGLang is planned with
# what SGLang will pick. Its capacity tiers: below this many MiB -> (chunked prefill tokens,
# decode graph batch at TP < 4, at TP >= 4).
SGLANG_CAPACITY_TIERS = ((20 * 1024, 2048, 8, 8), (35 * 1024, 4096, 48, 160), (60 * 1024, 4096, 32, 160),
                         (90 * 1024, 8192, 256, 512), (160 * 1024, 8192, 256, 512),
                         (float("inf"), 16384, 512, 512))


def _prefill_graph_sizes(max_tokens: int) -> list[int]:
    """SGLang's prefill CUDA graph capture sizes (generate_prefill_cuda_graph_batch_sizes)."""
    sizes = (list(range(4, 33, 4)) + list(range(48, 257, 16)) + list(range(288, 513, 32)) +
             list(range(576, 1025, 64)) + list(range(1280, 4097, 256)) + list(range(4608, max_tokens + 1, 512)))
    return [size for size in sizes if size <= max_tokens]


def sglang_default_mem_fraction(gpu_memory_mib: float, values: dict, cuda: bool = True) -> float:
    """What SGLang 0.5.23 picks for --mem-fraction-static on this GPU for these flag values, for a
    dense non-MLA text model served as one engine (no PD disaggregation, attention DP or DeepEP,
    which the presets do not use). `cuda`: NVIDIA; ROCm has no breakable prefill graphs by default."""
    tp, pp = int(values.get("tp_size") or 1), int(values.get("pp_size") or 1)
    _, chunk, small_bs, large_bs = next(tier for tier in SGLANG_CAPACITY_TIERS if gpu_memory_mib < tier[0])
    chunk = int(values.get("chunked_prefill_size") or chunk)
    decode_bs = values.get("cuda_graph_max_bs_decode")
    if not decode_bs:
        decode_bs = small_bs if tp < 4 else large_bs
        if values.get("max_running_requests"):
            decode_bs = min(decode_bs, int(values["max_running_requests"]))
    no_graphs = "disabled" if values.get("disable_cuda_graph") else None
    decode_graphs = no_graphs or values.get("cuda_graph_backend_decode") or "full"
    prefill_graphs = (no_graphs or values.get("cuda_graph_backend_prefill") or
                      ("breakable" if cuda and pp == 1 else "disabled"))
    graphs = 0.0 if decode_graphs == "disabled" else int(decode_bs) * 2
    if prefill_graphs != "disabled":
        prefill_tokens = int(values.get("cuda_graph_max_bs_prefill") or (chunk if pp == 1 else min(chunk, 8192)))
        graphs += len(_prefill_graph_sizes(prefill_tokens)) * 8
    reserved = 512 + max(chunk, 2048) * 1.5 + tp * pp / 8 * 1024 + graphs
    if gpu_memory_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_memory_mib - reserved) / gpu_memory_mib, 3)


def is_fp8_quantization(quant: dict) -> bool:
    """FP8 in any of the checkpoint formats: fp8/ModelOpt name it; compressed-tensors (RedHatAI)
    describes it as 8-bit float weights in its config groups."""
    if "fp8" in json.dumps(quant).lower():
        return True
    groups = (quant.get("config_groups") or {}).values()
    return any((group.get("weights") or {}).get("num_bits") == 8 and
               (group.get("weights") or {}).get("type") == "float" for group in groups)


def shape_from_config(config: dict) -> ModelShape:
    heads = config["num_attention_heads"]
    is_fp8 = is_fp8_quantization(config.get("quantization_config") or {})
    return ModelShape(layers=config["num_hidden_layers"], hidden=config["hidden_size"],
                      intermediate=config["intermediate_size"], heads=heads,
                      kv_heads=config.get("num_key_value_heads", heads),
                      head_dim=config.get("head_dim") or config["hidden_size"] // heads,
                      vocab=config["vocab_size"], max_context=config.get("max_position_embeddings", 0),
                      weight_format="fp8" if is_fp8 else "bf16",
                      tied_embeddings=bool(config.get("tie_word_embeddings")))


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    model: str
    gpu_memory_gib: float
    mem_fraction: float
    mem_fraction_is_sglang_default: bool     # the flag is unset: SGLang's own sizing, computed here
    weights_gib: float          # per GPU, draft model included
    kv_pool_gib: float          # per GPU
    kv_bytes_per_token: int     # per GPU
    kv_tokens: int
    needed_tokens: int          # one full-length sequence
    fp8_weights: bool
    kv_dtype_bytes: int

    @property
    def fits(self) -> bool:
        return self.kv_tokens >= self.needed_tokens

    def explain(self) -> str:
        fraction = (f"{self.mem_fraction:.3f} (SGLang's own default for this GPU and shape)"
                    if self.mem_fraction_is_sglang_default else f"{self.mem_fraction:.2f}")
        weights = "FP8" if self.fp8_weights else "BF16"
        kv = {1: "FP8", 2: "BF16"}[self.kv_dtype_bytes]
        return (f"{weights} weights {self.weights_gib:.1f} GiB per GPU; usable {self.gpu_memory_gib:.1f} GiB "
                f"x mem-fraction-static {fraction} = {self.gpu_memory_gib * self.mem_fraction:.1f} GiB; "
                f"{self.kv_pool_gib:.1f} GiB left for the {kv} KV cache at "
                f"{self.kv_bytes_per_token / 1024:.0f} KiB per token per GPU = {self.kv_tokens:,} tokens "
                f"(one {self.needed_tokens:,}-token sequence needs {self.needed_tokens:,})")


def plan_memory(model: str, shape: ModelShape, values: dict, gpu_memory_gib: float,
                cuda: bool = True) -> MemoryPlan:
    """Weights and KV cache per GPU for one engine replica, from the resolved flag values; with no
    --mem-fraction-static, the one SGLang will pick (`cuda`: on NVIDIA rather than ROCm)."""
    tp, pp = int(values.get("tp_size") or 1), int(values.get("pp_size") or 1)
    quantization = values.get("quantization")
    fp8_weights = shape.weight_format == "fp8" or quantization in FP8_QUANTIZATIONS
    weights = shape.weight_bytes(fp8_weights) / (tp * pp)
    draft = values.get("speculative_draft_model_path")
    if draft:
        weights += KNOWN_DRAFT_BYTES.get(draft, 3 * 10 ** 9)
    kv_dtype_bytes = KV_BYTES.get(values.get("kv_cache_dtype") or "auto") or 2
    kv_heads_per_gpu = max(1, shape.kv_heads // tp)
    kv_per_token = 2 * (shape.layers // pp) * kv_heads_per_gpu * shape.head_dim * kv_dtype_bytes
    configured = values.get("mem_fraction_static")
    fraction = float(configured) if configured else sglang_default_mem_fraction(gpu_memory_gib * 1024, values, cuda)
    pool = gpu_memory_gib * GIB * fraction - weights
    needed = int(values.get("context_length") or shape.max_context)
    return MemoryPlan(model=model, gpu_memory_gib=gpu_memory_gib, mem_fraction=fraction,
                      mem_fraction_is_sglang_default=not configured, weights_gib=weights / GIB,
                      kv_pool_gib=pool / GIB, kv_bytes_per_token=kv_per_token,
                      kv_tokens=max(0, int(pool // kv_per_token)), needed_tokens=needed,
                      fp8_weights=fp8_weights, kv_dtype_bytes=kv_dtype_bytes)


def model_shape(model: str, environ) -> ModelShape | None:
    """From the model's config.json when it is cached or local, else the built-in table."""
    candidates = [Path(model) / "config.json"]
    hub = Path(environ.get("HF_HUB_CACHE") or Path(environ.get("HF_HOME") or
               Path.home() / ".cache" / "huggingface") / "hub")
    candidates += sorted((hub / ("models--" + model.replace("/", "--")) / "snapshots").glob("*/config.json"))
    for path in candidates:
        try:
            return shape_from_config(json.loads(path.read_text()))
        except (OSError, KeyError, ValueError):
            continue
    return KNOWN_MODELS.get(model)


