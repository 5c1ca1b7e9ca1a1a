"""SGLang CPU STAND-IN: the health, info and control routes (not the real engine, no model).

Handlers are handler(h, app, method, path, query, raw), each on a thread of its own
(standin_http.Exchange), with `app` the StandInServer.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Dict

from sglang.srt.standin_http import Exchange
from sglang.srt.standin_requests import validation_error
from sglang.version import __version__

if TYPE_CHECKING:
    from sglang.srt.standin_server import StandInServer

logger = logging.getLogger("sglang.srt.standin")

STANDIN_SENTENCE = (
    "CPU stand-in for SGLang 0.5.23 used to test the deployment bundle: it "
    "returns deterministic placeholder words chosen by a hash of the prompt and "
    "is not a language model."
)


# ---- payloads --------------------------------------------------------------
def model_info(app) -> Dict[str, Any]:
    a = app.args
    return {
        "model_path": app.model_path,
        "served_model_name": app.served_model_name,
        "tokenizer_path": app.tokenizer_path,
        "is_generation": True,
        "preferred_sampling_params": a.preferred_sampling_params,
        "weight_version": a.weight_version,
        "load_format": a.load_format,
        "reasoning_parser": a.reasoning_parser,
        "tool_call_parser": a.tool_call_parser,
        "disaggregation_mode": a.disaggregation_mode,
        "has_image_understanding": False,
        "has_audio_understanding": False,
        "model_type": app.model_config.get("model_type"),
        "architectures": app.model_config.get("architectures"),
        "standin": STANDIN_SENTENCE,
    }


def internal_state(app) -> Dict[str, Any]:
    state = dict(app.resolved)
    a = app.args
    state["world_size"] = (a.tp_size or 1) * (a.pp_size or 1)
    state["startup_time"] = app.startup_time
    state["effective_max_running_requests_per_dp"] = app.max_running_requests
    state["last_gen_throughput"] = app.metrics.last_gen_throughput
    state["memory_usage"] = {
        "weight": 0.0, "kvcache": 0.0, "startup_available": 0.0,
        "token_capacity": app.max_total_num_tokens, "token_capacity_swa": None,
        "graph": {},
    }
    return state


def server_info(app) -> Dict[str, Any]:
    info = dict(app.resolved)
    info["launch_command"] = app.args.launch_command
    info.update({
        "status": "ready",
        "max_total_num_tokens": app.max_total_num_tokens,
        "max_req_input_len": app.max_req_input_len,
        "startup_time": app.startup_time,
        "hicache_object_layout": None,
    })
    info["kv_events"] = None
    info["internal_states"] = [internal_state(app)]
    info["version"] = __version__
    info["frontend"] = "python"
    info["standin"] = STANDIN_SENTENCE
    return info


def model_card(app, model_id: str) -> Dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "sglang",
        "root": model_id,
        "parent": None,
        "max_model_len": app.context_len,
        "standin": STANDIN_SENTENCE,
    }


# ---- handlers --------------------------------------------------------------
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
    h.send_json(200, model_info(app))


def h_server_info(h: Exchange, app: StandInServer, method, path, *_):
    if path == "/get_server_info":
        logger.warning("Endpoint '/get_server_info' is deprecated and will be removed in a future "
                       "version. Please use '/server_info' instead.")
    h.send_json(200, server_info(app))


def h_models(h: Exchange, app: StandInServer, *_):
    h.send_json(200, {"object": "list", "data": [model_card(app, app.served_model_name)]})


def h_model(h: Exchange, app: StandInServer, method, path, *_):
    model = path[len("/v1/models/"):]
    if model != app.served_model_name:
        return h.send_json(404, {"error": {
            "message": f"The model '{model}' does not exist",
            "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
    card = model_card(app, model)
    h.send_json(200, card)


def h_loads(h: Exchange, app: StandInServer, *_):
    h.send_json(200, {"timestamp": time.time(), "dp_rank_count": 1, "loads": [{
        "dp_rank": 0, "num_running_reqs": app.metrics.running, "num_waiting_reqs": 0,
        "num_total_reqs": app.metrics.running, "num_used_tokens": 0,
        "max_total_num_tokens": app.max_total_num_tokens, "token_usage": 0.0,
        "gen_throughput": app.metrics.last_gen_throughput, "cache_hit_rate": 0.0,
    }], "standin": STANDIN_SENTENCE})



def h_flush_cache(h: Exchange, app: StandInServer, method, path, query, raw):
    timeout = (query.get("timeout") or ["0"])[0]
    try:
        if float(timeout) < 0:
            raise ValueError
    except ValueError:
        raise validation_error([{"type": "greater_than_equal", "loc": ("query", "timeout"),
                                 "msg": "Input should be greater than or equal to 0",
                                 "input": timeout, "ctx": {"ge": 0.0}}]) from None
    h.send_text(200, "Cache flushed.\nPlease check backend logs for more details. "
                     "(When there are running or waiting requests, the operation will not be performed.)\n")


def h_pause(h: Exchange, app: StandInServer, *_):
    app.paused = True
    h.send_json(200, {"message": "Generation paused successfully.", "status": "ok"})


def h_continue(h: Exchange, app: StandInServer, *_):
    app.paused = False
    h.send_json(200, {"message": "Generation continued successfully.", "status": "ok"})
