"""Names that the host tools, the templates and the generated Dockerfiles must spell alike, each
written once: here, or in launcher/ where the container side owns it (the launcher is standard
library only and ships in the image, so it cannot import this module; this module imports it).

Templates get them as `names` (view()); Python imports them from here.
"""
from __future__ import annotations

from launcher import gateway as _gateway

# The Hugging Face cache inside the engine container: the image's HF_HOME (Dockerfile), where the
# compose file mounts HF_CACHE= and Kubernetes mounts the model-cache volume.
HF_HOME = "/root/.cache/huggingface"
# The compose service of SGLang's gateway (templates/docker-compose.yml.j2): deploy and bench
# look for it to know the deployment has one.
GATEWAY_SERVICE = "gateway"
# smg's readiness route (launcher/gateway.py asks it for the container's healthcheck).
GATEWAY_READINESS_PATH = _gateway.READINESS_PATH
# The compose secret -> the gateway container's variable naming its file (launcher/gateway.py reads them).
GATEWAY_KEY_FILES = {"api_key": f"{_gateway.API_KEY}_FILE", "admin_api_key": f"{_gateway.ADMIN_API_KEY}_FILE"}
# The prefix of the bundle's own Kubernetes labels (the pair a pod runs: hardware, preset).
LABEL_PREFIX = "llama31-sglang/"


def view() -> dict:
    """The names as the templates see them: {{ names.hf_home }}, ..."""
    return {"hf_home": HF_HOME, "gateway_service": GATEWAY_SERVICE, "gateway_readiness_path": GATEWAY_READINESS_PATH,
            "gateway_key_files": dict(GATEWAY_KEY_FILES), "label_prefix": LABEL_PREFIX}
