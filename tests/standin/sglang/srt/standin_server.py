"""SGLang CPU STAND-IN server (not the real engine, no model).

Reproduces, on a CPU, what a deployment sees of SGLang 0.5.23's
``launch_server``. This module holds the server's state and its lifecycle; the rest is
split by concern: start-up knobs, logs and checks (standin_startup), the HTTP layer
(standin_http), the route table (standin_routes), the handlers (standin_info,
standin_generate, standin_openai, with standin_requests), metrics (standin_metrics;
standin_ops_metrics for the monitoring):

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
import os
import signal
import ssl
import sys
import threading
import time
import uuid
from typing import Any, Dict, Optional

from sglang.srt import standin_http, standin_routes
from sglang.srt import standin_startup as startup
from sglang.srt.standin_http import NOTICE
from sglang.srt.standin_ops_metrics import OpsMetrics
from sglang.srt.standin_startup import Knobs, configure_logging, startup_check_errors

logger = logging.getLogger("sglang.srt.standin")

DEFAULT_CONTEXT_LEN = 131072
STANDIN_MAX_TOTAL_NUM_TOKENS = 1_000_000
STANDIN_MAX_RUNNING_REQUESTS = 4096


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
        self.routes = standin_routes.build_routes(os.environ)
        self.metrics = OpsMetrics(self.served_model_name, self._engine_type(),
                                  getattr(a, "extra_metric_labels", None), server_args=a,
                                  max_running_requests=self.max_running_requests)
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
        t0 = time.time()
        startup.log_loading(self, t0)
        load_s = self.knobs.load_seconds
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
            app = standin_http.build_app(self, standin_routes.ROUTE_HANDLERS,
                                         standin_routes.not_implemented, self.routes, journal)
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
        except Exception as e:
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
