"""Inventories (`make hosts`): per-host compose files for engines on several hosts, and per-node files
for one engine across nodes, through real Compose, smg's parser and the real SGLang parser."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from bundle import inventory, render
from launcher import command, settings, sglang_flags

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = yaml.safe_load((ROOT / "inventory.example.yml").read_text())


def write_inventory(tmp_path: Path, **changes) -> Path:
    data = {**EXAMPLE, **changes}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def rendered(tmp_path: Path, **changes) -> dict[str, dict]:
    """host folder -> the compose file as `docker compose config` reads it."""
    out = ROOT / "deploy" / f"test-hosts-{tmp_path.name}"      # inside the repository, as documented
    try:
        written = inventory.write(write_inventory(tmp_path, **changes), out)
        result = {}
        for path in written:
            config = subprocess.run(["docker", "compose", "-f", str(path), "config", "--format", "json"],
                                    capture_output=True, text=True)
            assert config.returncode == 0, config.stderr
            result[path.parent.name] = yaml.safe_load(config.stdout)
        return result
    finally:
        subprocess.run(["rm", "-rf", str(out)])


def test_the_example_renders_a_file_per_host_and_one_for_the_gateway(tmp_path):
    files = rendered(tmp_path)
    assert sorted(files) == ["gateway", "gpu-a", "gpu-b"]
    for host, address in (("gpu-a", "10.0.0.11"), ("gpu-b", "10.0.0.12")):
        services = files[host]["services"]
        assert sorted(services) == ["engine-1", "engine-2"]
        published = [(p["host_ip"], p["published"]) for name in ("engine-1", "engine-2")
                     for p in services[name]["ports"]]
        assert published == [(address, "8000"), (address, "8001")]
        assert all(services[name]["environment"]["ENGINE_API_KEY_FILE"] == "/run/secrets/api_key"
                   for name in services)
        assert all(services[name]["environment"]["ENGINE_TP_SIZE"] == "4" for name in services)
    gateway = files["gateway"]["services"]
    assert list(gateway) == ["gateway"]
    from smg.launch_router import parse_router_args

    args = parse_router_args(gateway["gateway"]["command"])
    assert args.worker_urls == ["http://10.0.0.11:8000", "http://10.0.0.11:8001",
                                "http://10.0.0.12:8000", "http://10.0.0.12:8001"]
    assert gateway["gateway"]["ports"][0]["host_ip"] == "0.0.0.0"
    assert set(files["gateway"]["secrets"]) == {"api_key"}


def test_one_engine_across_two_nodes(tmp_path):
    files = rendered(tmp_path, shape="one-engine")
    assert sorted(files) == ["gpu-a", "gpu-b"]
    for rank, (host, address) in enumerate((("gpu-a", "10.0.0.11"), ("gpu-b", "10.0.0.12"))):
        engine = files[host]["services"]["engine"]
        env = engine["environment"]
        assert engine["network_mode"] == "host" and "ports" not in engine
        assert (env["ENGINE_NNODES"], env["ENGINE_NODE_RANK"]) == ("2", str(rank))
        assert env["ENGINE_DIST_INIT_ADDR"] == "10.0.0.11:20000"        # rank 0's address, both nodes
        assert env["ENGINE_HOST"] == address
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "eth0"
        assert env["ENGINE_TP_SIZE"] == "16"                             # 2 nodes x 8 GPUs


def test_each_nodes_engine_command_passes_the_real_sglang_parser(tmp_path):
    from test_sglang_parser import parse_strictly

    files = rendered(tmp_path, shape="one-engine")
    for rank, host in enumerate(("gpu-a", "gpu-b")):
        env = {k: str(v) for k, v in files[host]["services"]["engine"]["environment"].items()
               if k.startswith("ENGINE_") and not k.endswith("_FILE")}
        config = command.build_config(env, [], sglang_flags.Catalogue.load())
        argv = config.engine_argv(settings.BundleSettings.from_environ(env))
        namespace, warnings = parse_strictly(argv[len(command.ENGINE_LAUNCH_COMMAND):])
        assert (namespace.nnodes, namespace.node_rank, namespace.dist_init_addr) == (2, rank, "10.0.0.11:20000")
        assert namespace.tp_size == 16 and not [w for w in warnings if "deprecated" in w.lower()]


def test_data_parallelism_across_nodes_is_refused_with_sglangs_rule(tmp_path):
    with pytest.raises(render.RenderError, match="data-parallel replicas across nodes"):
        inventory.write(write_inventory(tmp_path, shape="one-engine", preset="throughput"), tmp_path / "out")
    assert not (tmp_path / "out").exists()       # nothing half-written


def test_replicas_that_do_not_divide_a_hosts_gpus_are_refused(tmp_path):
    hosts = {"gpu-a": {"address": "10.0.0.11", "replicas": 3}}
    with pytest.raises(render.RenderError, match="REPLICAS=3: h100x8's 8 GPUs do not split"):
        inventory.write(write_inventory(tmp_path, hosts=hosts), tmp_path / "out")


@pytest.mark.parametrize("changes,message", [
    ({"api_key_file": None}, "api_key_file"),
    ({"hardware": "h100x9"}, "did you mean h100x8"),
    ({"shape": "mesh"}, "shape"),
    ({"gateway": None}, "shape replicas needs a `gateway:` section"),
    ({"hosts": {"gateway": {"address": "10.0.0.1"}}}, "may not be called 'gateway'"),
    ({"preset": "fastest"}, "preset 'fastest' is not one of"),
])
def test_bad_inventories_are_refused_naming_the_file_and_the_key(tmp_path, changes, message):
    data = {**EXAMPLE, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(render.RenderError) as err:
        inventory.write(path, tmp_path / "out")
    assert message in str(err.value) and str(path) in str(err.value)


def test_make_hosts_without_arguments_says_what_it_needs():
    result = subprocess.run(["make", "--no-print-directory", "hosts"], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "VENV": str(ROOT / ".venv")}, timeout=60)
    assert result.returncode != 0 and "needs INVENTORY=" in result.stderr
