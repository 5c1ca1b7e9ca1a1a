"""Render compose files from the preset data: hardware profile x optimization preset.

    python -m bundle.render presets                     every pair that renders, "HARDWARE PRESET"
    python -m bundle.render render --hardware h100x4 --preset basic --out docker-compose.yml
    python -m bundle.render compose-file                the top-level docker-compose.yml (h100x4, basic)
    python -m bundle.render table                       the README's hardware/preset table
    python -m bundle.render detect                      the profile matching nvidia-smi / rocm-smi

The flag checks, the env naming rule and the memory arithmetic are the container's own (the
`launcher` package): a pair renders only if the container would accept its environment, and fits
in GPU memory.
The data is checked against bundle/schema.py first; the options (HARDWARE=, PORT=, ...) are
bundle/options.py's, read from the environment (`make render` exports them) unless given as flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import ipaddress
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jinja2
import yaml

from bundle import errors, names, options, schema
from bundle.errors import API_KEY_HINT, RenderError  # callers know it as render.RenderError
from bundle.options import Params
from launcher import memory, sglang_flags  # the container's own rules, one source
from launcher.command import DEFAULT_FLAGS, build_config
from launcher.gpus import NVIDIA_QUERY, parse_nvidia_smi_csv
from launcher.settings import BundleSettings, ConfigError

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "presets"
TEMPLATE = "docker-compose.yml.j2"
# The top-level docker-compose.yml: `docker compose up -d` without make (`make compose-file`).
TOP_LEVEL = {"hardware": "h100x4", "preset": "basic", "out": "docker-compose.yml"}


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_data(data_dir: Path = DATA_DIR) -> dict:
    """The three YAML files, checked against bundle/schema.py (SchemaError, a RenderError, names
    every problem with its file and path)."""
    data, files = {}, {}
    for name in schema.FILES:
        path = data_dir / f"{name}.yaml"
        files[name] = _shown_path(path)
        try:
            data[name] = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise RenderError(f"{files[name]}: {err}") from None
    return validate(data, files)


def validate(data: dict, files: dict | None = None) -> dict:
    """schema.validate, with the flag names of the pinned SGLang release."""
    flags = [option[2:] for option in _catalogue().by_option if option.startswith("--")]
    return schema.validate(data, files, flags)


@dataclasses.dataclass
class Deployment:
    hardware: str
    preset: str
    summary: str
    gpu: dict
    count: int
    vendor: str
    image: dict
    base_image: str           # the pinned SGLang image the bundle image is built FROM
    image_tag: str
    flags: dict               # SGLang flag (long name, no --) -> value
    engine_env: dict          # ENGINE_* -> string, what the compose file carries
    extra_env: dict           # engine environment variables the preset needs (SGLANG_*)
    rationale_lines: list
    plan: memory.MemoryPlan
    engine_argv: list
    replicas: int = 1         # engines behind SGLang's gateway (REPLICAS=); 1: no gateway
    nodes: int = 1            # hosts one engine spans (--nnodes; an inventory of shape one-engine)

    @property
    def gpus_per_replica(self) -> int:
        return self.count // self.replicas

    @property
    def memory_lines(self) -> list[str]:
        return [part.strip() for part in self.plan.explain().split(";")]


def _gpu_count_expr(value, count: int, where: str):
    """'gpus' -> the profile's GPU count, 'gpus/N' -> count / N."""
    if not isinstance(value, str) or not value.startswith("gpus"):
        return value
    match = re.fullmatch(r"gpus(?:/(\d+))?", value)
    if not match:
        raise RenderError(f"{where}: {value!r} is not 'gpus' or 'gpus/N'")
    divisor = int(match.group(1) or 1)
    if count % divisor:
        raise RenderError(f"{where}: {count} GPUs are not divisible by {divisor}")
    return count // divisor


def _env_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def per_replica_gpus(count: int, replicas: int, hardware: str) -> int:
    if replicas < 1 or count % replicas:
        raise RenderError(f"REPLICAS={replicas}: {hardware}'s {count} GPUs do not split into {replicas} "
                          f"equal replicas; choose a divisor of {count}")
    return count // replicas


