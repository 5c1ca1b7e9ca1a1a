"""Kubernetes manifests from the preset data: the same engines, checks and gateway as the compose files.

    python -m bundle.k8s render --hardware h100x4 --preset basic --out DIR [--replicas N] [--nodes N]
                        [--allow-tp-across-nodes 1]
                        plain manifests, what `kubectl apply -f DIR` takes (`make k8s`)
    python -m bundle.k8s tree [--out k8s]
                        the Kustomize base and one overlay per renderable pair (`make k8s-tree`)
    python -m bundle.k8s validate PATH...
                        the manifests against the Kubernetes schemas and the LeaderWorkerSet CRD
                        (needs kubernetes-validate, from requirements-test.txt)

What is rendered (docs/kubernetes.md): the engine as a Deployment (REPLICAS= pods, each on
GPUs/REPLICAS of the profile, as `make render` splits a host) or, with NODES=N, a LeaderWorkerSet
whose every group is one engine across N pods of a whole profile each, one pipeline stage per pod
(ALLOW_TP_ACROSS_NODES=1: tensor parallel across them instead); SGLang's gateway as its own
Deployment that finds the engine pods through the Kubernetes API (smg's pod discovery: a
ServiceAccount, a Role to list and watch pods, a RoleBinding) and registers only Ready ones; the
gateway's Service; the model cache's PersistentVolumeClaim; a NetworkPolicy that lets only the
gateway (and, across nodes, the engine's own pods) reach the engines. Secrets are referenced, never
rendered: the operator creates the Secret, the pods mount it as files.

A pair renders only if the container would accept every pod's environment (launcher.command's
build_config, run here with the values Kubernetes and LeaderWorkerSet substitute) and it fits in
GPU memory (render.resolve), as for compose.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import jinja2
import yaml

from bundle import errors, names, options, render
from bundle.errors import RenderError
from launcher.command import DEFAULT_FLAGS, build_config
from launcher.settings import BUNDLE_SETTINGS, ConfigError
from launcher.sglang_flags import env_name_for_option

ROOT = render.ROOT
TEMPLATES = ROOT / "templates" / "k8s"
TREE = ROOT / "k8s"
# Vendored, byte for byte, from kubernetes-sigs/lws v0.10.0: its source and sha256 are in presets/vendor/SOURCE.md.
CRD = ROOT / "presets" / "vendor" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
# Validated against the oldest release LeaderWorkerSet supports without a feature gate (its README:
# >= 1.26 needs StatefulSet start ordinals, on by default from 1.27) and kubernetes-validate's newest.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")

NODES = options.BY_VARIABLE["NODES"]
TP_ACROSS_NODES = options.BY_VARIABLE[render.TP_ACROSS_NODES]
SECRETS_MOUNT = "/run/secrets"
# The values LeaderWorkerSet puts in every pod's environment, first in the list (lws
# api/leaderworkerset/v1: LwsLeaderAddress, LwsWorkerIndex), so later entries may use $(NAME).
LWS_LEADER_ADDRESS, LWS_WORKER_INDEX = "LWS_LEADER_ADDRESS", "LWS_WORKER_INDEX"
NNODES, NODE_RANK, DIST_INIT_ADDR = (env_name_for_option(flag) for flag in ("--nnodes", "--node-rank",
                                                                           "--dist-init-addr"))
POD_NAMESPACE = "POD_NAMESPACE"
# How often the image's own healthcheck lets /health generate: the liveness probe's period.
GENERATE_SECONDS = next(s for s in BUNDLE_SETTINGS if s.env == "BUNDLE_HEALTHCHECK_GENERATE_SECONDS")
# The files of one rendering, in `kubectl apply -f` order, and which of them the Kustomize base holds.
FILES = ("model-cache.yaml", "gateway.yaml", "network-policy.yaml", "engine.yaml")
BASE_FILES = FILES[:3]


# ---- the engine: which pods, with which environment --------------------------------------------

@dataclasses.dataclass
class Shape:
    deployment: render.Deployment
    replicas: int             # engines behind the gateway
    nodes: int                # pods per engine (1: a Deployment; more: a LeaderWorkerSet)
    tp_across_nodes: bool = False   # TP_ACROSS_NODES: no pipeline stages, TP over every pod's GPUs

    @property
    def gpus_per_pod(self) -> int:
        return self.deployment.gpus_per_replica if self.nodes == 1 else self.deployment.count


def resolve(data: dict, hardware: str, preset: str, replicas: int = 1, nodes: int = 1,
            tp_across_nodes: bool = False) -> Shape:
    """The engine of the pair, checked as for compose (render.resolve). With nodes > 1 each pod holds
    a whole profile, one pipeline stage of the engine (or, with tp_across_nodes, a share of its TP
    group), and `replicas` counts LeaderWorkerSet groups, each one engine."""
    if nodes == 1:
        return Shape(render.resolve(data, hardware, preset, replicas, tp_across_nodes=tp_across_nodes), replicas, 1,
                     tp_across_nodes)
    return Shape(render.resolve(data, hardware, preset, 1, nodes, tp_across_nodes), replicas, nodes, tp_across_nodes)


def engine_env(data: dict, shape: Shape) -> list[dict]:
    """The engine container's environment, in order: ENGINE_* (its flags), the preset's extra
    variables, the secrets as file paths, and across nodes the rank and rendezvous LeaderWorkerSet
    gives each pod."""
    deployment, k8s = shape.deployment, data["kubernetes"]
    env = dict(deployment.engine_env)
    env.update(deployment.extra_env)
    if deployment.image.get("min_driver"):
        env["BUNDLE_GPU_DRIVER_MIN"] = str(deployment.image["min_driver"])
    env["HF_TOKEN_FILE"] = f"{SECRETS_MOUNT}/hf_token"
    env[env_name_for_option("--api-key") + "_FILE"] = f"{SECRETS_MOUNT}/api_key"
    if shape.nodes > 1:
        env[NNODES] = str(shape.nodes)
        env[NODE_RANK] = f"$({LWS_WORKER_INDEX})"
        env[DIST_INIT_ADDR] = f"$({LWS_LEADER_ADDRESS}):{k8s['dist_init_port']}"
        env.update(k8s["multi_node_env"])
    return [{"name": name, "value": value} for name, value in env.items()]


def expand(env: list[dict], given: dict) -> dict:
    """The environment a container sees: `given` first (what LeaderWorkerSet injects), then each
    entry with $(NAME) of earlier names substituted, as the kubelet does."""
    seen = dict(given)
    for entry in env:
        seen[entry["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                     lambda m: seen.get(m.group(1), m.group(0)), entry["value"])
    return seen


def sample_pod_environments(shape: Shape, env: list[dict], name: str) -> list[dict]:
    """What each pod of one engine sees: one environment per node rank, LeaderWorkerSet's values
    made as its controller makes them (the leader pod's DNS name under the group's service)."""
    if shape.nodes == 1:
        return [expand(env, {})]
    leader = f"{name}-0.{name}.default"
    return [expand(env, {LWS_LEADER_ADDRESS: leader, LWS_WORKER_INDEX: str(rank)}) for rank in range(shape.nodes)]


def check_engine_env(shape: Shape, env: list[dict], name: str) -> None:
    """Every pod's environment through the container's own build_config: refused here, not on a GPU
    node. The Secret's files are stood in for by files of this machine (the key is only read)."""
    with tempfile.TemporaryDirectory() as folder:
        for rank, environ in enumerate(sample_pod_environments(shape, env, name)):
            for variable, value in environ.items():
                if variable.endswith("_FILE") and value.startswith(SECRETS_MOUNT + "/"):
                    environ[variable] = str(Path(folder) / Path(value).name)
                    Path(environ[variable]).write_text("stand-in secret for the render-time check\n")
            try:
                build_config(environ, [], render._catalogue())
            except ConfigError as err:
                where = f" (node rank {rank})" if shape.nodes > 1 else ""
                raise RenderError(f"{shape.deployment.preset} on {shape.deployment.hardware}{where}: {err}") from None


