"""Behaviour tests for launcher/gateway.py, written to kill mutmut's survivors (docs/mutation.md),
beside tests/test_gateway.py: exact messages, every secret flag in both spellings, the port edges,
the healthcheck against a loopback server, and main() handing smg the arguments with the keys."""
import io
import threading
from contextlib import redirect_stderr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from launcher import gateway
from launcher.settings import EXIT_CONFIG_ERROR, ConfigError

SECRET_FLAGS = ["--api-key", "--control-plane-api-keys", "--tenant-api-key", "--postgres-db-url",
                "--redis-url", "--oracle-password"]


@pytest.mark.parametrize("flag", SECRET_FLAGS)
@pytest.mark.parametrize("joined", [False, True])
def test_every_secret_flag_is_refused_in_both_spellings(flag, joined):
    argv = ["--port", "1", f"{flag}=x"] if joined else ["--port", "1", flag, "x"]
    with pytest.raises(ConfigError) as err:
        gateway.refuse_secret_flags(argv)
    assert str(err.value) == (f"{flag} on the gateway's command line would show the secret in `docker inspect` "
                              "and the process list: give it as a file (GATEWAY_API_KEY_FILE, "
                              "GATEWAY_ADMIN_API_KEY_FILE)")


def test_ordinary_flags_and_lookalikes_pass():
    gateway.refuse_secret_flags(["--worker-urls", "http://a:1", "--api-key-file=x", "--redis-urls", "--API-KEY"])


def test_same_key_message(tmp_path):
    (tmp_path / "k").write_text("sk-same\n")
    with pytest.raises(ConfigError) as err:
        gateway.gateway_keys({"GATEWAY_API_KEY_FILE": str(tmp_path / "k"),
                              "GATEWAY_ADMIN_API_KEY_FILE": str(tmp_path / "k")})
    assert str(err.value) == ("GATEWAY_ADMIN_API_KEY_FILE holds the same key as GATEWAY_API_KEY_FILE: the control "
                              "plane (registering engines, flushing caches) needs a key of its own")


def test_given_admin_key_is_used_and_no_api_key_is_none(tmp_path):
    (tmp_path / "admin").write_text("sk-admin\n")
    assert gateway.gateway_keys({"GATEWAY_ADMIN_API_KEY_FILE": str(tmp_path / "admin")}) == (None, "sk-admin")
    (tmp_path / "api").write_text("sk-api")
    assert gateway.gateway_keys({"GATEWAY_API_KEY_FILE": str(tmp_path / "api"),
                                 "GATEWAY_ADMIN_API_KEY_FILE": str(tmp_path / "admin")}) == ("sk-api", "sk-admin")


def test_router_args_carry_the_keys_in_smgs_parsed_form():
    args = gateway.router_args(["--port", "8123"], None, "k" * 64)
    assert args.port == 8123 and args.api_key is None
    assert args.control_plane_api_keys == [("bundle-admin", "bundle admin key", "k" * 64, "admin")]


@pytest.mark.parametrize("argv, port", [
    (["--port", "8123"], 8123), (["--host", "x", "--port=8124", "--port", "1"], 8124),
    (["--port"], 30000), (["--ports", "1"], 30000), (["8123", "--port", "8125"], 8125),
])
def test_port_from(argv, port):
    assert gateway.port_from(argv) == port
    assert gateway.port_from(argv, default=7) == (7 if port == 30000 else port)


class Readiness(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status):
        super().__init__(("127.0.0.1", 0), Handler)
        self.status, self.hits = status, []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize("status, code", [(200, 0), (204, 1), (503, 1)])
def test_healthcheck_asks_smgs_readiness(status, code, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")     # must be ignored: the address is local
    server = Readiness(status)
    try:
        assert gateway.main(["--healthcheck", "--port", str(server.server_address[1])], environ={}) == code
        assert server.hits == ["/readiness"]
    finally:
        server.shutdown()
        server.server_close()


def test_main_hands_smg_its_arguments_with_the_keys(tmp_path, monkeypatch):
    import smg.launch_router
    launched = []
    monkeypatch.setattr(smg.launch_router, "launch_router", launched.append)
    (tmp_path / "api").write_text("sk-api")
    assert gateway.main(["--port", "8123"], environ={"GATEWAY_API_KEY_FILE": str(tmp_path / "api")}) == 0
    (args,) = launched
    assert args.port == 8123 and args.api_key == "sk-api"
    assert args.control_plane_api_keys[0][2] != "sk-api" and len(args.control_plane_api_keys[0][2]) == 64


def test_main_reports_a_config_error_with_the_gateway_prefix():
    err = io.StringIO()
    with redirect_stderr(err):
        assert gateway.main(["--redis-url", "redis://x"], environ={}) == EXIT_CONFIG_ERROR
    assert err.getvalue().startswith("gateway: --redis-url on the gateway's command line") and \
        err.getvalue().endswith(")\n")


def test_a_secret_flag_whose_value_holds_an_equals_sign_is_refused():
    with pytest.raises(ConfigError, match="^--api-key on the gateway's command line"):
        gateway.refuse_secret_flags(["--api-key=sk=with=equals"])


def test_main_reads_sys_argv_and_the_environment_by_default(tmp_path, monkeypatch):
    import smg.launch_router
    launched = []
    monkeypatch.setattr(smg.launch_router, "launch_router", launched.append)
    (tmp_path / "api").write_text("sk-env")
    monkeypatch.setenv("GATEWAY_API_KEY_FILE", str(tmp_path / "api"))
    monkeypatch.setattr(gateway.sys, "argv", ["gateway", "--port", "8124"])
    assert gateway.main() == 0
    assert launched[0].port == 8124 and launched[0].api_key == "sk-env"


def test_a_port_with_two_equals_signs_is_not_a_port():
    with pytest.raises(ValueError):
        gateway.port_from(["--port=81=23"])


def test_the_healthcheck_with_a_port_that_is_not_a_number_is_unhealthy_not_a_traceback(capsys):
    assert gateway.main(["--healthcheck", "--port=81=23"], environ={}) == 1
    assert "--port must be a number" in capsys.readouterr().err
