"""Canary secrets must not appear in docker inspect, logs, any process's argv, or any HTTP response."""
import json
import re

import pytest

from stack import CANARY_API_KEY, CANARY_HF_TOKEN, run

CANARIES = (CANARY_API_KEY, CANARY_HF_TOKEN)
MODEL = "meta-llama/Llama-3.1-70B-Instruct"


def assert_clean(text: str, where: str):
    for canary in CANARIES:
        assert canary not in text, f"secret leaked in {where}"


def test_docker_inspect_holds_no_secret(served):
    assert_clean(json.dumps(served.inspect()), "docker inspect")
    image = served.inspect()["Config"]["Image"]
    assert_clean(run("docker", "image", "inspect", image).stdout, "docker image inspect")


def test_logs_hold_no_secret(served):
    served.post("/v1/chat/completions", {"model": MODEL, "max_tokens": 4,
                                         "messages": [{"role": "user", "content": "hello"}]})
    logs = served.logs()
    assert "server_args=" in logs  # the line where SGLang prints its arguments, keys included
    assert_clean(logs, "docker logs")


def test_no_process_argv_holds_a_secret(served):
    script = ("import os\n"
              "for p in os.listdir('/proc'):\n"
              "    if p.isdigit():\n"
              "        try: print(open(f'/proc/{p}/cmdline','rb').read().replace(b'\\0', b' ').decode())\n"
              "        except OSError: pass\n")
    argvs = served.exec("python3", "-c", script).stdout
    assert "sglang.launch_server" in argvs and "entrypoint.py" in argvs
    assert_clean(argvs, "process argument lists")


def test_engine_environment_holds_no_secret_value(served):
    environ = served.exec("cat", f"/proc/{served.engine_pid()}/environ").stdout.replace("\0", "\n")
    assert "HF_TOKEN_PATH=/run/secrets/hf_token" in environ
    assert_clean(environ, "the engine's environment")


ROUTES = ["/", "/v1/models", "/model_info", "/get_model_info", "/server_info", "/get_server_info",
          "/metrics", "/health", "/ready", "/v1/loads", "/nope"]


@pytest.mark.parametrize("key", ["default", None, "wrong"])
def test_no_http_response_holds_a_secret(served, key):
    for path in ROUTES:
        response = served.get(path, key=key)
        assert_clean(response.text + json.dumps(dict(response.headers)), f"GET {path}")
    for path, body in (("/v1/chat/completions", {"model": MODEL, "max_tokens": 4,
                                                 "messages": [{"role": "user", "content": CANARY_API_KEY[:6]}]}),
                       ("/generate", {"text": "x", "sampling_params": {"max_new_tokens": 4}})):
        response = served.post(path, body, key=key)
        assert_clean(response.text, f"POST {path}")


def test_server_info_shows_the_engine_has_keys_of_its_own_but_not_their_values(served):
    info = served.get("/server_info").json()
    assert info["api_key"] == info["admin_api_key"] == "<redacted>"
    launch = info.get("launch_command", "")
    assert "--config" in launch or "--api-key <redacted>" in launch
    assert not re.search(r"[0-9a-f]{64}", json.dumps(info)), "an engine key (64 hex digits) leaked"
