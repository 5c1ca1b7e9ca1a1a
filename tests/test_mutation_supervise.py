"""Behaviour tests for launcher/supervise.py, written to kill mutmut's survivors (docs/mutation.md).
In-process, so that mutmut can tell which test reaches which function: run_engine supervises a
small Python stand-in engine (it prints secrets, dumps what it was given, exits with a code or dies
of a signal); the healthcheck probes a loopback HTTP server that counts its requests."""
import io
import json
import os
import signal
import socket
import sys
import textwrap
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from launcher import supervise
from launcher.command import ENGINE_LAUNCH_COMMAND
from launcher.credentials import SECRET_PLACEHOLDER
from launcher.settings import BundleSettings, ConfigError

WAIT = 10   # seconds: the most any condition below may take


@pytest.fixture(autouse=True)
def private_state_files(tmp_path, monkeypatch):
    monkeypatch.setattr(supervise, "GUARD_STATE_FILE", tmp_path / "guard.json")
    monkeypatch.setattr(supervise, "GENERATION_STATE_FILE", tmp_path / "generated")


# --- versions and the engine's HTTP stack --------------------------------------------------------

def test_installed_engine_version_same_and_different():
    from importlib import metadata
    installed = metadata.version("sglang")
    assert supervise.installed_engine_version(types.SimpleNamespace(sglang_version=installed)) == \
        f"SGLang in this image: {installed}; flag catalogue: {installed}"
    assert supervise.installed_engine_version(types.SimpleNamespace(sglang_version="0.0.1")) == \
        f"SGLang in this image: {installed}; flag catalogue: 0.0.1 (differs: the parse check decides)"


def test_installed_engine_version_without_sglang(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, "version", missing)
    assert supervise.installed_engine_version(types.SimpleNamespace(sglang_version="0.5.23")) == \
        ("SGLang in this image: not installed as a distribution; flag catalogue: 0.5.23 "
         "(differs: the parse check decides)")


@pytest.mark.parametrize("text, parts", [("1.0.1", (1, 0, 1)), ("1.0.1+cu130", (1, 0, 1)), ("0.48.0rc1", (0, 48, 0)),
                                         ("2", (2,)), ("1.2.3.4", (1, 2, 3)), ("10+1.2", (10,))])
def test_version_tuple(text, parts):
    assert supervise._version_tuple(text) == parts


def test_engine_http_stack_with_the_installed_packages():
    lines = supervise.engine_http_stack()
    from importlib import metadata
    starlette = metadata.version("starlette")
    assert lines[0].startswith("engine HTTP stack: fastapi ") and f"starlette {starlette}" in lines[0]


def test_engine_http_stack_warning_text():
    def version_of(name):
        return {"starlette": "0.99.9", "httptools": "0.6.4"}.get(name) or (_ for _ in ()).throw(
            __import__("importlib").metadata.PackageNotFoundError(name))
    assert supervise.engine_http_stack(version_of) == [
        "engine HTTP stack: fastapi absent, starlette 0.99.9, uvicorn absent, httptools 0.6.4, h11 absent, "
        "uvloop absent (uvicorn parses with httptools)",
        "warning: Starlette 0.99.9 is older than 1.0.1 (CVE-2026-48710): the engine's own key check can be "
        "fooled by a malformed Host header. The guard replaces Host, so requests through it are safe; use an "
        "image with Starlette >= 1.0.1 to keep the second wall whole"]


# --- the parse check, with a stand-in for SGLang's parser ----------------------------------------

def test_parse_check_hands_over_the_flags_only_and_reports_the_parsers_message(monkeypatch):
    monkeypatch.setattr(supervise, "PARSE_CHECK", textwrap.dedent("""
        import sys
        if sys.argv[1:] != ["--model-path", "m", "--tp-size", "4"]:
            print("  usage: sglang serve\\nerror: unrecognized arguments:", sys.argv[1:], "  ", file=sys.stderr)
            sys.exit(2)
    """))
    supervise.check_with_engine_parser([*ENGINE_LAUNCH_COMMAND, "--model-path", "m", "--tp-size", "4"])
    with pytest.raises(ConfigError) as err:
        supervise.check_with_engine_parser([*ENGINE_LAUNCH_COMMAND, "--model-path", "m", "--tp", "4"])
    assert str(err.value) == ("the installed SGLang's parser rejects the command (bundle and image versions "
                              "differ?):\nusage: sglang serve\nerror: unrecognized arguments: "
                              "['--model-path', 'm', '--tp', '4']")


