"""SGLang CPU STAND-IN: start-up (not the real engine, no model): the environment knobs, the log
format, the start-up checks that need no GPU, and the loading log lines.

Log lines are "[YYYY-mm-dd HH:MM:SS] msg" and "[... TP0] msg"; uvicorn's own lines are
"[YYYY-mm-dd HH:MM:SS] INFO:     msg" (standin_http.set_uvicorn_logging_configs).
"""

import logging
import math
import os
import sys
import time
from typing import List, Optional

from sglang.srt import standin_http
from sglang.srt.standin_http import NOTICE

logger = logging.getLogger("sglang.srt.standin")

DEFAULT_SHARDS = 4


# ---------------------------------------------------------------------------
# Environment knobs
# ---------------------------------------------------------------------------
def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        sys.stderr.write(f"{NOTICE}: {name}={raw!r} is not a number\n")
        raise SystemExit(1) from None
    if value < 0 or math.isnan(value):
        sys.stderr.write(f"{NOTICE}: {name}={raw!r} must be >= 0\n")
        raise SystemExit(1)
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    v = raw.strip().lower()
    if v in ("true", "1", "yes", "y"):
        return True
    if v in ("false", "0", "no", "n"):
        return False
    return default


class Knobs:
    def __init__(self):
        self.load_seconds = _env_float("STANDIN_LOAD_SECONDS", 2.0)
        self.warmup_seconds = _env_float("STANDIN_WARMUP_SECONDS", 1.0)
        self.shutdown_seconds = _env_float("STANDIN_SHUTDOWN_SECONDS", 1.0)
        self.token_delay = _env_float("STANDIN_TOKEN_DELAY_MS", 0.0) / 1000.0
        self.health_generate_seconds = _env_float("STANDIN_HEALTH_GENERATE_SECONDS", 1.0)
        # Real SGLang env vars the stand-in honours.
        self.health_generation = _env_bool("SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION", True)
        self.keep_alive = _env_float("SGLANG_TIMEOUT_KEEP_ALIVE", 5.0)
        self.http_parser = standin_http.http_parser_from_env()
        self.journal = standin_http.RequestJournal.from_env()


# ---------------------------------------------------------------------------
# Logging: "[YYYY-mm-dd HH:MM:SS] msg", "[... TP0] msg" (uvicorn's own lines are
# "[YYYY-mm-dd HH:MM:SS] INFO:     msg", see standin_http.set_uvicorn_logging_configs)
# ---------------------------------------------------------------------------
class _PrefixFilter(logging.Filter):
    def filter(self, record):
        if not hasattr(record, "prefix"):
            record.prefix = ""
        return True


