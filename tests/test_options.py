"""Every render-time option is declared once, in bundle/options.py: make variable, flag, type,
default, check, help. render's and deploy's flags, Params, the command line written into rendered
files and `make options` all come from that table, and make passes the variables through the
environment without declaring them."""
import argparse
import dataclasses
import os
import re
import subprocess
import sys

import pytest

from paths import ROOT
from bundle import deploy, options, render


def make(*args, **env):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "VENV": str(ROOT / ".venv"), **env}, timeout=60)


def clean_environ():
    return {k: v for k, v in os.environ.items() if k not in options.BY_VARIABLE}


def test_params_has_one_field_per_render_time_option():
    assert [f.name for f in dataclasses.fields(render.Params)] == [o.variable.lower() for o in options.PARAMS]
    assert [o.variable for o in options.PARAMS] == [
        "GPUS", "REPLICAS", "PORT", "BIND_ADDRESS", "API_KEY_FILE", "ADMIN_API_KEY_FILE", "ALLOW_NO_API_KEY", "LORA_DIR",
        "SECRETS_DIR", "ENV_FILE", "BASE_IMAGE", "MONITORING"]
    assert render.Params() == render.Params(gpus=[], port=None, allow_no_api_key=False)


def test_the_makefile_declares_none_of_the_variables():
    makefile = (ROOT / "Makefile").read_text()
    for option in options.OPTIONS:
        assert not re.search(rf"^(export )?{option.variable}\s*[?:]?=|\bexport\b.*\b{option.variable}\b",
                             makefile, re.M), option.variable
        assert f"$({option.variable})" not in makefile, option.variable


@pytest.mark.parametrize("command", [options.RENDER, options.DEPLOY])
def test_flags_come_from_the_table(command):
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, command)
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}
    assert flags == {o.option for o in options.for_command(command)}
    assert {"--hardware", "--preset", "--gpus", "--port", "--base-image"} <= flags
    assert ("--out" in flags) == (command == options.RENDER)
    assert ("--timeout" in flags) == (command == options.DEPLOY)


def test_render_and_deploy_read_the_same_variables_the_same_way():
    environ = {"GPUS": "4,5", "PORT": "8001", "BIND_ADDRESS": "0.0.0.0", "API_KEY_FILE": "secrets/api_key",
               "ALLOW_NO_API_KEY": "0", "BASE_IMAGE": "lmsysorg/sglang:v0.5.23-cu130-runtime",
               "HARDWARE": "h200x2", "PRESET": "latency", "OUT": "x.yml", "OVERRIDE": "a.yml,b.yml",
               "DEPLOY_TIMEOUT": "60"}
    rendered, deployed = options.read(options.RENDER, environ=environ), options.read(options.DEPLOY, environ=environ)
    assert options.params(rendered) == options.params(deployed) == render.Params(
        gpus=["4", "5"], port=8001, bind_address="0.0.0.0", api_key_file="secrets/api_key",
        base_image="lmsysorg/sglang:v0.5.23-cu130-runtime")
    assert (rendered["hardware"], rendered["preset"]) == (deployed["hardware"], deployed["preset"]) == ("h200x2", "latency")
    assert deployed["override"] == ["a.yml", "b.yml"] and deployed["deploy_timeout"] == 60.0


def test_a_flag_overrides_the_environment_and_empty_means_unset():
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, options.DEPLOY)
    args = parser.parse_args(["--port", "9000", "--override", "c.yml", "--override", "d.yml", "--allow-no-api-key"])
    values = options.read(options.DEPLOY, args, {"PORT": "8001", "OVERRIDE": "a.yml", "GPUS": "", "PRESET": ""})
    assert values["port"] == 9000 and values["override"] == ["c.yml", "d.yml"] and values["allow_no_api_key"]
    assert values["gpus"] == [] and values["preset"] == "basic" and values["deploy_timeout"] == 3600.0


