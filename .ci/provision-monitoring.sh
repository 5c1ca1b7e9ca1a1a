#!/usr/bin/env bash
# The monitoring tests' Prometheus image, with no registry: Debian bookworm's `prometheus` package
# (fetched with apt-get download, the one network use) unpacked FROM the local Debian base image.
# Sourced by .ci/provision (which calls build_prometheus_image after build_debian_base_image), or
# run on its own: bash .ci/provision-monitoring.sh. Idempotent: skips an image already built.
set -euo pipefail

PROMETHEUS_TEST_IMAGE=${PROMETHEUS_TEST_IMAGE:-bundle-prometheus:bookworm}   # tests/e2e/test_e2e_monitoring.py

build_prometheus_image() {
  printf '\n==> %s\n' "Prometheus test image $PROMETHEUS_TEST_IMAGE (Debian's prometheus package, no registry)"
  if docker image inspect "$PROMETHEUS_TEST_IMAGE" >/dev/null 2>&1; then echo "    present"; return; fi
  local repo context
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  context=$(mktemp -d)
  cp "$repo/tests/monitoring/Dockerfile" "$context/"
  (cd "$context" && apt-get download -q -o APT::Sandbox::User=root prometheus >/dev/null)
  docker build --pull=false -q --build-arg DEBIAN_IMAGE=bundle-debian:bookworm \
    -t "$PROMETHEUS_TEST_IMAGE" "$context" >/dev/null
  rm -rf "$context"
  docker run --rm --entrypoint promtool "$PROMETHEUS_TEST_IMAGE" --version | head -1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  build_prometheus_image
fi