# --- the engine's environment and output ---------------------------------------------------------

def test_engine_environment_drops_settings_and_secrets():
    environ = {"PATH": "/bin", "ENGINE_TP_SIZE": "4", "BUNDLE_PREFLIGHT": "0", "MODEL": "m", "PORT": "1",
               "HF_TOKEN": "hf_plain", "HF_TOKEN_FILE": "/run/secrets/hf", "HF_HOME": "/data", "ENGINEX": "kept"}
    assert supervise.engine_environment(environ, "hf_plain") == {
        "PATH": "/bin", "HF_HOME": "/data", "ENGINEX": "kept", "HF_TOKEN_PATH": "/run/secrets/hf"}


def test_engine_environment_with_a_plain_token_or_none():
    environ = {"HF_TOKEN": "hf_plain", "HF_TOKEN_FILE": ""}
    assert supervise.engine_environment(environ, "hf_plain") == {"HF_TOKEN": "hf_plain"}
    assert supervise.engine_environment({"HF_TOKEN": ""}, None) == {}


def test_relay_output_redacts_every_line_and_flushes():
    class Sink(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1

    stream = io.BytesIO(b"key=s3cret\nplain \xff line\nnot s3cr3t, but s3cret\n")
    sink = Sink()
    supervise.relay_output(stream, sink, ["s3cret"])
    assert sink.getvalue() == f"key={SECRET_PLACEHOLDER}\nplain \ufffd line\nnot s3cr3t, but {SECRET_PLACEHOLDER}\n"
    assert sink.flushes == 3


def test_engine_key_file_content_and_place(monkeypatch, tmp_path):
    keys = types.SimpleNamespace(api_key="a" * 64, admin_api_key="b" * 64)
    path = supervise.write_engine_key_file(keys)
    try:
        assert path.read_text() == f'api-key: "{"a" * 64}"\nadmin-api-key: "{"b" * 64}"\n'
        assert path.name == "engine-keys.yaml" and path.parent.name.startswith("bundle-engine-")
        if os.access("/dev/shm", os.W_OK):
            assert str(path.parent.parent) == "/dev/shm"
    finally:
        supervise.remove_key_file(path)
    monkeypatch.setattr(supervise.os, "access", lambda *_: False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    path = supervise.write_engine_key_file(keys)
    try:
        assert path.parent.parent == tmp_path
    finally:
        supervise.remove_key_file(path)
    assert not path.parent.exists()


def test_remove_key_file_once_listening_polls_until_the_port_answers(tmp_path):
    path = supervise.write_engine_key_file(types.SimpleNamespace(api_key="a", admin_api_key="b"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    engine = types.SimpleNamespace(poll=lambda: None)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (supervise.remove_key_file_once_listening(path, engine, port),
                                              done.set()), daemon=True)
    thread.start()
    assert not done.wait(0.8) and path.exists()      # refused for now: still waiting, file kept
    listener.listen()
    assert done.wait(WAIT) and not path.parent.exists()
    listener.close()


# --- run_engine with a stand-in engine -----------------------------------------------------------

ENGINE = textwrap.dedent("""
    import json, os, signal, sys, time
    key_file, out = sys.argv[1], sys.argv[2]
    keys = open(key_file).read()
    api = keys.split('"')[1]
    json.dump({"env": dict(os.environ), "keys": keys, "pgid_is_own": os.getpgid(0) == os.getpid()}, open(out, "w"))
    print("user key", os.environ.get("SHOW_USER"), "engine key", api, flush=True)
    print("admin key to stderr:", keys.split('"')[3], file=sys.stderr, flush=True)
    mode = os.environ["MODE"]
    if mode == "signal":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "wait":
        open(out + ".ready", "w").close()
        time.sleep(60)
    if mode == "serve":
        serve(int(sys.argv[3]), key_file, out)
        mode = "0"
    sys.exit(int(mode))
""")

# The "serve" mode: listen on the engine port, note whether the key file went once listening, then
# answer two requests with the Authorization header that reached the engine.
SERVE = textwrap.dedent("""
    import json, os, socket, time

    def serve(port, key_file, out):
        listener = socket.create_server(("127.0.0.1", port))
        deadline = time.monotonic() + 10
        while os.path.exists(key_file) and time.monotonic() < deadline:
            time.sleep(0.02)
        gone, answered = not os.path.exists(key_file), 0
        while answered < 2:
            conn, _ = listener.accept()
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    break
                data += piece
            if not data:          # the supervisor's "is it listening yet?" probe
                conn.close()
                continue
            auth = [l.decode() for l in data.split(b"\\r\\n") if l.lower().startswith(b"authorization:")]
            body = json.dumps({"auth": auth, "key_file_gone": gone}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n" % len(body) + body)
            conn.close()
            answered += 1
""")


class Config:
    def __init__(self, tmp_path, api_key=None, admin_api_key=None):
        self.values = {"host": "127.0.0.1", "port": 0}
        self.api_key, self.admin_api_key = api_key, admin_api_key
        self.script, self.out = tmp_path / "engine.py", tmp_path / "engine.json"
        self.script.write_text(SERVE + ENGINE)

    def engine_argv(self, settings, key_file):
        self.key_file, self.settings = key_file, settings
        return [sys.executable, str(self.script), key_file, str(self.out), str(settings.engine_port)]


@pytest.fixture
def keep_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def run_engine(tmp_path, mode, environ=None, secrets=(), hf_token=None, **keys):
    config = Config(tmp_path, **keys)
    settings = BundleSettings.from_environ({"BUNDLE_ENGINE_PORT": "1"})
    code = supervise.run_engine(config, settings, {"MODE": mode, "PATH": os.environ["PATH"], **(environ or {})},
                                list(secrets), hf_token)
    return code, config, json.loads(config.out.read_text())


def test_run_engine_returns_the_engines_code_and_redacts_all_it_says(tmp_path, capsys, keep_signals):
    code, config, seen = run_engine(tmp_path, "3", environ={"SHOW_USER": "user-key-1", "ENGINE_TP_SIZE": "1",
                                                           "HF_TOKEN": "hf_x"},
                                    secrets=["user-key-1"], hf_token="hf_x", api_key="user-key-1")
    out, err = capsys.readouterr()
    assert code == 3
    api, admin = seen["keys"].split('"')[1], seen["keys"].split('"')[3]
    assert len(api) == len(admin) == 64 and api != admin
    assert out == f"user key {SECRET_PLACEHOLDER} engine key {SECRET_PLACEHOLDER}\n"
    assert f"admin key to stderr: {SECRET_PLACEHOLDER}\n" in err
    assert "[bundle] guard on 127.0.0.1:0, at most " in err and "[bundle] engine exited with 3" in err
    assert "user-key-1" not in out + err and api not in out + err and admin not in out + err
    assert "ENGINE_TP_SIZE" not in seen["env"] and seen["env"]["HF_TOKEN"] == "hf_x" and seen["pgid_is_own"]
    assert not os.path.exists(config.key_file) and not os.path.exists(os.path.dirname(config.key_file))
    assert json.loads(supervise.GUARD_STATE_FILE.read_text()) == {"port": 0}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_run_engine_puts_its_guard_in_front_of_the_engine(tmp_path, capsys, keep_signals):
    """Requests through the guard: the user's keys are checked, the engine gets its own per level;
    the key file is gone once the engine listens; the guard logs with its prefix."""
    import json as json_
    import urllib.error
    import urllib.request
    public, engine_port = free_port(), free_port()
    config = Config(tmp_path, api_key="user-key-1", admin_api_key="admin-key-2")
    config.values["port"] = public
    answers = {}

    def client():
        url = f"http://127.0.0.1:{public}"
        deadline = threading.Event()
        for _ in range(WAIT * 20):
            try:
                socket.create_connection(("127.0.0.1", public), timeout=1).close()
                break
            except OSError:
                deadline.wait(0.05)
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=WAIT)
        except urllib.error.HTTPError as err:
            answers["no key"] = err.code
        for name, path, key, data in (("normal", "/v1/models", "user-key-1", None),
                                      ("admin", "/abort_request", "admin-key-2", b"")):
            request = urllib.request.Request(url + path, data=data, headers={"Authorization": f"Bearer {key}"})
            for _ in range(WAIT * 20):      # 503 until the engine listens
                try:
                    with urllib.request.urlopen(request, timeout=WAIT) as answer:
                        answers[name] = json_.loads(answer.read())
                        break
                except urllib.error.HTTPError as err:
                    if err.code != 503:
                        answers[name] = err.code
                        break
                    deadline.wait(0.05)
    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    settings = BundleSettings.from_environ({"BUNDLE_ENGINE_PORT": str(engine_port)})
    code = supervise.run_engine(config, settings, {"MODE": "serve", "PATH": os.environ["PATH"]},
                                ["user-key-1", "admin-key-2"], None)
    thread.join(WAIT)
    seen = json.loads(config.out.read_text())
    api, admin = seen["keys"].split('"')[1], seen["keys"].split('"')[3]
    assert code == 0 and config.settings is settings
    assert answers["no key"] == 401
    assert answers["normal"] == {"auth": [f"Authorization: Bearer {api}"], "key_file_gone": True}
    assert answers["admin"] == {"auth": [f"Authorization: Bearer {admin}"], "key_file_gone": True}
    err = capsys.readouterr().err
    assert f"[bundle guard] engine at 127.0.0.1:{engine_port} is accepting connections\n" in err
    assert f"[bundle] guard on 127.0.0.1:{public}, at most " in err


def test_run_engine_reports_a_signal_death_as_128_plus_n(tmp_path, capsys, keep_signals):
    code, _, _ = run_engine(tmp_path, "signal")
    assert code == 128 + signal.SIGKILL
    assert f"[bundle] engine exited with {-signal.SIGKILL}" in capsys.readouterr().err


def test_run_engine_forwards_a_stop_signal_to_the_engine(tmp_path, capsys, keep_signals):
    ready = tmp_path / "engine.json.ready"

    def stop_when_ready():
        for _ in range(WAIT * 20):
            if ready.exists():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            threading.Event().wait(0.05)
    threading.Thread(target=stop_when_ready, daemon=True).start()
    code, _, _ = run_engine(tmp_path, "wait")
    assert code == 128 + signal.SIGTERM


def test_run_engine_with_the_public_port_taken_starts_nothing(tmp_path, capsys, keep_signals):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = Config(tmp_path)
        config.values["port"] = port
        code = supervise.run_engine(config, BundleSettings.from_environ({}), {"MODE": "0"}, [], None)
    assert code == 1 and not config.out.exists()
    assert f"[bundle] cannot listen on 127.0.0.1:{port}: " in capsys.readouterr().err


def test_run_engine_without_a_writable_state_file(tmp_path, monkeypatch, capsys, keep_signals):
    monkeypatch.setattr(supervise, "GUARD_STATE_FILE", tmp_path / "missing-dir" / "guard.json")
    code, _, _ = run_engine(tmp_path, "0")
    assert code == 0


# --- the healthcheck -----------------------------------------------------------------------------

class Health(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, statuses):
        super().__init__(("127.0.0.1", 0), HealthHandler)
        self.statuses, self.hits = statuses, []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class HealthHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path == getattr(self.server, "slow", None):
            threading.Event().wait(1.0)          # longer than the probe's timeout
        self.send_response(self.server.statuses.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def health():
    servers = []

    def make(statuses):
        server = Health(statuses)
        servers.append(server)
        supervise.GUARD_STATE_FILE.write_text(json.dumps({"port": server.server_address[1]}))
        return server
    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def settings(**env):
    return BundleSettings.from_environ({f"BUNDLE_{k.upper()}": str(v) for k, v in env.items()})


def check(catalogue, now=1000.0, environ=None, **env):
    return supervise.healthcheck(settings(**env), environ or {}, catalogue, now=lambda: now)


def test_health_generates_when_ready_and_notes_when(health, catalogue):
    server = health({"/ready": 200, "/health": 200})
    assert check(catalogue, now=1000.0) == 0
    assert server.hits == ["/ready", "/health"]
    assert float(supervise.GENERATION_STATE_FILE.read_text()) == 1000.0


def test_health_skips_the_generation_within_the_interval_on_both_sides(health, catalogue):
    server = health({"/ready": 200, "/health": 200})
    supervise.GENERATION_STATE_FILE.write_text("1000.0")
    assert check(catalogue, now=1029.9, healthcheck_generate_seconds=30) == 0
    assert server.hits == ["/ready"]
    assert check(catalogue, now=1030.0, healthcheck_generate_seconds=30) == 0
    assert server.hits == ["/ready", "/ready", "/health"]
    assert supervise.GENERATION_STATE_FILE.read_text() == "1030.0"


def test_health_not_ready_means_unhealthy_without_a_generation(health, catalogue, capsys):
    server = health({"/ready": 503, "/health": 200})
    assert check(catalogue) == 1
    assert server.hits == ["/ready"] and not supervise.GENERATION_STATE_FILE.exists()
    assert capsys.readouterr().err == f"http://127.0.0.1:{server.server_address[1]}/ready: HTTP 503\n"


def test_health_failed_generation_is_unhealthy_and_not_noted(health, catalogue, capsys):
    server = health({"/ready": 200, "/health": 500})
    assert check(catalogue) == 1
    assert server.hits == ["/ready", "/health"] and not supervise.GENERATION_STATE_FILE.exists()
    assert capsys.readouterr().err.endswith("/health: HTTP 500\n")


def test_health_other_success_codes_are_not_healthy(health, catalogue):
    health({"/ready": 200, "/health": 204})
    assert check(catalogue) == 1
    health({"/ready": 204})
    assert check(catalogue) == 1


def test_ready_as_the_path_probes_it_once_and_notes_nothing(health, catalogue):
    server = health({"/ready": 200})
    assert check(catalogue, healthcheck_path="/ready") == 0
    assert server.hits == ["/ready"] and not supervise.GENERATION_STATE_FILE.exists()
    server.statuses["/ready"] = 503
    assert check(catalogue, healthcheck_path="/ready") == 1


def test_other_path_is_probed_after_ready(health, catalogue):
    server = health({"/ready": 200, "/v1/models": 200})
    assert check(catalogue, healthcheck_path="/v1/models") == 0
    assert server.hits == ["/ready", "/v1/models"]


def test_health_port_from_the_configuration_before_the_guard_starts(catalogue, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]      # bound, not listening: refused at once
        assert check(catalogue, environ={"ENGINE_PORT": str(port)}) == 1
        assert capsys.readouterr().err.startswith(f"http://127.0.0.1:{port}/ready: [Errno 111]")
        supervise.GUARD_STATE_FILE.write_text("{}")
        assert check(catalogue, environ={"PORT": str(port)}) == 1
        assert capsys.readouterr().err.startswith(f"http://127.0.0.1:{port}/ready: ")
        supervise.GUARD_STATE_FILE.write_text("not json")
        assert check(catalogue) == 1
        assert capsys.readouterr().err.startswith("http://127.0.0.1:8000/ready: ")


def test_probe_passes_the_timeout(monkeypatch):
    seen = {}

    def urlopen(url, timeout):
        seen.update(url=url, timeout=timeout)
        raise OSError("no route")
    import urllib.request
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert supervise.probe(1234, "/x", 2.5) is False
    assert seen == {"url": "http://127.0.0.1:1234/x", "timeout": 2.5}


def test_probe_reports_an_error_without_a_reason(monkeypatch, capsys):
    import urllib.request

    def urlopen(url, timeout):
        raise TimeoutError("timed out")
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert supervise.probe(1234, "/x", 2.5) is False
    assert capsys.readouterr().err == "http://127.0.0.1:1234/x: timed out\n"


@pytest.mark.parametrize("slow", ["/ready", "/health"])
def test_health_probes_give_up_after_the_timeout(health, catalogue, slow):
    server = health({"/ready": 200, "/health": 200})
    server.slow = slow
    assert check(catalogue, healthcheck_timeout=0.2) == 1


@pytest.mark.parametrize("text, now, seconds, within", [
    ("100.0", 100.0, 30, True), ("100.0", 129.99, 30, True), ("100.0", 130.0, 30, False),
    ("100.0", 99.0, 30, False), ("100.0", 100.0, 0, False), ("junk", 100.0, 30, False), (None, 100.0, 30, False),
])
def test_generated_within(text, now, seconds, within):
    if text is not None:
        supervise.GENERATION_STATE_FILE.write_text(text)
    assert supervise.generated_within(seconds, now) is within


def test_note_generation_on_a_read_only_place_is_silent(monkeypatch, tmp_path):
    monkeypatch.setattr(supervise, "GENERATION_STATE_FILE", tmp_path / "no-such-dir" / "generated")
    supervise.note_generation(5.0)
    assert not supervise.GENERATION_STATE_FILE.exists()


def test_log_line(capsys):
    supervise.log("hello")
    assert capsys.readouterr() == ("", "[bundle] hello\n")
