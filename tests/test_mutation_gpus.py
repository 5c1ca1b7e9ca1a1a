"""Behaviour tests for launcher/gpus.py, written to kill mutmut's survivors (docs/mutation.md).
The parsers read real captures (tests/fixtures/gpu/) and hand-written variants of them; detect_gpus
runs stand-in nvidia-smi / rocm-smi scripts found on PATH; preflight's expected numbers are worked
out by hand (GiB = MiB / 1024, one decimal)."""
import json
import os
import shutil
import stat
import types

import pytest

from paths import FIXTURES
from launcher import gpus
from launcher.gpus import Gpu, parse_amd_smi_json, parse_nvidia_smi_csv, preflight, required_driver
from launcher.memory import GIB
from launcher.settings import BundleSettings, ConfigError

SETTINGS = BundleSettings.from_environ({})
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 81559, "580.159.04")      # 79.6 GiB
H200 = Gpu(1, "NVIDIA H200", 143771, "580.159.04")                # 140.4 GiB
TINY = {"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048}


# --- nvidia-smi CSV ------------------------------------------------------------------------------

def test_csv_with_header_and_units_gives_whole_gpus():
    found = parse_nvidia_smi_csv((FIXTURES / "gpu" / "h200x2" / "query-gpu.csv").read_text())
    assert found == [Gpu(0, "NVIDIA H200", 143771, "580.159.04", "nvidia"),
                     Gpu(1, "NVIDIA H200", 143771, "580.159.04", "nvidia")]


def test_csv_header_decides_the_column_order():
    # index stays first: a row is told from the header by its leading digit
    text = ("index, driver_version, memory.total [MiB], name\n"
            "3, 550.54.15, 81920 MiB, NVIDIA A100-SXM4-80GB\n")
    assert parse_nvidia_smi_csv(text) == [Gpu(3, "NVIDIA A100-SXM4-80GB", 81920, "550.54.15")]


def test_csv_without_header_uses_the_query_order_and_skips_blank_edges():
    row = "2, NVIDIA H100 80GB HBM3, 81559, 1, 81000, 570.86.15, GPU-x, 9.0, 0000:00:07.0, 700.00"
    assert parse_nvidia_smi_csv(f"\n\n{row}\n\n") == [Gpu(2, "NVIDIA H100 80GB HBM3", 81559, "570.86.15")]


def test_csv_of_nothing_is_no_gpu():
    assert parse_nvidia_smi_csv("") == [] and parse_nvidia_smi_csv("\n") == []


# --- rocm-smi JSON -------------------------------------------------------------------------------

def test_amd_cards_in_key_order_with_their_names_memory_and_driver():
    data = {
        "card1": {"Card series": "AMD Instinct MI300X", "VRAM Total Memory (B)": str(5 * 2 ** 20 + 2 ** 20 - 1)},
        "card0": {"Card Series": "AMD Instinct MI325X", "Card series": "other", "VRAM Total Memory (B)": "2097152"},
        "card2": {"Card model": "0x74a1"},
        "card3": {},
        "system": {"Driver version": 6.8},
        "cardX": {"Card Series": "not a card"}, "card": {}, "xcard4": {}, "card5x": {},
    }
    assert parse_amd_smi_json(json.dumps(data)) == [
        Gpu(0, "AMD Instinct MI325X", 2, "6.8", "amd"),
        Gpu(1, "AMD Instinct MI300X", 5, "6.8", "amd"),
        Gpu(2, "0x74a1", 0, "6.8", "amd"),
        Gpu(3, "AMD GPU", 0, "6.8", "amd"),
    ]


def test_amd_without_system_section_has_no_driver():
    found = parse_amd_smi_json(json.dumps({"card7": {"Card Series": "MI300X", "VRAM Total Memory (B)": 0}}))
    assert found == [Gpu(7, "MI300X", 0, "", "amd")]


# --- detect_gpus: the tools as subprocesses ------------------------------------------------------

def fake_tool(folder, name, stdout_file=None, code=0, stderr=""):
    """A stand-in for nvidia-smi / rocm-smi that records its argv and prints a capture."""
    script = folder / name
    body = [f'printf "%s\\n" "$@" > "{folder}/{name}.argv"']
    if stdout_file:
        body.append(f'cat "{stdout_file}"')
    if stderr:
        body.append(f'printf "%s" "{stderr}" >&2')
    body.append(f"exit {code}")
    script.write_text("#!/bin/sh\n" + "\n".join(body) + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:{os.path.dirname(shutil.which('sh'))}")
    return folder


def test_detect_runs_the_nvidia_query_and_parses_it(bin_dir):
    fake_tool(bin_dir, "nvidia-smi", FIXTURES / "gpu" / "h200x2" / "query-gpu-noheader-nounits.csv")
    fake_tool(bin_dir, "rocm-smi", code=1)
    assert gpus.detect_gpus() == [Gpu(0, "NVIDIA H200", 143771, "580.159.04"),
                                  Gpu(1, "NVIDIA H200", 143771, "580.159.04")]
    assert (bin_dir / "nvidia-smi.argv").read_text().splitlines() == [
        "--query-gpu=index,name,memory.total,memory.used,memory.free,driver_version,uuid,compute_cap,"
        "pci.bus_id,power.limit", "--format=csv,noheader,nounits"]
    assert not (bin_dir / "rocm-smi.argv").exists()


def test_detect_reports_a_failing_nvidia_smi_with_its_message(bin_dir):
    fake_tool(bin_dir, "nvidia-smi", code=9, stderr="  Failed to initialize NVML: Driver/library version mismatch ")
    with pytest.raises(ConfigError) as err:
        gpus.detect_gpus()
    assert str(err.value) == ("nvidia-smi failed (Failed to initialize NVML: Driver/library version mismatch): "
                              "is the NVIDIA Container Toolkit installed and the GPU reservation in the "
                              "compose file?")


def test_detect_reports_the_exit_code_when_nvidia_smi_says_nothing(bin_dir):
    fake_tool(bin_dir, "nvidia-smi", code=9)
    with pytest.raises(ConfigError, match=r"^nvidia-smi failed \(9\): is the NVIDIA"):
        gpus.detect_gpus()


def test_detect_falls_back_to_rocm_smi(bin_dir, tmp_path):
    capture = tmp_path / "rocm.json"
    capture.write_text(json.dumps({"card0": {"Card Series": "AMD Instinct MI300X",
                                             "VRAM Total Memory (B)": "206141652992"},
                                   "system": {"Driver version": "6.8.5"}}))
    fake_tool(bin_dir, "rocm-smi", capture)
    assert gpus.detect_gpus() == [Gpu(0, "AMD Instinct MI300X", 196592, "6.8.5", "amd")]
    assert (bin_dir / "rocm-smi.argv").read_text().splitlines() == [
        "--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json"]


def test_detect_with_a_failing_rocm_smi_or_no_tool_finds_nothing(bin_dir):
    assert gpus.detect_gpus() == []
    fake_tool(bin_dir, "rocm-smi", code=2)
    assert gpus.detect_gpus() == []


# --- required_driver -----------------------------------------------------------------------------

@pytest.mark.parametrize("cuda, driver", [
    ("13.0.1", 580), ("13.0", 580), ("13.2", 580), ("14.1", 580), ("12.9.1", 575), ("12.10", 575),
    ("12.8", 570), ("12.7", 560), ("12.6.3", 560), ("12.5", 550), ("12.4.1", 550),
    ("12.3", 0), ("11.8", 0), ("", 0), ("12", 0), ("cuda12.8", 0),
])
def test_required_driver_from_the_images_cuda(cuda, driver):
    assert required_driver(SETTINGS, {"CUDA_VERSION": cuda}) == driver


def test_required_driver_setting_wins_and_missing_cuda_is_unknown():
    assert required_driver(BundleSettings.from_environ({"BUNDLE_GPU_DRIVER_MIN": "590"}), {"CUDA_VERSION": "12.4"}) == 590
    assert required_driver(SETTINGS, {}) == 0


# --- preflight -----------------------------------------------------------------------------------

def config(**values):
    return types.SimpleNamespace(values=values)


def run(values, gpu_list, environ=None, shm=512 * GIB, settings=SETTINGS):
    return preflight(config(**values), settings, {"CUDA_VERSION": "12.8.1", **(environ or {})}, gpu_list,
                     shm_bytes=shm)


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "tiny-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    return str(folder)


def gpus_like(*templates):
    return [Gpu(i, t.name, t.memory_mib, t.driver, t.vendor) for i, t in enumerate(templates)]


def test_the_last_needed_gpu_index_is_checked_on_both_sides(tiny):
    four = gpus_like(H200, H200, H200, H200)
    # tp 2 from GPU 1 with step 2: GPUs 1 and 3, so four are enough and three are not
    assert run({"model_path": tiny, "tp_size": 2, "base_gpu_id": 1, "gpu_id_step": 2}, four)
    with pytest.raises(ConfigError) as err:
        run({"model_path": tiny, "tp_size": 2, "base_gpu_id": 1, "gpu_id_step": 2}, four[:3])
    assert str(err.value) == ("tp*pp*dp/nnodes = 2 GPUs (base_gpu_id 1, step 2) but 3 visible: "
                              "NVIDIA H200, NVIDIA H200, NVIDIA H200")


def test_world_size_is_tp_times_pp_times_dp_over_nodes(tiny):
    two = gpus_like(H200, H200)
    assert run({"model_path": tiny, "tp_size": 2, "pp_size": 2, "nnodes": 2}, two)
    with pytest.raises(ConfigError, match=r"^tp\*pp\*dp/nnodes = 4 GPUs \(base_gpu_id 0, step 1\) but 2"):
        run({"model_path": tiny, "tp_size": 2, "pp_size": 2}, two)
    with pytest.raises(ConfigError, match=r"= 3 GPUs"):
        run({"model_path": tiny, "dp_size": 3}, two)
    with pytest.raises(ConfigError, match=r"= 3 GPUs"):
        run({"model_path": tiny, "pp_size": 3}, two)
    assert run({"model_path": tiny, "tp_size": None, "pp_size": None, "dp_size": None, "nnodes": None,
                "base_gpu_id": None, "gpu_id_step": None}, gpus_like(H100))


def test_no_gpu_at_all_says_what_to_check():
    with pytest.raises(ConfigError) as err:
        run({}, [])
    assert str(err.value) == ("no GPU visible: nvidia-smi / rocm-smi found none. Check the GPU reservation "
                              "(GPUS in make deploy) and the container toolkit, or set BUNDLE_PREFLIGHT=0")


def test_driver_bound_on_both_sides(tiny):
    at = [Gpu(0, "NVIDIA H200", 143771, "570.86.15")]
    below = [Gpu(0, "NVIDIA H200", 143771, "565.57.01")]
    assert run({"model_path": tiny}, at)                                 # CUDA 12.8 needs 570
    with pytest.raises(ConfigError) as err:
        run({"model_path": tiny}, below)
    assert str(err.value) == ("GPU 0 driver 565.57.01 is older than 570, which the image's CUDA 12.8.1 "
                              "needs (CUDA error 804 at start)")


def test_every_gpu_driver_is_checked_and_an_unreadable_one_counts_as_zero(tiny):
    mixed = [Gpu(0, "NVIDIA H200", 143771, "575.1"), Gpu(1, "NVIDIA H200", 143771, "n/a")]
    with pytest.raises(ConfigError, match="^GPU 1 driver n/a is older than 570"):
        run({"model_path": tiny}, mixed)


def test_amd_drivers_and_an_unknown_cuda_are_not_checked(tiny):
    amd = [Gpu(0, "AMD Instinct MI300X", 196592, "6.8.5", "amd")]
    assert run({"model_path": tiny}, amd)
    old = [Gpu(0, "NVIDIA H200", 143771, "100.1")]
    assert preflight(config(model_path=tiny), SETTINGS, {}, old, shm_bytes=GIB)


def test_memory_uses_the_smallest_of_the_gpus_in_use(tiny):
    mixed = gpus_like(H100, H200)
    (note,) = run({"model_path": tiny}, mixed)
    assert "usable 79.6 GiB x mem-fraction-static 0.830 (SGLang" in note and note.startswith("memory: BF16 weights")
    (note,) = run({"model_path": tiny, "base_gpu_id": 1}, mixed)
    assert "usable 140.4 GiB" in note
    (note, _shm) = run({"model_path": tiny, "tp_size": 2}, gpus_like(H200, H100), shm=0)
    assert "usable 79.6 GiB" in note


def test_a_model_that_does_not_fit_names_the_gpu_and_count():
    with pytest.raises(ConfigError) as err:
        run({"tp_size": 2}, gpus_like(H100, H100, H200))
    assert str(err.value).startswith("meta-llama/Llama-3.1-70B-Instruct does not fit on NVIDIA H100 80GB "
                                     "HBM3 x2: BF16 weights 65.7 GiB per GPU; usable 79.6 GiB")
    # 131.4 GiB of weights on one GPU: more than 140.4 x 0.85 = 119.3 GiB
    with pytest.raises(ConfigError, match="^meta-llama/Llama-3.1-70B-Instruct does not fit on NVIDIA H200 x1: "
                                          "BF16 weights 131.4 GiB"):
        run({"base_gpu_id": 2}, gpus_like(H100, H100, H200), environ={"HF_HUB_CACHE": "/nonexistent"})


def test_an_unknown_model_skips_the_memory_check():
    notes = run({"model_path": "acme/unknown-model"}, gpus_like(H100), environ={"HF_HUB_CACHE": "/nonexistent"})
    assert notes == ["memory check skipped: acme/unknown-model is not cached and not in the built-in table"]


def test_shared_memory_warning_only_for_several_gpus_below_one_gib(tiny):
    two = gpus_like(H200, H200)
    warning = ("/dev/shm is 1023 MiB and IPC looks private: tensor parallelism needs shared memory; "
               "use `ipc: host` (the rendered compose files do)")
    assert run({"model_path": tiny, "tp_size": 2}, two, shm=GIB - 1)[1:] == [warning]
    assert run({"model_path": tiny, "tp_size": 2}, two, shm=GIB)[1:] == []
    assert run({"model_path": tiny}, two, shm=0)[1:] == []


def test_shared_memory_is_measured_when_not_given(tiny):
    two = gpus_like(H200, H200)
    notes = preflight(config(model_path=tiny, tp_size=2), SETTINGS, {}, two)
    real = shutil.disk_usage("/dev/shm").total if os.path.exists("/dev/shm") else 0
    assert any(n.startswith("/dev/shm is") for n in notes) == (real < GIB)
