"""`make doctor`: is this host ready for the deployment, before a 20-minute cold start?

One line per check, PASS / WARN / FAIL, and the fix for what is not right; exit code 1 when any
check fails. The deployment checked is the one `make deploy` would start with the same variables
(HARDWARE=, PRESET=, GPUS=, PORT=, BIND_ADDRESS=, SECRETS_DIR=: bundle/options.py; HF_CACHE=:
bundle/download.py), so the checks hold against the same preset data:

    docker        the Docker engine answers                 compose   Compose v2
    gpu runtime   NVIDIA Container Toolkit (or CDI); /dev/kfd and /dev/dri for AMD
    hardware      the profile (HARDWARE=, else detected)    preset    the pair resolves
    gpu count / gpu model / gpu memory / gpus busy   against the profile (presets/hardware.yaml)
    driver        against the image's CUDA (launcher/gpus.py's table, as the container checks it)
    disk          free space where the Hugging Face cache lives, against the checkpoints' size
    shm           /dev/shm (the engine shares the host's: ipc: host)
    port          free on BIND_ADDRESS
    token         the token file: present, not empty, readable by its owner only;
                  --online (ONLINE=1): accepted by the Hub for the model's repository

    python -m bundle.doctor [--hardware ...] [--preset ...] [--online]
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

from bundle import download, errors, options, render
from bundle.errors import RenderError
from launcher import memory
from launcher.gpus import NVIDIA_FIELDS, NVIDIA_QUERY, Gpu, parse_amd_smi_json, parse_nvidia_smi_csv, required_driver
from launcher.settings import BundleSettings

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

ONLINE = options.BY_VARIABLE["ONLINE"]

# The versions the bundle's own CI deploys with (Docker engine 20.10 from Debian, Compose v2.40):
# older ones are not known to fail, only untested, hence a warning.
TESTED_DOCKER = (20, 10)
TESTED_COMPOSE = (2, 40)
# Docker gives a container the GPUs of `driver: nvidia` (the rendered files' device request)
# through this hook of the NVIDIA Container Toolkit, looked up on its PATH.
NVIDIA_HOOK = "nvidia-container-runtime-hook"
CDI_FOLDERS = (Path("/etc/cdi"), Path("/var/run/cdi"))
AMD_DEVICES = (Path("/dev/kfd"), Path("/dev/dri"))
NVIDIA_APPS_QUERY = ("nvidia-smi", "--query-compute-apps=gpu_uuid,pid,process_name,used_memory",
                     "--format=csv,noheader,nounits")
# Memory in use on an idle GPU: 0 MiB on the recorded H100/H200 (tests/fixtures/gpu/); a CUDA
# context alone takes ~500 MiB, so more than this means another program holds the GPU.
BUSY_MIB = 256
# The container's preflight notes the same limit (launcher/gpus.py): NCCL between tensor-parallel
# ranks allocates its buffers in /dev/shm.
SHM_MIN_BYTES = memory.GIB
DISK_HEADROOM = 1.10      # below 10 % to spare: a warning (logs, a second revision, ...)
COMMAND_TIMEOUT_S = 30


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    verdict: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"  fix: {self.fix}" if self.fix and self.verdict != PASS else ""
        return f"{self.verdict}  {self.name:<12} {self.detail}{fix}"


@dataclasses.dataclass
class Host:
    """What the checks read, gathered once: nvidia-smi's rows, or why there are none."""
    vendor: str
    gpus: list
    rows: list              # dicts of NVIDIA_FIELDS (NVIDIA only)
    apps: list              # (gpu uuid, pid, process name, MiB)
    problem: str = ""       # why no GPU was read
    own: list = dataclasses.field(default_factory=list)   # running containers of this port's deployment


