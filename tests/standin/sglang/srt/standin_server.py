"""SGLang CPU STAND-IN server (not the real engine, no model).

Reproduces, on a CPU, what a deployment sees of SGLang 0.5.23's
``launch_server``:

* the startup log (``server_args={...}`` including the API keys, weight
  loading, memory pool, CUDA graph capture, uvicorn, warm-up, "fired up");
* the lifecycle: port closed while "loading", then 503 on /health,
  /health_generate and /ready while warming up, then 200; 503 again while
  draining after SIGTERM/SIGINT, then exit 0;
* the HTTP contract: routes, API-key middleware, OpenAI and native shapes,
  SSE streaming with chunked transfer encoding, Prometheus /metrics, served
  by FastAPI on uvicorn with httptools (or h11) and uvloop, as SGLang serves
  them (see standin_http.py).

Generated text is deterministic placeholder words (see standin_text.py);
"tokens" are whitespace-separated words.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import signal
import ssl
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from sglang.srt import standin_http
from sglang.srt import standin_routes as routes_mod
from sglang.srt.standin_http import NOTICE, Exchange, HTTPError
from sglang.srt.standin_text import (
    Generation,
    chat_prompt_text,
    count_prompt_tokens,
)
from sglang.version import __version__

logger = logging.getLogger("sglang.srt.standin")

STANDIN_SENTENCE = (
    "CPU stand-in for SGLang 0.5.23 used to test the deployment bundle: it "
    "returns deterministic placeholder words chosen by a hash of the prompt and "
    "is not a language model."
)

DEFAULT_CONTEXT_LEN = 131072
DEFAULT_MAX_NEW_TOKENS = 128  # SGLang's sampling-params default for /generate
STANDIN_MAX_TOTAL_NUM_TOKENS = 1_000_000
STANDIN_MAX_RUNNING_REQUESTS = 4096
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
        raise SystemExit(1)
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
# Metrics (Prometheus text, SGLang metric names)
# ---------------------------------------------------------------------------
TTFT_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
E2E_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400,
               600, 1200, 1800, 2400]


class _Histogram:
    def __init__(self, buckets):
        self.buckets = list(buckets)
        self.counts: Dict[str, List[int]] = {}
        self.sums: Dict[str, float] = {}

    def observe(self, key: str, value: float):
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        for i, b in enumerate(self.buckets):
            if value <= b:
                counts[i] += 1
        counts[-1] += 1
        self.sums[key] = self.sums.get(key, 0.0) + value


def _fmt_labels(labels: Dict[str, Any]) -> str:
    def esc(v):
        return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


def _fmt_num(v: float) -> str:
    return repr(float(v))


class Metrics:
    def __init__(self, model_name: str, engine_type: str, extra_labels):
        self.lock = threading.Lock()
        self.base = {"model_name": model_name, "engine_type": engine_type}
        if isinstance(extra_labels, dict):
            self.base.update({str(k): str(v) for k, v in extra_labels.items()})
        self.prompt_tokens = {"true": 0, "false": 0}
        self.generation_tokens = {"true": 0, "false": 0}
        self.num_requests = {"true": 0, "false": 0}
        self.running = 0
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.e2e = _Histogram(E2E_BUCKETS)
        self.last_gen_throughput = 0.0

    def start(self):
        with self.lock:
            self.running += 1

    def finish(self, streaming: bool, prompt_tokens: int, completion_tokens: int,
               ttft: float, e2e: float):
        key = "true" if streaming else "false"
        with self.lock:
            self.running -= 1
            self.prompt_tokens[key] += prompt_tokens
            self.generation_tokens[key] += completion_tokens
            self.num_requests[key] += 1
            self.ttft.observe(key, ttft)
            self.e2e.observe(key, e2e)
            if e2e > 0:
                self.last_gen_throughput = completion_tokens / e2e

    def abort(self):
        with self.lock:
            self.running -= 1

    def render(self) -> str:
        sched = dict(self.base, tp_rank="0", pp_rank="0", moe_ep_rank="0")
        out = ["# SGLang CPU STAND-IN metrics (not the real engine, no model): "
               "counts of the stand-in's placeholder requests"]
        with self.lock:
            def gauge(name, value, labels=sched):
                out.append(f"# HELP {name} Multiprocess metric")
                out.append(f"# TYPE {name} gauge")
                out.append(f"{name}{_fmt_labels(labels)} {_fmt_num(value)}")

            def counter(name, values):
                family = name[: -len("_total")]
                out.append(f"# HELP {family} Multiprocess metric")
                out.append(f"# TYPE {family} counter")
                for key in ("false", "true"):
                    out.append(f"{name}{_fmt_labels(dict(self.base, is_streaming=key))} "
                               f"{_fmt_num(values[key])}")

            def histogram(name, h):
                out.append(f"# HELP {name} Multiprocess metric")
                out.append(f"# TYPE {name} histogram")
                for key in ("false", "true"):
                    counts = h.counts.get(key, [0] * (len(h.buckets) + 1))
                    labels = dict(self.base, is_streaming=key)
                    for b, c in zip(h.buckets, counts):
                        out.append(f"{name}_bucket{_fmt_labels(dict(labels, le=_fmt_num(b)))} {_fmt_num(c)}")
                    out.append(f"{name}_bucket{_fmt_labels(dict(labels, le='+Inf'))} {_fmt_num(counts[-1])}")
                    out.append(f"{name}_count{_fmt_labels(labels)} {_fmt_num(counts[-1])}")
                    out.append(f"{name}_sum{_fmt_labels(labels)} {_fmt_num(h.sums.get(key, 0.0))}")

            gauge("sglang:num_running_reqs", self.running)
            gauge("sglang:num_queue_reqs", 0)
            gauge("sglang:gen_throughput", self.last_gen_throughput)
            gauge("sglang:cache_hit_rate", 0)
            gauge("sglang:token_usage", 0)
            counter("sglang:prompt_tokens_total", self.prompt_tokens)
            counter("sglang:generation_tokens_total", self.generation_tokens)
            counter("sglang:num_requests_total", self.num_requests)
            histogram("sglang:time_to_first_token_seconds", self.ttft)
            histogram("sglang:e2e_request_latency_seconds", self.e2e)
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# Request-level errors
# ---------------------------------------------------------------------------
def openai_error(message: str, err_type: str = "BadRequestError", status: int = 400,
                 param=None) -> HTTPError:
    return HTTPError(status, {"object": "error", "message": message, "type": err_type,
                              "param": param, "code": status})


def validation_error(errors: List[Dict[str, Any]]) -> HTTPError:
    """FastAPI RequestValidationError as SGLang turns it into a 400."""
    n = len(errors)
    exc_str = f"{n} validation error{'s' if n != 1 else ''}:\n" + "".join(f"  {e}\n" for e in errors)
    message = f"{exc_str} {errors}"
    return openai_error(message, err_type="Bad Request", status=400)


def json_body(raw: bytes) -> Any:
    """The request body as FastAPI's body parsing reports it: a 400 validation error."""
    if not raw:
        raise validation_error([{"type": "missing", "loc": ("body",),
                                 "msg": "Field required", "input": None}])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise validation_error([{"type": "json_invalid", "loc": ("body", 0),
                                 "msg": "JSON decode error", "input": {},
                                 "ctx": {"error": str(e)}}])