def resolve(data: dict, hardware: str, preset: str, replicas: int = 1, nodes: int = 1,
            tp_across_nodes: bool = False) -> Deployment:
    """The pair's engine, checked as the container checks it; with replicas > 1, one of the
    `replicas` engines, each on count/replicas GPUs ('gpus' in the preset means those); with
    nodes > 1, one engine on the GPUs of `nodes` hosts of this profile, one pipeline stage per
    node ('gpus': one node's), or with tp_across_nodes (the opt-in TP_ACROSS_NODES) tensor
    parallel over all of them ('gpus': every node's)."""
    profiles, presets = data["hardware"]["hardware"], data["presets"]["presets"]
    if hardware not in profiles:
        raise RenderError(f"unknown HARDWARE={hardware!r}; profiles: {', '.join(profiles)}")
    if preset not in presets:
        raise RenderError(f"unknown PRESET={preset!r}; presets: {', '.join(presets)}")
    profile, spec = profiles[hardware], presets[preset]
    gpu = data["hardware"]["gpus"][profile["gpu"]]
    image = data["hardware"]["images"][gpu["image"]]
    reference = base_image(data, gpu["image"])
    count = int(profile["count"])
    per_replica = per_replica_gpus(count, replicas, hardware)
    if nodes < 1 or (nodes > 1 and replicas > 1):
        raise RenderError(f"nodes={nodes}, REPLICAS={replicas}: one engine spans several nodes, or one host runs "
                          "several engines, not both")
    engine_gpus = per_replica * nodes
    override = (spec.get("hardware") or {}).get(hardware) or {}
    if override.get("unsupported"):
        raise RenderError(f"{preset} on {hardware}: {override['unsupported']}")

    flags = dict(spec["flags"])
    for name, value in (override.get("flags") or {}).items():
        if value is None:
            flags.pop(name, None)
        else:
            flags[name] = value
    tp_gpus = engine_gpus if tp_across_nodes else per_replica
    flags = {name: _gpu_count_expr(value, tp_gpus, f"{preset}.flags.{name}") for name, value in flags.items()}
    if nodes > 1:
        if not tp_across_nodes:
            flags.setdefault("pp-size", nodes)     # one stage per node (SGLang gives node k stage k)
        flags["nnodes"] = nodes     # node-rank and dist-init-addr differ per node: render_nodes adds them

    engine_env = {}
    for name, value in flags.items():
        env = sglang_flags.env_name_for_option("--" + name)
        engine_env[env] = _env_value(value)
    catalogue = _catalogue()
    try:
        config = build_config(engine_env, [], catalogue)
    except ConfigError as err:
        raise RenderError(f"{preset} on {hardware}: {err}") from None

    values = config.values
    model = values["model_path"]
    shape = memory.KNOWN_MODELS.get(model)
    if shape is None:
        raise RenderError(f"{preset} on {hardware}: {model} is not in memory.KNOWN_MODELS, "
                          "so its memory cannot be checked")
    where = f"{preset} on {hardware}" + (f" across {nodes} nodes" if nodes > 1 else "")
    check_parallelism(values, shape, where, per_replica, nodes, tp_across_nodes)
    world = int(values.get("tp_size") or 1) * int(values.get("pp_size") or 1) * int(values.get("dp_size") or 1)
    if world != engine_gpus:
        have = (f"each of {replicas} replicas has {per_replica}" if replicas > 1 else
                f"{nodes} nodes of {count} have {engine_gpus}" if nodes > 1 else f"the profile has {count}")
        raise RenderError(f"{preset} on {hardware}: tp*pp*dp = {world} GPUs, {have}")
    plan = memory.plan_memory(model, shape, values, gpu["memory_mib"] / 1024, cuda=image["vendor"] == "nvidia")
    if (plan.fp8_weights or plan.kv_dtype_bytes == 1) and not gpu["fp8"]:
        raise RenderError(f"{preset} on {hardware}: uses FP8, which {gpu['name']} does not support")
    if not plan.fits:
        raise RenderError(f"{preset} on {hardware} does not fit: {plan.explain()}")

    rationale = [spec["rationale"]] + ([override["rationale"]] if override.get("rationale") else [])
    if nodes > 1:
        rationale.append(across_nodes_rationale(values, nodes, tp_across_nodes))
    container = data["container"]
    return Deployment(
        hardware=hardware, preset=preset, summary=spec["summary"], gpu=gpu, count=count,
        vendor=image["vendor"], image=image, base_image=reference,
        image_tag=f"{container['image_name']}:sglang-{data['hardware']['sglang_version']}-{gpu['image']}",
        flags=flags, engine_env=engine_env, extra_env=dict(spec.get("env") or {}),
        rationale_lines=_wrap(" ".join(rationale)), plan=plan,
        engine_argv=config.engine_argv(BundleSettings.from_environ(engine_env)), replicas=replicas, nodes=nodes)