def run(command, timeout=COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess | None:
    """None when the program is missing or hangs."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def json_answer(result: subprocess.CompletedProcess | None, default):
    """A command's JSON output, or the default when it failed or printed something else."""
    if result is None or result.returncode != 0:
        return default
    try:
        return json.loads(result.stdout)
    except ValueError:
        return default


def version_tuple(text: str) -> tuple:
    match = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else ()


# ---- Docker -----------------------------------------------------------------------------------

def check_docker() -> list[Check]:
    engine = run(["docker", "version", "--format", "{{.Server.Version}}"])
    if engine is None or engine.returncode != 0 or not engine.stdout.strip():
        why = "docker is not installed" if engine is None else (engine.stderr.strip().splitlines() or ["no answer"])[-1]
        return [Check("docker", FAIL, f"the Docker engine does not answer ({why})",
                      "install Docker Engine and start it (systemctl start docker); add your user to the "
                      "docker group or run as root"),
                Check("compose", FAIL, "not checked: no Docker engine", "see docker")]
    version = engine.stdout.strip()
    checks = [Check("docker", PASS if version_tuple(version) >= TESTED_DOCKER else WARN, f"engine {version}",
                    f"the bundle is tested on {'.'.join(map(str, TESTED_DOCKER))} and later; upgrade Docker")]
    compose = run(["docker", "compose", "version", "--short"])
    if compose is None or compose.returncode != 0:
        checks.append(Check("compose", FAIL, "Docker Compose v2 is missing (`docker compose version` fails)",
                            "install the docker-compose-plugin package (Compose v2; the old docker-compose "
                            "v1 does not read the rendered files)"))
    else:
        found = compose.stdout.strip().lstrip("v")
        known = version_tuple(found)
        verdict = FAIL if known and known[0] < 2 else PASS if known >= TESTED_COMPOSE else WARN
        checks.append(Check("compose", verdict, f"v{found}",
                            f"the bundle is tested with Compose {'.'.join(map(str, TESTED_COMPOSE))} and later; "
                            "upgrade the docker-compose-plugin package"))
    return checks


def check_gpu_runtime(vendor: str) -> Check:
    if vendor == "amd":
        missing = [str(path) for path in AMD_DEVICES if not path.exists()]
        if missing:
            return Check("gpu runtime", FAIL, f"{' and '.join(missing)} missing: the container cannot reach "
                         "the GPUs", "install the ROCm kernel driver (amdgpu-dkms) and reboot")
        return Check("gpu runtime", PASS, "/dev/kfd and /dev/dri present (ROCm)")
    runtimes = json_answer(run(["docker", "info", "--format", "{{json .Runtimes}}"]), {}) or {}
    hook = shutil.which(NVIDIA_HOOK)
    if hook or "nvidia" in (runtimes or {}):
        where = hook or "docker's nvidia runtime"
        return Check("gpu runtime", PASS, f"NVIDIA Container Toolkit ({where})")
    specs = [path for folder in CDI_FOLDERS if folder.is_dir() for path in folder.glob("nvidia*.y*ml")]
    if specs:
        return Check("gpu runtime", WARN, f"a CDI specification ({specs[0]}) but no {NVIDIA_HOOK}: the rendered "
                     "files request `driver: nvidia`, which Docker serves through the toolkit's hook",
                     "install nvidia-container-toolkit as well, then restart Docker")
    return Check("gpu runtime", FAIL, f"no NVIDIA Container Toolkit ({NVIDIA_HOOK} not on PATH, no nvidia "
                 "runtime in `docker info`): containers get no GPU",
                 "install nvidia-container-toolkit, `sudo nvidia-ctk runtime configure --runtime=docker`, "
                 "restart Docker")


# ---- GPUs -------------------------------------------------------------------------------------

def nvidia_rows(text: str) -> list[dict]:
    """NVIDIA_QUERY's rows (no header, no units) as field -> text."""
    return [dict(zip(NVIDIA_FIELDS, (cell.strip() for cell in line.split(","))))
            for line in text.strip().splitlines() if line.strip()]


def parse_apps(text: str) -> list[tuple]:
    apps = []
    for line in text.strip().splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) == 4 and cells[1].isdigit():
            used = int(cells[3]) if cells[3].isdigit() else 0
            apps.append((cells[0], int(cells[1]), cells[2], used))
    return apps


