"""`make deploy`: render, validate, start, wait until really ready, print the endpoint.

Ordered single-purpose steps, each one failing with a message that says what to do:
    1. check_host            make doctor's checks (bundle/doctor.py); SKIP_DOCTOR=1: Docker and Compose only
    2. choose_hardware       HARDWARE= or the one profile nvidia-smi matches
    3. render_compose_file   deploy/port-<PORT>/docker-compose.yml from the preset data
    4. check_secrets         the Hugging Face token file (and key files, ENV_FILE) exist and are not empty
    5. validate_compose_file `docker compose config` of the real Compose binary
    6. check_base_image      the SGLang image to build FROM exists (locally, or in its registry when
                             the host is online), and its digest, before minutes of building
    7. start                 `docker compose up -d` (builds the bundle image on top of the pinned SGLang)
    8. wait_until_ready      elapsed time and the engine's phase from its log, until the healthcheck passes
    9. wrap_up               the endpoint and a working curl example

The variables (HARDWARE=, PORT=, OVERRIDE=, ...) are bundle/options.py's, read from the environment
`make deploy` exports, or given as flags. `make down|logs|status|bench|eval` find the deployment
on PORT= through the same table (locate(): the one `make deploy` made, or the top-level
docker-compose.yml's, started with `docker compose up -d`):
    python -m bundle.deploy compose ARGS...   docker compose -p <project> -f <its files> [-f OVERRIDE] ARGS
    python -m bundle.deploy status            its containers, and its /ready answer
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bundle import doctor, errors, monitoring, names, options, render
from bundle.errors import API_KEY_HINT
from launcher.settings import EXIT_CONFIG_ERROR

GATEWAY_SERVICE = names.GATEWAY_SERVICE     # the compose service of SGLang's gateway

# The engine's log lines that mark its start-up phases (SGLang 0.5.23 messages), latest wins.
PHASES = (
    (re.compile(r"server_args="), "arguments resolved, launching workers"),
    (re.compile(r"Load weight begin"), "loading weights"),
    (re.compile(r"Loading safetensors checkpoint shards:\s*(\d+)%"), "loading weights ({0}%)"),
    (re.compile(r"Load weight end"), "weights loaded"),
    (re.compile(r"Memory pool end"), "KV cache allocated"),
    (re.compile(r"Capture .*(?:CUDA graph|cuda graph).* begin"), "capturing CUDA graphs"),
    (re.compile(r"Uvicorn running on"), "HTTP server up, warming up"),
    (re.compile(r"The server is fired up and ready to roll"), "warm-up done"),
)


class DeployError(Exception):
    pass


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def compose(files: list[Path], *args, project: str | None = None) -> list[str]:
    command = ["docker", "compose"] + (["-p", project] if project else [])
    for path in files:
        command += ["-f", str(path)]
    return command + list(args)


def check_docker() -> None:
    if run(["docker", "info", "--format", "{{.ServerVersion}}"]).returncode != 0:
        raise DeployError("the Docker engine does not answer (`docker info` fails): start it, or add "
                          "your user to the docker group")
    version = run(["docker", "compose", "version", "--short"])
    if version.returncode != 0:
        raise DeployError("Docker Compose v2 is missing (`docker compose version` fails): install the "
                          "docker-compose-plugin package")


def choose_hardware(data: dict, hardware: str | None, gpu_ids: list) -> str:
    if hardware:
        return hardware
    detected = render.detect_hardware(data, gpu_ids=gpu_ids)
    say(f"detected hardware profile {detected}")
    return detected


def render_compose_file(data, hardware, preset, params, out: Path) -> render.Deployment:
    command = render.render_command(hardware, preset, str(out), params, target="deploy")
    deployment = render.write(data, hardware, preset, params, out, command)
    say(f"rendered {out} ({hardware}, {preset})")
    for line in deployment.memory_lines:
        print(f"    {line}")
    return deployment


def validate_compose_file(files: list[Path]) -> None:
    result = run(compose(files, "config", "--quiet"))
    if result.returncode != 0:
        raise DeployError(f"docker compose rejects the rendered file:\n{result.stderr.strip()}")


def check_secrets(params: render.Params, secrets_dir: Path) -> None:
    token = secrets_dir / "hf_token"
    if not token.is_file() or not token.read_text().strip():
        raise DeployError(f"{token} is missing or empty: put your Hugging Face token there "
                          f"(`install -D -m 600 /dev/stdin {token} <<< hf_...`); Llama 3.1 is a gated model")
    for variable, path in (("API_KEY_FILE", params.api_key_file), ("ADMIN_API_KEY_FILE", params.admin_api_key_file),
                           ("ENV_FILE", params.env_file)):
        if path:
            file = Path(path) if Path(path).is_absolute() else render.ROOT / path
            if not file.is_file() or (variable != "ENV_FILE" and not file.read_text().strip()):
                hint = f"; {API_KEY_HINT}" if variable != "ENV_FILE" else ""
                raise DeployError(f"{variable}={path} is missing or empty{hint}")


IMAGE_CHECK_TIMEOUT_S = 30
# How `docker` says that the registry could not be asked at all, as opposed to a real "no".
REGISTRY_UNREACHABLE = re.compile(r"no such host|i/o timeout|network is unreachable|connection refused|"
                                  r"connection reset|TLS handshake timeout|temporary failure in name resolution|"
                                  r"context deadline exceeded|dial tcp|proxyconnect", re.I)
NO_SUCH_COMMAND = re.compile(r"unknown command|is not a docker command|unknown flag", re.I)


def image_to_build(files: list[Path]) -> str | None:
    """The BASE_IMAGE the engine service would be built FROM, or None when it is not built here
    (an override gives a ready image, as the tests do)."""
    result = run(compose(files, "config", "--format", "json"))
    if result.returncode != 0:
        raise DeployError(f"docker compose rejects the rendered file:\n{result.stderr.strip()}")
    for service in json.loads(result.stdout)["services"].values():
        base = ((service.get("build") or {}).get("args") or {}).get("BASE_IMAGE")
        if base:
            return base
    return None


def ask_registry(reference: str) -> tuple[str, str | None, str]:
    """("found", digest or None, command) | ("missing", message, command) | ("unknown", why, command)."""
    for command in (["docker", "buildx", "imagetools", "inspect", reference],
                    ["docker", "manifest", "inspect", reference]):
        shown = " ".join(command)
        try:
            result = run(command, timeout=IMAGE_CHECK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "unknown", f"no answer within {IMAGE_CHECK_TIMEOUT_S} s", shown
        if result.returncode == 0:
            digest = re.search(r"^Digest:\s*(sha256:[0-9a-f]{64})", result.stdout, re.M)
            return "found", digest.group(1) if digest else None, shown
        message = (result.stderr or result.stdout).strip()
        if NO_SUCH_COMMAND.search(message):
            continue   # buildx is a plugin that many hosts lack; `docker manifest` is built in
        if REGISTRY_UNREACHABLE.search(message):
            return "unknown", message.splitlines()[-1] if message else "no answer", shown
        return "missing", message.splitlines()[-1] if message else f"exit code {result.returncode}", shown
    return "unknown", "neither `docker buildx imagetools` nor `docker manifest` is available", "docker"


def check_base_image(reference: str | None, alternatives: list[str]) -> None:
    if reference is None:
        say("base image check: not needed, the engine image is given ready-made (no build)")
        return
    if run(["docker", "image", "inspect", reference]).returncode == 0:
        say(f"base image {reference} is present locally")
        return
    answer, detail, command = ask_registry(reference)
    if answer == "unknown":
        say(f"base image check skipped, the registry could not be asked ({command}: {detail}); "
            "the build will tell")
        return
    if answer == "found":
        say(f"base image {reference} resolves" + (f", digest {detail}" if detail else ""))
        if detail and "@" not in reference:
            print(f"    to freeze this exact engine build: BASE_IMAGE={reference}@{detail} "
                  "(or set the lane's digest in presets/hardware.yaml)")
        return
    tried = [f"{reference}: {detail} ({command})"]
    existing = []
    for alternative in alternatives:
        other, other_detail, other_command = ask_registry(alternative)
        tried.append(f"{alternative}: {'found' if other == 'found' else other_detail} ({other_command})")
        if other == "found":
            existing.append(alternative)
    advice = (f"deploy with BASE_IMAGE={existing[0]}" if existing else
              "set BASE_IMAGE= to an SGLang image of the pinned release that exists")
    raise DeployError("the SGLang image to build FROM does not resolve; nothing was built. Tried:\n    "
                      + "\n    ".join(tried) + f"\n{advice}, or fix the lane's tag in presets/hardware.yaml "
                      "(evidence for the tags: presets/engine-image.md)")


def start(files: list[Path]) -> None:
    say("starting (the first start builds the image on top of the pinned SGLang image)")
    result = subprocess.run(compose(files, "up", "-d"), text=True, stderr=subprocess.PIPE)
    if result.returncode != 0:
        message = result.stderr.strip()
        if re.search(r"could not select device driver|nvidia-container|unknown or invalid runtime name: nvidia",
                     message, re.I):
            raise DeployError(f"Docker cannot give the container its GPUs:\n{message}\n"
                              "Install the NVIDIA Container Toolkit (nvidia-ctk runtime configure "
                              "--runtime=docker, then restart Docker), and check GPUS= names GPUs "
                              "that exist (nvidia-smi -L).")
        raise DeployError(f"docker compose up failed:\n{message}")


def services(files: list[Path]) -> list[str]:
    """The deployment's services: the engine(s) first, then the gateway when there is one (not
    Prometheus and Grafana, which have no healthcheck to wait on)."""
    names = [name for name in run(compose(files, "config", "--services")).stdout.split()
             if name not in monitoring.SERVICES]
    return sorted(names, key=lambda name: (name == GATEWAY_SERVICE, name))


def container_state(files: list[Path], service: str) -> dict:
    container = run(compose(files, "ps", "-aq", service)).stdout.strip()
    if not container:
        return {}
    result = run(["docker", "inspect", "--format", "{{json .State}}|{{.RestartCount}}", container])
    if result.returncode != 0:
        return {}
    state, restarts = result.stdout.strip().rsplit("|", 1)
    return {**json.loads(state), "RestartCount": int(restarts), "Id": container}


def latest_phase(log_text: str) -> str | None:
    phase = None
    for line in log_text.splitlines():
        for pattern, label in PHASES:
            match = pattern.search(line)
            if match:
                phase = label.format(*match.groups())
    return phase


def wait_until_ready(files: list[Path], timeout: float, poll: float = 2.0) -> None:
    """Until every service (the engines, and the gateway in front of them) is healthy."""
    began = time.monotonic()
    names = services(files)
    phase, shown = "starting container", None
    while True:
        elapsed = time.monotonic() - began
        states = {name: container_state(files, name) for name in names}
        logs = run(compose(files, "logs", "--no-color", "--tail", "400", names[0])).stdout
        phase = latest_phase(logs) or phase
        health = {name: (state.get("Health") or {}).get("Status", "none") for name, state in states.items()}
        shown_health = ", ".join(f"{name} {status}" for name, status in health.items()) if len(names) > 1 \
            else health[names[0]]
        line = f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d}  {phase}  (health: {shown_health})"
        if line != shown:
            print(f"    {line}", flush=True)
            shown = line
        if all(status == "healthy" for status in health.values()):
            return
        for name, state in states.items():
            if state and state.get("Status") in ("exited", "dead") and not state.get("Restarting"):
                code = state.get("ExitCode")
                service_logs = run(compose(files, "logs", "--no-color", "--tail", "20", name)).stdout
                reason = "configuration error" if code == EXIT_CONFIG_ERROR else f"exit code {code}"
                raise DeployError(f"the {name} container stopped ({reason}):\n{service_logs.rstrip()}")
        if elapsed > timeout:
            raise DeployError(f"not ready after {timeout:.0f} s (phase: {phase}); see `make logs`")
        time.sleep(poll)


def local_url(params: render.Params, data: dict) -> str:
    """http://host:port of the deployment, as a client on this host reaches it."""
    port = params.port or data["container"]["default_port"]
    host, _ = render.parse_bind_address(params.bind_address or data["container"]["default_bind_address"])
    host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
    return f"http://{host}:{port}"


