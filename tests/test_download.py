"""`make download` (bundle/download.py) against a fake Hub on 127.0.0.1 (tests/fixtures/hub/fake_hub.py,
reached through HF_ENDPOINT): the real huggingface_hub does the transfer, nothing leaves this host.
What serving needs arrives, original/ does not, the token travels only in the Authorization header,
an interrupted download continues where it stopped, and the cache then serves SGLang's own
look-ups with HF_HUB_OFFLINE=1."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paths import FIXTURES, ROOT

sys.path.insert(0, str(FIXTURES / "hub"))
from fake_hub import COMMIT, FakeHub

MODEL = "meta-llama/Llama-3.1-70B-Instruct"            # basic on h200x2 (presets/presets.yaml)
FP8_MODEL = "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8"   # basic on h200x1
DRAFT = "lmsys/SGLang-EAGLE3-Llama-3.3-70B-Instruct-SpecForge"   # latency's EAGLE3 draft
TOKEN = "hf_fakeTokenForTests0123456789abcdef"
MIB = 2 ** 20


def blob(name: str, size: int = 1024) -> bytes:
    """Distinct content per file (the cache stores blobs by hash: equal files would share one)."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


# The file layout of meta-llama/Llama-3.1-70B-Instruct on the Hub (30 shards there, 2 here).
SERVED = ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
          "model-00002-of-00002.safetensors", "model.safetensors.index.json", "special_tokens_map.json",
          "tokenizer.json", "tokenizer_config.json"]
NOT_SERVED = ["original/consolidated.00.pth", "original/consolidated.01.pth", "original/tokenizer.model",
              "README.md", "LICENSE", "USE_POLICY.md", ".gitattributes"]
# original/params.json is taken too: SGLang's offline config look-up asks for every *.json (below).
LLAMA_REPO = {name: blob(name) for name in SERVED + NOT_SERVED + ["original/params.json"]}
DRAFT_REPO = {name: blob(DRAFT + name) for name in ["config.json", "model.safetensors", "README.md"]}
FP8_REPO = {name: blob(FP8_MODEL + name) for name in ["config.json", "model.safetensors", "tokenizer.json",
                                                      "recipe.yaml"]}


@pytest.fixture
def hub():
    running = []

    def start(repos=None, **kwargs):
        fake = FakeHub(repos or {MODEL: LLAMA_REPO, DRAFT: DRAFT_REPO, FP8_MODEL: FP8_REPO},
                       gated={MODEL}, token=TOKEN, **kwargs).start()
        running.append(fake)
        return fake
    yield start
    for fake in running:
        fake.stop()


def setup(tmp_path, fake, token=TOKEN, **variables) -> dict:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    if token is not None:
        (secrets / "hf_token").write_text(token + "\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update({"HF_ENDPOINT": fake.url, "HF_CACHE": str(tmp_path / "hf"), "SECRETS_DIR": str(secrets),
                "HARDWARE": "h200x2", "PRESET": "basic", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
                **variables})
    return env