# ---- the gateway ------------------------------------------------------------------------------

def gateway_discovery_command(data: dict, selector: dict) -> list[str]:
    """smg's flags: render.gateway_command's, with Kubernetes pod discovery in place of --worker-urls.
    The namespace is the gateway pod's own, substituted by the kubelet from the downward API."""
    flags = render.gateway_command(data, [])
    flags.remove("--worker-urls")
    return [*flags, "--discovery-provider", "kubernetes",
            "--selector", *(f"{key}={value}" for key, value in selector.items()),
            "--service-discovery-port", DEFAULT_FLAGS["--port"],
            "--service-discovery-namespace", f"$({POD_NAMESPACE})"]


# ---- rendering ----------------------------------------------------------------------------------

def _seconds(duration: str) -> int:
    """A compose duration (30s, 2m, 1h30m) in seconds."""
    parts = re.findall(r"(\d+)(h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise RenderError(f"presets/container.yaml: {duration!r} is not a duration such as 30s or 2m")
    return sum(int(number) * {"h": 3600, "m": 60, "s": 1}[unit] for number, unit in parts)


def _image(k8s: dict, reference: str) -> str:
    registry = k8s["image_registry"].rstrip("/")
    return f"{registry}/{reference}" if registry else reference


def view(data: dict, shape: Shape) -> dict:
    """Everything the templates print, computed here."""
    k8s, container, gateway = data["kubernetes"], data["container"], data["gateway"]
    deployment, name = shape.deployment, k8s["name"]
    labels = {"app.kubernetes.io/name": name}
    engine_name = f"{name}-engine"
    env = engine_env(data, shape)
    check_engine_env(shape, env, engine_name)
    health = container["healthcheck"]
    interval, timeout = _seconds(health["interval"]), _seconds(health["timeout"])
    engine_labels = {**labels, "app.kubernetes.io/component": "engine"}
    gateway_labels = {**labels, "app.kubernetes.io/component": "gateway"}
    return {
        "name": name,
        "labels": labels,
        "engine": {
            "name": engine_name,
            "labels": engine_labels,
            "worker_labels": {**labels, "app.kubernetes.io/component": "engine-worker"},
            "image": _image(k8s, deployment.image_tag),
            "env": env,
            "port": int(DEFAULT_FLAGS["--port"]),
            "gpu_resource": k8s["gpu_resources"][deployment.vendor],
            "gpus": shape.gpus_per_pod,
            "replicas": shape.replicas,
            "nodes": shape.nodes,
            "grace_seconds": _seconds(container["stop_grace_period"]),
            # Compose's two-speed healthcheck as Kubernetes' three probes: /ready every interval (for
            # start_period at start, the cold-start budget), /health's generation every GENERATE_SECONDS.
            "startup": {"period": interval, "timeout": timeout,
                        "failures": math.ceil(_seconds(health["start_period"]) / interval)},
            "readiness": {"period": interval, "timeout": timeout, "failures": health["retries"]},
            "liveness": {"period": math.ceil(GENERATE_SECONDS.default), "timeout": timeout,
                         "failures": health["retries"]},
            "dist_init_port": k8s["dist_init_port"],
        },
        "gateway": {
            "name": f"{name}-gateway",
            "labels": gateway_labels,
            "image": _image(k8s, render.gateway_view(data, [], [])["image_tag"]),
            "args": gateway_discovery_command(data, engine_labels),
            "port": gateway["port"],
            "metrics_port": gateway["metrics_port"],
            "readiness_period": gateway["health_check_interval_secs"],
            "liveness": k8s["gateway_liveness"],
            "service_type": k8s["service_type"],
            "smg_version": gateway["smg_version"],
            "policy": gateway["policy"],
        },
        "cache": {"name": f"{name}-model-cache", **k8s["model_cache"]},
        "shm_size": k8s["shm_size"],
        "secret_name": k8s["secret_name"],
        "secrets_mount": SECRETS_MOUNT,
        "names": names.view(),
        "pod_namespace": POD_NAMESPACE,
        "deployment": deployment,
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["q"] = json.dumps     # JSON is YAML: every value printed quoted and escaped
    return env


def header(command: str, shape: Shape | None) -> str:
    lines = [f"# GENERATED FILE, do not edit: {command}",
             "# From presets/*.yaml and templates/k8s/ by bundle/k8s.py. Re-render instead of editing."]
    if shape is not None:
        d = shape.deployment
        across = f", one engine across {shape.nodes} nodes" if shape.nodes > 1 else ""
        lines.append(f"# {d.hardware} ({d.gpu['name']} x{d.count} per node), preset {d.preset}{across}: {d.summary}")
        lines += [f"# {line}" for line in d.rationale_lines]
        lines.append(f"# Memory per GPU: {d.memory_lines[0]}")
        lines += [f"#   {line}" for line in d.memory_lines[1:]]
    return "\n".join(lines) + "\n"


def render_files(data: dict, shape: Shape, command: str) -> dict[str, str]:
    """File name -> text, for every name in FILES."""
    context = view(data, shape)
    env = _environment()
    return {name: header(command, shape if name == "engine.yaml" else None)
            + env.get_template(name + ".j2").render(**context) for name in FILES}


def command_line(hardware: str, preset: str, out: str, replicas: int, nodes: int, tp_across_nodes: bool = False) -> str:
    extra = ((f" REPLICAS={replicas}" if replicas > 1 else "") + (f" NODES={nodes}" if nodes > 1 else "")
             + (f" {TP_ACROSS_NODES.variable}=1" if tp_across_nodes else ""))
    return f"make k8s HARDWARE={hardware} PRESET={preset}{extra} OUT={out}"


def write_plain(data: dict, hardware: str, preset: str, out: Path, replicas: int = 1, nodes: int = 1,
                tp_across_nodes: bool = False) -> Shape:
    """The plain manifests of one pair in `out`, for `kubectl apply -f out`."""
    shape = resolve(data, hardware, preset, replicas, nodes, tp_across_nodes)
    files = render_files(data, shape, command_line(hardware, preset, str(out), replicas, nodes, tp_across_nodes))
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    return shape


# ---- the Kustomize tree -------------------------------------------------------------------------

def overlay_name(hardware: str, preset: str, nodes: int = 1) -> str:
    return f"{hardware}-{preset}" + (f"-nodes{nodes}" if nodes > 1 else "")


# One engine across two 4-GPU nodes, the split SGLang's multi-node docs show for a 70B, as the bundle
# makes it: one pipeline stage per node (--pp-size 2), tensor parallel within each (--tp-size 4).
MULTI_NODE_OVERLAYS = (("h100x4", "basic", 2),)


def tree_files(data: dict) -> dict[str, str]:
    """Relative path -> text of the Kustomize tree: base/ (what every pair shares: the gateway, its
    RBAC and Service, the model cache, the network policy) and overlays/<pair>/ (the engine)."""
    command = "make k8s-tree"
    env = _environment()
    pairs = [(h, p, 1) for h, p in render.pairs(data)] + list(MULTI_NODE_OVERLAYS)
    files = {}
    base_shape = resolve(data, *pairs[0][:2])
    base = render_files(data, base_shape, command)
    for name in BASE_FILES:
        files[f"base/{name}"] = base[name]
    files["base/kustomization.yaml"] = header(command, None) + env.get_template("kustomization.yaml.j2").render(
        resources=list(BASE_FILES), comment="What every overlay shares; an overlay adds the engine of one pair.")
    for hardware, preset, nodes in pairs:
        shape = resolve(data, hardware, preset, 1, nodes)
        folder = f"overlays/{overlay_name(hardware, preset, nodes)}"
        files[f"{folder}/engine.yaml"] = render_files(data, shape, command)["engine.yaml"]
        files[f"{folder}/kustomization.yaml"] = header(command, None) + env.get_template(
            "kustomization.yaml.j2").render(resources=["../../base", "engine.yaml"],
                                            comment=f"{hardware}, preset {preset}" +
                                            (f", one engine across {nodes} nodes" if nodes > 1 else ""))
    return files


def write_tree(data: dict, out: Path = TREE) -> list[Path]:
    """Write the tree, removing generated files no pair makes any more."""
    files = tree_files(data)
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    for stale in out.glob("**/*.yaml"):
        if str(stale.relative_to(out)) not in files and stale.read_text().startswith("# GENERATED FILE"):
            stale.unlink()
    for folder in sorted(out.glob("**/"), reverse=True):
        if folder != out and not any(folder.iterdir()):
            folder.rmdir()
    return written


# ---- validation (test venv: kubernetes-validate, jsonschema) ------------------------------------

def load_objects(paths) -> list[dict]:
    objects = []
    for path in paths:
        path = Path(path)
        for file in sorted(path.glob("*.yaml")) if path.is_dir() else [path]:
            if file.name == "kustomization.yaml":
                continue
            objects += [obj for obj in yaml.safe_load_all(file.read_text()) if obj]
    return objects


@dataclasses.dataclass(frozen=True)
class Problem:
    object: str
    message: str

    def __str__(self) -> str:
        return f"{self.object}: {self.message}"


@functools.lru_cache(maxsize=1)
def _lws_validator():
    """A validator of the vendored CRD's served schema (1.3 MB of YAML: read once, with libyaml if present)."""
    import jsonschema
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schema = next(v for v in crd["spec"]["versions"] if v.get("storage"))["schema"]["openAPIV3Schema"]
    return jsonschema.validators.validator_for(schema)(schema)


def embedded_pod_templates(obj: dict) -> list[tuple[str, dict]]:
    """A LeaderWorkerSet's pod templates as core PodTemplate objects: the CRD's schema types them
    but, being structural, lets unknown fields through (the API server prunes them silently);
    Kubernetes' strict schema of PodTemplate refuses them."""
    template = obj["spec"]["leaderWorkerTemplate"]
    found = []
    for role in ("leaderTemplate", "workerTemplate"):
        if role in template:
            found.append((role, {"apiVersion": "v1", "kind": "PodTemplate",
                                 "metadata": {"name": f"{obj['metadata']['name']}-{role.lower()}"},
                                 "template": template[role]}))
    return found


def validate_objects(objects: list[dict], versions=KUBERNETES_VERSIONS) -> list[Problem]:
    """Problems of each object against Kubernetes' strict schemas (every version in `versions`)
    and, for LeaderWorkerSets, the vendored CRD's schema; [] when all are valid."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        where = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        if obj.get("kind") == "LeaderWorkerSet":
            problems += [Problem(where, f"LeaderWorkerSet CRD: {'.'.join(map(str, e.absolute_path))}: {e.message}")
                         for e in _lws_validator().iter_errors(obj)]
            checked = [(f"{where} {role}", pod) for role, pod in embedded_pod_templates(obj)]
        else:
            checked = [(where, obj)]
        for label, item in checked:
            for version in versions:
                try:
                    kubernetes_validate.validate(item, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    problems.append(Problem(label, f"Kubernetes {version}: {'.'.join(map(str, err.path))}: {err.message}"))
                except kubernetes_validate.SchemaNotFoundError as err:
                    problems.append(Problem(label, err.message))
    return problems


# ---- command line -------------------------------------------------------------------------------

# Where `make k8s` means something else than `make render` by the same variable.
K8S_HELP = {"OUT": "the folder to write the manifests into (kubectl apply -f OUT)",
            "REPLICAS": "engines behind the gateway: pods of GPUs/REPLICAS each, or with NODES= LeaderWorkerSet "
                        "groups (default 1; the gateway is always there)"}


def _render_options() -> tuple:
    return (*(options.BY_VARIABLE[v] for v in ("HARDWARE", "PRESET", "OUT", "REPLICAS")), NODES, TP_ACROSS_NODES)


def _read(option: options.Option, given: str | None):
    return option.read(given if given is not None else os.environ.get(option.variable))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.k8s", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("render", help="write one pair's manifests into a folder [HARDWARE= PRESET= OUT= "
                                        "REPLICAS= NODES=]")
    for option in _render_options():
        one.add_argument(option.option, dest=option.field, metavar=option.variable,
                         help=K8S_HELP.get(option.variable, option.help))
    tree = sub.add_parser("tree", help="write the Kustomize base and overlays")
    tree.add_argument("--out", type=Path, default=TREE)
    check = sub.add_parser("validate", help="validate manifests (folders or files) against the schemas")
    check.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            problems = validate_objects(load_objects(args.paths))
            for problem in problems:
                print(f"k8s: {problem}", file=sys.stderr)
            return errors.FAILED if problems else 0
        data = render.load_data()
        if args.command == "tree":
            for path in write_tree(data, args.out):
                print(path)
            return 0
        chosen = {option.variable: _read(option, getattr(args, option.field)) for option in _render_options()}
        for variable in ("HARDWARE", "OUT"):
            if chosen[variable] is None:
                raise RenderError(f"{variable}= is required: make k8s HARDWARE=h100x4 PRESET=basic OUT=dir")
        out = Path(chosen["OUT"])
        shape = write_plain(data, chosen["HARDWARE"], chosen["PRESET"], out, chosen["REPLICAS"] or 1,
                            chosen["NODES"] or 1, chosen[TP_ACROSS_NODES.variable])
        kind = "LeaderWorkerSet" if shape.nodes > 1 else "Deployment"
        print(f"wrote {', '.join(str(out / name) for name in FILES)}: {kind} of {shape.replicas} engine(s), "
              f"{shape.gpus_per_pod} GPUs per pod; kubectl apply -f {out}")
    except RenderError as err:
        print(f"k8s: {err}", file=sys.stderr)
        return errors.USAGE
    return 0


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