def read_host() -> Host:
    if shutil.which("nvidia-smi"):
        query = run(NVIDIA_QUERY)
        if query is None or query.returncode != 0:
            said = [] if query is None else (query.stdout + query.stderr).strip().splitlines()
            why = said[-1] if said else "no answer" if query is None else f"exit code {query.returncode}"
            return Host("nvidia", [], [], [], f"nvidia-smi fails ({why})")
        apps = run(NVIDIA_APPS_QUERY)
        return Host("nvidia", parse_nvidia_smi_csv(query.stdout), nvidia_rows(query.stdout),
                    parse_apps(apps.stdout) if apps is not None and apps.returncode == 0 else [])
    if shutil.which("rocm-smi"):
        query = run(("rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json"))
        if query is not None and query.returncode == 0:
            return Host("amd", parse_amd_smi_json(query.stdout), [], [])
        return Host("amd", [], [], [], "rocm-smi fails")
    return Host("nvidia", [], [], [], "neither nvidia-smi nor rocm-smi is installed")


def selected(host: Host, gpu_ids: list) -> list[Gpu]:
    return [g for g in host.gpus if not gpu_ids or str(g.index) in gpu_ids]


def check_gpus(host: Host, deployment: render.Deployment, gpu_ids: list) -> list[Check]:
    profile, gpu = deployment.hardware, deployment.gpu
    if not host.gpus:
        fix = ("install the NVIDIA driver (nvidia-smi must list the GPUs)" if deployment.vendor == "nvidia"
               else "install ROCm (rocm-smi must list the GPUs)")
        return [Check("gpus", FAIL, f"no GPU found: {host.problem or 'the GPU tool lists none'}; "
                      f"{profile} needs {deployment.count}x {gpu['name']}", fix)]
    chosen = selected(host, gpu_ids)
    missing = sorted(set(gpu_ids) - {str(g.index) for g in host.gpus})
    listed = ", ".join(str(g.index) for g in host.gpus)
    checks = []
    if missing:
        return [Check("gpu count", FAIL, f"GPUS={','.join(gpu_ids)}: no GPU {', '.join(missing)} here "
                      f"(the host lists {listed})", "choose GPUS= among the listed indexes")]
    if len(chosen) < deployment.count:
        checks.append(Check("gpu count", FAIL, f"{len(chosen)} GPU(s){' in GPUS=' if gpu_ids else ''}, {profile} "
                            f"needs {deployment.count}", "choose the HARDWARE= profile of this host "
                            "(`make presets`), or a host with more GPUs"))
    elif len(chosen) > deployment.count:
        checks.append(Check("gpu count", PASS, f"{len(chosen)} GPUs, {profile} uses {deployment.count} "
                            "(GPUS= picks which; by default Docker gives the first ones)"))
    else:
        checks.append(Check("gpu count", PASS, f"{len(chosen)}x, as {profile} needs"))
    wrong = sorted({g.name for g in chosen if not any(m in g.name for m in gpu["match"])})
    if wrong:
        checks.append(Check("gpu model", FAIL, f"{', '.join(wrong)} is not {profile}'s {gpu['name']}",
                            "set HARDWARE= to this host's profile (`make presets`; `python -m bundle.render "
                            "detect` names it)"))
    else:
        checks.append(Check("gpu model", PASS, f"{gpu['name']}"))
    small = [g for g in chosen if g.memory_mib < gpu["memory_mib"]]
    if small:
        checks.append(Check("gpu memory", FAIL, f"GPU {small[0].index} has {small[0].memory_mib} MiB, the memory "
                            f"plan of {profile} assumes {gpu['memory_mib']} MiB", "use the profile of these "
                            "GPUs (HARDWARE=), or disable MIG (nvidia-smi -mig 0) if it is on"))
    else:
        checks.append(Check("gpu memory", PASS, f"{min(g.memory_mib for g in chosen)} MiB each "
                            f"(the plan assumes {gpu['memory_mib']})"))
    checks.append(check_busy(host, chosen, deployment.count))
    return checks


