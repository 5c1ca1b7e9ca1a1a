"""Engines beyond one machine: compose files per host, rendered from an inventory file.

    make hosts INVENTORY=inventory.yml OUT=deploy/hosts
    python -m bundle.inventory INVENTORY OUT_DIR

shape: replicas    each host runs its own engines (REPLICAS per host), published on the host's
                   private address and guarded by the API key; OUT_DIR/gateway/ runs SGLang's
                   gateway in front of all of them. More throughput, any number of hosts.
shape: one-engine  one engine spans the hosts (SGLang's --nnodes/--node-rank/--dist-init-addr),
                   one pipeline stage per host (--pp-size = hosts, tensor parallel within each),
                   host networking for NCCL; the API is served by rank 0 only. For what one host
                   cannot hold.

Every file comes from the same presets and the same checks as `make render`; an inventory that
cannot work is refused with the arithmetic before anything is written. inventory.example.yml is
a commented example; docs/scale-out.md has the ports and the firewall rules.
"""
from __future__ import annotations

import ipaddress
import shutil
import sys
from pathlib import Path

import yaml

from bundle import errors, render, schema
from bundle.errors import API_KEY_HINT, HF_TOKEN_HINT, RenderError
from launcher import sglang_flags
from launcher.command import DEFAULT_FLAGS, build_config
from launcher.settings import ConfigError

GATEWAY_FOLDER = "gateway"
SECRETS_FOLDER = "secrets"     # in each host's folder: the secrets its file declares, copied by write()


def load(path: Path, data: dict) -> dict:
    try:
        inventory = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RenderError(f"INVENTORY={path}: {err}") from None
    refs = schema.references(data)
    schema.check_record(inventory, schema.InventoryFile, f"INVENTORY={path}", refs)
    if inventory["preset"] not in data["presets"]["presets"]:
        raise RenderError(f"INVENTORY={path}: preset {inventory['preset']!r} is not one of "
                          f"{', '.join(data['presets']['presets'])}")
    needed = {"replicas": "gateway", "one-engine": "nodes"}[inventory["shape"]]
    if not inventory.get(needed):
        raise RenderError(f"INVENTORY={path}: shape {inventory['shape']} needs a `{needed}:` section")
    if GATEWAY_FOLDER in inventory["hosts"]:
        raise RenderError(f"INVENTORY={path}: a host may not be called {GATEWAY_FOLDER!r} (the gateway's folder)")
    problems = address_problems(inventory)
    if problems:
        raise RenderError("\n".join(f"INVENTORY={path}: {problem}" for problem in problems))
    return inventory


def address_problems(inventory: dict) -> list[str]:
    """What the schema cannot see: addresses other hosts cannot reach, and ports that collide."""
    problems, owners = [], {}
    for name, host in inventory["hosts"].items():
        address = ipaddress.ip_address(host["address"])
        if address.is_loopback or address.is_unspecified or address.is_multicast:
            problems.append(f"hosts.{name}.address: {host['address']} is not an address other hosts can reach; "
                            "expected the host's private address (`ip -br addr` on that host)")
        if address in owners:
            problems.append(f"hosts.{name}.address: {host['address']} is also hosts.{owners[address]}'s; "
                            "each host needs its own address")
        owners.setdefault(address, name)
        last_port = inventory["engine_port"] + (host.get("replicas") or 1) - 1
        if last_port > 65535:
            problems.append(f"hosts.{name}.replicas: engine ports {inventory['engine_port']}-{last_port} "
                            "go past 65535; lower engine_port")
    gateway = inventory.get("gateway") if inventory["shape"] == "replicas" else None
    if gateway:
        host_ports = {str(ipaddress.ip_address(host["address"])): host.get("replicas") or 1
                      for host in inventory["hosts"].values()}
        try:
            gateway_host = str(ipaddress.ip_address(gateway["host"]))
        except ValueError:
            gateway_host = gateway["host"]
        engines = host_ports.get(gateway_host, 0)
        if inventory["engine_port"] <= gateway["port"] < inventory["engine_port"] + engines:
            problems.append(f"gateway.port: {gateway['port']} is one of the engine ports on {gateway['host']} "
                            f"({inventory['engine_port']}-{inventory['engine_port'] + engines - 1}); "
                            "choose another port or another host")
    return problems


def params_for(inventory: dict, port: int, folder: Path, bind_address: str | None = None) -> render.Params:
    """A host's file reads its secrets from its own folder (write() copies them there), so that the
    folder is all a host needs."""
    secrets = folder / SECRETS_FOLDER
    return render.Params(port=port, bind_address=bind_address, api_key_file=str(secrets / "api_key"),
                         admin_api_key_file=str(secrets / "admin_api_key") if inventory.get("admin_api_key_file")
                         else None, secrets_dir=str(secrets))


def secret_sources(data: dict, inventory: dict) -> dict[str, Path]:
    """Compose secret name -> the file on this machine it is copied from (relative paths: from the
    checkout, as `make render` reads them)."""
    folder = Path(inventory.get("secrets_dir") or data["container"]["secrets_dir"])
    sources = {"hf_token": folder / "hf_token", "api_key": Path(inventory["api_key_file"])}
    if inventory.get("admin_api_key_file"):
        sources["admin_api_key"] = Path(inventory["admin_api_key_file"])
    return {name: path if path.is_absolute() else render.ROOT / path for name, path in sources.items()}