def _as_int(value, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise validation_error([{"type": "int_type", "loc": ("body", name),
                                 "msg": "Input should be a valid integer", "input": value}])
    return int(value)


def _stop_list(stop) -> List[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str)]
    return []


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------
class StandInServer:
    def __init__(self, server_args, knobs: Knobs):
        self.args = server_args
        self.knobs = knobs
        a = server_args
        self.resolved = a.resolved_dict()
        self.served_model_name = self.resolved["served_model_name"]
        self.model_path = a.model_path
        self.tokenizer_path = self.resolved["tokenizer_path"]
        self.model_config = self._read_model_config(a.model_path)
        ctx = a.context_length
        if ctx is None:
            ctx = self.model_config.get("max_position_embeddings") or DEFAULT_CONTEXT_LEN
        self.context_len = int(ctx)
        self.max_total_num_tokens = int(a.max_total_tokens or STANDIN_MAX_TOTAL_NUM_TOKENS)
        self.max_running_requests = int(a.max_running_requests or STANDIN_MAX_RUNNING_REQUESTS)
        self.max_req_input_len = min(self.context_len - 1, self.max_total_num_tokens - 1)
        self.api_key = a.api_key or None
        self.admin_api_key = a.admin_api_key or None
        self.enable_metrics = bool(a.enable_metrics)
        self.is_worker_node = (a.node_rank or 0) >= 1 and (a.nnodes or 1) > 1
        self.status = "loading"  # loading -> starting -> up
        self.gracefully_exit = False
        self.paused = False
        self.startup_time = None
        self.start_ts = time.time()
        self.rid_lock = threading.Lock()
        self.rids: Dict[str, float] = {}
        self.routes = routes_mod.build_routes(os.environ)
        self.metrics = Metrics(self.served_model_name, self._engine_type(),
                               getattr(a, "extra_metric_labels", None))
        self.http_server = None  # uvicorn.Server, once loading is over
        self.stop_event = threading.Event()
        self.signal_count = 0

    # ----- helpers ---------------------------------------------------------
    def _engine_type(self) -> str:
        mode = getattr(self.args, "disaggregation_mode", "null")
        return {"prefill": "prefill", "decode": "decode"}.get(mode, "unified")

    @staticmethod
    def _read_model_config(model_path) -> Dict[str, Any]:
        try:
            if model_path and os.path.isdir(model_path):
                with open(os.path.join(model_path, "config.json"), encoding="utf-8") as f:
                    cfg = json.load(f)
                return cfg if isinstance(cfg, dict) else {}
        except (OSError, ValueError):
            pass
        return {}

    def _shard_count(self) -> int:
        try:
            if self.model_path and os.path.isdir(self.model_path):
                n = len([f for f in os.listdir(self.model_path) if f.endswith(".safetensors")])
                if n:
                    return n
        except OSError:
            pass
        return DEFAULT_SHARDS

    def is_healthy(self) -> bool:
        return not self.gracefully_exit and self.status == "up"

    def is_ready(self) -> bool:
        return not self.paused and self.is_healthy()

    def new_rid(self, rid=None) -> str:
        rid = rid if isinstance(rid, str) and rid else uuid.uuid4().hex
        with self.rid_lock:
            self.rids[rid] = time.time()
        return rid

    def done_rid(self, rid: str):
        with self.rid_lock:
            self.rids.pop(rid, None)

    # ----- info payloads ---------------------------------------------------
    def model_info(self) -> Dict[str, Any]:
        a = self.args
        return {
            "model_path": self.model_path,
            "served_model_name": self.served_model_name,
            "tokenizer_path": self.tokenizer_path,
            "is_generation": True,
            "preferred_sampling_params": a.preferred_sampling_params,
            "weight_version": a.weight_version,
            "load_format": a.load_format,
            "reasoning_parser": a.reasoning_parser,
            "tool_call_parser": a.tool_call_parser,
            "disaggregation_mode": a.disaggregation_mode,
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": self.model_config.get("model_type"),
            "architectures": self.model_config.get("architectures"),
            "standin": STANDIN_SENTENCE,
        }

    def internal_state(self) -> Dict[str, Any]:
        state = dict(self.resolved)
        a = self.args
        state["world_size"] = (a.tp_size or 1) * (a.pp_size or 1)
        state["startup_time"] = self.startup_time
        state["effective_max_running_requests_per_dp"] = self.max_running_requests
        state["last_gen_throughput"] = self.metrics.last_gen_throughput
        state["memory_usage"] = {
            "weight": 0.0, "kvcache": 0.0, "startup_available": 0.0,
            "token_capacity": self.max_total_num_tokens, "token_capacity_swa": None,
            "graph": {},
        }
        return state

    def server_info(self) -> Dict[str, Any]:
        info = dict(self.resolved)
        info["launch_command"] = self.args.launch_command
        info.update({
            "status": "ready",
            "max_total_num_tokens": self.max_total_num_tokens,
            "max_req_input_len": self.max_req_input_len,
            "startup_time": self.startup_time,
            "hicache_object_layout": None,
        })
        info["kv_events"] = None
        info["internal_states"] = [self.internal_state()]
        info["version"] = __version__
        info["frontend"] = "python"
        info["standin"] = STANDIN_SENTENCE
        return info

    def model_card(self, model_id: str) -> Dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "sglang",
            "root": model_id,
            "parent": None,
            "max_model_len": self.context_len,
            "standin": STANDIN_SENTENCE,
        }

    # ----- generation core ---------------------------------------------------
    def check_lengths(self, prompt_tokens: int, max_new_tokens: Optional[int]) -> Optional[int]:
        """SGLang's TokenizerManager length checks; returns the (maybe truncated) limit."""
        allow_truncate = bool(getattr(self.args, "allow_auto_truncate", False))
        if prompt_tokens >= self.context_len:
            if not allow_truncate:
                raise ValueError(
                    f"The input ({prompt_tokens} tokens) is longer than the "
                    f"model's context length ({self.context_len} tokens)."
                )
            prompt_tokens = self.context_len
        if max_new_tokens is not None and max_new_tokens + prompt_tokens > self.context_len:
            if allow_truncate:
                return max(0, self.context_len - prompt_tokens)
            total = max_new_tokens + prompt_tokens
            raise ValueError(
                f"Requested token count exceeds the model's maximum context length "
                f"of {self.context_len} tokens. You requested a total of {total} "
                f"tokens: {prompt_tokens} tokens from the input messages and "
                f"{max_new_tokens} tokens for the completion. Please reduce the number "
                f"of tokens in the input messages or the completion to fit within the limit."
            )
        return max_new_tokens

    def log_prefill(self, prompt_tokens: int):
        logger.info(
            f"Prefill batch, #new-seq: 1, #new-token: {prompt_tokens}, #cached-token: 0, "
            f"token usage: 0.00, #running-req: {self.metrics.running}, #queue-req: 0",
            extra={"prefix": " TP0"},
        )

    def sleep_tokens(self, n: int):
        if self.knobs.token_delay > 0 and n > 0:
            time.sleep(self.knobs.token_delay * n)

    # ----- lifecycle ---------------------------------------------------------
    def run(self) -> int:
        a = self.args
        tp = a.tp_size or 1
        load_s = self.knobs.load_seconds
        t0 = time.time()

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
            shards = self._shard_count()
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
            tp_log(r, f"KV Cache is allocated. #tokens: {self.max_total_num_tokens}, "
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
        tp_log(0, f"max_total_num_tokens={self.max_total_num_tokens}, "
                  f"chunked_prefill_size={a.chunked_prefill_size}, "
                  f"max_prefill_tokens={a.max_prefill_tokens}, "
                  f"max_running_requests={self.max_running_requests}, "
                  f"context_len={self.context_len}, available_gpu_mem=0.00 GB")
        remaining = load_s - (time.time() - t0)
        if remaining > 0:
            time.sleep(remaining)
        self.startup_time = time.time() - t0

        # ---- serve (the port is closed until here, like the real engine) ----
        self.status = "up" if self.is_worker_node else "starting"
        serve_thread = self._start_http_server()
        if not self.http_server.started:
            # uvicorn logged why (e.g. the port is in use) and gave up with
            # STARTUP_FAILURE, which is what SGLang exits with too.
            return 3
        if not self.is_worker_node:
            threading.Thread(target=self._warmup, name="standin-warmup", daemon=True).start()

        # ---- wait for a signal (handled in the main thread) ----
        while not self.stop_event.wait(0.2):
            pass
        return self._shutdown(serve_thread)

    def _start_http_server(self) -> threading.Thread:
        """uvicorn.Server on a thread of its own, back once it listens or gave up.

        uvicorn installs no signal handlers off the main thread, so the main thread keeps
        the stand-in's: SGLang's own SIGTERM handler replaces uvicorn's too, to drain first."""
        journal = self.knobs.journal
        if self.is_worker_node:
            app = standin_http.build_worker_app(journal)
        else:
            app = standin_http.build_app(self, ROUTE_HANDLERS, h_not_implemented, self.routes, journal)
        self.http_server = standin_http.make_uvicorn_server(app, self.args, self.knobs.http_parser,
                                                            self.knobs.keep_alive)
        thread = threading.Thread(target=self.http_server.run, name="standin-uvicorn", daemon=True)
        thread.start()
        while thread.is_alive() and not self.http_server.started:
            time.sleep(0.02)
        return thread

    def _warmup(self):
        a = self.args
        if a.skip_server_warmup:
            self.status = "up"
            logger.info("The server is fired up and ready to roll!")
            return
        deadline = time.time() + self.knobs.warmup_seconds
        headers = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        host = a.host if a.host is not None else "127.0.0.1"
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        try:
            while True:
                if self.gracefully_exit:
                    return
                if time.time() >= deadline:
                    break
                time.sleep(min(0.2, max(0.0, deadline - time.time())))
            if a.ssl_certfile:
                conn = http.client.HTTPSConnection(host, a.port, timeout=30,
                                                   context=ssl._create_unverified_context())
            else:
                conn = http.client.HTTPConnection(host, a.port, timeout=30)
            conn.request("GET", "/model_info", headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"GET /model_info answered {r.status}")
            body = json.dumps({"sampling_params": {"temperature": 0, "max_new_tokens": 8},
                               "text": "The capital city of France is"})
            conn.request("POST", "/generate", body=body,
                         headers=dict(headers, **{"Content-Type": "application/json"}))
            r = conn.getresponse()
            text = r.read()
            conn.close()
            if r.status != 200:
                raise RuntimeError(f"POST /generate answered {r.status}: {text[:200]!r}")
        except Exception as e:  # noqa: BLE001 - the real server dies on any warmup error
            logger.error(f"Initialization failed. warmup error: {e}")
            os._exit(1)
        if self.gracefully_exit:
            return
        self.status = "up"
        logger.info("The server is fired up and ready to roll!")

    def on_signal(self, signum, frame=None):
        self.signal_count += 1
        name = signal.Signals(signum).name
        if self.status == "loading":
            logger.warning(f"{name} received while loading ({NOTICE}); exiting.")
            os._exit(128 + signum)
        if self.signal_count > 1:
            logger.warning(f"{name} received again during shutdown; exiting now.")
            os._exit(0)
        # SGLang registers its SIGTERM handler with loop.add_signal_handler, which
        # calls it without arguments: hence the literal "signum=None frame=None".
        logger.warning(
            f"{name} received. signum=None frame=None. Draining requests and shutting down..."
        )
        self.gracefully_exit = True
        self.stop_event.set()

    def _shutdown(self, serve_thread) -> int:
        deadline = time.time() + self.knobs.shutdown_seconds
        while time.time() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.time())))
        while True:
            with self.rid_lock:
                remaining = list(self.rids)
            logger.info(
                f"Gracefully exiting... Remaining number of requests {len(remaining)}. "
                f"Remaining requests remaining_rids={remaining!r}."
            )
            if not remaining:
                break
            time.sleep(0.5)
        # uvicorn logs "Shutting down" ... "Finished server process [pid]" itself.
        self.http_server.should_exit = True
        serve_thread.join()
        return 0