def running_deployment(data: dict, port: int) -> list[str]:
    """Names of the running containers of this bundle's deployment on the port: the compose project
    bundle/render.py names <project_prefix>-<port>. A redeploy finds its GPUs and port taken by them."""
    project = f"{data['container']['project_prefix']}-{port}"
    result = run(["docker", "ps", "--filter", f"label=com.docker.compose.project={project}", "--format",
                  "{{.Names}}"])
    return result.stdout.split() if result is not None and result.returncode == 0 else []


def check_busy(host: Host, chosen: list[Gpu], count: int) -> Check:
    if host.vendor != "nvidia":
        return Check("gpus busy", WARN, "not checked on AMD (rocm-smi --showpids shows users)",
                     "check that no other program uses the GPUs")
    used_by_index = {int(row["index"]): int(row["memory.used"]) for row in host.rows
                     if row.get("memory.used", "").isdigit()}
    uuid_to_index = {row["uuid"]: int(row["index"]) for row in host.rows if "uuid" in row}
    # Docker gives the first `count` GPUs when GPUS= is not set: only those must be idle.
    needed = chosen[:count]
    busy = []
    for g in needed:
        apps = [f"pid {pid} {name} ({mib} MiB)" for uuid, pid, name, mib in host.apps
                if uuid_to_index.get(uuid) == g.index]
        used = used_by_index.get(g.index, 0)
        if apps or used > BUSY_MIB:
            busy.append(f"GPU {g.index}: {used} MiB in use" + (f" by {', '.join(apps)}" if apps else
                                                              " (by a process not visible here)"))
    if busy and host.own:
        return Check("gpus busy", WARN, "; ".join(busy) + f"; this port's deployment is running "
                     f"({', '.join(host.own)}): make deploy replaces it", "`make down` first to start from idle GPUs")
    if busy:
        return Check("gpus busy", FAIL, "; ".join(busy), "stop those programs (`make down` on the port of an "
                     "earlier deployment), or choose idle GPUs with GPUS=")
    return Check("gpus busy", PASS, f"GPU {','.join(str(g.index) for g in needed)} idle "
                 f"(<= {BUSY_MIB} MiB in use, no compute process)")


def image_cuda(reference: str) -> str | None:
    """CUDA_VERSION of the image, from the local copy when there is one, else from the tag (cu130 -> 13.0)."""
    for entry in json_answer(run(["docker", "image", "inspect", "--format", "{{json .Config.Env}}", reference]),
                             []) or []:
        if entry.startswith("CUDA_VERSION="):
            return entry.split("=", 1)[1]
    match = re.search(r"-cu(\d+)(\d)\b", reference)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def check_driver(host: Host, deployment: render.Deployment, gpu_ids: list, base_image: str) -> Check:
    if deployment.vendor != "nvidia":
        return Check("driver", PASS, "ROCm: the image carries its user-space stack")
    chosen = selected(host, gpu_ids) or host.gpus
    if not chosen:
        return Check("driver", FAIL, "no NVIDIA driver answers (nvidia-smi)", "install the NVIDIA driver "
                     f"{deployment.image.get('min_driver') or ''} or later")
    cuda = image_cuda(base_image)
    # As the container will check it: BUNDLE_GPU_DRIVER_MIN from the lane, else the image's CUDA.
    lane = required_driver(BundleSettings.from_environ(
        {"BUNDLE_GPU_DRIVER_MIN": str(deployment.image["min_driver"])} if deployment.image.get("min_driver") else {}),
        {})
    by_cuda = required_driver(BundleSettings.from_environ({}), {"CUDA_VERSION": cuda or ""})
    needed = max(lane, by_cuda)
    driver = chosen[0].driver
    major = int(driver.split(".")[0]) if driver[:1].isdigit() else 0
    what = f"driver {driver}; the image ({base_image}, CUDA {cuda or '?'}) needs {needed or '?'}+"
    if needed and major < needed:
        return Check("driver", FAIL, what, f"install NVIDIA driver {needed} or later (the engine would stop "
                     "with CUDA error 804)")
    return Check("driver", PASS if needed else WARN, what, "" if needed else "the image's CUDA is unknown")


# ---- disk, shm, port, token -------------------------------------------------------------------

