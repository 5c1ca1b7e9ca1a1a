"""SGLang CPU STAND-IN: the OpenAI routes /v1/chat/completions and /v1/completions (not the real
engine, no model), in SGLang's shapes, streamed as SSE with chunked transfer encoding or not."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Dict

from sglang.srt.standin_http import Exchange
from sglang.srt.standin_requests import (
    as_int,
    json_body,
    openai_error,
    require_json_content_type,
    stop_list,
    validation_error,
)
from sglang.srt.standin_text import Generation, chat_prompt_text, count_prompt_tokens

if TYPE_CHECKING:
    from sglang.srt.standin_server import StandInServer


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
    require_json_content_type(h)
    body = json_body(raw)
    if not isinstance(body, dict):
        raise validation_error([{"type": "model_attributes_type", "loc": ("body",),
                                 "msg": "Input should be a valid dictionary or object",
                                 "input": body}])
    if body.get(required) is None:
        raise validation_error([{"type": "missing", "loc": ("body", required),
                                 "msg": "Field required", "input": body}])
    n = as_int(body.get("n", 1), "n") or 1
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
    max_tokens = as_int(max_tokens, "max_completion_tokens")
    prompt_text = chat_prompt_text(messages)
    ptoks = count_prompt_tokens(prompt_text)
    try:
        limit = app.check_lengths(ptoks, max_tokens)
    except ValueError as e:
        raise openai_error(str(e)) from None
    gen = Generation(messages, limit, bool(body.get("ignore_eos")), stop_list(body.get("stop")),
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
            for _k, (cum_text, _ids) in enumerate(steps, start=1):
                app.sleep_tokens(1)
                if first_ts is None:
                    first_ts = time.time()
                delta = cum_text[len(prev):]
                prev = cum_text
                if delta:
                    h.write_event(chunk(i, {"content": delta}))
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
    max_tokens = as_int(body.get("max_tokens", 16), "max_tokens")
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
                                              stop_list(body.get("stop")),
                                              default_max_new_tokens=max(0, app.context_len - ptoks))))
    except ValueError as e:
        raise openai_error(str(e)) from None
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
            for _prompt, _, g in gens:
                for _ in range(n):
                    choices.append({"index": idx, "text": g.text, "logprobs": None,
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
        for _prompt, _, g in gens:
            steps = g.stream()
            for _ in range(n):
                prev = ""
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
