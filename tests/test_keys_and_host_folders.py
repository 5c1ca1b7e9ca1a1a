"""`make api-key` (how an operator gets secrets/api_key), and `make hosts` folders that are all a
host needs: copied anywhere else, their compose file names nothing outside them."""
from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from bundle import inventory, keys, render
from launcher.credentials import file_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = yaml.safe_load((ROOT / "inventory.example.yml").read_text())
MAKE_ENV = {"PATH": os.environ["PATH"], "VENV": str(ROOT / ".venv"), "HOME": os.environ.get("HOME", "/root")}


def make(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**MAKE_ENV, **env}, timeout=120)


def test_make_api_key_writes_a_private_random_key_and_never_prints_it(tmp_path):
    path = tmp_path / "new" / "api_key"
    result = make("api-key", API_KEY_FILE=str(path))
    assert result.returncode == 0, result.stderr
    key = path.read_text().strip()
    assert key.startswith("sk-") and len(key) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert key not in result.stdout + result.stderr
    assert f"API_KEY_FILE={path}" in result.stdout
    # what the container reads it with (postgres-style NAME_FILE)
    assert file_env("ENGINE_API_KEY", {"ENGINE_API_KEY_FILE": str(path)}) == key
    other = tmp_path / "other"
    assert make("api-key", API_KEY_FILE=str(other)).returncode == 0
    assert other.read_text() != path.read_text()


def test_make_api_key_never_overwrites_a_key(tmp_path):
    path = tmp_path / "api_key"
    path.write_text("sk-the-key-clients-hold\n")
    result = make("api-key", API_KEY_FILE=str(path))
    assert result.returncode != 0
    assert keys.main([str(path)]) == 1
    assert "already holds a key" in result.stderr and "remove the file first" in result.stderr
    assert path.read_text() == "sk-the-key-clients-hold\n"
    assert "sk-the-key-clients-hold" not in result.stdout + result.stderr


def test_an_empty_key_file_is_replaced(tmp_path):
    path = tmp_path / "api_key"
    path.write_text("\n")
    assert keys.main([str(path)]) == 0
    assert path.read_text().strip().startswith("sk-")


def test_refusals_that_need_an_api_key_say_how_to_make_one(tmp_path):
    data = render.load_data()
    deployment = render.resolve(data, "h100x4", "basic")
    with pytest.raises(render.RenderError) as err:
        render.render(data, deployment, render.Params(bind_address="0.0.0.0"), tmp_path / "c.yml", "make render")
    assert "make api-key" in str(err.value)


# ---- make hosts: self-contained folders --------------------------------------------------------

def host_folders(tmp_path: Path, admin: bool = False) -> dict[str, Path]:
    """make hosts over the example inventory, each folder then copied elsewhere, as to another host."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hf_token").write_text("hf_test_token\n")
    (secrets / "api_key").write_text("sk-test-key\n")
    data = copy.deepcopy(EXAMPLE)
    data.update(api_key_file=str(secrets / "api_key"), secrets_dir=str(secrets))
    if admin:
        (secrets / "admin_api_key").write_text("sk-admin\n")
        data["admin_api_key_file"] = str(secrets / "admin_api_key")
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    out = ROOT / "deploy" / f"test-folders-{tmp_path.name}"
    try:
        written = inventory.write(path, out)
        copies = {}
        for compose_file in written:
            target = tmp_path / "elsewhere" / compose_file.parent.name
            shutil.copytree(compose_file.parent, target, symlinks=True)
            copies[compose_file.parent.name] = target
        return copies
    finally:
        shutil.rmtree(out, ignore_errors=True)


def compose_config(folder: Path) -> dict:
    result = subprocess.run(["docker", "compose", "-f", str(folder / "docker-compose.yml"), "config",
                             "--format", "json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_copied_host_folder_names_nothing_outside_itself(tmp_path):
    folders = host_folders(tmp_path)
    assert sorted(folders) == ["gateway", "gpu-a", "gpu-b"]
    for name, folder in folders.items():
        config = compose_config(folder)
        for service in config["services"].values():
            context = Path(service["build"]["context"])
            assert context == folder, (name, context)
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
            assert (context / "launcher" / "guard.py").is_file()
        for secret in config["secrets"].values():
            file = Path(secret["file"])
            assert file.parent == folder / "secrets" and file.is_file(), (name, file)
            assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "secrets").stat().st_mode) == 0o700


def test_each_host_gets_only_the_secrets_its_file_declares(tmp_path):
    folders = host_folders(tmp_path, admin=True)
    # the gateway checks both keys itself (launcher/gateway.py); it loads no model: no Hugging Face token
    assert sorted(p.name for p in (folders["gateway"] / "secrets").iterdir()) == ["admin_api_key", "api_key"]
    assert (folders["gpu-a"] / "secrets" / "hf_token").read_text() == "hf_test_token\n"
    assert (folders["gpu-a"] / "secrets" / "admin_api_key").read_text() == "sk-admin\n"


def test_make_hosts_says_which_secret_is_missing_and_how_to_make_it(tmp_path):
    data = copy.deepcopy(EXAMPLE)
    data.update(api_key_file=str(tmp_path / "absent_api_key"), secrets_dir=str(tmp_path))
    (tmp_path / "hf_token").write_text("hf_x\n")
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = make("hosts", INVENTORY=str(path), OUT=str(out))
    assert result.returncode == 0, result.stderr
    assert f"{out}/gpu-a/secrets/api_key is missing" in result.stderr
    assert "make api-key" in result.stderr
    assert "copy the folder to gpu-a" in result.stdout
    assert (out / "gpu-a" / "secrets" / "hf_token").is_file()