def checkpoint_bytes(repo: str, environ) -> int | None:
    """The checkpoint's size on disk: parameters x bytes (launcher/memory.py), or a draft's known size."""
    if repo in memory.KNOWN_DRAFT_BYTES:
        return memory.KNOWN_DRAFT_BYTES[repo]
    shape = memory.model_shape(repo, environ)
    return shape.weight_bytes(shape.weight_format == "fp8") if shape else None


def cached_bytes(hub: Path, repo: str) -> int:
    """What the cache already holds of the repository: its finished blobs (partial files are not
    resumed by huggingface_hub, bundle/download.py)."""
    blobs = download.repo_folder(hub, repo) / "blobs"
    return sum(path.stat().st_size for path in blobs.glob("*")
               if path.is_file() and path.suffix != ".incomplete")


def existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(deployment: render.Deployment, hub: Path, free: int | None = None) -> Check:
    environ = {"HF_HUB_CACHE": str(hub)}
    needed, parts = 0, []
    for repo in download.checkpoints(deployment):
        if download.is_complete(repo, hub):
            parts.append(f"{repo} complete in the cache")
            continue
        size = checkpoint_bytes(repo, environ)
        if size is None:
            return Check("disk", WARN, f"the size of {repo} is unknown", "check the free space by hand")
        missing = max(0, size - cached_bytes(hub, repo))
        needed += missing
        parts.append(f"{repo} {size / 1e9:.1f} GB" + (f" ({missing / 1e9:.1f} GB not cached yet)"
                                                     if missing < size else ""))
    where = existing_parent(hub)
    free = shutil.disk_usage(where).free if free is None else free
    what = f"{free / 1e9:.1f} GB free at {where}, needs {needed / 1e9:.1f} GB: {'; '.join(parts)}"
    fix = (f"free space there, or point HF_CACHE= at a disk with {needed / 1e9:.0f} GB free "
           "(then `make download`)")
    if free < needed:
        return Check("disk", FAIL, what, fix)
    return Check("disk", PASS if free >= needed * DISK_HEADROOM else WARN, what, "less than 10 % to spare: " + fix)


def check_shm(deployment: render.Deployment, size: int | None = None) -> Check:
    path = Path("/dev/shm")
    if size is None:
        size = shutil.disk_usage(path).total if path.exists() else 0
    what = f"/dev/shm {size / memory.GIB:.1f} GiB"
    if deployment.gpus_per_replica > 1 and size < SHM_MIN_BYTES:
        return Check("shm", FAIL, f"{what}: tensor parallelism over {deployment.gpus_per_replica} GPUs shares "
                     "memory through it (the engine uses the host's, ipc: host)",
                     "enlarge it: `mount -o remount,size=16G /dev/shm` (and in /etc/fstab)")
    return Check("shm", PASS, what)


def check_port(host: str, port: int, own: list | None = None) -> Check:
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Like a server would: a lingering TIME_WAIT must not count as taken, a listener must.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as err:
            taken = err.errno == errno.EADDRINUSE
            if taken and own:
                return Check("port", WARN, f"{host}:{port} is in use by this port's deployment ({', '.join(own)}): "
                             "make deploy replaces it", f"`make down PORT={port}` first, or another PORT=")
            return Check("port", FAIL, f"{host}:{port} {'is in use' if taken else f'cannot be bound: {err.strerror}'}",
                         f"choose another PORT=, or `make down PORT={port}` if an earlier deployment holds it"
                         if taken else "set BIND_ADDRESS= to an address of this host")
    return Check("port", PASS, f"{host}:{port} is free")


def check_token(path: Path) -> Check:
    if not path.is_file():
        return Check("token", FAIL, f"{path} is missing; Llama 3.1 is a gated model",
                     f"`install -D -m 600 /dev/stdin {path} <<< hf_...` with a token of an account that "
                     "accepted the licence")
    mode = stat.S_IMODE(path.stat().st_mode)
    if not path.read_text().strip():
        return Check("token", FAIL, f"{path} is empty", "put the token there (`install -m 600 ...`)")
    if mode & 0o077:
        return Check("token", FAIL, f"{path} has mode {mode:04o}: others on this host can read the token",
                     f"chmod 600 {path}")
    return Check("token", PASS, f"{path} (mode {mode:04o})")