def wrap_up(params: render.Params, data: dict, deployment: render.Deployment) -> None:
    base = local_url(params, data)
    auth = f' -H "Authorization: Bearer $(cat {params.api_key_file})"' if params.api_key_file else ""
    model = deployment.flags["model-path"]
    say(f"ready: {base}/v1 (OpenAI-compatible), model {model}")
    if params.monitoring:
        urls = monitoring.urls()
        password = render.secrets_path(data, params) / monitoring.GRAFANA_PASSWORD_NAME
        say(f"monitoring: Grafana {urls['grafana']} (admin, password in {password}), Prometheus "
            f"{urls['prometheus']} (other ports: PROMETHEUS_PORT=, GRAFANA_PORT=; docs/monitoring.md)")
    print(f"""
    curl -s {base}/v1/chat/completions{auth} -H 'Content-Type: application/json' \\
      -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}], "max_tokens": 64}}'
""")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["compose"], ["status"]):
        return manage(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="make deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_arguments(parser, options.DEPLOY)
    args = parser.parse_args(argv)
    try:
        data = render.load_data()
        chosen = options.read(options.DEPLOY, args)
        params = options.params(chosen)
        if chosen["skip_doctor"]:
            check_docker()
        else:
            say("checking the host (make doctor; SKIP_DOCTOR=1 skips it)")
            if not doctor.report(doctor.check_host(data, chosen)):
                raise DeployError("the host checks above failed: fix them, or SKIP_DOCTOR=1 to deploy anyway")
        hardware = choose_hardware(data, chosen["hardware"], params.gpus)
        out = deploy_file(params.port or data["container"]["default_port"])
        deployment = render_compose_file(data, hardware, chosen["preset"], params, out)
        files = [out, *monitoring.compose_files(out), *[Path(o).resolve() for o in chosen["override"]]]
        check_secrets(params, render.secrets_path(data, params))
        validate_compose_file(files)
        check_base_image(image_to_build(files), render.image_alternatives(data, deployment))
        start(files)
        wait_until_ready(files, chosen["deploy_timeout"])
        wrap_up(params, data, deployment)
    except (render.RenderError, DeployError) as err:
        print(f"deploy: {err}", file=sys.stderr)
        return errors.status(err)
    return 0


def manage(command: str, args: list[str]) -> int:
    """`make down|logs|bench|eval` (compose ARGS...) and `make status` on the deployment on PORT=."""
    try:
        data = render.load_data()
        chosen = options.read(options.DEPLOY)
        params = options.params(chosen)
        port = params.port or data["container"]["default_port"]
        found = locate(data, port, [Path(o).resolve() for o in chosen["override"]])
    except (render.RenderError, DeployError) as err:
        print(f"deploy: {err}", file=sys.stderr)
        return errors.status(err)
    if command == "compose":
        argv = found.compose(*args)
        print(shlex.join(argv), flush=True)
        os.execvp(argv[0], argv)
        return 0   # not reached: docker compose took over the process
    print(f"deployment on PORT={port}: {found.describe()}", flush=True)
    ps = subprocess.run(found.compose("ps"))
    if ps.returncode != 0:
        return ps.returncode
    # The gateway answers /readiness (smg's); an engine's guard /ready (SGLang's).
    gateway = GATEWAY_SERVICE in services(found.files)
    url = local_url(params, data) + (names.GATEWAY_READINESS_PATH if gateway else "/ready")
    try:   # no proxy: the address is this host's
        code = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10).status
    except urllib.error.HTTPError as err:
        code = err.code
    except (OSError, ValueError):
        code = 0
    print(f"readiness {urllib.parse.urlsplit(url).path}: HTTP {code:03d}")
    return 0


