"""Issue 7 against a deployed container: the guard refuses the CONNECT smuggling, and the engine,
which holds keys of its own, refuses whatever did not come through the guard.

In stand-in mode the engine writes down every request it receives (STANDIN_REQUEST_JOURNAL), so
these tests assert on what the engine actually got, not only on what the client was answered.
"""
import json
import re
import socket
import time

import pytest

from launcher.settings import BundleSettings
from stack import STANDIN

ENGINE_PORT = BundleSettings.from_environ({}).engine_port   # the rendered files leave it at the default

SMUGGLED = (b"POST /flush_cache HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 69906\r\n\r\n" + b" " * 69906)
ENGINE_PROBE = """
import json, os, urllib.request, urllib.error
user_key = open(os.environ["ENGINE_API_KEY_FILE"]).read().strip()   # what a process in here can read
result = {}
for path, key in (("/v1/models", None), ("/v1/models", user_key), ("/flush_cache", user_key), ("/ready", None)):
    request = urllib.request.Request("http://127.0.0.1:ENGINE_PORT" + path, method="POST" if "flush" in path else "GET")
    if key:
        request.add_header("Authorization", "Bearer " + key)
    try:
        result[f"{path} {'key' if key else 'none'}"] = urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        result[f"{path} {'key' if key else 'none'}"] = error.code
print(json.dumps(result))
"""


def exchange(port: int, *writes: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for data in writes:
            try:
                sock.sendall(data)
            except OSError:
                break
            time.sleep(0.05)
        received = b""
        try:
            while piece := sock.recv(65536):
                received += piece
        except (TimeoutError, ConnectionResetError):
            pass
        return received


def test_connect_smuggling_gets_an_error_and_reaches_nothing(served):
    before = served.engine_journal() if STANDIN else []
    reply = exchange(served.port, b"CONNECT /health HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n",
                     SMUGGLED, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", reply) == [b"501"], reply[:300]
    if STANDIN:
        after = served.engine_journal()
        new = after[len(before):]
        assert not [entry for entry in new if entry["path"] == "/flush_cache"], new
        assert not [entry for entry in new if entry["auth"] != "valid" and not entry["path"].startswith(
            ("/health", "/ready", "/metrics"))], new


@pytest.mark.standin_only
def test_every_request_the_engine_received_carried_its_own_key(served):
    served.get("/v1/models")
    served.get("/v1/models", key="wrong")            # refused by the guard: never reaches the engine
    served.get("/flush_cache", key=None)
    journal = served.engine_journal()
    assert any(entry["path"] == "/v1/models" for entry in journal)
    for entry in journal:
        if entry["path"].startswith(("/health", "/ready", "/metrics")):
            continue   # exempt from keys, in SGLang and here
        assert entry["auth"] == "valid", entry
        assert entry["status"] != 401, entry


def test_the_engine_refuses_requests_that_did_not_come_through_the_guard(served):
    """From inside the container, straight to the engine's loopback port: even the user's key does
    not open it, because the engine only knows its own per-start keys."""
    answers = json.loads(served.inside(ENGINE_PROBE.replace("ENGINE_PORT", str(ENGINE_PORT))))
    assert answers == {"/v1/models none": 401, "/v1/models key": 401, "/flush_cache key": 401,
                       "/ready none": 200}


def test_the_engine_key_file_is_gone_and_no_key_is_on_its_command_line(served):
    argv = served.exec("cat", f"/proc/{served.engine_pid()}/cmdline").stdout.split("\0")
    assert "--config" in argv and not {"--api-key", "--admin-api-key"} & set(argv)
    key_file = argv[argv.index("--config") + 1]
    assert key_file.startswith("/dev/shm/bundle-engine-") and key_file.endswith("/engine-keys.yaml")
    assert served.exec("test", "-e", key_file, check=False).returncode != 0, "the key file outlived the start"
    environ = served.exec("cat", f"/proc/{served.engine_pid()}/environ").stdout
    assert not re.search(r"[0-9a-f]{64}", environ)


def test_logs_show_the_engine_keys_only_redacted(served):
    logs = served.logs()
    line = next(line for line in logs.splitlines() if "server_args=" in line)
    assert re.search(r"api_key['\"]?\s*[:=]\s*['\"]<redacted>", line), line
    assert not re.search(r"[0-9a-f]{64}", logs)
