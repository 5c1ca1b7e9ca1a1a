"""Presets, rendering and the real Compose v2: every pair renders and validates; bad pairs are refused."""
import copy
import re
import subprocess

import pytest
import yaml

from paths import FIXTURES, ROOT
from bundle import render

DATA = render.load_data()
ALL_PAIRS = render.pairs(DATA)


def seconds(duration: str) -> int:
    """'120s' or Go's normalised '2m0s' -> 120."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", duration))


def make(*args, **env):
    import os
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "VENV": str(ROOT / ".venv"), **env}, timeout=60)


def test_required_profiles_and_presets_render():
    required_hw = {"h100x4", "h100x8", "h100x2", "h200x4", "h200x2", "h200x1", "b200x4", "a100x4", "mi300x"}
    assert {h for h, _ in ALL_PAIRS} == required_hw
    for preset in ("basic", "throughput", "latency"):
        assert ("h100x4", preset) in ALL_PAIRS


def test_make_presets_prints_the_pairs_one_per_line():
    result = make("presets")
    assert result.returncode == 0, result.stderr
    assert [tuple(line.split()) for line in result.stdout.splitlines()] == ALL_PAIRS


@pytest.mark.parametrize("hardware,preset", ALL_PAIRS, ids=[f"{h}-{p}" for h, p in ALL_PAIRS])
def test_every_pair_renders_and_passes_docker_compose_config(hardware, preset, tmp_path):
    out = tmp_path / "docker-compose.yml"
    params = render.Params(gpus=[], secrets_dir=str(tmp_path))
    deployment = render.resolve(DATA, hardware, preset)
    out.write_text(render.render(DATA, deployment, params, out, "test"))
    (tmp_path / "hf_token").write_text("x")
    result = subprocess.run(["docker", "compose", "-f", str(out), "config", "--format", "json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(result.stdout)["services"]["engine"]
    assert service["environment"]["ENGINE_TP_SIZE"] == str(deployment.flags["tp-size"])
    assert service["ipc"] == "host" and service["init"] is True
    assert service["ports"][0]["host_ip"] == "127.0.0.1"
    assert service["ulimits"]["memlock"] == -1
    if deployment.vendor == "nvidia":
        device = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["count"] == deployment.count and device["capabilities"] == ["gpu"]
    else:
        assert "/dev/kfd" in str(service["devices"]) and "video" in service["group_add"]
        assert "deploy" not in service
    assert service["build"]["args"]["BASE_IMAGE"] == deployment.base_image
    deploy = DATA["container"]
    assert service["restart"] == deploy["restart"]
    assert seconds(service["stop_grace_period"]) == seconds(deploy["stop_grace_period"])
    assert service["ulimits"]["stack"] == 67108864
    assert service["logging"] == {"driver": "json-file", "options": {
        "max-size": deploy["logging"]["max_size"], "max-file": deploy["logging"]["max_file"]}}
    assert seconds(service["healthcheck"]["start_period"]) == seconds(deploy["healthcheck"]["start_period"])
    assert service["environment"]["HF_TOKEN_FILE"] == "/run/secrets/hf_token"
    assert [s["source"] for s in service["secrets"]] == ["hf_token"]
    assert service["volumes"][0]["target"] == "/root/.cache/huggingface"
    for name, value in deployment.extra_env.items():
        assert service["environment"][name] == value
    if deployment.image["min_driver"]:
        assert service["environment"]["BUNDLE_GPU_DRIVER_MIN"] == str(deployment.image["min_driver"])


def test_rendered_file_says_it_is_generated_and_how(tmp_path):
    out = tmp_path / "c.yml"
    result = make("render", "HARDWARE=h200x4", "PRESET=latency", "GPUS=4,5,6,7", "PORT=8001", f"OUT={out}")
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith("# GENERATED FILE, do not edit: make render HARDWARE=h200x4 PRESET=latency "
                           f"GPUS=4,5,6,7 PORT=8001 OUT={out}")
    assert "KV cache" in text and "EAGLE3" in text
    config = yaml.safe_load(text)["services"]["engine"]
    assert config["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["4", "5", "6", "7"]
    assert config["ports"] == ["127.0.0.1:8001:8000"]


def test_top_level_compose_file_is_the_fresh_default_render(tmp_path):
    out = ROOT / "docker-compose.yml"
    command = render.render_command("h100x4", "basic", "docker-compose.yml", render.Params())
    fresh = render.render(DATA, render.resolve(DATA, "h100x4", "basic"), render.Params(), out, command)
    assert out.read_text() == fresh, "docker-compose.yml drifted from the data: run `make compose-file`"


def test_readme_tables_are_generated_from_the_data_and_the_option_tables():
    from bundle import readme
    text = (ROOT / "README.md").read_text()
    assert readme.replace_block(text, "presets table", render.markdown_table(DATA)) == text, "run `make readme`"
    for name, content in readme.blocks().items():
        assert readme.replace_block(text, name, content) == text, f"README {name} drifted: run `make readme`"
    # Independent spot checks: a row of each block, as an operator reads it.
    assert "| `BUNDLE_ENGINE_PORT` | int | `30000` |" in text
    assert "| `BASE_IMAGE` | `--base-image` | `make render`, `make deploy` |" in text


def test_seed_generators_tp2_bf16_on_h100_is_refused_with_the_arithmetic():
    data = copy.deepcopy(DATA)
    # The seed generator's own command: BF16, --tp 2, --mem-fraction-static 0.85.
    data["presets"]["presets"]["basic"]["hardware"]["h100x2"]["flags"] = {"mem-fraction-static": 0.85}
    with pytest.raises(render.RenderError, match=r"does not fit: BF16 weights 65\.7 GiB per GPU.*= 1[23],\d{3} tokens"):
        render.resolve(data, "h100x2", "basic")
    assert ("h100x2", "basic") not in render.pairs(data)


def test_cli_refusals_exit_nonzero_with_the_reason(tmp_path):
    cases = [
        (["HARDWARE=a100x4", "PRESET=throughput-fp8"], "no FP8 tensor cores"),
        (["HARDWARE=mi300x", "PRESET=latency"], "not validated on ROCm"),
        (["HARDWARE=h100x9", "PRESET=basic"], "unknown HARDWARE='h100x9'; profiles: h100x2"),
        (["HARDWARE=h100x4", "PRESET=fast"], "unknown PRESET='fast'"),
        (["HARDWARE=h100x4", "PRESET=basic", "GPUS=0,1"], "GPUS lists 2 GPUs"),
        (["HARDWARE=h100x4", "PRESET=basic", "BIND_ADDRESS=0.0.0.0"], "without an API key"),
    ]
    for args, reason in cases:
        out = tmp_path / "x.yml"
        result = make("render", *args, f"OUT={out}")
        assert result.returncode != 0 and reason in result.stderr, (args, result.stderr)
        assert not out.exists()


def test_public_bind_with_api_key_or_waiver(tmp_path):
    out = tmp_path / "c.yml"
    assert make("render", "HARDWARE=h100x4", "PRESET=basic", "BIND_ADDRESS=0.0.0.0",
                "API_KEY_FILE=secrets/api_key", f"OUT={out}").returncode == 0
    service = yaml.safe_load(out.read_text())["services"]["engine"]
    assert service["environment"]["ENGINE_API_KEY_FILE"] == "/run/secrets/api_key"
    assert "api_key" in service["secrets"] and service["ports"] == ["0.0.0.0:8000:8000"]
    assert make("render", "HARDWARE=h100x4", "PRESET=basic", "BIND_ADDRESS=0.0.0.0", "ALLOW_NO_API_KEY=1",
                f"OUT={out}").returncode == 0


def test_invalid_preset_data_is_refused_with_the_variable(tmp_path):
    data = copy.deepcopy(DATA)
    data["presets"]["presets"]["basic"]["flags"]["tp-sise"] = 4
    with pytest.raises(render.RenderError, match="ENGINE_TP_SISE is not a setting.*ENGINE_TP_SIZE"):
        render.resolve(data, "h100x4", "basic")


@pytest.mark.parametrize("machine,profile", [("h200x4", "h200x4"), ("h200x2", "h200x2"), ("h100x1", None)])
def test_hardware_detection_from_real_nvidia_smi(machine, profile):
    text = (FIXTURES / "gpu" / machine / "query-gpu-noheader-nounits.csv").read_text()
    if profile:
        assert render.detect_hardware(DATA, text) == profile
    else:
        with pytest.raises(render.RenderError, match=r"1x NVIDIA H100 80GB HBM3, which matches no profile.*h100x4"):
            render.detect_hardware(DATA, text)


@pytest.mark.parametrize("address,mapping", [("0.0.0.0", "0.0.0.0:8000:8000"), ("10.1.2.3", "10.1.2.3:8000:8000"),
                                             ("::1", "[::1]:8000:8000"), ("[::]", "[::]:8000:8000")])
def test_bind_addresses(address, mapping, tmp_path):
    params = render.Params(bind_address=address, allow_no_api_key=True, secrets_dir=str(tmp_path))
    out = tmp_path / "c.yml"
    text = render.render(DATA, render.resolve(DATA, "h100x4", "basic"), params, out, "t")
    assert yaml.safe_load(text)["services"]["engine"]["ports"] == [mapping]


def test_loopback_needs_no_key_but_names_are_refused(tmp_path):
    params = render.Params(bind_address="::1", secrets_dir=str(tmp_path))
    render.render(DATA, render.resolve(DATA, "h100x4", "basic"), params, tmp_path / "c.yml", "t")
    with pytest.raises(render.RenderError, match="BIND_ADDRESS='localhost': expected an IP address"):
        render.render(DATA, render.resolve(DATA, "h100x4", "basic"), render.Params(bind_address="localhost"),
                      tmp_path / "c.yml", "t")


def test_optional_mounts_secrets_and_env_file_validate_in_compose(tmp_path):
    for name in ("hf_token", "api_key", "admin_key"):
        (tmp_path / name).write_text("x")
    (tmp_path / "my adapters").mkdir()
    (tmp_path / "site.env").write_text("ENGINE_LORA_PATHS=sql=/adapters/sql\n")
    out = tmp_path / "sub" / "docker-compose.yml"
    out.parent.mkdir()
    params = render.Params(secrets_dir=str(tmp_path), api_key_file=str(tmp_path / "api_key"),
                           admin_api_key_file=str(tmp_path / "admin_key"), lora_dir=str(tmp_path / "my adapters"),
                           env_file=str(tmp_path / "site.env"), gpus=["4", "5", "6", "7"])
    out.write_text(render.render(DATA, render.resolve(DATA, "h100x4", "basic"), params, out, "t"))
    result = subprocess.run(["docker", "compose", "-f", str(out), "config", "--format", "json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(result.stdout)["services"]["engine"]
    assert service["environment"]["ENGINE_LORA_PATHS"] == "sql=/adapters/sql"
    assert service["environment"]["ENGINE_API_KEY_FILE"] == "/run/secrets/api_key"
    assert service["environment"]["ENGINE_ADMIN_API_KEY_FILE"] == "/run/secrets/admin_api_key"
    assert {s["source"] for s in service["secrets"]} == {"hf_token", "api_key", "admin_api_key"}
    lora = [v for v in service["volumes"] if v["target"] == "/adapters"][0]
    assert lora["type"] == "bind" and lora["source"] == str(tmp_path / "my adapters") and lora["read_only"]
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["4", "5", "6", "7"]


def test_detection_on_a_subset_named_by_gpus():
    text = (FIXTURES / "gpu" / "h200x4" / "query-gpu-noheader-nounits.csv").read_text()
    assert render.detect_hardware(DATA, text, gpu_ids=["2", "3"]) == "h200x2"
    with pytest.raises(render.RenderError, match="GPUS=3,7: no GPU 7 on this host"):
        render.detect_hardware(DATA, text, gpu_ids=["3", "7"])


def test_fp8_on_hardware_without_fp8_is_refused_from_the_memory_plan():
    data = copy.deepcopy(DATA)
    del data["presets"]["presets"]["latency"]["hardware"]["a100x4"]   # keep the seed's FP8 flags
    with pytest.raises(render.RenderError, match="latency on a100x4: uses FP8, which NVIDIA A100-SXM4-80GB"):
        render.resolve(data, "a100x4", "latency")
