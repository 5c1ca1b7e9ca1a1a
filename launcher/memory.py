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
# SGLang sizes mem_fraction_static itself when it is unset; the arithmetic assumes this value.
ASSUMED_MEM_FRACTION = 0.85


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
    mem_fraction_assumed: bool
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
        fraction = f"{self.mem_fraction:.2f}" + (" (assumed, SGLang picks its own when unset)"
                                                  if self.mem_fraction_assumed else "")
        weights = "FP8" if self.fp8_weights else "BF16"
        kv = {1: "FP8", 2: "BF16"}[self.kv_dtype_bytes]
        return (f"{weights} weights {self.weights_gib:.1f} GiB per GPU; usable {self.gpu_memory_gib:.1f} GiB "
                f"x mem-fraction-static {fraction} = {self.gpu_memory_gib * self.mem_fraction:.1f} GiB; "
                f"{self.kv_pool_gib:.1f} GiB left for the {kv} KV cache at "
                f"{self.kv_bytes_per_token / 1024:.0f} KiB per token per GPU = {self.kv_tokens:,} tokens "
                f"(one {self.needed_tokens:,}-token sequence needs {self.needed_tokens:,})")


def plan_memory(model: str, shape: ModelShape, values: dict, gpu_memory_gib: float) -> MemoryPlan:
    """Weights and KV cache per GPU for one engine replica, from the resolved flag values."""
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
    fraction = values.get("mem_fraction_static")
    pool = gpu_memory_gib * GIB * (fraction or ASSUMED_MEM_FRACTION) - weights
    needed = int(values.get("context_length") or shape.max_context)
    return MemoryPlan(model=model, gpu_memory_gib=gpu_memory_gib, mem_fraction=fraction or ASSUMED_MEM_FRACTION,
                      mem_fraction_assumed=fraction is None, weights_gib=weights / GIB,
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