def _tqdm_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


# ---------------------------------------------------------------------------
# Route handlers: handler(h, app, method, path, query, raw), each on a thread of its
# own (standin_http.Exchange), so they may block, sleep per token and stream.
# ---------------------------------------------------------------------------
def h_ready(h: Exchange, app: StandInServer, *_):
    h.send(200 if app.is_ready() else 503)


def h_health(h: Exchange, app: StandInServer, method, path, *_):
    if app.gracefully_exit:
        logger.info("Health check request received during shutdown. Returning 503.")
        return h.send(503)
    if app.status != "up":
        return h.send(503)
    if not app.knobs.health_generation and path == "/health":
        return h.send(200)
    # The real handler injects a 1-token generation and polls every second.
    if app.knobs.health_generate_seconds > 0:
        time.sleep(app.knobs.health_generate_seconds)
    if app.gracefully_exit:
        return h.send(503)
    h.send(200)


def h_ping(h: Exchange, app: StandInServer, *_):
    h.send(200 if app.is_healthy() else 503)


def h_root(h: Exchange, app: StandInServer, *_):
    h.send_json(200, "SGLang is running (SGLang CPU STAND-IN: not the real engine, no model)")


def h_model_info(h: Exchange, app: StandInServer, method, path, *_):
    if path == "/get_model_info":
        logger.warning("Endpoint '/get_model_info' is deprecated and will be removed in a future "
                       "version. Please use '/model_info' instead.")
    h.send_json(200, app.model_info())


