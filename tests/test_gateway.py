"""REPLICAS= rendering and the gateway launcher, against the real smg (its own parser and its Rust
configuration builder, installed in the test venv by .ci/provision at presets/gateway.yaml's release)."""
from __future__ import annotations

import importlib.metadata
import io
import re
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import yaml

from bundle import render
from launcher import gateway
from launcher.settings import EXIT_CONFIG_ERROR

ROOT = Path(__file__).resolve().parent.parent
DATA = render.load_data()
GATEWAY_YAML = yaml.safe_load((ROOT / "presets" / "gateway.yaml").read_text())   # read here, not via render
def renders(hardware, preset, replicas) -> bool:
    try:
        render.resolve(DATA, hardware, preset, replicas)
    except render.RenderError:
        return False
    return True


REPLICA_PAIRS = [(h, p, r) for h in DATA["hardware"]["hardware"] for p in DATA["presets"]["presets"]
                 for r in (2, 4, 8) if renders(h, p, r)]


def test_the_installed_gateway_is_the_pinned_release():
    assert importlib.metadata.version("smg") == GATEWAY_YAML["smg_version"]


def test_the_documented_replica_shapes_render():
    # Two TP2 FP8 engines on 4x H100, two TP4 BF16 engines on 8x H100 (issue 9's examples).
    assert ("h100x4", "throughput-fp8", 2) in REPLICA_PAIRS
    assert ("h100x8", "basic", 2) in REPLICA_PAIRS
    assert render.resolve(DATA, "h100x8", "basic", 2).flags["tp-size"] == 4


@pytest.mark.parametrize("replicas", [3, 5, 0])
def test_replicas_that_do_not_divide_the_gpus_are_refused_with_the_arithmetic(replicas):
    with pytest.raises(render.RenderError, match=rf"REPLICAS={replicas}: h100x4's 4 GPUs do not split"):
        render.resolve(DATA, "h100x4", "basic", replicas)


def test_a_replica_that_does_not_fit_its_gpus_is_refused_with_the_memory_arithmetic():
    # BF16 70B on 2x H100 per replica: ~65.7 GiB of weights per GPU leaves no KV cache.
    with pytest.raises(render.RenderError, match=r"basic on h100x4 does not fit"):
        render.resolve(DATA, "h100x4", "basic", 2)


@pytest.mark.parametrize("hardware,preset,replicas", REPLICA_PAIRS,
                         ids=[f"{h}-{p}-x{r}" for h, p, r in REPLICA_PAIRS])
def test_every_replica_shape_passes_compose_and_smg_parses_its_gateway_command(hardware, preset, replicas, tmp_path):
    out = tmp_path / "docker-compose.yml"
    deployment = render.resolve(DATA, hardware, preset, replicas)
    (tmp_path / "hf_token").write_text("x")
    (tmp_path / "api_key").write_text("k")
    params = render.Params(secrets_dir=str(tmp_path), replicas=replicas, api_key_file=str(tmp_path / "api_key"))
    out.write_text(render.render(DATA, deployment, params, out, "test"))
    result = subprocess.run(["docker", "compose", "-f", str(out), "config", "--format", "json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    engines = [f"engine-{n}" for n in range(1, replicas + 1)]
    assert sorted(services) == sorted(engines + ["gateway"])
    # Each engine: its share of the GPUs, disjoint, together all of them; none published.
    per_engine = deployment.count // replicas
    if deployment.vendor == "nvidia":
        ids = [services[e]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for e in engines]
    else:
        ids = [services[e]["environment"]["ROCR_VISIBLE_DEVICES"].split(",") for e in engines]
    assert all(len(group) == per_engine for group in ids)
    assert sorted(i for group in ids for i in group) == sorted(str(i) for i in range(deployment.count))
    assert all("ports" not in services[e] for e in engines)
    tp, dp = int(services["engine-1"]["environment"]["ENGINE_TP_SIZE"]), \
        int(services["engine-1"]["environment"].get("ENGINE_DP_SIZE", 1))
    assert tp * dp * int(services["engine-1"]["environment"].get("ENGINE_PP_SIZE", 1)) == per_engine
    # The gateway: the only published port; its flags parsed by smg's own parser.
    gateway_service = services["gateway"]
    assert gateway_service["ports"][0]["published"] == str(DATA["container"]["default_port"])
    assert gateway_service["ports"][0]["target"] == GATEWAY_YAML["port"]
    assert gateway_service["environment"] == {"GATEWAY_API_KEY_FILE": "/run/secrets/api_key"}
    from smg.launch_router import parse_router_args

    args = parse_router_args(gateway_service["command"])
    assert args.worker_urls == [f"http://{e}:8000" for e in engines]
    assert args.policy == GATEWAY_YAML["policy"]
    assert args.port == GATEWAY_YAML["port"] and args.prometheus_port == GATEWAY_YAML["metrics_port"]
    assert args.health_check_endpoint == GATEWAY_YAML["health_check_endpoint"]
    assert args.worker_startup_timeout_secs == GATEWAY_YAML["worker_startup_timeout_secs"]
    assert args.api_key is None        # never on the command line


def test_gpus_order_is_kept_when_splitting_into_replicas():
    deployment = render.resolve(DATA, "h100x8", "basic", 2)
    engines = render.engine_services(deployment, ["7", "6", "5", "4", "3", "2", "1", "0"])
    assert [(e["name"], e["gpu_ids"], e["publish"]) for e in engines] == [
        ("engine-1", ["7", "6", "5", "4"], None), ("engine-2", ["3", "2", "1", "0"], None)]


def test_one_replica_renders_the_single_engine_file_with_no_gateway(tmp_path):
    deployment = render.resolve(DATA, "h100x4", "basic", 1)
    text = render.render(DATA, deployment, render.Params(), tmp_path / "c.yml", "test")
    services = yaml.safe_load(text)["services"]
    assert list(services) == ["engine"] and "ports" in services["engine"]


def test_an_admin_key_file_reaches_the_gateway_as_its_control_plane_key(tmp_path):
    deployment = render.resolve(DATA, "h100x4", "throughput-fp8", 2)
    params = render.Params(replicas=2, api_key_file="secrets/api_key", admin_api_key_file="secrets/admin_api_key")
    services = yaml.safe_load(render.render(DATA, deployment, params, tmp_path / "c.yml", "test"))["services"]
    assert services["gateway"]["environment"] == {"GATEWAY_API_KEY_FILE": "/run/secrets/api_key",
                                                  "GATEWAY_ADMIN_API_KEY_FILE": "/run/secrets/admin_api_key"}
    assert services["gateway"]["secrets"] == ["api_key", "admin_api_key"]


def test_a_public_gateway_without_a_key_is_refused(tmp_path):
    deployment = render.resolve(DATA, "h100x4", "throughput-fp8", 2)
    with pytest.raises(render.RenderError, match="without an API key"):
        render.render(DATA, deployment, render.Params(replicas=2, bind_address="0.0.0.0"), tmp_path / "c.yml", "t")


# ---- launcher/gateway.py -------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--api-key", "sk-secret-canary"], ["--api-key=sk-secret-canary"],
                                  ["--worker-urls", "http://a:1", "--control-plane-api-keys", "a:b:admin:sk-secret-canary"],
                                  ["--tenant-api-key", "t:sk-secret-canary"]])
