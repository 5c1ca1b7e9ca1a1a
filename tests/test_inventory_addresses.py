"""Every address, port and interface in an inventory (and the addresses in presets/*.yaml) is checked
when the file is loaded: a bad one is refused with the file, the key and what was expected, before
anything is rendered or written. An empty host once rendered `--worker-urls http://:8000`, which smg
refuses at start ("Invalid URL format: empty host"): a file that cannot start."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from bundle import inventory, render, schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = yaml.safe_load((ROOT / "inventory.example.yml").read_text())


def inventory_file(tmp_path: Path, change) -> Path:
    data = copy.deepcopy(EXAMPLE)
    change(data)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def refusal(tmp_path: Path, change) -> str:
    path = inventory_file(tmp_path, change)
    out = tmp_path / "out"
    with pytest.raises(render.RenderError) as err:
        inventory.write(path, out)
    assert not out.exists()                                  # nothing half-written
    message = str(err.value)
    assert f"INVENTORY={path}" in message
    return message


def set_key(*keys, value):
    def change(data):
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


@pytest.mark.parametrize("value", ["", " ", "10.0.0.11:8000", "[fd00::11]", "10.0.0", "gpu-a.internal",
                                   "http://10.0.0.11", "10.0.0.256"])
def test_a_host_address_that_is_not_an_ip_address_is_refused(tmp_path, value):
    message = refusal(tmp_path, set_key("hosts", "gpu-a", "address", value=value))
    assert "hosts.gpu-a.address" in message and "expected an IP address" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("value", ["127.0.0.1", "0.0.0.0", "::1", "::", "224.0.0.1"])
def test_a_host_address_other_hosts_cannot_reach_is_refused(tmp_path, value):
    message = refusal(tmp_path, set_key("hosts", "gpu-a", "address", value=value))
    assert f"hosts.gpu-a.address: {value} is not an address other hosts can reach" in message


def test_two_hosts_with_one_address_are_refused(tmp_path):
    message = refusal(tmp_path, set_key("hosts", "gpu-b", "address", value=EXAMPLE["hosts"]["gpu-a"]["address"]))
    assert "hosts.gpu-b.address" in message and "also hosts.gpu-a's" in message


def test_the_same_address_written_two_ways_is_one_address(tmp_path):
    def change(data):
        data["hosts"] = {"gpu-a": {"address": "fd00::11", "replicas": 2},
                         "gpu-b": {"address": "fd00:0:0::11", "replicas": 2}}
    assert "also hosts.gpu-a's" in refusal(tmp_path, change)


@pytest.mark.parametrize("value", ["", "gateway host", "http://10.0.0.10", "-bad.example", "10.0.0.10:8000"])
def test_a_bad_gateway_host_is_refused(tmp_path, value):
    message = refusal(tmp_path, set_key("gateway", "host", value=value))
    assert "gateway.host" in message and "expected an IP address or a host name" in message


@pytest.mark.parametrize("value", ["", "localhost", "0.0.0.0:8000"])
def test_a_bad_gateway_bind_address_is_refused(tmp_path, value):
    message = refusal(tmp_path, set_key("gateway", "bind_address", value=value))
    assert "gateway.bind_address" in message and "expected an IP address" in message


@pytest.mark.parametrize("key,value", [("port", 0), ("port", 65536), ("port", "8000")])
def test_a_bad_gateway_port_is_refused(tmp_path, key, value):
    assert "gateway.port" in refusal(tmp_path, set_key("gateway", key, value=value))


def test_a_gateway_port_that_is_an_engine_port_on_the_same_host_is_refused(tmp_path):
    def change(data):
        data["gateway"].update(host=data["hosts"]["gpu-a"]["address"], port=data["engine_port"] + 1)
    assert "gateway.port" in refusal(tmp_path, change)


def test_engine_ports_past_65535_are_refused(tmp_path):
    message = refusal(tmp_path, set_key("engine_port", value=65535))
    assert "hosts.gpu-a.replicas: engine ports 65535-65536 go past 65535" in message


@pytest.mark.parametrize("value", ["", "eth 0", "bond0:1", "a-name-far-too-long0", "../x"])
def test_a_bad_node_interface_is_refused(tmp_path, value):
    def change(data):
        data["shape"] = "one-engine"
        data["nodes"]["interface"] = value
    message = refusal(tmp_path, change)
    assert "nodes.interface" in message and "expected a network interface name" in message


def test_a_gateway_host_name_and_ipv6_hosts_are_accepted(tmp_path):
    def change(data):
        data["hosts"] = {"gpu-a": {"address": "fd00::11", "replicas": 2},
                         "gpu-b": {"address": "10.0.0.12", "replicas": 2}}
        data["gateway"]["host"] = "gpu-gateway.internal"
    written = inventory.write(inventory_file(tmp_path, change), tmp_path / "out")
    gateway = yaml.safe_load((tmp_path / "out" / "gateway" / "docker-compose.yml").read_text())
    command = gateway["services"]["gateway"]["command"]
    urls = command[command.index("--worker-urls") + 1:][:4]
    assert urls == ["http://[fd00::11]:8000", "http://[fd00::11]:8001", "http://10.0.0.12:8000",
                    "http://10.0.0.12:8001"]
    assert len(written) == 3


def data_with(file: str, key: str, value) -> dict:
    data = copy.deepcopy(render.load_data())
    data[file][key] = value
    return data


@pytest.mark.parametrize("file,key,value,expected", [
    ("container", "default_bind_address", "", "presets/container.yaml: default_bind_address: '': expected an IP"),
    ("container", "default_bind_address", "localhost", "default_bind_address: 'localhost': expected an IP"),
    ("gateway", "health_check_endpoint", "ready", "presets/gateway.yaml: health_check_endpoint: 'ready': expected"),
    ("gateway", "health_check_endpoint", "", "health_check_endpoint: '': expected an absolute URL path"),
])
def test_addresses_and_paths_in_the_preset_files_are_checked(file, key, value, expected):
    with pytest.raises(schema.SchemaError) as err:
        schema.validate(data_with(file, key, value))
    assert expected in str(err.value)
