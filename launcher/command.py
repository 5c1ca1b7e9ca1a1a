"""The engine's command line: container arguments beat ENGINE_* variables beat the bundle's
defaults; every value checked against the catalogue, flags that would break the guard refused,
and the conflicts SGLang finds only after loading refused in under a second."""
from __future__ import annotations

import dataclasses
import re

from launcher.sglang_flags import Catalogue, Flag, FLAG_ENV_PREFIX, check_scalar, env_name_for_option, env_to_argv
from launcher.credentials import SECRET_ENVS, SECRET_FLAGS, file_env
from launcher.settings import BUNDLE_SETTINGS, BundleSettings, ConfigError, suggest

ENGINE_LAUNCH_COMMAND = ("python3", "-m", "sglang.launch_server")
DEFAULT_MODEL = "meta-llama/Llama-3.1-70B-Instruct"

# Short names for the two settings everybody types; an error when given with their long form.
ALIASES = {"MODEL": "--model-path", "PORT": "--port"}

# What the bundle passes when neither arguments nor environment say otherwise.
DEFAULT_FLAGS = {"--model-path": DEFAULT_MODEL, "--host": "0.0.0.0", "--port": "8000"}

# Flags the bundle owns: the guard publishes --host/--port, the engine stays on loopback.
GUARD_FLAGS = ("--host", "--port")
_NO_HTTP = ("it replaces the HTTP server with gRPC, so the OpenAI API, the guard and the healthcheck "
            "would have nothing to talk to")
_TLS = ("TLS on the engine would break the guard, which talks plain HTTP to it on loopback: terminate "
        "TLS in front of the published port (a reverse proxy or load balancer)")
REFUSED_FLAGS = {
    "--grpc-mode": _NO_HTTP,
    "--smg-grpc-mode": _NO_HTTP,
    "--ssl-keyfile": _TLS,
    "--ssl-certfile": _TLS,
    "--ssl-ca-certs": _TLS,
    "--ssl-keyfile-password": _TLS,
    "--enable-ssl-refresh": _TLS,
    "--fastapi-root-path": "the guard checks API keys by route path; serve under a prefix from the proxy in front",
    "--config": "the bundle hands the engine its per-start keys in a config file of its own, and SGLang "
                "takes only one; set flags as ENGINE_* variables or container arguments",
}

# Where --print-command and rendered files show the engine's key file; the real one is made at start.
ENGINE_KEY_FILE_PLACEHOLDER = "<per-start engine key file>"

# Kubernetes (and legacy Docker links) inject <SERVICE>_PORT=tcp://..., <SERVICE>_SERVICE_HOST and
# friends for every service in the namespace; a service named "engine" would look like our flags.
SERVICE_LINK = re.compile(r"ENGINE_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)")
SERVICE_LINK_VALUE = re.compile(r"(tcp|udp|sctp)://")


def is_service_link(name: str, value: str) -> bool:
    return bool(SERVICE_LINK.fullmatch(name)) or (name == "ENGINE_PORT" and bool(SERVICE_LINK_VALUE.match(value)))



@dataclasses.dataclass
class EngineConfig:
    argv: list            # SGLang flags only, public --host/--port included
    values: dict          # dest -> parsed value, defaults filled in from the catalogue
    sources: dict         # dest -> where the value came from, for error messages
    api_key: str | None
    admin_api_key: str | None
    warnings: list

    def engine_argv(self, settings: BundleSettings, key_file: str = ENGINE_KEY_FILE_PLACEHOLDER) -> list[str]:
        """The argv the engine really gets: loopback host, the internal port, its key file."""
        argv, skip = [], 0
        for token in self.argv:
            if skip:
                skip -= 1
                continue
            name = token.split("=", 1)[0]
            if name in GUARD_FLAGS:
                skip = 0 if "=" in token else 1
                continue
            argv.append(token)
        return [*ENGINE_LAUNCH_COMMAND, *argv, "--host", "127.0.0.1", "--port", str(settings.engine_port),
                "--config", key_file]


@dataclasses.dataclass(frozen=True)
class ChosenFlag:
    """One flag as given: its argv tokens, its parsed value, and where it came from (for errors)."""
    flag: Flag
    tokens: list
    value: object
    source: str