def h_server_info(h: Exchange, app: StandInServer, method, path, *_):
    if path == "/get_server_info":
        logger.warning("Endpoint '/get_server_info' is deprecated and will be removed in a future "
                       "version. Please use '/server_info' instead.")
    h.send_json(200, app.server_info())


def h_models(h: Exchange, app: StandInServer, *_):
    h.send_json(200, {"object": "list", "data": [app.model_card(app.served_model_name)]})


def h_model(h: Exchange, app: StandInServer, method, path, *_):
    model = path[len("/v1/models/"):]
    if model != app.served_model_name:
        return h.send_json(404, {"error": {
            "message": f"The model '{model}' does not exist",
            "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
    card = app.model_card(model)
    h.send_json(200, card)


def h_loads(h: Exchange, app: StandInServer, *_):
    h.send_json(200, {"timestamp": time.time(), "dp_rank_count": 1, "loads": [{
        "dp_rank": 0, "num_running_reqs": app.metrics.running, "num_waiting_reqs": 0,
        "num_total_reqs": app.metrics.running, "num_used_tokens": 0,
        "max_total_num_tokens": app.max_total_num_tokens, "token_usage": 0.0,
        "gen_throughput": app.metrics.last_gen_throughput, "cache_hit_rate": 0.0,
    }], "standin": STANDIN_SENTENCE})


def h_not_implemented(route_path: str):
    def handler(h: Exchange, app: StandInServer, *_):
        h.send_json(501, {"error": {"message": (
            f"{route_path} exists in SGLang 0.5.23 but is not implemented by the {NOTICE}.")}})
    return handler


def _text_response(text: str):
    def handler(h: Exchange, app: StandInServer, *_):
        h.send_text(200, text)
    return handler


def h_flush_cache(h: Exchange, app: StandInServer, method, path, query, raw):
    timeout = (query.get("timeout") or ["0"])[0]
    try:
        if float(timeout) < 0:
            raise ValueError
    except ValueError:
        raise validation_error([{"type": "greater_than_equal", "loc": ("query", "timeout"),
                                 "msg": "Input should be greater than or equal to 0",
                                 "input": timeout, "ctx": {"ge": 0.0}}])
    h.send_text(200, "Cache flushed.\nPlease check backend logs for more details. "
                     "(When there are running or waiting requests, the operation will not be performed.)\n")


def h_pause(h: Exchange, app: StandInServer, *_):
    app.paused = True
    h.send_json(200, {"message": "Generation paused successfully.", "status": "ok"})


def h_continue(h: Exchange, app: StandInServer, *_):
    app.paused = False
    h.send_json(200, {"message": "Generation continued successfully.", "status": "ok"})


def _require_json_content_type(h: Exchange):
    content_type = (h.headers.get("Content-Type") or "").lower()
    if content_type.split(";", 1)[0].strip() != "application/json":
        raise validation_error([{
            "loc": ["header", "content-type"],
            "msg": "Unsupported Media Type: Only 'application/json' is allowed",
            "type": "value_error"}])


# ---- /generate ---------------------------------------------------------------
def h_generate(h: Exchange, app: StandInServer, method, path, query, raw):
    body = json_body(raw)
    if not isinstance(body, dict):
        raise validation_error([{"type": "model_attributes_type", "loc": ("body",),
                                 "msg": "Input should be a valid dictionary or object",
                                 "input": body}])
    text, input_ids = body.get("text"), body.get("input_ids")
    if text is None and input_ids is None and body.get("input_embeds") is None:
        return h.send_json(400, {"error": {"message":
                                           "Either text, input_ids or input_embeds should be provided."}})
    if text is not None and input_ids is not None:
        return h.send_json(400, {"error": {"message":
                                           "Either text or input_ids should be provided."}})
    sp = body.get("sampling_params") or {}
    if not isinstance(sp, dict):
        sp = {}
    batch = (isinstance(text, list)) or (
        isinstance(input_ids, list) and input_ids and isinstance(input_ids[0], list))
    prompts = (text if isinstance(text, list) else input_ids) if batch else [
        text if text is not None else input_ids]
    rid = body.get("rid")
    rids = rid if isinstance(rid, list) else [rid] * len(prompts)
    stream = bool(body.get("stream"))
    incremental = bool(getattr(app.args, "incremental_streaming_output", False))

    items = []
    try:
        max_new = _as_int(sp.get("max_new_tokens"), "max_new_tokens")
        for p in prompts:
            ptoks = count_prompt_tokens(p)
            limit = app.check_lengths(ptoks, max_new)
            default_limit = max(0, min(DEFAULT_MAX_NEW_TOKENS, app.context_len - ptoks))
            gen = Generation(p, limit, bool(sp.get("ignore_eos")), _stop_list(sp.get("stop")),
                             default_max_new_tokens=default_limit)
            items.append((p, ptoks, gen))
    except ValueError as e:
        return h.send_json(400, {"error": {"message": str(e)}})

    weight_version = app.args.weight_version
    t0 = time.time()

    def meta(rid_, ptoks, gen, k, finished, first_ts):
        m = {
            "id": rid_,
            "finish_reason": gen.finish if finished else None,
            "prompt_tokens": ptoks,
            "weight_version": weight_version,
            "num_retractions": 0,
            "reasoning_tokens": 0,
            "completion_tokens": k,
            "cached_tokens": 0,
        }
        if finished:
            m["e2e_latency"] = time.time() - t0
            m["response_sent_to_client_ts"] = time.time()
        return m

    ids = [app.new_rid(r) for r in rids]
    for _ in items:
        app.metrics.start()
    finished_count = 0
    try:
        for (_, ptoks, _g) in items:
            app.log_prefill(ptoks)
        if not stream:
            outs = []
            for i, (p, ptoks, gen) in enumerate(items):
                app.sleep_tokens(gen.completion_tokens)
                outs.append({"text": gen.text, "output_ids": list(gen.output_ids),
                             "meta_info": meta(ids[i], ptoks, gen, gen.completion_tokens, True, t0)})
                e2e = time.time() - t0
                app.metrics.finish(False, ptoks, gen.completion_tokens,
                                   e2e if gen.completion_tokens else e2e, e2e)
                finished_count += 1
            return h.send_json(200, outs if batch else outs[0])

        h.start_stream()
        for i, (p, ptoks, gen) in enumerate(items):
            first_ts = None
            steps = gen.stream()
            prev_text, prev_ids = "", 0
            if not steps:
                out = {"text": "", "output_ids": [],
                       "meta_info": meta(ids[i], ptoks, gen, 0, True, t0)}
                if batch:
                    out["index"] = i
                h.write_event("data: " + json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n\n")
            for k, (cum_text, cum_ids) in enumerate(steps, start=1):
                if k > 1:
                    app.sleep_tokens(1)
                elif app.knobs.token_delay > 0:
                    app.sleep_tokens(1)
                if first_ts is None:
                    first_ts = time.time()
                finished = k == len(steps)
                if incremental:
                    out = {"text": cum_text[len(prev_text):], "output_ids": cum_ids[prev_ids:]}
                else:
                    out = {"text": cum_text, "output_ids": list(cum_ids)}
                out["meta_info"] = meta(ids[i], ptoks, gen, k, finished, first_ts)
                if batch:
                    out["index"] = i
                prev_text, prev_ids = cum_text, len(cum_ids)
                h.write_event("data: " + json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n\n")
            e2e = time.time() - t0
            app.metrics.finish(True, ptoks, gen.completion_tokens,
                               (first_ts or time.time()) - t0, e2e)
            finished_count += 1
        h.write_event("data: [DONE]\n\n")
        h.end_stream()
    finally:
        for _ in range(len(items) - finished_count):
            app.metrics.abort()
        for r in ids:
            app.done_rid(r)


# ---- OpenAI ------------------------------------------------------------------
def _usage(app: StandInServer, prompt_tokens: int, completion_tokens: int) -> Dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": ({"cached_tokens": 0} if app.args.enable_cache_report else None),
        "reasoning_tokens": 0,
        "completion_tokens_details": None,
    }


def _include_usage(app: StandInServer, body: Dict[str, Any]) -> bool:
    default = bool(getattr(app.args, "stream_response_default_include_usage", False))
    so = body.get("stream_options")
    if isinstance(so, dict) and so:
        return bool(so.get("include_usage")) or default
    return default


def _openai_common(h: Exchange, app: StandInServer, raw: bytes, required: str) -> Dict[str, Any]:
    _require_json_content_type(h)
    body = json_body(raw)
    if not isinstance(body, dict):
        raise validation_error([{"type": "model_attributes_type", "loc": ("body",),
                                 "msg": "Input should be a valid dictionary or object",
                                 "input": body}])
    if body.get(required) is None:
        raise validation_error([{"type": "missing", "loc": ("body", required),
                                 "msg": "Field required", "input": body}])
    n = _as_int(body.get("n", 1), "n") or 1
    if n < 1:
        raise openai_error("n must be at least 1")
    body["n"] = n
    return body


def h_chat(h: Exchange, app: StandInServer, method, path, query, raw):
    body = _openai_common(h, app, raw, "messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise validation_error([{"type": "list_type", "loc": ("body", "messages"),
                                 "msg": "Input should be a valid list", "input": messages}])
    model = body.get("model") or "default"
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    max_tokens = _as_int(max_tokens, "max_completion_tokens")
    prompt_text = chat_prompt_text(messages)
    ptoks = count_prompt_tokens(prompt_text)
    try:
        limit = app.check_lengths(ptoks, max_tokens)
    except ValueError as e:
        raise openai_error(str(e))
    gen = Generation(messages, limit, bool(body.get("ignore_eos")), _stop_list(body.get("stop")),
                     default_max_new_tokens=max(0, app.context_len - ptoks))
    n = body["n"]
    rid = app.new_rid(body.get("rid"))
    created = int(time.time())
    t0 = time.time()
    app.metrics.start()
    done = False
    try:
        app.log_prefill(ptoks)
        finish = gen.finish["type"]
        matched = gen.finish.get("matched")
        if not body.get("stream"):
            app.sleep_tokens(gen.completion_tokens)
            choices = [{
                "index": i,
                "message": {"role": "assistant", "content": gen.text, "reasoning_content": None},
                "logprobs": None,
                "finish_reason": finish,
                "matched_stop": matched,
            } for i in range(n)]
            resp = {
                "id": rid, "object": "chat.completion", "created": created, "model": model,
                "choices": choices, "usage": _usage(app, ptoks, gen.completion_tokens * n),
                "metadata": {"weight_version": app.args.weight_version},
            }
            e2e = time.time() - t0
            app.metrics.finish(False, ptoks, gen.completion_tokens * n, e2e, e2e)
            done = True
            return h.send_json(200, resp)

        include_usage = _include_usage(app, body)
        continuous = bool((body.get("stream_options") or {}).get("continuous_usage_stats")) \
            if isinstance(body.get("stream_options"), dict) else False

        def chunk(index, delta, finish_reason=None, matched_stop=None, usage=None):
            d = {"reasoning_content": None}
            d.update(delta)
            c = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": index, "delta": d, "logprobs": None,
                              "finish_reason": finish_reason, "matched_stop": matched_stop}]}
            if usage is not None:
                c["usage"] = usage
            return "data: " + json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "\n\n"

        h.start_stream()
        first_ts = None
        steps = gen.stream()
        for i in range(n):
            h.write_event(chunk(i, {"role": "assistant", "content": ""}))
            prev = ""
            for k, (cum_text, _ids) in enumerate(steps, start=1):
                app.sleep_tokens(1)
                if first_ts is None:
                    first_ts = time.time()
                delta = cum_text[len(prev):]
                prev = cum_text
                if delta:
                    usage = _usage(app, ptoks, k) if continuous else None
                    h.write_event(chunk(i, {"content": delta}, usage=usage))
        for i in range(n):
            h.write_event(chunk(i, {}, finish_reason=finish, matched_stop=matched))
        if include_usage:
            u = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [], "usage": _usage(app, ptoks, gen.completion_tokens * n)}
            h.write_event("data: " + json.dumps(u, ensure_ascii=False, separators=(",", ":")) + "\n\n")
        h.write_event("data: [DONE]\n\n")
        h.end_stream()
        e2e = time.time() - t0
        app.metrics.finish(True, ptoks, gen.completion_tokens * n, (first_ts or time.time()) - t0, e2e)
        done = True
    finally:
        if not done:
            app.metrics.abort()
        app.done_rid(rid)