# The opt-in that lets tensor parallelism cross nodes or exceed the model's KV heads: the make
# variable of `make k8s` (bundle/k8s.py) and, in lower case, the key of an inventory's `nodes:`.
TP_ACROSS_NODES = "ALLOW_TP_ACROSS_NODES"
TP_ACROSS_NODES_SETTING = (f"{TP_ACROSS_NODES}=1 (make k8s) or `{TP_ACROSS_NODES.lower()}: true` under an "
                           "inventory's nodes:")


def check_parallelism(values: dict, shape: memory.ModelShape, where: str, gpus_per_node: int, nodes: int,
                      tp_across_nodes: bool) -> None:
    """Tensor parallelism inside one node and within the model's KV heads; pipeline stages across
    nodes, without speculative decoding. The first two are waived by the opt-in."""
    tp, pp = int(values.get("tp_size") or 1), int(values.get("pp_size") or 1)
    reasons = []
    if not tp_across_nodes:
        if nodes > 1 and tp > gpus_per_node:
            reasons.append(f"tp-size {tp} spans nodes of {gpus_per_node} GPUs, so every layer's all-reduce crosses "
                           f"the network instead of staying on the node's NVLink; across nodes the bundle runs "
                           f"one pipeline stage per node (--pp-size {nodes}, tp-size at most {gpus_per_node})")
        if tp > shape.kv_heads:
            reasons.append(f"tp-size {tp} is more than the model's {shape.kv_heads} KV heads (num_key_value_heads "
                           f"of its config.json, launcher/memory.py): SGLang copies each KV head onto "
                           f"{tp // shape.kv_heads} GPUs, so the extra GPUs add no KV cache per token")
    if reasons:
        raise RenderError(f"{where}: " + "; ".join(reasons) + f". Set {TP_ACROSS_NODES_SETTING} to render it anyway")
    if pp > 1 and values.get("speculative_algorithm"):
        # sglang/srt/arg_groups/validation_hook.py, check_pipeline_parallel_compat: PP takes only
        # EAGLE, and only on a PD prefill node or with the experimental SGLANG_ENABLE_PP_SPEC.
        raise RenderError(f"{where}: pipeline parallelism (--pp-size {pp}) with speculative decoding "
                          f"({values['speculative_algorithm']}) is refused by SGLang 0.5.23 outside PD "
                          f"disaggregation; choose a preset without it (basic), or set {TP_ACROSS_NODES_SETTING} "
                          "for tensor parallelism over every node's GPUs instead")


def across_nodes_rationale(values: dict, nodes: int, tp_across_nodes: bool) -> str:
    tp, pp = int(values.get("tp_size") or 1), int(values.get("pp_size") or 1)
    if tp_across_nodes:
        return (f"Across {nodes} nodes: tensor parallel over every node's GPUs (tp-size {tp}, "
                f"{TP_ACROSS_NODES}): every layer's all-reduce crosses the network.")
    return (f"Across {nodes} nodes: one pipeline stage per node (--pp-size {pp}, as the seed guide "
            f"advises for multi-node), tensor parallel over each node's {tp} GPUs on NVLink; only "
            "activations cross the network, once per stage. SGLang turns the overlap scheduler off with PP.")


def base_image(data: dict, lane: str) -> str:
    """repository:tag[@digest] of an image lane, the tag made from the pinned SGLang version."""
    image = data["hardware"]["images"][lane]
    tag = image["tag"].replace("{sglang_version}", str(data["hardware"]["sglang_version"]))
    digest = image.get("digest")
    if digest and not schema.DIGEST.fullmatch(digest):
        raise RenderError(f"presets/hardware.yaml images.{lane}.digest={digest!r}: expected sha256:<64 hex digits>")
    return f"{image['repository']}:{tag}" + (f"@{digest}" if digest else "")


def image_alternatives(data: dict, deployment: Deployment) -> list[str]:
    """Other tags of the deployment's lane worth trying when its own does not resolve."""
    image = data["hardware"]["images"][deployment.gpu["image"]]
    version = str(data["hardware"]["sglang_version"])
    return [f"{image['repository']}:{tag.replace('{sglang_version}', version)}"
            for tag in image.get("alternatives") or ()]