def collect_environment(environ, catalogue: Catalogue) -> dict[str, ChosenFlag]:
    """dest -> ChosenFlag for every ENGINE_* variable and alias."""
    chosen: dict = {}
    secret_names = {s for s in SECRET_ENVS} | {s + "_FILE" for s in SECRET_ENVS}
    for name in sorted(environ):
        text = environ[name]
        if name in ALIASES:
            flag = catalogue.by_option[ALIASES[name]]
            option = ALIASES[name]
        elif name.startswith(FLAG_ENV_PREFIX):
            if name in secret_names or is_service_link(name, text):
                continue
            if name not in catalogue.by_env:
                raise ConfigError(f"{name} is not a setting: " + (
                    catalogue.ambiguous_short_form(name)
                    or f"no SGLang {catalogue.sglang_version} flag is called "
                       f"--{name[len(FLAG_ENV_PREFIX):].lower().replace('_', '-')}."
                       + suggest(name, list(catalogue.by_env) + list(ALIASES))))
            flag, option = catalogue.by_env[name]
        else:
            continue
        if flag.dest in chosen:
            raise ConfigError(f"{name} and {chosen[flag.dest].source} both set {flag.option}; set only one")
        tokens, value = env_to_argv(flag, option, text, name)
        chosen[flag.dest] = ChosenFlag(flag, tokens, value, name)
    return chosen


def collect_arguments(args: list[str], catalogue: Catalogue) -> dict[str, ChosenFlag]:
    """dest -> ChosenFlag for flags given as container arguments."""
    chosen, index = {}, 0
    while index < len(args):
        token = args[index]
        option, inline = (token.split("=", 1) + [None])[:2] if token.startswith("--") else (token, None)
        flag = catalogue.by_option.get(option)
        if flag is None:
            matches = [o for o in catalogue.by_option if o.startswith(option)] if option.startswith("--") else []
            hint = (f" It abbreviates {', '.join(matches[:4])}; write the full option name."
                    if matches else suggest(option, catalogue.by_option))
            raise ConfigError(f"container argument {token!r} is not an SGLang {catalogue.sglang_version} "
                              f"flag.{hint}")
        index += 1
        values = [inline] if inline is not None else []
        if inline is None and flag.kind == "value":
            while index < len(args) and not args[index].startswith("--"):
                values.append(args[index])
                index += 1
                if flag.nargs is None:
                    break
        where = f"argument {option}"
        if flag.kind in ("switch", "negatable"):
            if values:
                raise ConfigError(f"{where} takes no value (got {values[0]!r})")
            tokens, value = [option], not option.startswith("--no-")
        elif flag.nargs in ("+", "*"):
            if flag.nargs == "+" and not values:
                raise ConfigError(f"{where} expects at least one value")
            tokens, value = [option, *values], [check_scalar(flag, v, where) for v in values]
        elif not values:
            if flag.nargs != "?":
                raise ConfigError(f"{where} expects a value")
            tokens, value = [option], flag.default
        else:
            tokens, value = [option, values[0]], check_scalar(flag, values[0], where)
        if flag.dest in chosen:
            raise ConfigError(f"{where} is given twice (also as {chosen[flag.dest].source})")
        chosen[flag.dest] = ChosenFlag(flag, tokens, value, where)
    return chosen


def build_config(environ, args: list[str], catalogue: Catalogue) -> EngineConfig:
    for alias, option in ALIASES.items():
        long_name = env_name_for_option(option)
        if environ.get(alias) and environ.get(long_name):
            raise ConfigError(f"both {alias} and {long_name} are set; {alias} is a short alias of "
                              f"{long_name}, set only one")
    from_env = collect_environment(environ, catalogue)
    from_args = collect_arguments(args, catalogue)
    for given in from_args.values():
        if given.flag.option in SECRET_FLAGS:
            raise ConfigError(f"{given.source}: a secret on the command line shows in `docker inspect` and "
                              f"`ps`; use {env_name_for_option(given.flag.option)}_FILE instead")
    chosen = {**from_env, **from_args}
    for option, default in DEFAULT_FLAGS.items():
        flag = catalogue.by_option[option]
        if flag.dest not in chosen:
            chosen[flag.dest] = ChosenFlag(flag, [option, default], check_scalar(flag, default, "default"),
                                           "bundle default")

    warnings, argv = [], []
    model_first = sorted(chosen.items(), key=lambda item: item[0] != "model_path")
    for _dest, given in model_first:
        flag = given.flag
        if flag.option in REFUSED_FLAGS:
            raise ConfigError(f"{given.source}: {flag.option} is not supported by the bundle: "
                              f"{REFUSED_FLAGS[flag.option]}")
        if flag.deprecated and given.tokens:
            warnings.append(f"{given.source}: {flag.option} is deprecated in SGLang; use {flag.deprecated}")
        argv.extend(given.tokens)

    values = {f.dest: f.default for f in catalogue.flags}
    values.update({dest: given.value for dest, given in chosen.items()})
    sources = {dest: given.source for dest, given in chosen.items()}
    config = EngineConfig(argv=argv, values=values, sources=sources,
                          api_key=file_env(env_name_for_option("--api-key"), environ),
                          admin_api_key=file_env(env_name_for_option("--admin-api-key"), environ),
                          warnings=warnings)
    check_conflicts(config)
    return config


