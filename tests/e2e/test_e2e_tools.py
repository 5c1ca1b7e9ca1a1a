"""Tool calling is on in every preset (--tool-call-parser llama3). The stand-in is not a model and
does not parse tools: here it proves that the flag reaches the engine and that a `tools` request
passes the guard intact; on a GPU host (make test-gpu) the real engine must answer with a tool call."""
import json

import pytest

from stack import STANDIN

MODEL = "meta-llama/Llama-3.1-70B-Instruct"
TOOLS_REQUEST = {
    "model": MODEL, "max_tokens": 64, "temperature": 0,
    "messages": [{"role": "user", "content": "What is the weather in Paris? Use the tool."}],
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
}


def test_the_preset_turns_on_the_llama3_tool_call_parser(served):
    assert served.get("/server_info").json()["tool_call_parser"] == "llama3"


def test_a_tools_request_reaches_the_engine_whole(served):
    body = json.dumps(TOOLS_REQUEST).encode()
    before = len(served.engine_journal()) if STANDIN else 0
    response = served.post("/v1/chat/completions", TOOLS_REQUEST)
    assert response.status_code == 200, response.text
    if STANDIN:
        received = [e for e in served.engine_journal()[before:] if e["path"] == "/v1/chat/completions"]
        assert [(e["body_bytes"], e["auth"], e["status"]) for e in received] == [(len(body), "valid", 200)]
    else:
        message = response.json()["choices"][0]["message"]
        assert message["tool_calls"][0]["function"]["name"] == "get_weather"
        assert json.loads(message["tool_calls"][0]["function"]["arguments"])["city"].lower() == "paris"


@pytest.mark.skipif(STANDIN, reason="the CPU stand-in is not a model: it cannot choose a tool")
def test_the_openai_client_gets_a_tool_call(served):
    from openai import OpenAI
    client = OpenAI(base_url=served.base + "/v1", api_key=served.api_key)
    answer = client.chat.completions.create(**TOOLS_REQUEST)
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"