def configure_logging(level_name: str):
    level = getattr(logging, str(level_name).upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_PrefixFilter())
    handler.setFormatter(
        logging.Formatter("[%(asctime)s%(prefix)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)


# ---------------------------------------------------------------------------
# Startup checks (the subset of SGLang's resolution asserts that need no GPU)
# ---------------------------------------------------------------------------
def startup_check_errors(a) -> List[str]:
    errors = []
    ep_join_mode = getattr(a, "ep_join_mode", None)
    tp = a.tp_size or 1
    pp = a.pp_size or 1
    nnodes = a.nnodes or 1
    if ep_join_mode != "scale" and (tp * pp) % nnodes != 0:
        errors.append("tp_size must be divisible by number of nodes")
    pp_mb = getattr(a, "pp_max_micro_batch_size", None)
    if pp_mb is not None and pp_mb < 1:
        errors.append(
            "pp_max_micro_batch_size must be a positive integer or None (for auto-compute). "
            f"Got: {pp_mb}"
        )
    if (a.dp_size or 1) > 1 and nnodes != 1:
        errors.append(
            "multi-node data-parallel replicas are not supported; use attention DP "
            "(--attn-dp-size) across nodes"
        )
    if getattr(a, "base_gpu_id", 0) is not None and a.base_gpu_id < 0:
        errors.append("base_gpu_id must be non-negative")
    if getattr(a, "gpu_id_step", 1) is not None and a.gpu_id_step < 1:
        errors.append("gpu_id_step must be positive")
    served = a.served_model_name if a.served_model_name is not None else a.model_path
    if served is not None and not str(served).lower().startswith(("s3://", "gs://", "az://")):
        if ":" in served:
            errors.append(
                "served_model_name cannot contain a colon (':') character. "
                "The colon is reserved for the 'model:adapter' syntax used in LoRA adapter specification. "
                f"Invalid value: '{served}'"
            )
    return errors


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
def shard_count(model_path) -> int:
    try:
        if model_path and os.path.isdir(model_path):
            n = len([f for f in os.listdir(model_path) if f.endswith(".safetensors")])
            if n:
                return n
    except OSError:
        pass
    return DEFAULT_SHARDS


def log_loading(app, t0: float):
    """The engine's loading lines, spread over STANDIN_LOAD_SECONDS (the port is still closed)."""
    a = app.args
    tp = a.tp_size or 1
    load_s = app.knobs.load_seconds

    def tp_log(rank, msg):
        prefix = f" TP{rank}" if (a.pp_size or 1) == 1 else f" PP0 TP{rank}"
        logger.info(msg, extra={"prefix": prefix})

    def nap(fraction):
        if load_s > 0:
            time.sleep(load_s * fraction)

    for r in range(tp):
        tp_log(r, "Init torch distributed begin.")
    nap(0.05)
    for r in range(tp):
        tp_log(r, "Init torch distributed ends. mem usage=0.00 GB")
    for r in range(tp):
        tp_log(r, "Load weight begin. avail mem=0.00 GB")
    if a.load_format != "dummy":
        shards = shard_count(app.model_path)
        shard_time = 0.55 / shards
        start = time.time()
        for i in range(shards + 1):
            elapsed = time.time() - start
            rate = (i / elapsed) if elapsed > 0 and i else 0.0
            remaining = ((shards - i) / rate) if rate else None
            sys.stderr.write(
                f"Loading safetensors checkpoint shards: {100 * i / shards:3.0f}% Completed | "
                f"{i}/{shards} [{_tqdm_time(elapsed)}<"
                f"{_tqdm_time(remaining) if remaining is not None else '?'}, "
                f"{(f'{rate:5.2f}it/s' if rate else '?it/s')}]\n"
            )
            sys.stderr.flush()
            if i < shards:
                nap(shard_time)
    else:
        nap(0.55)
    weight_elapsed = time.time() - t0
    for r in range(tp):
        tp_log(r, f"Load weight end. elapsed={weight_elapsed:.2f} s, type=CPUStandInNoModel, "
                  f"avail mem=0.00 GB, mem usage=0.00 GB.")
    nap(0.1)
    for r in range(tp):
        tp_log(r, f"KV Cache is allocated. #tokens: {app.max_total_num_tokens}, "
                  f"K size: 0.00 GB, V size: 0.00 GB")
    for r in range(tp):
        tp_log(r, "Memory pool end. avail mem=0.00 GB")
    graphs_disabled = bool(a.disable_cuda_graph) or a.cuda_graph_backend_decode == "disabled"
    if not graphs_disabled:
        backend = a.cuda_graph_backend_decode or "full"
        for r in range(tp):
            tp_log(r, f"Capture target decode CUDA graph begin. backend={backend}, "
                      f"num_tokens_per_req=1, avail mem=0.00 GB")
        nap(0.3)
        bs = [1, 2, 4, 8, 16, 24, 32]
        for r in range(tp):
            tp_log(r, f"Capture target decode CUDA graph end. bs={bs}, elapsed={load_s * 0.3:.2f} s, "
                      f"mem usage=0.00 GB, avail mem=0.00 GB.")
    else:
        nap(0.3)
    tp_log(0, f"max_total_num_tokens={app.max_total_num_tokens}, "
              f"chunked_prefill_size={a.chunked_prefill_size}, "
              f"max_prefill_tokens={a.max_prefill_tokens}, "
              f"max_running_requests={app.max_running_requests}, "
              f"context_len={app.context_len}, available_gpu_mem=0.00 GB")


def _tqdm_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
