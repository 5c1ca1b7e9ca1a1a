"""Inventories (`make hosts`): per-host compose files for engines on several hosts, and per-node files
for one engine across nodes, through real Compose, smg's parser and the real SGLang parser."""
from __future__ import annotations

import copy
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
        # one pipeline stage per node, tensor parallel over its 8 GPUs: no all-reduce crosses the network
        assert (env["ENGINE_TP_SIZE"], env["ENGINE_PP_SIZE"]) == ("8", "2")


def engine_namespaces(files: dict, hosts=("gpu-a", "gpu-b")) -> list:
    """Each node's engine command as the real SGLang parser reads it (abbreviations off)."""
    from test_sglang_parser import parse_strictly

    namespaces = []
    for host in hosts:
        env = {k: str(v) for k, v in files[host]["services"]["engine"]["environment"].items()
               if k.startswith("ENGINE_") and not k.endswith("_FILE")}
        config = command.build_config(env, [], sglang_flags.Catalogue.load())
        argv = config.engine_argv(settings.BundleSettings.from_environ(env))
        namespace, warnings = parse_strictly(argv[len(command.ENGINE_LAUNCH_COMMAND):])
        assert not [w for w in warnings if "deprecated" in w.lower()]
        namespaces.append(namespace)
    return namespaces


def sglang_pipeline_checks(namespace) -> None:
    """SGLang 0.5.23's own multi-node and pipeline rules on a parsed command: its resolution step
    that turns the overlap scheduler off under PP, then the asserts of check_server_args that
    concern the parallel shape (the rest of that function needs the model's config)."""
    from sglang.srt.arg_groups import overrides, validation_hook
    from sglang.srt.server_args import ServerArgs

    server_args = ServerArgs.from_cli_args(namespace)
    for name, value in overrides._pipeline_parallel_overlap_disable(server_args).items():
        setattr(server_args, name, value)
    view = validation_hook.resolving_view(server_args)
    assert (view.tp_size * view.pp_size) % view.nnodes == 0
    assert not (view.dp_size > 1 and view.nnodes != 1)
    if view.pp_size > 1:
        validation_hook.check_pipeline_parallel_compat(view)


def test_each_nodes_engine_command_passes_the_real_sglang_parser_and_its_pipeline_rules(tmp_path):
    files = rendered(tmp_path, shape="one-engine")
    for rank, namespace in enumerate(engine_namespaces(files)):
        assert (namespace.nnodes, namespace.node_rank, namespace.dist_init_addr) == (2, rank, "10.0.0.11:20000")
        assert (namespace.tp_size, namespace.pp_size, namespace.dp_size) == (8, 2, 1)
        sglang_pipeline_checks(namespace)


def nodes_inventory(tmp_path: Path, **nodes) -> dict:
    path = write_inventory(tmp_path, shape="one-engine", nodes={**EXAMPLE["nodes"], **nodes})
    return inventory.load(path, render.load_data())


def pinned_tp(size: int) -> dict:
    """The preset data with basic pinned to one TP size on h100x8, as a site's preset would."""
    data = copy.deepcopy(render.load_data())
    data["presets"]["presets"]["basic"]["hardware"]["h100x8"] = {"rationale": "test", "flags": {"tp-size": size}}
    return data


def test_tensor_parallelism_across_nodes_is_refused_with_the_reason_and_the_opt_in(tmp_path):
    with pytest.raises(render.RenderError) as err:
        inventory.node_files(pinned_tp(16), nodes_inventory(tmp_path), tmp_path / "out", "test")
    message = str(err.value)
    assert "tp-size 16 spans nodes of 8 GPUs" in message and "crosses the network" in message
    assert "more than the model's 8 KV heads" in message
    assert "allow_tp_across_nodes: true" in message and "ALLOW_TP_ACROSS_NODES=1" in message


def test_the_opt_in_renders_tensor_parallelism_over_every_nodes_gpus(tmp_path):
    files = rendered(tmp_path, shape="one-engine", nodes={**EXAMPLE["nodes"], "allow_tp_across_nodes": True})
    for host in ("gpu-a", "gpu-b"):
        env = files[host]["services"]["engine"]["environment"]
        assert env["ENGINE_TP_SIZE"] == "16" and "ENGINE_PP_SIZE" not in env
    for namespace in engine_namespaces(files):
        assert (namespace.tp_size, namespace.pp_size, namespace.nnodes) == (16, 1, 2)
        sglang_pipeline_checks(namespace)
    # a preset's own TP16 passes too, with the opt-in
    generated = inventory.node_files(pinned_tp(16), nodes_inventory(tmp_path, allow_tp_across_nodes=True),
                                     tmp_path / "out", "test")
    assert all('ENGINE_TP_SIZE: "16"' in text for text in generated.values())


def test_the_opt_in_must_be_a_boolean(tmp_path):
    path = write_inventory(tmp_path, shape="one-engine", nodes={**EXAMPLE["nodes"], "allow_tp_across_nodes": "yes"})
    with pytest.raises(render.RenderError, match="nodes.allow_tp_across_nodes"):
        inventory.load(path, render.load_data())


def test_speculative_decoding_across_nodes_is_refused_as_sglang_refuses_it(tmp_path):
    with pytest.raises(render.RenderError) as err:
        inventory.write(write_inventory(tmp_path, shape="one-engine", preset="latency"), tmp_path / "out")
    assert "pipeline parallelism (--pp-size 2) with speculative decoding (EAGLE3)" in str(err.value)
    assert "ALLOW_TP_ACROSS_NODES=1" in str(err.value)
    assert not (tmp_path / "out").exists()
    # SGLang's own rule, on the command the bundle would otherwise have rendered
    from test_sglang_parser import parse_strictly
    engine = render.resolve(render.load_data(), "h100x8", "latency", tp_across_nodes=True)
    argv = [*engine.engine_argv[len(command.ENGINE_LAUNCH_COMMAND):], "--nnodes", "2", "--pp-size", "2"]
    with pytest.raises(AssertionError, match="Pipeline parallelism currently only supports EAGLE"):
        sglang_pipeline_checks(parse_strictly(argv)[0])


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