@pytest.mark.parametrize("variable,value,message", [
    ("GPUS", "0,0", "GPUS='0,0': expected distinct GPU indexes separated by commas, like 4,5,6,7"),
    ("PORT", "80o0", "PORT='80o0': expected 1-65535"),
    ("PORT", "70000", "PORT='70000': expected 1-65535"),
    ("ALLOW_NO_API_KEY", "maybe", "ALLOW_NO_API_KEY='maybe': expected 1 or 0"),
    ("BIND_ADDRESS", "localhost", "BIND_ADDRESS='localhost': expected an IP address such as 127.0.0.1"),
    ("DEPLOY_TIMEOUT", "soon", "DEPLOY_TIMEOUT='soon': expected a number of seconds"),
])
def test_values_are_checked_by_the_table(variable, value, message):
    with pytest.raises(render.RenderError) as raised:
        options.read(options.DEPLOY, environ={variable: value})
    assert str(raised.value).startswith(message)


def test_the_written_command_line_renders_the_same_file_again(tmp_path):
    out = tmp_path / "c.yml"
    params = render.Params(gpus=["4", "5", "6", "7"], port=8001, bind_address="0.0.0.0", allow_no_api_key=True,
                           lora_dir="my adapters")
    command = render.render_command("h100x4", "basic", str(out), params)
    assert command == f"make render HARDWARE=h100x4 PRESET=basic GPUS=4,5,6,7 PORT=8001 BIND_ADDRESS=0.0.0.0 " \
                      f"ALLOW_NO_API_KEY=1 'LORA_DIR=my adapters' OUT={out}"
    first = render.render(render.load_data(), render.resolve(render.load_data(), "h100x4", "basic"), params, out,
                          command)
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**clean_environ(), "VENV": str(ROOT / ".venv")})
    assert result.returncode == 0, result.stderr
    assert out.read_text() == first


def test_python_render_reads_the_environment_like_make(tmp_path):
    out = tmp_path / "c.yml"
    env = {**clean_environ(), "PORT": "8003", "GPUS": "0,1,2,3"}
    result = subprocess.run([sys.executable, "-m", "bundle.render", "render", "--hardware", "h100x4", "--preset",
                             "basic", "--out", str(out), "--gpus", "4,5,6,7"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith(f"# GENERATED FILE, do not edit: make render HARDWARE=h100x4 PRESET=basic "
                                      f"GPUS=4,5,6,7 PORT=8003 OUT={out}\n")


def test_make_render_without_hardware_or_out_says_what_it_needs():
    result = make("render", **{"HARDWARE": "", "OUT": ""})
    assert result.returncode == 2
    assert "render: render needs HARDWARE= (--hardware) and OUT= (--out)" in result.stderr


def test_make_options_lists_every_variable():
    result = make("options")
    assert result.returncode == 0, result.stderr
    for option in options.OPTIONS:
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"  {option.variable}="))
        assert option.option in line and option.help in line


def test_the_top_level_file_ignores_the_environment():
    """`make compose-file PORT=9000` still writes the default file: it takes no options."""
    command = render.render_command(**render.TOP_LEVEL, params=render.Params())
    assert (ROOT / "docker-compose.yml").read_text().startswith(f"# GENERATED FILE, do not edit: {command}\n")
    assert command == "make render HARDWARE=h100x4 PRESET=basic OUT=docker-compose.yml"


def test_down_logs_status_find_the_deployment_on_port(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(os, "execvp", lambda file, argv: ran.append(argv))
    monkeypatch.setattr(os, "environ", {**clean_environ(), "PORT": "8123", "OVERRIDE": "/tmp/o.yml"})
    deploy.main(["compose", "logs", "-f"])
    assert ran == [["docker", "compose", "-f", str(ROOT / "deploy" / "port-8123" / "docker-compose.yml"),
                    "-f", "/tmp/o.yml", "logs", "-f"]]
    assert capsys.readouterr().out.startswith("docker compose -f ")