@functools.lru_cache(maxsize=None)
def _catalogue() -> sglang_flags.Catalogue:
    return sglang_flags.Catalogue.load()


def _wrap(text: str, width: int = 98) -> list[str]:
    return textwrap.wrap(text, width=width)


def pairs(data: dict) -> list[tuple[str, str]]:
    result = []
    for hardware in data["hardware"]["hardware"]:
        for preset in data["presets"]["presets"]:
            try:
                resolve(data, hardware, preset)
            except RenderError:
                continue
            result.append((hardware, preset))
    return result


def secrets_path(data: dict, params: Params) -> Path:
    folder = Path(params.secrets_dir or data["container"]["secrets_dir"])
    return folder if folder.is_absolute() else ROOT / folder


def parse_bind_address(text: str) -> tuple[str, bool]:
    """BIND_ADDRESS -> (host part of a compose port mapping, whether it is loopback only)."""
    address = ipaddress.ip_address(options.BY_VARIABLE["BIND_ADDRESS"].read(text).strip("[]"))
    host = f"[{address}]" if address.version == 6 else str(address)
    return host, address.is_loopback


SINGLE_ENGINE_SERVICE = "engine"    # the compose service of a one-engine deployment


def engine_services(deployment: Deployment, gpus: list[str]) -> list[dict]:
    """The engine services: "engine", or engine-1..N on disjoint GPU sets (GPUS= order, else 0..count-1).
    Each: name, gpu_ids, publish (a port mapping, or None: the gateway reaches it in-network),
    env (per-service engine variables), network_mode (None, or "host" for engines across nodes)."""
    if deployment.replicas == 1:
        return [engine_service(SINGLE_ENGINE_SERVICE, gpus or None)]
    ids = gpus or [str(index) for index in range(deployment.count)]
    size = deployment.gpus_per_replica
    return [engine_service(f"{SINGLE_ENGINE_SERVICE}-{number + 1}", ids[number * size:(number + 1) * size])
            for number in range(deployment.replicas)]


def engine_service(name: str, gpu_ids, publish: str | None = None, env: dict | None = None,
                   network_mode: str | None = None) -> dict:
    return {"name": name, "gpu_ids": gpu_ids, "publish": publish, "env": env or {}, "network_mode": network_mode}


@dataclasses.dataclass
class Layout:
    """What one compose file runs, when it is not the plain REPLICAS= file (inventories: bundle/inventory.py)."""
    engines: list             # engine_service() dicts; may be empty (a gateway-only host)
    worker_urls: list | None  # the gateway's engines; None: no gateway in this file
    context: Path | None = None   # the images' build context, when not this checkout (a host's own folder)


def gateway_command(data: dict, worker_urls: list[str]) -> list[str]:
    """smg's flags (nothing secret: launcher/gateway.py adds the keys in-process)."""
    gateway = data["gateway"]
    return ["--host", "0.0.0.0", "--port", str(gateway["port"]), "--worker-urls", *worker_urls,
            "--policy", gateway["policy"],
            "--prometheus-host", "0.0.0.0", "--prometheus-port", str(gateway["metrics_port"]),
            "--health-check-endpoint", gateway["health_check_endpoint"],
            "--health-check-interval-secs", str(gateway["health_check_interval_secs"]),
            "--health-failure-threshold", str(gateway["health_failure_threshold"]),
            "--health-success-threshold", str(gateway["health_success_threshold"]),
            "--worker-startup-timeout-secs", str(gateway["worker_startup_timeout_secs"])]


def gateway_view(data: dict, worker_urls: list[str], secrets: list[dict]) -> dict:
    gateway = data["gateway"]
    port = str(gateway["port"])
    return {**gateway,
            "image_tag": f"{gateway['image_name']}:smg-{gateway['smg_version']}",
            "command": gateway_command(data, worker_urls),
            "worker_count": len(worker_urls),
            "healthcheck": ["CMD", "python3", "-m", "launcher.gateway", "--healthcheck", "--port", port],
            "healthcheck_interval": f"{gateway['health_check_interval_secs']}s",
            "secrets": [{"name": s["name"], "env": names.GATEWAY_KEY_FILES[s["name"]]} for s in secrets
                        if s["name"] in names.GATEWAY_KEY_FILES]}


