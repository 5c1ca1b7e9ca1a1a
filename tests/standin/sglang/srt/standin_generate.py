"""SGLang CPU STAND-IN: POST /generate, SGLang's native generation route (not the real engine,
no model): text or input_ids, single or batch, streamed as SSE or not."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from sglang.srt.standin_http import Exchange
from sglang.srt.standin_requests import as_int, json_body, stop_list, validation_error
from sglang.srt.standin_text import Generation, count_prompt_tokens

if TYPE_CHECKING:
    from sglang.srt.standin_server import StandInServer

DEFAULT_MAX_NEW_TOKENS = 128  # SGLang's sampling-params default for /generate


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

    items = []
    try:
        max_new = as_int(sp.get("max_new_tokens"), "max_new_tokens")
        for p in prompts:
            ptoks = count_prompt_tokens(p)
            limit = app.check_lengths(ptoks, max_new)
            default_limit = max(0, min(DEFAULT_MAX_NEW_TOKENS, app.context_len - ptoks))
            gen = Generation(p, limit, bool(sp.get("ignore_eos")), stop_list(sp.get("stop")),
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
            for i, (_prompt, ptoks, gen) in enumerate(items):
                app.sleep_tokens(gen.completion_tokens)
                outs.append({"text": gen.text, "output_ids": list(gen.output_ids),
                             "meta_info": meta(ids[i], ptoks, gen, gen.completion_tokens, True, t0)})
                e2e = time.time() - t0
                app.metrics.finish(False, ptoks, gen.completion_tokens,
                                   e2e if gen.completion_tokens else e2e, e2e)
                finished_count += 1
            return h.send_json(200, outs if batch else outs[0])

        h.start_stream()
        for i, (_prompt, ptoks, gen) in enumerate(items):
            first_ts = None
            steps = gen.stream()
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
                out = {"text": cum_text, "output_ids": list(cum_ids)}
                out["meta_info"] = meta(ids[i], ptoks, gen, k, finished, first_ts)
                if batch:
                    out["index"] = i
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
