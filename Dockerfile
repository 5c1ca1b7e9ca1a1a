# GENERATED FILE, do not edit: make dockerfiles
# From presets/hardware.yaml, presets/container.yaml and templates/Dockerfile.j2 by bundle/dockerfiles.py.
# The bundle image: the pinned SGLang image plus the entrypoint, the guard and a healthcheck.
# BASE_IMAGE is rendered per hardware lane from presets/hardware.yaml; this default is the
# cuda lane, the top-level docker-compose.yml's, so a plain `docker build .` makes the image it
# runs. The tag evidence is in presets/engine-image.md. Tests build it FROM a local CPU stand-in
# base instead (tests/standin/).
ARG BASE_IMAGE=lmsysorg/sglang:v0.5.23-cu130-runtime
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="Llama 3.1 70B Instruct on SGLang (deployment bundle)" \
      org.opencontainers.image.description="SGLang 0.5.23 with an env-configured, checked, guarded entrypoint"

COPY entrypoint.py /opt/bundle/
COPY launcher/ /opt/bundle/launcher/

ENV PYTHONUNBUFFERED=1 \
    HF_HOME=/root/.cache/huggingface

EXPOSE 8000
STOPSIGNAL SIGTERM
# Timings here are for plain `docker run`; rendered compose files set the same ones as defaults
# that HEALTHCHECK_* can override (presets/container.yaml).
HEALTHCHECK --interval=5s --timeout=30s --start-period=1800s --retries=3 \
    CMD ["python3", "/opt/bundle/entrypoint.py", "--healthcheck"]
ENTRYPOINT ["python3", "/opt/bundle/entrypoint.py"]