def render(data: dict, deployment: Deployment, params: Params, out: Path, command: str,
           layout: Layout | None = None) -> str:
    container = data["container"]
    port = options.BY_VARIABLE["PORT"].read(str(params.port or container["default_port"]))
    bind_host, loopback = parse_bind_address(params.bind_address or container["default_bind_address"])
    if params.gpus and len(params.gpus) != deployment.count:
        raise RenderError(f"GPUS lists {len(params.gpus)} GPUs ({','.join(params.gpus)}) but "
                          f"{deployment.hardware} has {deployment.count}")
    if not loopback and not params.api_key_file and not params.allow_no_api_key:
        raise RenderError(f"BIND_ADDRESS={params.bind_address} publishes the API beyond this host without "
                          "an API key: set API_KEY_FILE=secrets/api_key, or ALLOW_NO_API_KEY=1 to waive it; "
                          f"{API_KEY_HINT}")
    out_dir = out.resolve().parent

    def from_out(path) -> str:
        """A path relative to the compose file, always starting with . (else compose sees a volume name)."""
        relative = os.path.relpath((ROOT / path).resolve(), out_dir)
        return relative if relative.startswith(".") else "./" + relative

    secrets = [{"name": "hf_token", "env": None, "file": from_out(secrets_path(data, params) / "hf_token")}]
    for name, env, path in (("api_key", "ENGINE_API_KEY_FILE", params.api_key_file),
                            ("admin_api_key", "ENGINE_ADMIN_API_KEY_FILE", params.admin_api_key_file)):
        if path:
            secrets.append({"name": name, "env": env, "file": from_out(path)})
    view = {
        "project": f"{container['project_prefix']}-{port}",
        "root": from_out(layout.context if layout and layout.context else ROOT),
        "port": port,
        "bind_host": bind_host,
        "container_port": DEFAULT_FLAGS["--port"],   # the guard's port inside the container
        "gpus": params.gpus,
        "secrets": secrets,
        "lora_dir": from_out(params.lora_dir) if params.lora_dir else None,
        "env_file": from_out(params.env_file) if params.env_file else None,
        "base_image": options.BY_VARIABLE["BASE_IMAGE"].read(params.base_image) or deployment.base_image,
    }
    if layout is None:
        engines = engine_services(deployment, params.gpus)
        worker_urls = None
        if deployment.replicas > 1:
            worker_urls = [f"http://{e['name']}:{view['container_port']}" for e in engines]
        else:
            engines[0]["publish"] = f"{bind_host}:{port}:{view['container_port']}"
        layout = Layout(engines, worker_urls)
    engines = layout.engines
    gateway = gateway_view(data, layout.worker_urls, secrets) if layout.worker_urls else None
    if not engines:   # a gateway-only file declares only the gateway's secrets
        view["secrets"] = [s for s in secrets if s["name"] in {g["name"] for g in gateway["secrets"]}]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.get_template(TEMPLATE).render(deployment=deployment, params=view, container=container, command=command,
                                             engines=engines, gateway=gateway, names=names.view())


def render_command(hardware: str, preset: str, out: str, params: Params, target: str = "render") -> str:
    """The `make render ...` (or `make deploy ...`) line written into the rendered file."""
    return options.command_line(hardware, preset, out, params, target)


def write(data: dict, hardware: str, preset: str, params: Params, out: Path, command: str) -> Deployment:
    deployment = resolve(data, hardware, preset, params.replicas or 1)
    text = render(data, deployment, params, out, command)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    write_monitoring(data, deployment, params, out, command)
    return deployment


def write_monitoring(data: dict, deployment: Deployment, params: Params, out: Path, command: str) -> None:
    """MONITORING=1: monitoring.yml and prometheus.yml beside the compose file; without it, an
    earlier render's are removed (bundle/monitoring.py)."""
    from bundle import monitoring   # imported here: it is needed only with MONITORING=1
    if not params.monitoring:
        monitoring.remove(out)
        return
    monitoring.write(out, engine_services=[e["name"] for e in engine_services(deployment, params.gpus)],
                     engine_port=int(DEFAULT_FLAGS["--port"]),
                     gateway=data["gateway"] if deployment.replicas > 1 else None,
                     api_key=bool(params.api_key_file), secrets_dir=secrets_path(data, params), command=command)