def hub_client_with_timeout():
    """huggingface_hub's own client, with a timeout: its default has none, and a Hub behind a
    firewall that drops packets would hold make doctor forever. The limit is the one the library
    itself uses for its metadata requests (HF_HUB_ETAG_TIMEOUT, 10 s unless set)."""
    import httpx
    from huggingface_hub import constants
    from huggingface_hub.utils._http import default_client_factory
    client = default_client_factory()
    client.timeout = httpx.Timeout(constants.HF_HUB_ETAG_TIMEOUT)
    return client


def unreachable(endpoint: str, err: Exception) -> tuple[str, str]:
    """What the Hub's client raised when it got no answer, as (detail, fix)."""
    from huggingface_hub.errors import OfflineModeIsEnabled
    if isinstance(err, OfflineModeIsEnabled):
        return ("HF_HUB_OFFLINE is set, so the Hub is not asked",
                "unset HF_HUB_OFFLINE for make doctor, or leave ONLINE= unset to check the token file only")
    why = str(err).splitlines()[0] if str(err) else "no answer"
    return (f"the Hub at {endpoint} could not be reached ({err.__class__.__name__}: {why})",
            "check this host's connection to it (proxy: HTTPS_PROXY=; another Hub: HF_ENDPOINT=), "
            "or leave ONLINE= unset to check the token file only")


def check_token_online(path: Path, repos: list[str]) -> list[Check]:
    """Ask the Hub whether the token may read each repository (HF_ENDPOINT is honoured). An answer
    that is no verdict on the token (no connection, HF_HUB_OFFLINE, a server error) fails too:
    ONLINE=1 asked for the Hub's word, and the deployment's download would meet the same."""
    try:
        from huggingface_hub import constants, set_client_factory
    except ImportError as err:
        return [Check("token online", FAIL, f"the Hub's client is not installed ({err})",
                      "pip install -r requirements.txt into the venv make uses")]
    from huggingface_hub.utils._http import default_client_factory
    endpoint = constants.ENDPOINT
    token = download.read_token(path) if path.is_file() else None
    set_client_factory(hub_client_with_timeout)
    try:
        return ask_hub(endpoint, token, repos)
    finally:
        set_client_factory(default_client_factory)   # what else runs in this process keeps the library's own


def ask_hub(endpoint: str, token: str | None, repos: list[str]) -> list[Check]:
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    checks, lost = [], None
    for repo in repos:
        if lost:      # one wait for an unreachable Hub is enough
            checks.append(Check("token online", FAIL, f"{repo}: not asked, {lost[0]}", lost[1]))
            continue
        try:
            HfApi(endpoint=endpoint).auth_check(repo, token=token or False)
        except GatedRepoError:
            checks.append(Check("token online", FAIL, f"{repo}: the Hub refuses the token (gated repository)",
                                f"accept the licence on https://huggingface.co/{repo} with the token's account"))
        except RepositoryNotFoundError:
            checks.append(Check("token online", FAIL, f"{repo}: not found for this token",
                                "check the token (a read token of the account that accepted the licence)"))
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else "?"
            checks.append(Check("token online", FAIL, f"{repo}: the Hub at {endpoint} answered HTTP {status}",
                                "that answer says nothing of the token; try again later, or check "
                                "HF_ENDPOINT= and the proxy (HTTPS_PROXY=)"))
        # No answer at all: httpx's errors (ConnectError, timeouts, a malformed HF_ENDPOINT), and
        # OSError, where OfflineModeIsEnabled and requests' errors belong.
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as err:
            lost = unreachable(endpoint, err)
            checks.append(Check("token online", FAIL, f"{repo}: {lost[0]}", lost[1]))
        else:
            checks.append(Check("token online", PASS, f"{repo}: the token may read it"))
    return checks


# ---- all together -----------------------------------------------------------------------------