def deploy_file(port: int) -> Path:
    """Where `make deploy PORT=...` keeps its rendered file; down/logs/status find it there."""
    return render.ROOT / "deploy" / f"port-{port}" / "docker-compose.yml"


# ---- the deployment on PORT=, however it was started -------------------------------------------

# Compose's own labels, on every container it creates, running or stopped: what outlives the shell
# that ran `docker compose up -d`, wherever that was.
PROJECT_LABEL = "com.docker.compose.project"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
TOP_LEVEL_FILE = render.ROOT / "docker-compose.yml"   # `make compose-file`'s, for the default port


@dataclasses.dataclass(frozen=True)
class Located:
    """A deployment as make down|logs|status|bench|eval reach it: its Compose project and files."""
    project: str
    files: list             # every -f, in order: the deployment's own file first
    started: bool           # its containers exist (running or stopped)

    def compose(self, *args) -> list[str]:
        # -p: the project the containers carry, which `docker compose -p` may have set apart from the
        # file's own `name:`.
        return compose(self.files, *args, project=self.project)

    def describe(self) -> str:
        shown = ", ".join(_shown(path) for path in self.files)
        return f"Compose project {self.project} ({shown})" + ("" if self.started else ", no containers")


def _shown(path: Path) -> str:
    try:
        return str(Path(path).relative_to(render.ROOT))
    except ValueError:
        return str(path)