def markdown_table(data: dict) -> str:
    rows = ["| hardware | preset | GPUs | weights; engine flags | weights/GPU | mem-fraction-static | "
            "KV tokens per replica |", "|---|---|---|---|---|---|---|"]
    for hardware, preset in pairs(data):
        d = resolve(data, hardware, preset)
        flags = " ".join(f"`--{k}`" if v is True else f"`--{k} {v}`" for k, v in d.flags.items()
                         if k not in ("model-path", "enable-metrics", "tool-call-parser"))
        model = "FP8" if d.plan.fp8_weights else "BF16"
        fraction = (f"{d.plan.mem_fraction:.3f} (SGLang's)" if d.plan.mem_fraction_is_sglang_default
                    else f"{d.plan.mem_fraction:g}")
        rows.append(f"| {hardware} | {preset} | {d.count}x {d.gpu['name']} | {model}; {flags} | "
                    f"{d.plan.weights_gib:.1f} GiB | {fraction} | {d.plan.kv_tokens:,} |")
    return "\n".join(rows)


def detect_hardware(data: dict, query_output: str | None = None, gpu_ids: list | None = None) -> str:
    """The one profile matching the GPUs this host reports (only those in GPUS= when given), else a
    RenderError naming the choices."""
    if query_output is None:
        try:
            query_output = subprocess.run(NVIDIA_QUERY, capture_output=True, text=True,
                                          timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            raise RenderError("no NVIDIA GPU detected (nvidia-smi missing or failing); set HARDWARE= "
                              f"to one of: {', '.join(data['hardware']['hardware'])}") from None
    gpus = parse_nvidia_smi_csv(query_output)
    if gpu_ids:
        missing = set(gpu_ids) - {str(g.index) for g in gpus}
        if missing:
            raise RenderError(f"GPUS={','.join(gpu_ids)}: no GPU {', '.join(sorted(missing))} on this host "
                              f"(nvidia-smi lists {', '.join(str(g.index) for g in gpus)})")
        gpus = [g for g in gpus if str(g.index) in gpu_ids]
    names = {g.name for g in gpus}
    matches = []
    for profile, spec in data["hardware"]["hardware"].items():
        gpu = data["hardware"]["gpus"][spec["gpu"]]
        if len(gpus) == spec["count"] and names and all(any(m in n for m in gpu["match"]) for n in names):
            matches.append(profile)
    if len(matches) != 1:
        seen = f"{len(gpus)}x {', '.join(sorted(names)) or 'no GPU'}"
        raise RenderError(f"this host has {seen}, which matches "
                          f"{'no profile' if not matches else ' and '.join(matches)}; set HARDWARE= to "
                          f"one of: {', '.join(data['hardware']['hardware'])}")
    return matches[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.render", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder of the preset YAML files")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("presets", help="print every HARDWARE PRESET pair that renders")
    sub.add_parser("table", help="print the README's markdown table")
    sub.add_parser("detect", help="print the hardware profile matching this host's GPUs")
    sub.add_parser("compose-file", help="write the top-level docker-compose.yml (no options, whatever the environment)")
    options.add_arguments(sub.add_parser("explain", help="print why a pair renders or not"), options.EXPLAIN)
    options.add_arguments(sub.add_parser("render", help="write one compose file"), options.RENDER)
    args = parser.parse_args(argv)
    try:
        data = load_data(args.data)
        if args.command == "presets":
            for hardware, preset in pairs(data):
                print(f"{hardware} {preset}")
        elif args.command == "table":
            print(markdown_table(data))
        elif args.command == "detect":
            print(detect_hardware(data))
        elif args.command == "explain":
            chosen = options.read(options.EXPLAIN, args)
            d = resolve(data, chosen["hardware"], chosen["preset"], chosen["replicas"] or 1)
            print("\n".join([f"{d.hardware} {d.preset}: {d.summary}", *d.rationale_lines,
                             *d.memory_lines, " ".join(d.engine_argv)]))
        elif args.command == "compose-file":
            out = ROOT / TOP_LEVEL["out"]
            write(data, TOP_LEVEL["hardware"], TOP_LEVEL["preset"], Params(), out,
                  render_command(**TOP_LEVEL, params=Params()))
        else:
            chosen = options.read(options.RENDER, args)
            params = options.params(chosen)
            write(data, chosen["hardware"], chosen["preset"], params, chosen["out"],
                  render_command(chosen["hardware"], chosen["preset"], str(chosen["out"]), params))
    except RenderError as err:
        print(f"render: {err}", file=sys.stderr)
        return errors.status(err)
    return 0


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