def resolve_hardware(data: dict, hardware: str | None, gpu_ids: list) -> tuple[str | None, Check]:
    if hardware:
        if hardware not in data["hardware"]["hardware"]:
            return None, Check("hardware", FAIL, f"unknown HARDWARE={hardware}",
                               f"one of: {', '.join(data['hardware']['hardware'])}")
        return hardware, Check("hardware", PASS, f"{hardware} (HARDWARE=)")
    try:
        detected = render.detect_hardware(data, gpu_ids=gpu_ids)
    except RenderError as err:
        return None, Check("hardware", FAIL, f"not detected: {err}", "set HARDWARE= (`make presets`)")
    return detected, Check("hardware", PASS, f"{detected} (detected from nvidia-smi)")


def check_host(data: dict, chosen: dict, environ=None, online: bool = False) -> list[Check]:
    """Every check for the deployment `make deploy` would start with these option values."""
    environ = os.environ if environ is None else environ
    params = options.params(chosen)
    checks = check_docker()
    hardware, found = resolve_hardware(data, chosen["hardware"], params.gpus)
    checks.append(found)
    deployment = None
    if hardware:
        try:
            deployment = render.resolve(data, hardware, chosen["preset"], params.replicas or 1)
            models = ", ".join(download.checkpoints(deployment))
            checks.append(Check("preset", PASS, f"{chosen['preset']} on {hardware}: {models}"))
        except RenderError as err:
            checks.append(Check("preset", FAIL, str(err), "choose another PRESET= (`make presets`)"))
    port = params.port or data["container"]["default_port"]
    host = read_host()
    host.own = running_deployment(data, port)
    if deployment is not None:
        checks.append(check_gpu_runtime(deployment.vendor))
        checks += check_gpus(host, deployment, params.gpus)
        # The image the compose file builds FROM, as bundle/render.py chooses it.
        base_image = params.base_image or deployment.base_image
        checks.append(check_driver(host, deployment, params.gpus, base_image))
        checks.append(check_disk(deployment, download.hub_cache(data, environ)))
        checks.append(check_shm(deployment))
    else:
        checks.append(check_gpu_runtime(host.vendor))
        seen = (f"{len(host.gpus)}x {', '.join(sorted({g.name for g in host.gpus}))}" if host.gpus
                else f"no GPU found: {host.problem}")
        checks.append(Check("gpus", FAIL, f"{seen}; not checked against a profile",
                            "install the GPU driver first" if not host.gpus else "set HARDWARE= (see hardware)"))
    bind = params.bind_address or data["container"]["default_bind_address"]
    checks.append(check_port(render.parse_bind_address(bind)[0], port, host.own))
    token = download.token_file(data, params)
    checks.append(check_token(token))
    if online and deployment is not None:
        checks += check_token_online(token, download.checkpoints(deployment))
    return checks


def report(checks: list[Check], out=sys.stdout) -> bool:
    """Print the lines and a summary; True when nothing failed."""
    for check in checks:
        print(check.line(), file=out)
    failed = sum(c.verdict == FAIL for c in checks)
    warned = sum(c.verdict == WARN for c in checks)
    print(f"{failed} failed, {warned} warning(s), {len(checks) - failed - warned} passed", file=out, flush=True)
    return failed == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make doctor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_arguments(parser, options.DEPLOY)
    parser.add_argument(download.HF_CACHE.option, dest="hf_cache", metavar=download.HF_CACHE.variable,
                        help=f"{download.HF_CACHE.help} [{download.HF_CACHE.variable}=]")
    parser.add_argument(ONLINE.option, dest="online", action="store_const", const="1",
                        help=f"{ONLINE.help} [{ONLINE.variable}=1]")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.hf_cache:
        environ[download.HF_CACHE.variable] = args.hf_cache
    try:
        data = render.load_data()
        chosen = options.read(options.DEPLOY, args)
        online = ONLINE.read(args.online or environ.get(ONLINE.variable))
        download.hf_cache(data, environ)   # HF_CACHE= checked here, before any check runs
    except RenderError as err:
        print(f"doctor: {err}", file=sys.stderr)
        return errors.USAGE
    return 0 if report(check_host(data, chosen, environ, online)) else errors.FAILED


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