def h_completions(h: Exchange, app: StandInServer, method, path, query, raw):
    body = _openai_common(h, app, raw, "prompt")
    prompt = body["prompt"]
    model = body.get("model") or "default"
    max_tokens = _as_int(body.get("max_tokens", 16), "max_tokens")
    # prompt: str | list[str] | list[int] | list[list[int]]
    if isinstance(prompt, list) and prompt and (isinstance(prompt[0], str) or isinstance(prompt[0], list)):
        prompts = prompt
    else:
        prompts = [prompt]
    n = body["n"]
    gens = []
    try:
        for p in prompts:
            ptoks = count_prompt_tokens(p)
            limit = app.check_lengths(ptoks, max_tokens)
            gens.append((p, ptoks, Generation(p, limit, bool(body.get("ignore_eos")),
                                              _stop_list(body.get("stop")),
                                              default_max_new_tokens=max(0, app.context_len - ptoks))))
    except ValueError as e:
        raise openai_error(str(e))
    echo = bool(body.get("echo"))
    rid = app.new_rid(body.get("rid"))
    created = int(time.time())
    t0 = time.time()
    total_prompt = sum(pt for _, pt, _ in gens)
    total_completion = sum(g.completion_tokens for _, _, g in gens) * n
    app.metrics.start()
    done = False
    try:
        for _, pt, _ in gens:
            app.log_prefill(pt)
        if not body.get("stream"):
            app.sleep_tokens(max(g.completion_tokens for _, _, g in gens) if gens else 0)
            choices = []
            idx = 0
            for p, _, g in gens:
                for _ in range(n):
                    text = (p if (echo and isinstance(p, str)) else "") + g.text
                    choices.append({"index": idx, "text": text, "logprobs": None,
                                    "finish_reason": g.finish["type"],
                                    "matched_stop": g.finish.get("matched")})
                    idx += 1
            resp = {"id": rid, "object": "text_completion", "created": created, "model": model,
                    "choices": choices, "usage": _usage(app, total_prompt, total_completion),
                    "metadata": {"weight_version": app.args.weight_version}}
            e2e = time.time() - t0
            app.metrics.finish(False, total_prompt, total_completion, e2e, e2e)
            done = True
            return h.send_json(200, resp)

        include_usage = _include_usage(app, body)

        def chunk(index, text, finish_reason=None, matched_stop=None):
            c = {"id": rid, "object": "text_completion", "created": created, "model": model,
                 "choices": [{"index": index, "text": text, "logprobs": None,
                              "finish_reason": finish_reason, "matched_stop": matched_stop}],
                 "usage": None}
            return "data: " + json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "\n\n"

        h.start_stream()
        first_ts = None
        idx = 0
        for p, _, g in gens:
            steps = g.stream()
            for _ in range(n):
                prev = ""
                if echo and isinstance(p, str):
                    h.write_event(chunk(idx, p))
                if not steps:
                    h.write_event(chunk(idx, "", g.finish["type"], g.finish.get("matched")))
                for k, (cum_text, _ids) in enumerate(steps, start=1):
                    app.sleep_tokens(1)
                    if first_ts is None:
                        first_ts = time.time()
                    finished = k == len(steps)
                    h.write_event(chunk(idx, cum_text[len(prev):],
                                        g.finish["type"] if finished else None,
                                        g.finish.get("matched") if finished else None))
                    prev = cum_text
                idx += 1
        if include_usage:
            u = {"id": rid, "object": "text_completion", "created": created, "model": model,
                 "choices": [], "usage": {"prompt_tokens": total_prompt,
                                          "total_tokens": total_prompt + total_completion,
                                          "completion_tokens": total_completion,
                                          "reasoning_tokens": 0}}
            if app.args.enable_cache_report:
                u["usage"]["prompt_tokens_details"] = {"cached_tokens": 0}
            h.write_event("data: " + json.dumps(u, ensure_ascii=False, separators=(",", ":")) + "\n\n")
        h.write_event("data: [DONE]\n\n")
        h.end_stream()
        e2e = time.time() - t0
        app.metrics.finish(True, total_prompt, total_completion, (first_ts or time.time()) - t0, e2e)
        done = True
    finally:
        if not done:
            app.metrics.abort()
        app.done_rid(rid)


