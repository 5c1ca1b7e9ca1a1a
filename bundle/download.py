"""`make download`: the preset's checkpoint, and its EAGLE3 draft when the preset decodes
speculatively, into the Hugging Face cache the deployment mounts; then the engine can start with
HF_HUB_OFFLINE=1 (air-gapped: download on one machine, copy the cache folder, serve on another).

    python -m bundle.download [--hardware h200x2] [--preset latency]     or HARDWARE=, PRESET=, HF_CACHE=

The model names come from the preset data as the renderer resolves them (presets/presets.yaml,
per hardware profile: FP8 checkpoints on some); the cache folder is the one the compose file mounts
(HF_CACHE, else presets/container.yaml's hf_cache_default), the token the one it hands the engine
(SECRETS_DIR/hf_token). huggingface_hub does the transfer, with its progress bars. Resuming, as
huggingface_hub 1.33 does it: a connection lost in the middle of a file is resumed within the run
(HTTP Range); a run that is stopped keeps every file it finished (the 70B's 30 shards are ~4.7 GB
each) and the next run fetches only the others, the interrupted file from its start. The partial
file a stopped run leaves behind (blobs/*.incomplete, never reused) is removed by the next run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bundle import errors, options, render
from bundle.errors import RenderError

# Read by docker compose at `up` time too (`${HF_CACHE:-<hf_cache_default>}` in the template).
HF_CACHE = options.BY_VARIABLE["HF_CACHE"]

# What serving reads from a checkpoint: the weights (safetensors), every JSON file (configs, the
# weights' index, the JSON tokenizer files; a few KB in all) and the tokenizer or chat template where
# a checkpoint ships them in another form (tokenizer.model, chat_template.jinja). Not Meta's
# original/ consolidated .pth weights (another 141 GB for the 70B), READMEs or licences. Every JSON
# file, original/params.json too: SGLang 0.5.23 looks up a quantized model's config with
# snapshot_download(allow_patterns="*.json", local_files_only=HF_HUB_OFFLINE)
# (srt/model_loader/weight_utils.py), and huggingface_hub refuses that offline when any JSON file of
# the repository is missing from the cache (tests/test_download.py shows both).
ALLOW_PATTERNS = ("*.safetensors", "*.json", "tokenizer*", "chat_template*")

# A live download writes its partial file every 10 MiB (huggingface_hub's DOWNLOAD_CHUNK_SIZE);
# one untouched this long belongs to a run that was stopped.
STALE_PARTIAL_S = 600


class DownloadError(Exception):
    pass


def hf_cache(data: dict, environ=None) -> Path:
    """The host folder the compose file mounts at /root/.cache/huggingface."""
    environ = os.environ if environ is None else environ
    folder = HF_CACHE.read(environ.get(HF_CACHE.variable)) or data["container"]["hf_cache_default"]
    return Path(folder).expanduser()


def hub_cache(data: dict, environ=None) -> Path:
    """Where huggingface_hub keeps repositories inside it (HF_HOME/hub, as in the image)."""
    return hf_cache(data, environ) / "hub"


def checkpoints(deployment: render.Deployment) -> list[str]:
    """The Hub repositories the engine loads: the model, and the speculative draft when there is one."""
    repos = [deployment.flags["model-path"]]
    draft = deployment.flags.get("speculative-draft-model-path")
    if draft:
        repos.append(draft)
    return repos


def token_file(data: dict, params) -> Path:
    return render.secrets_path(data, params) / "hf_token"


def read_token(path: Path) -> str | None:
    """The token from the secret file, or None when there is no file (public repositories)."""
    if not path.exists():
        return None
    token = path.read_text().strip()
    if not token:
        raise DownloadError(f"{path} is empty: put your Hugging Face token there "
                            f"(`install -D -m 600 /dev/stdin {path} <<< hf_...`)")
    return token


def repo_folder(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def remove_stale_partials(cache: Path, repo: str, now: float | None = None) -> int:
    """Delete the partial files of stopped runs (huggingface_hub 1.33 names them per process and
    never resumes them); the bytes freed."""
    now = time.time() if now is None else now
    freed = 0
    for path in (repo_folder(cache, repo) / "blobs").glob("*.incomplete"):
        try:
            stat = path.stat()
            if now - stat.st_mtime > STALE_PARTIAL_S:
                path.unlink()
                freed += stat.st_size
        except FileNotFoundError:
            continue
    return freed


def is_complete(repo: str, cache: Path) -> bool:
    """Whether the cache holds every file `fetch` takes of the repository, by the listing
    huggingface_hub cached when it downloaded it (no network; False without that listing)."""
    if not repo_folder(cache, repo).is_dir():
        return False
    from huggingface_hub import get_cached_repo_tree, snapshot_download
    from huggingface_hub.errors import CachedRepoTreeNotFoundError, LocalEntryNotFoundError
    try:
        get_cached_repo_tree(repo, cache_dir=cache)
        snapshot_download(repo, cache_dir=cache, allow_patterns=list(ALLOW_PATTERNS), local_files_only=True)
    except (CachedRepoTreeNotFoundError, LocalEntryNotFoundError, OSError):
        return False   # IncompleteSnapshotError is a LocalEntryNotFoundError
    return True


def fetch(repo: str, cache: Path, token: str | None) -> str:
    """One repository into the cache; the snapshot folder."""
    # Imported here: the other make targets do not need huggingface_hub's import time.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    try:
        return snapshot_download(repo, cache_dir=cache, allow_patterns=list(ALLOW_PATTERNS), token=token or False)
    except GatedRepoError:
        raise DownloadError(f"{repo} is gated and the Hub did not accept the token "
                            f"{'(none given)' if not token else 'from the secret file'}: accept the licence "
                            f"on https://huggingface.co/{repo} with the account the token belongs to") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"{repo}: the Hub says it does not exist or the token may not read it") from None
    except HfHubHTTPError as err:
        raise DownloadError(f"{repo}: {err.__class__.__name__}: {str(err).splitlines()[0]}") from None
    except OSError as err:   # disk full, permissions, no connection
        raise DownloadError(f"{repo}: {err}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make download", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for variable in ("HARDWARE", "PRESET", "SECRETS_DIR"):
        option = options.BY_VARIABLE[variable]
        parser.add_argument(option.option, dest=option.field, metavar=variable, help=f"{option.help} [{variable}=]")
    parser.add_argument(HF_CACHE.option, dest=HF_CACHE.field, metavar=HF_CACHE.variable,
                        help=f"{HF_CACHE.help} [{HF_CACHE.variable}=]")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.hf_cache:
        environ[HF_CACHE.variable] = args.hf_cache
    try:
        data = render.load_data()
        chosen = options.read(options.DEPLOY, args)
        params = options.params(chosen)
        hardware = chosen["hardware"] or render.detect_hardware(data, gpu_ids=params.gpus)
        deployment = render.resolve(data, hardware, chosen["preset"], params.replicas or 1)
        cache = hub_cache(data, environ)
        token = read_token(token_file(data, params))
        print(f"==> {hardware}, preset {deployment.preset}: {', '.join(checkpoints(deployment))} into {cache}",
              flush=True)
        for repo in checkpoints(deployment):
            print(f"==> {repo}", flush=True)
            freed = remove_stale_partials(cache, repo)
            if freed:
                print(f"    removed {freed / 1e6:,.0f} MB of partial files left by a stopped run", flush=True)
            folder = fetch(repo, cache, token)
            print(f"    {folder}", flush=True)
    except (RenderError, DownloadError) as err:
        print(f"download: {err}", file=sys.stderr)
        return errors.status(err)
    print(f"==> done. The deployment can now start without the Hub: HF_HUB_OFFLINE=1 in ENV_FILE= "
          f"(or copy {hf_cache(data, environ)} to the serving host and point HF_CACHE= at it)")
    return 0


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
