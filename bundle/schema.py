"""The schema of every data file: presets/*.yaml, monitoring/queries.yaml and inventories (DATA_FILES).

One dataclass per kind of mapping in the files: each field is a key, its annotation the type of
its value, no default = required, `metadata` its help and what it refers to. `validate` checks the
loaded YAML against them before anything renders, and refuses unknown keys, missing keys, wrong
types and dangling references with the file, the path and the closest valid name:

    presets/presets.yaml: presets.throughput.hardware.mi300: no such hardware profile; did you mean mi300x?

The data stays plain dicts (what the template, the tests and the tools index); these classes are
its declaration, never instantiated.

    python -m bundle.schema                   every file's keys: type, required, help
    python -m bundle.schema export [--out D]  schemas/<file>.schema.json (JSON Schema 2020-12) for
                                              editors (`make schemas`); the checks JSON Schema can
                                              express (JSON_KEYWORDS) become its keywords, the rest
                                              are named in each schema's description
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import json
import re
import types
import typing
from pathlib import Path
from typing import Literal, Optional, Union

from bundle.errors import RenderError

ROOT = Path(__file__).resolve().parent.parent

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
VERSION_PLACEHOLDER = "{sglang_version}"
Scalar = Union[str, int, float, bool]


class SchemaError(RenderError):
    """Preset data that does not match the schema; one line per problem."""


def key(help: str, *, ref: str | None = None, keys: str | None = None, check=None, optional: bool = False,
        name: str | None = None):
    """A key of a mapping. ref: its value names an entry of that collection (REFERENCES); keys: the
    keys of its mapping value do; check: value -> problem or None; name: the key in the file when
    it cannot be the field's (`for`, a Python keyword)."""
    metadata = {"help": help, "ref": ref, "keys": keys, "check": check, "name": name}
    return dataclasses.field(default=None if optional else dataclasses.MISSING, metadata=metadata)


def _key_name(field: dataclasses.Field) -> str:
    return field.metadata.get("name") or field.name


record = dataclasses.dataclass(frozen=True, kw_only=True)


def _tag_check(tag: str) -> str | None:
    if VERSION_PLACEHOLDER not in tag:
        return f"{tag!r} does not contain {VERSION_PLACEHOLDER}: tags are made from the pinned sglang_version"
    return None


def _tags_check(tags: list) -> str | None:
    for tag in tags:
        problem = _tag_check(tag)
        if problem:
            return problem
    return None


def _digest_check(digest: str | None) -> str | None:
    if digest is not None and not DIGEST.fullmatch(digest):
        return f"{digest!r}: expected sha256:<64 hex digits> or null"
    return None


def _positive(value: int) -> str | None:
    return None if value > 0 else f"{value}: expected a positive number"


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"{value}: expected a port number 1-65535"


def _not_empty(value) -> str | None:
    return None if value else "empty: expected at least one entry"


def _text(value: str) -> str | None:
    return None if value else "empty: expected text"


# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, 253 characters at most.
HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
# Linux network interface names (IFNAMSIZ 16 with the NUL): no blanks, slashes or colons.
INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def _ip_address(value: str) -> str | None:
    """An address Docker can publish on and URLs can name: a literal, since containers resolve no
    inventory names and `docker run -p` takes no host name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return (f"{value!r}: expected an IP address such as 10.0.0.11 or fd00::11 (no brackets, no port, "
                "not empty)")
    return None


def _host(value: str) -> str | None:
    if _ip_address(value) is None or (HOST_NAME.fullmatch(value) and not value.replace(".", "").isdigit()):
        return None
    return f"{value!r}: expected an IP address or a host name such as gpu-gateway.internal (not empty)"


def _interface(value: str) -> str | None:
    if INTERFACE_NAME.fullmatch(value) and value not in (".", ".."):
        return None
    return f"{value!r}: expected a network interface name such as eth0 (`ip -br link` lists them)"


URL_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
# An image reference with a tag: a colon after the last slash (registry:5000/name alone has none).
PINNED_IMAGE = re.compile(r"[^\n]*:[^/]*")


def _url_path(value: str) -> str | None:
    if URL_PATH.fullmatch(value):
        return None
    return f"{value!r}: expected an absolute URL path such as /ready"


# ---- presets/hardware.yaml ------------------------------------------------------------------

def _pinned_image(value: str) -> str | None:
    return None if PINNED_IMAGE.fullmatch(value) else f"{value!r}: expected an image pinned by tag, repository:tag"


Vendor = Literal["nvidia", "amd"]


@record
class Image:
    repository: str = key("image repository, e.g. lmsysorg/sglang")
    tag: str = key("tag, made from the pinned release: contains {sglang_version}", check=_tag_check)
    digest: Optional[str] = key("sha256:<64 hex> to freeze the exact build, or null", check=_digest_check,
                                optional=True)
    alternatives: list[str] = key("tags `make deploy` tries when `tag` does not resolve", check=_tags_check,
                                  optional=True)
    min_driver: Optional[int] = key("lowest host driver the image runs on (BUNDLE_GPU_DRIVER_MIN), or null")
    vendor: Vendor = key("GPU vendor: how the compose file hands the GPUs over")


@record
class Gpu:
    name: str = key("the GPU's name, as the README table shows it")
    match: list[str] = key("substrings of the nvidia-smi / rocm-smi name, for detection", check=_not_empty)
    memory_mib: int = key("memory per GPU as the driver reports it (nvidia-smi memory.total)", check=_positive)
    fp8: bool = key("FP8 tensor cores")
    image: str = key("engine image lane", ref="image lane")


@record
class Profile:
    gpu: str = key("which GPU", ref="GPU")
    count: int = key("how many", check=_positive)
    summary: str = key("one line for people")


@record
class HardwareFile:
    sglang_version: str = key("the SGLang release the bundle is built for")
    images: dict[str, Image] = key("engine image lanes", check=_not_empty)
    gpus: dict[str, Gpu] = key("GPU models", check=_not_empty)
    hardware: dict[str, Profile] = key("hardware profiles (HARDWARE=)", check=_not_empty)


# ---- presets/presets.yaml -------------------------------------------------------------------

@record
class Override:
    rationale: str = key("why the preset differs on this hardware", optional=True)
    flags: dict[str, Optional[Scalar]] = key("flags replacing the preset's; null removes one",
                                             keys="SGLang flag", optional=True)
    unsupported: str = key("the pair is refused, with this reason", optional=True)


@record
class Preset:
    summary: str = key("one line for people")
    rationale: str = key("why these flags")
    flags: dict[str, Scalar] = key("SGLang flags, long names without --; 'gpus' or 'gpus/N' for GPU counts",
                                   keys="SGLang flag")
    env: dict[str, str] = key("engine environment variables the preset needs (SGLANG_*)", optional=True)
    hardware: dict[str, Override] = key("per hardware profile overrides", keys="hardware profile", optional=True)


@record
class PresetsFile:
    checkpoints: dict[str, str] = key("model repositories, named for YAML anchors", optional=True)
    presets: dict[str, Preset] = key("optimization presets (PRESET=)", check=_not_empty)


# ---- presets/container.yaml ----------------------------------------------------------------

@record
class Healthcheck:
    interval: str = key("compose duration")
    timeout: str = key("compose duration")
    retries: int = key("failed probes before unhealthy", check=_positive)
    start_period: str = key("compose duration")


@record
class Logging:
    max_size: str = key("json-file max-size")
    max_file: str = key("json-file max-file (a string, as compose wants)")


@record
class ContainerFile:
    default_port: int = key("host port unless PORT= is given", check=_port)
    default_bind_address: str = key("host address unless BIND_ADDRESS= is given", check=_ip_address)
    image_name: str = key("the bundle image's repository")
    project_prefix: str = key("compose project name prefix, -<port> appended")
    hf_cache_default: str = key("host Hugging Face cache unless HF_CACHE= is set at up time")
    secrets_dir: str = key("folder of hf_token unless SECRETS_DIR= is given")
    healthcheck: Healthcheck = key("healthcheck timings")
    stop_grace_period: str = key("compose duration")
    restart: str = key("compose restart policy")
    logging: Logging = key("json-file log rotation")


# ---- presets/gateway.yaml ------------------------------------------------------------------

@record
class GatewayFile:
    smg_version: str = key("the PyPI `smg` release the gateway image installs")
    base_image: str = key("the gateway image's base (a Python image), pulled on GPU hosts")
    image_name: str = key("the gateway image's repository")
    port: int = key("the gateway's port inside its container", check=_port)
    metrics_port: int = key("smg's Prometheus port inside its container", check=_port)
    policy: Literal["cache_aware", "round_robin", "random", "power_of_two"] = key("smg's routing policy")
    health_check_endpoint: str = key("the engine path smg probes (/ready: cheap; /health generates)",
                                     check=_url_path)
    health_check_interval_secs: int = key("seconds between smg's probes of each engine", check=_positive)
    health_failure_threshold: int = key("failed probes before smg takes an engine out", check=_positive)
    health_success_threshold: int = key("good probes before smg puts it back", check=_positive)
    worker_startup_timeout_secs: int = key("how long smg waits for a starting engine", check=_positive)


# ---- presets/kubernetes.yaml ---------------------------------------------------------------

K8S_QUANTITY = re.compile(r"[0-9]+(Ki|Mi|Gi|Ti)")
K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?")


def _k8s_quantity(value: str) -> str | None:
    return None if K8S_QUANTITY.fullmatch(value) else f"{value!r}: expected a size such as 400Gi"


def _k8s_name(value: str) -> str | None:
    return None if K8S_NAME.fullmatch(value) else \
        f"{value!r}: expected a DNS label (lower case letters, digits and -, at most 42 characters)"


def _vendors(value: dict) -> str | None:
    missing = set(typing.get_args(Vendor)) - set(value)
    return f"missing {', '.join(sorted(missing))}: one resource name per image vendor" if missing else None


@record
class ModelCache:
    size: str = key("the PersistentVolumeClaim's request", check=_k8s_quantity)
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"] = key(
        "ReadWriteMany: every engine pod, on any node, mounts it")
    storage_class: Optional[str] = key("StorageClass name, or null for the cluster's default")


@record
class Probe:
    period_seconds: int = key("seconds between probes", check=_positive)
    timeout_seconds: int = key("seconds one probe may take", check=_positive)
    failure_threshold: int = key("failed probes in a row before it counts", check=_positive)


@record
class KubernetesFile:
    name: str = key("object name prefix and app.kubernetes.io/name", check=_k8s_name)
    secret_name: str = key("the Secret the operator creates (keys hf_token, api_key)", check=_k8s_name)
    image_registry: str = key("prefix of the image names (registry/path), empty for the local names")
    model_cache: ModelCache = key("the Hugging Face cache volume")
    shm_size: str = key("/dev/shm's memory-backed emptyDir size", check=_k8s_quantity)
    gateway_liveness: Probe = key("the gateway's liveness probe on /liveness")
    dist_init_port: int = key("torch.distributed's rendezvous port on the leader pod (NODES=)", check=_port)
    multi_node_env: dict[str, str] = key("environment of every pod of a multi-node engine")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = key("the gateway Service's type")
    gpu_resources: dict[str, str] = key("the device plugins' resource names, per image vendor", check=_vendors)


# ---- inventories (INVENTORY=, bundle/inventory.py): hosts for engines beyond one machine -----

@record
class InventoryHost:
    address: str = key("the host's private IP address: engines publish on it, the gateway/peers reach it",
                       check=_ip_address)
    replicas: int = key("engines on this host (shape: replicas), each on GPUs/replicas", check=_positive,
                        optional=True)


@record
class InventoryGateway:
    host: str = key("the address or host name of the machine where the gateway runs", check=_host)
    port: int = key("the gateway's port for clients", check=_port)
    bind_address: str = key("host IP address the gateway publishes on", check=_ip_address, optional=True)


@record
class InventoryNodes:
    dist_init_port: int = key("rank 0's port for torch.distributed's rendezvous (--dist-init-addr)", check=_port)
    interface: str = key("network interface NCCL and Gloo use between the nodes (NCCL_SOCKET_IFNAME)",
                         check=_interface)
    model_cache: Literal["per-node", "shared"] = key(
        "per-node: each node downloads into its own cache; shared: one network filesystem path")
    allow_tp_across_nodes: bool = key(
        "true: tensor parallel over every node's GPUs instead of one pipeline stage per node (every "
        "layer's all-reduce crosses the network; TP may exceed the model's KV heads)", optional=True)


@record
class InventoryFile:
    shape: Literal["replicas", "one-engine"] = key(
        "replicas: each host runs its own engines behind one gateway; one-engine: one engine spans the hosts")
    hardware: str = key("every host's hardware profile", ref="hardware profile")
    preset: str = key("optimization preset")
    api_key_file: str = key("file holding the API key: required, engines listen on the network")
    admin_api_key_file: str = key("file holding the admin key", optional=True)
    secrets_dir: str = key("folder holding hf_token on every host (default: secrets)", optional=True)
    engine_port: int = key("the engines' first port on each host (the next engines take the next ports)",
                           check=_port)
    hosts: dict[str, InventoryHost] = key("hosts by name, in rank order for one-engine", check=_not_empty)
    gateway: InventoryGateway = key("where the gateway runs (shape: replicas)", optional=True)
    nodes: InventoryNodes = key("how the nodes of one engine meet (shape: one-engine)", optional=True)


# ---- presets/monitoring.yaml (MONITORING=1, bundle/monitoring.py) --------------------------

@record
class Prometheus:
    image: str = key("upstream's image, pinned by tag", check=_pinned_image)
    port: int = key("Prometheus's port inside its container", check=_port)
    host_port: int = key("the published port unless PROMETHEUS_PORT= is given", check=_port)
    scrape_interval: str = key("Prometheus duration between scrapes")
    evaluation_interval: str = key("Prometheus duration between evaluations of the alert rules")
    retention: str = key("how long Prometheus keeps samples (--storage.tsdb.retention.time)")


@record
class Grafana:
    image: str = key("upstream's image, pinned by tag", check=_pinned_image)
    port: int = key("Grafana's port inside its container", check=_port)
    host_port: int = key("the published port unless GRAFANA_PORT= is given", check=_port)
    datasource_uid: str = key("uid of the provisioned Prometheus data source every panel names")
    dashboard_uid: str = key("uid of the generated dashboard")


@record
class ScrapeJob:
    name: str = key("Prometheus job name (the alert rules select on it)")
    metrics_path: str = key("the path Prometheus scrapes")


@record
class ScrapeJobs:
    engine: ScrapeJob = key("the engines, through their guards")
    gateway: ScrapeJob = key("SGLang's gateway (smg) when the deployment has one")
    prometheus: ScrapeJob = key("Prometheus itself (its process_start_time_seconds)")


@record
class MonitoringFile:
    prometheus: Prometheus = key("the Prometheus service")
    grafana: Grafana = key("the Grafana service")
    jobs: ScrapeJobs = key("scrape jobs")


# ---- monitoring/queries.yaml: the dashboard's panels and the alert rules --------------------

@record
class Query:
    expr: str = key("PromQL expression", check=_text)
    legend: str = key("Grafana legend format, {{label}} for a label's value (may be empty)")


@record
class Panel:
    title: str = key("the panel's title", check=_text)
    unit: str = key("Grafana unit (default none)", optional=True)
    description: str = key("the panel's help text", optional=True)
    queries: list[Query] = key("the panel's series", check=_not_empty)


@record
class Dashboard:
    title: str = key("the dashboard's title")
    refresh: str = key("Grafana refresh interval")
    time_from: str = key("start of the default time range, e.g. now-1h")
    panels: list[Panel] = key("the engines' row", check=_not_empty)
    gateway_panels: list[Panel] = key("the gateway's row (REPLICAS= > 1)", optional=True)


@record
class Alert:
    name: str = key("the alert's name", check=_text)
    expr: str = key("PromQL condition; ${name} takes a deployment fact (bundle/monitoring.py rule_parameters)",
                    check=_text)
    for_: str = key("how long the condition holds before the alert fires", check=_text, name="for")
    severity: str = key("labels.severity", check=_text)
    summary: str = key("annotations.summary", check=_text)
    description: str = key("annotations.description", check=_text)


@record
class QueriesFile:
    dashboard: Dashboard = key("the Grafana dashboard")
    alerts: list[Alert] = key("the Prometheus alert rules")


FILES = {"hardware": HardwareFile, "presets": PresetsFile, "container": ContainerFile, "gateway": GatewayFile,
         "kubernetes": KubernetesFile}
# Every data file: name (schemas/<name>.schema.json) -> (the file, or its example, its record).
DATA_FILES = {**{name: (f"presets/{name}.yaml", schema) for name, schema in FILES.items()},
              "monitoring": ("presets/monitoring.yaml", MonitoringFile),
              "queries": ("monitoring/queries.yaml", QueriesFile),
              "inventory": ("inventory.example.yml", InventoryFile)}
# Records that need one of these optional keys.
ONE_OF_REQUIRED = {Override: ("rationale", "unsupported")}
PLURALS = {"hardware profile": "hardware profiles", "GPU": "GPUs", "image lane": "image lanes",
           "SGLang flag": "SGLang flags"}


def references(data: dict, flag_names=None) -> dict:
    """Collection name -> its valid names, for the ones present (a missing one is reported elsewhere)."""
    hardware = data.get("hardware") if isinstance(data.get("hardware"), dict) else {}
    found = {"hardware profile": hardware.get("hardware"), "GPU": hardware.get("gpus"),
             "image lane": hardware.get("images")}
    found = {name: list(value) for name, value in found.items() if isinstance(value, dict)}
    if flag_names is not None:
        found["SGLang flag"] = list(flag_names)
    return found


def validate(data: dict, files: dict | None = None, flag_names=None) -> dict:
    """Check the three files' data; SchemaError listing every problem, else the data unchanged.
    files: name -> how to call the file in messages (default presets/<name>.yaml); flag_names:
    the SGLang flags the presets may set (long names without --), unchecked when None."""
    files = files or {}
    problems: list[str] = []
    refs = references(data, flag_names)
    for name, schema in FILES.items():
        where = files.get(name, f"presets/{name}.yaml")
        if name not in data:
            problems.append(f"{where}: missing")
            continue
        for path, message in _check(data[name], schema, "", refs):
            problems.append(f"{where}: {path + ': ' if path else ''}{message}")
    if problems:
        raise SchemaError("\n".join(problems))
    return data


def check_record(value, record, where: str, refs: dict) -> None:
    """One file against one record class (an inventory, ...): SchemaError listing every problem."""
    problems = [f"{where}: {path + ': ' if path else ''}{message}" for path, message in _check(value, record, "", refs)]
    if problems:
        raise SchemaError("\n".join(problems))


def _join(path: str, name) -> str:
    return f"{path}[{name}]" if isinstance(name, int) else (f"{path}.{name}" if path else str(name))


def _closest(name, choices, plural: str) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else f"{plural}: {', '.join(map(str, choices))}"


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        names = [_describe(arg) for arg in args if not (arg is int and float in args)]
        return ", ".join(names[:-1]) + " or " + names[-1]
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            type(None): "null"}[hint]


def _shown(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return "a list" if isinstance(value, list) else "a mapping"


def _matches(value, hint) -> bool:
    """Whether value is of the hint's outer type (mappings and lists are checked further inside)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if origin is list:
        return isinstance(value, list)
    if origin is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _inner(value, hint):
    """The one member of a union that value matches (Optional[Image] -> Image), else hint."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            if _matches(value, arg):
                return _inner(value, arg)
    return hint


def _check(value, hint, path: str, refs: dict, meta: dict | None = None):
    """(path, problem) for value against hint; meta: the field's metadata."""
    meta = meta or {}
    if not _matches(value, hint):
        yield path, f"expected {_describe(hint)}, got {_shown(value)}"
        return
    hint = _inner(value, hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        fields = {_key_name(f): f for f in dataclasses.fields(hint)}
        hints = typing.get_type_hints(hint)
        for name in value:
            if name not in fields:
                yield _join(path, name), f"unknown key; {_closest(name, list(fields), 'expected one of')}"
        for name, field in fields.items():
            if name in value:
                yield from _check(value[name], hints[field.name], _join(path, name), refs, field.metadata)
            elif field.default is dataclasses.MISSING:
                yield path, f"missing required key '{name}'"
        one_of = ONE_OF_REQUIRED.get(hint)
        if one_of and all(value.get(name) is None for name in one_of):
            yield path, f"missing required key '{one_of[0]}' (or {', '.join(repr(n) for n in one_of[1:])})"
        return
    if origin is dict:
        collection = meta.get("keys")
        for name, item in value.items():
            where = _join(path, name)
            if not isinstance(name, str):
                yield where, f"expected a name, got {_shown(name)}"
            elif collection in refs and name not in refs[collection]:
                yield where, f"no such {collection}; {_closest(name, refs[collection], PLURALS[collection])}"
                continue
            yield from _check(item, args[1], where, refs)
    elif origin is list:
        for index, item in enumerate(value):
            yield from _check(item, args[0], _join(path, index), refs)
    collection = meta.get("ref")
    if collection in refs and value not in refs[collection]:
        yield path, f"no such {collection} {value!r}; {_closest(value, refs[collection], PLURALS[collection])}"
    check = meta.get("check")
    problem = check(value) if check else None
    if problem:
        yield path, problem


def describe() -> str:
    """The schema as text: file, key path, type, required, help (python -m bundle.schema)."""
    lines = []

    def walk(hint, path: str, depth: int):
        hint = _inner({}, hint) if typing.get_origin(hint) in (Union, types.UnionType) else hint
        if typing.get_origin(hint) is dict:
            walk(typing.get_args(hint)[1], path + ".<name>", depth)
            return
        if typing.get_origin(hint) is list:
            walk(typing.get_args(hint)[0], path + "[]", depth)
            return
        if not dataclasses.is_dataclass(hint):
            return
        hints = typing.get_type_hints(hint)
        for field in dataclasses.fields(hint):
            required = "required" if field.default is dataclasses.MISSING else "optional"
            where = _join(path, _key_name(field))
            refers = field.metadata.get("ref") or field.metadata.get("keys")
            note = f" (names {PLURALS[refers]})" if refers else ""
            lines.append(f"  {where}: {_describe(hints[field.name])}, {required}{note}: {field.metadata['help']}")
            walk(hints[field.name], where, depth + 1)

    for file, schema in DATA_FILES.values():
        lines.append(file)
        walk(schema, "", 0)
    return "\n".join(lines)


# ---- JSON Schema (draft 2020-12) for editors: schemas/<name>.schema.json ----------------------

EXPORT_COMMAND = "make schemas (python -m bundle.schema export)"
SCHEMAS_DIR = ROOT / "schemas"
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def _anchored(pattern: re.Pattern) -> dict:
    return {"pattern": f"^(?:{pattern.pattern})$"}


IP_ADDRESS = {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
# The checks JSON Schema can state, as its keywords: check -> keywords, or a function of the
# value's JSON type for the ones whose keyword depends on it. Checks not here stay Python's alone
# and each schema's description names them.
JSON_KEYWORDS = {
    _positive: {"exclusiveMinimum": 0},
    _port: {"minimum": 1, "maximum": 65535},
    _not_empty: lambda kind: {"array": {"minItems": 1}, "object": {"minProperties": 1}}[kind],
    _text: {"minLength": 1},
    _tag_check: {"pattern": re.escape(VERSION_PLACEHOLDER)},
    _tags_check: {"items": {"pattern": re.escape(VERSION_PLACEHOLDER)}},
    _digest_check: _anchored(DIGEST),
    _pinned_image: _anchored(PINNED_IMAGE),
    _url_path: _anchored(URL_PATH),
    _k8s_quantity: _anchored(K8S_QUANTITY),
    _k8s_name: _anchored(K8S_NAME),
    _vendors: {"required": list(typing.get_args(Vendor))},
    _ip_address: IP_ADDRESS,
    _host: {"anyOf": [*IP_ADDRESS["anyOf"], {**_anchored(HOST_NAME), "not": {"pattern": "^[0-9.]*$"}}]},
    _interface: {**_anchored(INTERFACE_NAME), "not": {"enum": [".", ".."]}},
}


def _json_type(hint, defs: dict) -> dict:
    """The JSON Schema of a type; records go to defs (name -> schema) and are referred to."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        members = [_json_type(arg, defs) for arg in args if not (arg is int and float in args)]
        if all(list(member) == ["type"] for member in members):
            return {"type": [member["type"] for member in members]}
        return {"anyOf": members}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _json_type(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _json_type(args[1], defs)}
    if dataclasses.is_dataclass(hint):
        if hint.__name__ not in defs:
            defs[hint.__name__] = {}   # taken before recursing, so each record is defined once
            defs[hint.__name__] = _json_record(hint, defs)
        return {"$ref": f"#/$defs/{hint.__name__}"}
    return {"type": JSON_TYPES[hint]}


def _json_keywords(check, kind) -> dict:
    keywords = JSON_KEYWORDS[check]
    return keywords(kind) if callable(keywords) else keywords


def _json_record(record_class, defs: dict) -> dict:
    hints = typing.get_type_hints(record_class)
    properties, required = {}, []
    for field in dataclasses.fields(record_class):
        prop = {**_json_type(hints[field.name], defs), "description": field.metadata["help"]}
        check = field.metadata.get("check")
        if check in JSON_KEYWORDS:
            prop.update(_json_keywords(check, prop.get("type")))
        properties[_key_name(field)] = prop
        if field.default is dataclasses.MISSING:
            required.append(_key_name(field))
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    if record_class in ONE_OF_REQUIRED:
        schema["anyOf"] = [{"required": [name]} for name in ONE_OF_REQUIRED[record_class]]
    return schema


def python_only(schema) -> list[str]:
    """What bundle/schema.py checks beyond the exported JSON Schema, one line per key."""
    found = []

    def walk(hint, path: str, seen: tuple):
        hint = _inner({}, hint) if typing.get_origin(hint) in (Union, types.UnionType) else hint
        if typing.get_origin(hint) in (dict, list):
            walk(typing.get_args(hint)[-1], path + ("[]" if typing.get_origin(hint) is list else ".<name>"), seen)
            return
        if not dataclasses.is_dataclass(hint) or hint in seen:
            return
        hints = typing.get_type_hints(hint)
        for field in dataclasses.fields(hint):
            where = _join(path, _key_name(field))
            meta = field.metadata
            if meta.get("ref"):
                found.append(f"{where}: names one of the {PLURALS[meta['ref']]}")
            if meta.get("keys"):
                found.append(f"{where}: its keys name {PLURALS[meta['keys']]}")
            if meta.get("check") and meta["check"] not in JSON_KEYWORDS:
                found.append(f"{where}: {meta['check'].__name__}")
            walk(hints[field.name], where, seen + (hint,))

    walk(schema, "", ())
    return found


def json_schema(name: str) -> dict:
    """DATA_FILES[name]'s file as JSON Schema 2020-12."""
    file, schema = DATA_FILES[name]
    defs: dict = {}
    root = _json_record(schema, defs)
    unchecked = python_only(schema)
    description = f"The keys of {file}, from bundle/schema.py ({schema.__name__}), which `make` checks before use."
    if unchecked:
        description += " Checked by bundle/schema.py alone: " + "; ".join(unchecked) + "."
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"GENERATED FILE, do not edit: {EXPORT_COMMAND}, from bundle/schema.py",
            "title": file, "description": description, **root, "$defs": defs}


def exported(out_dir: Path = SCHEMAS_DIR) -> dict[Path, str]:
    """path -> the text a fresh export writes there."""
    return {out_dir / f"{name}.schema.json": json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n"
            for name in DATA_FILES}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.schema", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=("describe", "export"), default="describe")
    parser.add_argument("--out", type=Path, default=SCHEMAS_DIR, help="the export's folder (default schemas/)")
    args = parser.parse_args(argv)
    if args.command == "describe":
        print(describe())
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for path, text in exported(args.out).items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