def check_conflicts(config: EngineConfig) -> None:
    """What SGLang only finds after loading (or never): refuse it now, in under a second."""
    v, src = config.values, config.sources

    def origin(*dests):
        return ", ".join(f"{src[d]}" for d in dests if d in src) or "defaults"

    algorithm = (v.get("speculative_algorithm") or "").upper()
    steps = ("speculative_num_steps", "speculative_eagle_topk", "speculative_num_draft_tokens")
    if algorithm in ("EAGLE", "EAGLE3", "NEXTN", "STANDALONE") and not v.get("speculative_draft_model_path"):
        raise ConfigError(
            f"speculative decoding {algorithm} needs a draft model ({origin('speculative_algorithm')}): "
            f"set {env_name_for_option('--speculative-draft-model-path')}. Without it SGLang 0.5.23 loads the target model "
            "a second time as its own draft and crashes after minutes (sglang issue #36528)")
    given = [s for s in steps if v.get(s) is not None]
    if given and len(given) != len(steps):
        missing = [env_name_for_option("--" + s.replace("_", "-")) for s in steps if s not in given]
        raise ConfigError(f"speculative step parameters are all-or-nothing: {origin(*given)} set "
                          f"but {', '.join(missing)} not (SGLang asserts after loading)")
    if given and not algorithm:
        raise ConfigError(f"{origin(*given)} set without {env_name_for_option('--speculative-algorithm')}")
    if algorithm and v.get("max_running_requests") is None:
        config.warnings.append(f"speculative decoding without {env_name_for_option('--max-running-requests')}: "
                               "SGLang caps concurrency at 48 on its own; set it explicitly")
    nnodes = int(v.get("nnodes") or 1)
    tp, pp, dp = int(v.get("tp_size") or 1), int(v.get("pp_size") or 1), int(v.get("dp_size") or 1)
    if nnodes > 1 and dp > 1:
        raise ConfigError(f"data-parallel replicas across nodes are not supported by SGLang "
                          f"({origin('dp_size', 'nnodes')}): use attention DP, or one deployment per node")
    if (tp * pp) % nnodes:
        raise ConfigError(f"tp_size*pp_size = {tp}*{pp} = {tp * pp} is not divisible by nnodes = {nnodes} "
                          f"({origin('tp_size', 'pp_size', 'nnodes')})")
    attn_dp = int(v.get("attn_dp_size") or 1)
    if attn_dp > 1 and dp > 1:
        raise ConfigError(f"attention DP ({origin('attn_dp_size')}) cannot be combined with "
                          f"dp_size > 1 ({origin('dp_size')})")
    if attn_dp > 1 and tp % attn_dp:
        raise ConfigError(f"attn_dp_size {attn_dp} must divide tp_size {tp} ({origin('attn_dp_size', 'tp_size')})")
    if v.get("enable_dp_attention") and dp == 1:
        config.warnings.append("--enable-dp-attention without a dp size does nothing; use "
                               f"{env_name_for_option('--attn-dp-size')}")
    if int(v.get("tokenizer_worker_num") or 1) > 1:
        raise ConfigError(f"tokenizer_worker_num > 1 ({origin('tokenizer_worker_num')}) is not supported by the "
                          "bundle: SGLang runs several tokenizer workers only without an API key, and the engine's "
                          "own per-start key is what refuses requests that did not come through the guard. "
                          "Scale with dp_size or replicas instead")
    if ":" in (v.get("served_model_name") or ""):
        raise ConfigError(f"served model name {v['served_model_name']!r} must not contain ':' "
                          f"({origin('served_model_name')})")


def environment_reference(catalogue: Catalogue) -> str:
    """Every setting: env name, flag or meaning, type, default (`entrypoint.py --list-env`)."""
    rows = [("ENV", "FLAG / MEANING", "TYPE", "DEFAULT")]
    for setting in BUNDLE_SETTINGS:
        rows.append((setting.env, setting.help, setting.type.__name__, str(setting.default)))
    for alias, option in ALIASES.items():
        rows.append((alias, f"alias of {env_name_for_option(option)}", "", DEFAULT_FLAGS.get(option, "")))
    for name in SECRET_ENVS:
        rows.append((f"{name} / {name}_FILE", "secret: the value, or a file holding it", "secret", ""))
    for flag in catalogue.flags:
        for option in flag.options:
            kind = flag.type if flag.kind == "value" else "bool"
            if flag.nargs in ("+", "*"):
                kind = f"list of {kind}"
            default = DEFAULT_FLAGS.get(option, flag.default)
            rows.append((env_name_for_option(option), option, kind, "" if default is None else str(default)))
    return "\n".join("\t".join(row) for row in rows)