ROUTE_HANDLERS = {
    "/ready": h_ready,
    "/health": h_health,
    "/health_generate": h_health,
    "/ping": h_ping,
    "/": h_root,
    "/model_info": h_model_info,
    "/get_model_info": h_model_info,
    "/server_info": h_server_info,
    "/get_server_info": h_server_info,
    "/v1/models": h_models,
    "/v1/models/{model:path}": h_model,
    "/v1/loads": h_loads,
    "/generate": h_generate,
    "/v1/chat/completions": h_chat,
    "/v1/completions": h_completions,
    "/flush_cache": h_flush_cache,
    "/pause_generation": h_pause,
    "/continue_generation": h_continue,
    "/start_profile": _text_response("Start profiling.\n"),
    "/stop_profile": _text_response("Stop profiling. This will take some time.\n"),
    "/freeze_gc": _text_response("Garbage collection frozen.\n"),
    "/start_expert_distribution_record": _text_response("Start recording the expert distribution.\n"),
    "/stop_expert_distribution_record": _text_response("Stop recording the expert distribution.\n"),
    "/dump_expert_distribution_record": _text_response("Dump expert distribution record.\n"),
}


# ---------------------------------------------------------------------------
# Entry point used by sglang.launch_server
# ---------------------------------------------------------------------------
def launch_server(server_args) -> int:
    knobs = Knobs()
    a = server_args
    configure_logging(a.log_level)

    errors = startup_check_errors(a)
    if errors:
        logger.error(f"{NOTICE}: startup check failed the way SGLang's resolution asserts do:")
        sys.stderr.write(f"AssertionError: {errors[0]}\n")
        sys.stderr.flush()
        return 1

    app = StandInServer(a, knobs)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, app.on_signal)

    logger.info(f"server_args={app.resolved!r}")

    if (a.tokenizer_worker_num or 1) > 1 and a.api_key:
        # Raised by each tokenizer worker at start-up (http_server.py init_multi_tokenizer).
        logger.error(f"{NOTICE}: tokenizer worker failed to start:")
        sys.stderr.write("AssertionError: API key is not supported in multi-tokenizer mode\n")
        sys.stderr.flush()
        return 1

    return app.run()