def build_context() -> list[str]:
    """What the images build from: the Dockerfiles and what .dockerignore lets into the context."""
    kept = [line[1:].strip().rstrip("/") for line in (render.ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")]
    return ["Dockerfile", "Dockerfile.gateway", ".dockerignore", *kept]


def fill_folder(folder: Path, text: str, sources: dict[str, Path]) -> None:
    """The build context and the secrets the host's file declares, beside it."""
    for name in build_context():
        source, target = render.ROOT / name, folder / name
        if not source.exists():             # an optional part (the offline kit's wheels)
            continue
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    secrets = folder / SECRETS_FOLDER
    secrets.mkdir(mode=0o700, exist_ok=True)
    for name in yaml.safe_load(text).get("secrets") or {}:
        if sources[name].is_file():
            target = secrets / name
            target.touch(mode=0o600)
            target.chmod(0o600)
            target.write_bytes(sources[name].read_bytes())


def missing_secrets(compose_file: Path) -> list[Path]:
    declared = yaml.safe_load(compose_file.read_text()).get("secrets") or {}
    return [compose_file.parent / SECRETS_FOLDER / name for name in declared
            if not (compose_file.parent / SECRETS_FOLDER / name).is_file()]


def replica_files(data: dict, inventory: dict, out_dir: Path, command: str) -> dict[Path, str]:
    """Per host: its engines on ports engine_port, engine_port+1, ... of its address. Then the gateway."""
    files, worker_urls = {}, []
    container_port = DEFAULT_FLAGS["--port"]
    for name, host in inventory["hosts"].items():
        deployment = render.resolve(data, inventory["hardware"], inventory["preset"], host.get("replicas") or 1)
        engines = render.engine_services(deployment, [])
        for number, engine in enumerate(engines):
            port = inventory["engine_port"] + number
            engine["publish"] = f"{bracketed(host['address'])}:{port}:{container_port}"
            worker_urls.append(f"http://{bracketed(host['address'])}:{port}")
        out = out_dir / name / "docker-compose.yml"
        files[out] = render.render(data, deployment, params_for(inventory, inventory["engine_port"], out.parent), out,
                                   command, render.Layout(engines, None, out.parent))
    gateway = inventory["gateway"]
    out = out_dir / GATEWAY_FOLDER / "docker-compose.yml"
    deployment = render.resolve(data, inventory["hardware"], inventory["preset"])
    params = params_for(inventory, gateway["port"], out.parent, gateway.get("bind_address") or "0.0.0.0")
    files[out] = render.render(data, deployment, params, out, command, render.Layout([], worker_urls, out.parent))
    return files


def node_files(data: dict, inventory: dict, out_dir: Path, command: str) -> dict[Path, str]:
    """Per node, in inventory order (rank 0 first): the same engine with its rank."""
    hosts = list(inventory["hosts"].items())
    nodes = inventory["nodes"]
    deployment = render.resolve(data, inventory["hardware"], inventory["preset"], nodes=len(hosts),
                                tp_across_nodes=bool(nodes.get(render.TP_ACROSS_NODES.lower())))
    leader = f"{bracketed(hosts[0][1]['address'])}:{nodes['dist_init_port']}"
    files = {}
    for rank, (name, host) in enumerate(hosts):
        env = {env_name("--node-rank"): str(rank), env_name("--dist-init-addr"): leader,
               env_name("--host"): host["address"],        # the guard listens on the private address only
               "NCCL_SOCKET_IFNAME": nodes["interface"], "GLOO_SOCKET_IFNAME": nodes["interface"]}
        check_node(deployment, env, name)
        engine = render.engine_service(render.SINGLE_ENGINE_SERVICE, None, env=env, network_mode="host")
        out = out_dir / name / "docker-compose.yml"
        files[out] = render.render(data, deployment, params_for(inventory, inventory["engine_port"], out.parent), out,
                                   command, render.Layout([engine], None, out.parent))
    return files


def env_name(option: str) -> str:
    return sglang_flags.env_name_for_option(option)


def check_node(deployment: render.Deployment, env: dict, host: str) -> None:
    """The node's whole environment, as its container will check it."""
    try:
        build_config({**deployment.engine_env, **env}, [], render._catalogue())
    except ConfigError as err:
        raise RenderError(f"host {host}: {err}") from None


def bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def write(inventory_path: Path, out_dir: Path) -> list[Path]:
    data = render.load_data()
    inventory = load(inventory_path, data)
    command = f"make hosts INVENTORY={inventory_path} OUT={out_dir}"
    build = replica_files if inventory["shape"] == "replicas" else node_files
    files = build(data, inventory, out_dir, command)      # everything checked before anything is written
    sources = secret_sources(data, inventory)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        fill_folder(path.parent, text, sources)
        path.write_text(text)
    return list(files)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from bundle import options
    inventory = argv[0] if argv else options.read_one("INVENTORY")
    out = argv[1] if len(argv) > 1 else options.read_one("OUT")
    if not inventory or not out:
        print("hosts: needs INVENTORY= (an inventory file, see inventory.example.yml) and OUT= (a folder)",
              file=sys.stderr)
        return errors.USAGE
    try:
        written = write(Path(inventory), Path(out))
    except RenderError as err:
        print(f"hosts: {err}", file=sys.stderr)
        return errors.USAGE
    for path in written:
        print(f"wrote {path.parent}/: copy the folder to {path.parent.name} (it holds the build files and its "
              f"secrets), then run `docker compose up -d` in it there")
        for secret in missing_secrets(path):
            print(f"hosts: {secret} is missing: its source in {inventory} does not exist; create it "
                  f"({API_KEY_HINT if secret.name != 'hf_token' else HF_TOKEN_HINT}) and run `make hosts` again",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
