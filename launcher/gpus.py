"""Preflight: the GPUs as the driver reports them (nvidia-smi, rocm-smi), against what the
configuration needs: count, memory (the arithmetic in launcher.memory), driver, /dev/shm."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess

from launcher.command import DEFAULT_MODEL, EngineConfig
from launcher.memory import GIB, model_shape, plan_memory
from launcher.settings import BundleSettings, ConfigError


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mib: int
    driver: str
    vendor: str = "nvidia"


# The same fields as the real captures in tests/fixtures/gpu/, so the parser is tested on real output.
NVIDIA_FIELDS = ("index", "name", "memory.total", "memory.used", "memory.free", "driver_version", "uuid",
                 "compute_cap", "pci.bus_id", "power.limit")
NVIDIA_QUERY = ("nvidia-smi", "--query-gpu=" + ",".join(NVIDIA_FIELDS), "--format=csv,noheader,nounits")


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """Rows of `nvidia-smi --query-gpu=<NVIDIA_FIELDS> --format=csv[,noheader][,nounits]`."""
    fields, gpus = list(NVIDIA_FIELDS), []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if cells and not cells[0].isdigit():
            fields = [re.sub(r"\s*\[.*\]$", "", c) for c in cells]   # header: "memory.total [MiB]"
            continue
        row = dict(zip(fields, cells))
        gpus.append(Gpu(index=int(row["index"]), name=row["name"],
                        memory_mib=int(row["memory.total"].split()[0]), driver=row["driver_version"]))
    return gpus


def parse_amd_smi_json(text: str) -> list[Gpu]:
    """`rocm-smi --showproductname --showmeminfo vram --showdriverversion --json`."""
    data = json.loads(text)
    driver = str(data.get("system", {}).get("Driver version", ""))
    gpus = []
    for key, card in sorted(data.items()):
        match = re.fullmatch(r"card(\d+)", key)
        if not match:
            continue
        total = int(card.get("VRAM Total Memory (B)", 0))
        name = card.get("Card Series") or card.get("Card series") or card.get("Card model", "AMD GPU")
        gpus.append(Gpu(index=int(match.group(1)), name=name, memory_mib=total // 2 ** 20,
                        driver=driver, vendor="amd"))
    return gpus


def detect_gpus() -> list[Gpu]:
    if shutil.which("nvidia-smi"):
        out = subprocess.run(NVIDIA_QUERY, capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            return parse_nvidia_smi_csv(out.stdout)
        raise ConfigError(f"nvidia-smi failed ({out.stderr.strip() or out.returncode}): is the NVIDIA "
                          "Container Toolkit installed and the GPU reservation in the compose file?")
    if shutil.which("rocm-smi"):
        out = subprocess.run(("rocm-smi", "--showproductname", "--showmeminfo", "vram",
                              "--showdriverversion", "--json"), capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            return parse_amd_smi_json(out.stdout)
    return []


# Lowest driver branch for a CUDA major.minor (NVIDIA's CUDA toolkit release notes, table 3).
CUDA_MIN_DRIVER = {(13, 0): 580, (12, 9): 575, (12, 8): 570, (12, 6): 560, (12, 4): 550}


def required_driver(settings: BundleSettings, environ) -> int:
    """BUNDLE_GPU_DRIVER_MIN, else the driver the image's CUDA_VERSION needs, else 0 (unknown)."""
    if settings.gpu_driver_min:
        return settings.gpu_driver_min
    match = re.match(r"(\d+)\.(\d+)", environ.get("CUDA_VERSION", ""))
    if not match:
        return 0
    major, minor = int(match.group(1)), int(match.group(2))
    fitting = [drv for (ma, mi), drv in CUDA_MIN_DRIVER.items() if (ma, mi) <= (major, minor)]
    return max(fitting) if fitting else 0


def preflight(config: EngineConfig, settings: BundleSettings, environ, gpus: list[Gpu],
              shm_bytes: int | None = None) -> list[str]:
    """Refuse what cannot start; return warnings for what might be slow or fragile."""
    v, notes = config.values, []
    if not gpus:
        raise ConfigError("no GPU visible: nvidia-smi / rocm-smi found none. Check the GPU reservation "
                          "(GPUS in make deploy) and the container toolkit, or set BUNDLE_PREFLIGHT=0")
    nnodes = int(v.get("nnodes") or 1)
    world = int(v.get("tp_size") or 1) * int(v.get("pp_size") or 1) * int(v.get("dp_size") or 1)
    per_node = world // nnodes
    first = int(v.get("base_gpu_id") or 0)
    step = int(v.get("gpu_id_step") or 1)
    needed_index = first + (per_node - 1) * step
    if needed_index >= len(gpus):
        raise ConfigError(f"tp*pp*dp/nnodes = {per_node} GPUs (base_gpu_id {first}, step {step}) but "
                          f"{len(gpus)} visible: {', '.join(g.name for g in gpus)}")
    needed_driver = required_driver(settings, environ)
    for gpu in gpus:
        major = int(gpu.driver.split(".")[0]) if gpu.driver[:1].isdigit() else 0
        if gpu.vendor == "nvidia" and needed_driver and major < needed_driver:
            raise ConfigError(f"GPU {gpu.index} driver {gpu.driver} is older than {needed_driver}, which "
                              f"the image's CUDA {environ.get('CUDA_VERSION')} needs (CUDA error 804 at start)")
    model = v.get("model_path") or DEFAULT_MODEL
    shape = model_shape(model, environ)
    used = [gpus[first + k * step] for k in range(per_node)]
    if shape is None:
        notes.append(f"memory check skipped: {model} is not cached and not in the built-in table")
    else:
        plan = plan_memory(model, shape, v, min(g.memory_mib for g in used) / 1024,
                           cuda=used[0].vendor == "nvidia")
        if not plan.fits:
            raise ConfigError(f"{model} does not fit on {used[0].name} x{per_node}: {plan.explain()}")
        notes.append(f"memory: {plan.explain()}")
    if shm_bytes is None:
        shm_bytes = shutil.disk_usage("/dev/shm").total if os.path.exists("/dev/shm") else 0
    if per_node > 1 and shm_bytes < GIB:
        notes.append(f"/dev/shm is {shm_bytes // 2 ** 20} MiB and IPC looks private: tensor parallelism needs "
                     "shared memory; use `ipc: host` (the rendered compose files do)")
    return notes