def project_name(data: dict, port: int) -> str:
    """The Compose project of the deployment on the port, as bundle/render.py names it in every file it
    renders (`name:`), the top-level docker-compose.yml included."""
    return f"{data['container']['project_prefix']}-{port}"


def started_files(project: str) -> list[Path] | None:
    """The compose files the project's containers were created from (Compose's label), or None when
    the project has no container."""
    result = run(["docker", "ps", "-a", "--filter", f"label={PROJECT_LABEL}={project}",
                  "--format", f'{{{{.Label "{CONFIG_FILES_LABEL}"}}}}'])
    if result.returncode != 0:
        raise DeployError(f"`docker ps` fails, so the deployment cannot be looked up: {result.stderr.strip()}")
    labels = [line for line in result.stdout.splitlines() if line.strip()]
    if not labels:
        return None
    return [Path(part) for part in labels[0].split(",") if part]


def locate(data: dict, port: int, overrides: list[Path]) -> Located:
    """The deployment on PORT=: the project whose containers exist (started by `make deploy` or by
    `docker compose up -d` in the checkout), with the files they were made from; else the file
    `make deploy` left for the port (stopped); else a one-line error with both ways to start one."""
    project = project_name(data, port)
    files = started_files(project)
    if files is not None:
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise DeployError(f"the deployment on PORT={port} (Compose project {project}) was started from "
                              f"files that are gone ({', '.join(missing)}): `docker compose -p {project} down` "
                              "removes its containers")
        return Located(project, files + [o for o in overrides if o not in files], started=True)
    own = deploy_file(port)
    if own.is_file():
        return Located(project, [own, *monitoring.compose_files(own), *overrides], started=False)
    default = data["container"]["default_port"]
    raise DeployError(f"no deployment on PORT={port} (no Compose project {project}, no {_shown(own)}): start "
                      f"one with `make deploy PORT={port}`, or `docker compose up -d` in {render.ROOT} (the "
                      f"top-level {TOP_LEVEL_FILE.name}, PORT={default}); or give the PORT= it runs on")


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
