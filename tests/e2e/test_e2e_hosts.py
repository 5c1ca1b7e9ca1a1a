"""`make hosts` end to end, on one machine standing in for several: the rendered per-host file
(engines published on the "host's private address") and the gateway-only file, each run as its own
Compose project, the gateway reaching the engines over the network by address, as across hosts.

The "private address" is this machine's docker0 address, which containers reach through the host.
It is read from the interface itself, which exists wherever dockerd runs its default bridge: the
bridge network's IPAM `Gateway` field is optional (a fresh dockerd 20.10 reports only the subnet).
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import shutil
import socket
import struct
import uuid

import pytest
import requests
import yaml

from bundle import inventory
from stack import (CANARY_API_KEY, CANARY_HF_TOKEN, FIXTURES, GATEWAY_TEST_IMAGE, ROOT, STANDIN, STANDIN_JOURNAL,
                   TEST_IMAGE, build_gateway_test_image, free_port, run, wait_for, yaml_tag)

pytestmark = pytest.mark.skipif(not STANDIN, reason="stand-in engines on one machine standing in for hosts")


SIOCGIFADDR = 0x8915       # linux/sockios.h: an interface's IPv4 address


def interface_address(name: str) -> str:
    """The kernel's IPv4 address of a network interface, as `ip -4 addr show NAME` prints it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError as err:
            raise AssertionError(f"no IPv4 address on {name} ({err}): is dockerd running with its default bridge?") from None
    return socket.inet_ntoa(answer[20:24])


def docker0_address() -> str:
    address = interface_address("docker0")
    assert ipaddress.ip_address(address).is_private, address
    return address


def standin_override(services: dict) -> dict:
    """The stand-in images for what the rendered files would build; nothing else changes (ports stay)."""
    override = {}
    for name in services:
        if name == "gateway":
            override[name] = {"image": GATEWAY_TEST_IMAGE, "pull_policy": "never", "build": yaml_tag("!reset", None),
                              "healthcheck": {"interval": "1s", "start_period": "600s"}}
        else:
            override[name] = {
                "image": TEST_IMAGE, "pull_policy": "never", "build": yaml_tag("!reset", None),
                "deploy": yaml_tag("!reset", {}), "ulimits": yaml_tag("!reset", {}),
                "healthcheck": {"interval": "1s", "timeout": "5s", "retries": 2, "start_period": "600s"},
                "volumes": yaml_tag("!override", [f"{FIXTURES / 'bin' / 'nvidia-smi'}:/usr/local/bin/nvidia-smi:ro",
                                                  f"{FIXTURES / 'gpu' / 'h200x2'}:/gpu:ro"]),
                "environment": {"STANDIN_LOAD_SECONDS": "1", "STANDIN_WARMUP_SECONDS": "1", "CUDA_VERSION": "13.0.1",
                                "STANDIN_REQUEST_JOURNAL": STANDIN_JOURNAL, "BUNDLE_PREFLIGHT": "1"}}
    return {"services": override}


@pytest.fixture(scope="module")
def hosts(test_image, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hosts")
    build_gateway_test_image()
    address = docker0_address()
    engine_port, gateway_port = free_port(), free_port()
    while engine_port + 1 == gateway_port:
        gateway_port = free_port()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hf_token").write_text(CANARY_HF_TOKEN + "\n")
    (secrets / "api_key").write_text(CANARY_API_KEY + "\n")
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({
        "shape": "replicas", "hardware": "h100x4", "preset": "throughput-fp8",
        "api_key_file": str(secrets / "api_key"), "secrets_dir": str(secrets), "engine_port": engine_port,
        "hosts": {"gpu-a": {"address": address, "replicas": 2}},
        "gateway": {"host": address, "port": gateway_port, "bind_address": "127.0.0.1"}}))
    out = ROOT / "deploy" / f"test-hosts-{uuid.uuid4().hex[:8]}"
    projects = []
    try:
        for written in inventory.write(path, out):   # the engines' host first, the gateway last
            # Each folder is all its host needs: run it from a copy outside the checkout, as there.
            host_folder = tmp_path / "on-host" / written.parent.name
            shutil.copytree(written.parent, host_folder)
            compose_file = host_folder / written.name
            services = yaml.safe_load(compose_file.read_text())["services"]
            override = compose_file.parent / "override.yml"
            override.write_text(yaml.safe_dump(standin_override(services)))
            project = f"bundletest-{compose_file.parent.name}-{uuid.uuid4().hex[:6]}"
            command = ["docker", "compose", "-p", project, "-f", str(compose_file), "-f", str(override)]
            projects.append(command)
            run(*command, "up", "-d", "--wait", "--wait-timeout", "180", timeout=240)
        yield {"address": address, "engine_port": engine_port, "gateway": f"http://127.0.0.1:{gateway_port}",
               "projects": projects}
    finally:
        for command in reversed(projects):
            run(*command, "down", "-v", "--timeout", "20", check=False)
        run("rm", "-rf", str(out), check=False)


def test_the_gateway_reaches_engines_published_on_a_hosts_address(hosts):
    headers = {"Authorization": f"Bearer {CANARY_API_KEY}"}
    body = {"model": "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8", "max_tokens": 3,
            "messages": [{"role": "user", "content": "hello"}]}
    for _ in range(8):
        body["messages"][0]["content"] = uuid.uuid4().hex + " hello " * 50
        answer = requests.post(hosts["gateway"] + "/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
    engines_host = hosts["projects"][0]
    served = {}
    for service in ("engine-1", "engine-2"):
        container = run(*engines_host, "ps", "-q", service).stdout.strip()
        journal = run("docker", "exec", container, "sh", "-c", f"cat {STANDIN_JOURNAL}").stdout
        served[service] = sum(1 for line in journal.splitlines()
                              if json.loads(line)["path"] == "/v1/chat/completions")
    assert sum(served.values()) == 8 and all(served.values()), served


def test_an_engine_port_on_the_network_refuses_requests_without_the_key(hosts):
    url = f"http://{hosts['address']}:{hosts['engine_port']}/v1/models"
    assert requests.get(url, timeout=10).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer sk-wrong"}, timeout=10)
    assert wrong.status_code == 401
    right = requests.get(url, headers={"Authorization": f"Bearer {CANARY_API_KEY}"}, timeout=10)
    assert right.status_code == 200


def test_the_gateway_host_runs_no_engine_and_holds_only_the_api_key(hosts):
    gateway_host = hosts["projects"][-1]
    config = json.loads(run(*gateway_host, "config", "--format", "json").stdout)
    assert list(config["services"]) == ["gateway"]
    assert list(config["secrets"]) == ["api_key"]                 # no Hugging Face token on the gateway host
    wait_for(lambda: requests.get(hosts["gateway"] + "/readiness", timeout=5).status_code == 200, 30,
             "the gateway ready")
