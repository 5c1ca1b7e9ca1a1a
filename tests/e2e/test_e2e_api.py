"""The served API through the real container: OpenAI routes, streaming, clients, auth, metrics."""
import json
import os
import subprocess
import sys

import pytest
import requests

from stack import ROOT, STANDIN

MODEL = "meta-llama/Llama-3.1-70B-Instruct"


def test_models_lists_the_served_model(served):
    body = served.get("/v1/models").json()
    assert body["object"] == "list" and body["data"][0]["id"] == MODEL


def test_chat_completion_with_usage(served):
    response = served.post("/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"]
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.standin_only
def test_stand_in_text_is_deterministic(served):
    def ask():
        return served.post("/v1/chat/completions", {"model": MODEL, "max_tokens": 6,
                                                     "messages": [{"role": "user", "content": "Same prompt"}]}).json()
    assert ask()["choices"][0]["message"]["content"] == ask()["choices"][0]["message"]["content"]


def test_sse_streaming_ends_with_done_and_carries_usage(served):
    response = served.post("/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "Count"}], "max_tokens": 8, "stream": True,
        "stream_options": {"include_usage": True}}, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    assert any(c.get("usage") and c["usage"]["completion_tokens"] > 0 for c in chunks)


def test_official_openai_client(served):
    from openai import OpenAI
    client = OpenAI(base_url=served.base + "/v1", api_key=served.api_key)
    assert [m.id for m in client.models.list()] == [MODEL]
    reply = client.chat.completions.create(model=MODEL, max_tokens=8,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(model=MODEL, max_tokens=8, stream=True,
                                            messages=[{"role": "user", "content": "Hi"}])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    completion = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=5)
    assert completion.choices[0].text


def test_sglang_bench_serving_completes(served, tmp_path):
    """SGLang's own benchmark, offline (random-ids, a local tokenizer), against the deployment."""
    offline = []
    if STANDIN:  # a tiny local tokenizer; on a GPU host the tool fetches the model's own (HF_TOKEN)
        tokenizer = tmp_path / "tokenizer"
        subprocess.run([sys.executable, str(ROOT / "tests" / "standin" / "make_tokenizer.py"), str(tokenizer)],
                       check=True, capture_output=True, timeout=120)
        offline = ["--tokenizer", str(tokenizer)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "standin" / "run_bench_serving.py"), "--backend", "sglang",
         "--host", "127.0.0.1",
         "--port", str(served.port), "--dataset-name", "random-ids", "--num-prompts", "24",
         "--random-input-len", "64", "--random-output-len", "16", *offline,
         "--output-file", str(tmp_path / "bench.jsonl"), "--max-concurrency", "8"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "OPENAI_API_KEY": served.api_key, **({"HF_HUB_OFFLINE": "1"} if STANDIN else {})})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Successful requests:                     24" in result.stdout, result.stdout[-3000:]
    print(result.stdout[result.stdout.find("============ Serving"):])


# --- auth, exactly as SGLang ------------------------------------------------------------------

def test_requests_without_or_with_a_wrong_key_get_401(served):
    for key in (None, "wrong", served.api_key + "x"):
        response = served.get("/v1/models", key=key)
        assert response.status_code == 401 and response.json() == {"error": "Unauthorized"}
    raw = requests.get(served.base + "/v1/models", headers={"Authorization": served.api_key}, timeout=10)
    assert raw.status_code == 401  # a bare key without "Bearer" is refused, as in SGLang
    lower = requests.get(served.base + "/v1/models", headers={"Authorization": "bearer " + served.api_key},
                         timeout=10)
    assert lower.status_code == 200


def test_health_ready_and_metrics_are_exempt(served):
    for path in ("/health", "/ready", "/health_generate", "/metrics"):
        assert served.get(path, key=None).status_code == 200, path
    metrics = served.get("/metrics", key=None).text
    assert "sglang:" in metrics


def test_inference_routes_need_the_key(served):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    assert served.post("/v1/chat/completions", body, key=None).status_code == 401
    assert served.post("/generate", {"text": "x", "sampling_params": {"max_new_tokens": 2}}, key=None).status_code == 401
    assert served.get("/server_info", key=None).status_code == 401