def test_secret_flags_on_the_command_line_are_refused_without_echoing_them(argv):
    err = io.StringIO()
    with redirect_stderr(err):
        assert gateway.main(argv, environ={}) == EXIT_CONFIG_ERROR
    assert "docker inspect" in err.getvalue() and "sk-secret-canary" not in err.getvalue()


def test_the_keys_come_from_files_and_the_admin_key_defaults_to_a_fresh_random_one(tmp_path):
    (tmp_path / "api").write_text("sk-client\n")
    api, admin = gateway.gateway_keys({"GATEWAY_API_KEY_FILE": str(tmp_path / "api")})
    _, other_admin = gateway.gateway_keys({})
    assert api == "sk-client"
    assert re.fullmatch(r"[0-9a-f]{64}", admin) and admin != other_admin


def test_the_same_key_for_clients_and_control_plane_is_refused(tmp_path):
    (tmp_path / "k").write_text("sk-same")
    with pytest.raises(gateway.ConfigError, match="needs a key of its own"):
        gateway.gateway_keys({"GATEWAY_API_KEY_FILE": str(tmp_path / "k"),
                              "GATEWAY_ADMIN_API_KEY_FILE": str(tmp_path / "k")})


def test_an_unreadable_key_file_is_a_config_error_naming_the_variable(tmp_path):
    err = io.StringIO()
    with redirect_stderr(err):
        assert gateway.main([], environ={"GATEWAY_API_KEY_FILE": str(tmp_path / "missing")}) == EXIT_CONFIG_ERROR
    assert "GATEWAY_API_KEY_FILE" in err.getvalue()


def test_smg_builds_its_rust_configuration_with_the_keys_set_in_memory():
    command = render.gateway_command(DATA, ["http://engine-1:8000", "http://engine-2:8000"])
    args = gateway.router_args(command, "sk-client", "a" * 64)
    assert args.api_key == "sk-client"
    from smg.router import Router, build_control_plane_auth_config

    assert build_control_plane_auth_config(vars(args)) is not None   # the control plane is keyed
    Router.from_args(args)          # the whole configuration, checked by smg's Rust side; not started


def test_the_healthcheck_fails_when_nothing_listens():
    result = subprocess.run([sys.executable, "-m", "launcher.gateway", "--healthcheck", "--port", "9"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1


def test_port_is_read_as_smg_reads_it():
    assert gateway.port_from(["--port", "8123"]) == 8123
    assert gateway.port_from(["--port=8124"]) == 8124
    from smg.launch_router import parse_router_args

    assert gateway.port_from([]) == parse_router_args([]).port      # smg's own default