def download(env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bundle.download"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def snapshot(tmp_path, repo) -> Path:
    return tmp_path / "hf" / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots" / COMMIT


def files_in(folder: Path) -> set:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def test_what_serving_needs_arrives_in_the_mounted_cache_and_original_does_not(tmp_path, hub):
    fake = hub()
    result = download(setup(tmp_path, fake))
    assert result.returncode == 0, result.stderr
    arrived = files_in(snapshot(tmp_path, MODEL))
    assert arrived == set(SERVED) | {"original/params.json"}
    for name in arrived:
        assert (snapshot(tmp_path, MODEL) / name).read_bytes() == LLAMA_REPO[name]
    assert not [r for r in fake.requests if "consolidated" in r["path"] or "tokenizer.model" in r["path"]]
    assert "HF_HUB_OFFLINE=1" in result.stdout
    assert "Fetching 9 files" in result.stderr          # huggingface_hub's progress bar


def test_other_checkpoint_layouts_keep_their_tokenizer_and_chat_template(tmp_path, hub):
    """Not the layout of the bundle's checkpoints (theirs are JSON): the forms other ones ship."""
    repo = {name: blob(name) for name in ("config.json", "model.safetensors", "tokenizer.model",
                                          "chat_template.jinja", "README.md", "original/consolidated.00.pth",
                                          "images/diagram.png")}
    fake = hub({"org/other-model": repo})
    env = setup(tmp_path, fake)
    code = f"""
from pathlib import Path
from bundle import download
print(download.fetch("org/other-model", Path({str(tmp_path / "hf" / "hub")!r}), None))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert files_in(Path(result.stdout.strip())) == {"config.json", "model.safetensors", "tokenizer.model",
                                                     "chat_template.jinja"}


def test_the_token_reaches_the_hub_only_in_the_authorization_header(tmp_path, hub):
    fake = hub()
    result = download(setup(tmp_path, fake))
    assert result.returncode == 0, result.stderr
    to_model = [r for r in fake.requests if MODEL in r["path"]]
    assert to_model and all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in to_model)
    assert not [r for r in fake.requests if TOKEN in r["path"]]
    assert TOKEN not in result.stdout + result.stderr
    assert TOKEN[3:] not in result.stdout + result.stderr


def test_the_latency_preset_fetches_its_eagle3_draft_too(tmp_path, hub):
    fake = hub()
    result = download(setup(tmp_path, fake, PRESET="latency"))
    assert result.returncode == 0, result.stderr
    assert files_in(snapshot(tmp_path, DRAFT)) == {"config.json", "model.safetensors"}
    # latency serves the FP8 checkpoint wherever the GPU has FP8 (presets.yaml): no BF16 shards
    assert files_in(snapshot(tmp_path, FP8_MODEL)) == {"config.json", "model.safetensors", "tokenizer.json"}
    assert not (tmp_path / "hf" / "hub" / "models--meta-llama--Llama-3.1-70B-Instruct").exists()


def test_the_hardware_profile_picks_the_checkpoint(tmp_path, hub):
    fake = hub()
    result = download(setup(tmp_path, fake, HARDWARE="h200x1"))   # one H200: the FP8 checkpoint
    assert result.returncode == 0, result.stderr
    assert files_in(snapshot(tmp_path, FP8_MODEL)) == {"config.json", "model.safetensors", "tokenizer.json"}
    assert not (tmp_path / "hf" / "hub" / "models--meta-llama--Llama-3.1-70B-Instruct").exists()


@pytest.mark.parametrize("token", [None, "hf_notTheRightOne"])
def test_a_gated_model_without_an_accepted_token_fails_with_the_fix(tmp_path, hub, token):
    fake = hub()
    result = download(setup(tmp_path, fake, token=token))
    assert result.returncode == 1
    assert f"{MODEL} is gated" in result.stderr
    assert f"https://huggingface.co/{MODEL}" in result.stderr
    assert not snapshot(tmp_path, MODEL).exists()
    if token:
        assert token not in result.stdout + result.stderr


def test_an_empty_token_file_is_refused_before_any_request(tmp_path, hub):
    fake = hub()
    result = download(setup(tmp_path, fake, token=""))
    assert result.returncode == 1 and "hf_token is empty" in result.stderr
    assert fake.requests == []


SHARD_1, SHARD_2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


def test_a_connection_lost_in_the_middle_of_a_shard_resumes_from_where_it_stopped(tmp_path, hub):
    repo = {**LLAMA_REPO, SHARD_2: blob(SHARD_2, 24 * MIB)}
    fake = hub({MODEL: repo}, cut=(SHARD_2, 16 * MIB))
    result = download(setup(tmp_path, fake))
    assert result.returncode == 0, result.stderr
    assert (snapshot(tmp_path, MODEL) / SHARD_2).read_bytes() == repo[SHARD_2]
    first, again = fake.gets(SHARD_2)
    assert "range" not in first["headers"]
    # huggingface_hub keeps what it wrote, in 10 MiB pieces (constants.DOWNLOAD_CHUNK_SIZE), of the
    # 16 MiB received: it asks for the rest from 10 MiB on.
    assert again["headers"]["range"] == f"bytes={10 * MIB}-"


def test_a_stopped_download_keeps_the_files_it_finished(tmp_path, hub):
    repo = {**LLAMA_REPO, SHARD_1: blob(SHARD_1, 3 * MIB), SHARD_2: blob(SHARD_2, 24 * MIB)}
    fake = hub({MODEL: repo}, stall=(SHARD_2, 16 * MIB))
    env = setup(tmp_path, fake)
    first = subprocess.Popen([sys.executable, "-m", "bundle.download"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    blobs = tmp_path / "hf" / "hub" / "models--meta-llama--Llama-3.1-70B-Instruct" / "blobs"
    try:
        assert fake.stalled.wait(60), "the download never reached the stalled shard"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            partial = [p for p in blobs.glob("*.incomplete") if p.stat().st_size > 0]
            if partial and (snapshot(tmp_path, MODEL) / SHARD_1).exists():
                break
            time.sleep(0.1)
        assert (snapshot(tmp_path, MODEL) / SHARD_1).exists() and partial
        os.kill(first.pid, signal.SIGKILL)   # as Ctrl-C or a lost session would stop it
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        fake.release.set()
    assert not (snapshot(tmp_path, MODEL) / SHARD_2).exists()
    # The stopped run's partial file: never reused (its name is per process); the next run removes
    # it once it is older than a live download's would be.
    stale = time.time() - 3600
    for path in partial:
        os.utime(path, (stale, stale))

    second = download(env)
    assert second.returncode == 0, second.stderr
    assert (snapshot(tmp_path, MODEL) / SHARD_2).read_bytes() == repo[SHARD_2]
    assert len(fake.gets(SHARD_1)) == 1          # finished before the stop: not fetched again
    assert len(fake.gets(SHARD_2)) == 2
    assert not list(blobs.glob("*.incomplete"))
    assert "removed 10 MB of partial files left by a stopped run" in second.stdout


def test_the_cache_then_serves_sglangs_own_lookups_offline(tmp_path, hub):
    fake = hub()
    assert download(setup(tmp_path, fake)).returncode == 0
    seen = len(fake.requests)
    # The two look-ups SGLang 0.5.23 makes for a Hub model, as it makes them with HF_HUB_OFFLINE=1
    # (srt/model_loader/weight_utils.py: the quantization config, then the weights with
    # LoadConfig's default ignore_patterns).
    lookups = f"""
from huggingface_hub import snapshot_download
configs = snapshot_download({MODEL!r}, allow_patterns="*.json", local_files_only=True)
weights = snapshot_download({MODEL!r}, allow_patterns=["*.safetensors", "*.bin"],
                            ignore_patterns=["original/**/*"], local_files_only=True)
print(configs == weights)
"""
    env = {"PATH": os.environ["PATH"], "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
           "HF_ENDPOINT": fake.url}
    result = subprocess.run([sys.executable, "-c", lookups], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert len(fake.requests) == seen


def test_why_every_json_file_is_taken(tmp_path, hub):
    """Without original/params.json in the cache, SGLang's offline "*.json" look-up is refused by
    huggingface_hub (the listing it cached says the file exists): a reason, not a feature."""
    fake = hub()
    cache = tmp_path / "narrow"
    code = f"""
import sys
from huggingface_hub import snapshot_download
snapshot_download({MODEL!r}, cache_dir={str(cache)!r}, token={TOKEN!r},
                  allow_patterns=["*.safetensors", "*.safetensors.index.json", "config*.json",
                                  "generation_config.json", "tokenizer*", "special_tokens_map.json"])
"""
    env = {"PATH": os.environ["PATH"], "HF_ENDPOINT": fake.url, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0
    offline = f"""
from huggingface_hub import snapshot_download
from huggingface_hub.errors import IncompleteSnapshotError
try:
    snapshot_download({MODEL!r}, cache_dir={str(cache)!r}, allow_patterns="*.json", local_files_only=True)
except IncompleteSnapshotError as err:
    print("refused:", err)
"""
    result = subprocess.run([sys.executable, "-c", offline], env={**env, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=60)
    assert "refused:" in result.stdout and "original/params.json" in result.stdout, result.stdout + result.stderr


def test_a_relative_cache_folder_is_refused_naming_the_variable(tmp_path, hub):
    fake = hub()
    result = download(setup(tmp_path, fake, HF_CACHE="data/hf"))
    assert result.returncode == 2   # a bad variable (docs/internals.md#exit-statuses)
    assert "HF_CACHE='data/hf': expected an absolute folder" in result.stderr
    assert fake.requests == []


def test_the_cache_folder_is_the_one_the_compose_file_mounts():
    from bundle import download, render
    data = render.load_data()
    assert download.hub_cache(data, {"HF_CACHE": "/data/hf"}) == Path("/data/hf/hub")
    assert download.hub_cache(data, {}) == Path("~/.cache/huggingface/hub").expanduser()


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI with Compose v2")
def test_the_air_gapped_recipe_reaches_the_engine(tmp_path):
    """docs/day-two.md: HF_CACHE= names the copied cache, ENV_FILE= carries HF_HUB_OFFLINE=1; the real
    Compose resolves both into the engine service, and the container passes the variable on to SGLang."""
    from bundle import render
    from launcher.supervise import engine_environment
    data = render.load_data()
    (tmp_path / "hf_token").write_text("x")
    (tmp_path / "offline.env").write_text("HF_HUB_OFFLINE=1\n")
    params = render.Params(secrets_dir=str(tmp_path), env_file=str(tmp_path / "offline.env"))
    out = tmp_path / "docker-compose.yml"
    out.write_text(render.render(data, render.resolve(data, "h200x2", "basic"), params, out, "test"))
    env = {**os.environ, "HF_CACHE": str(tmp_path / "copied-cache")}
    result = subprocess.run(["docker", "compose", "-f", str(out), "config", "--format", "json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    engine = json.loads(result.stdout)["services"]["engine"]
    assert engine["environment"]["HF_HUB_OFFLINE"] == "1"
    assert {"type": "bind", "source": str(tmp_path / "copied-cache"), "target": "/root/.cache/huggingface",
            "bind": {"create_host_path": True}} in engine["volumes"]
    assert engine_environment(engine["environment"], None)["HF_HUB_OFFLINE"] == "1"
