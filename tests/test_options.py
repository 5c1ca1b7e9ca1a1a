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


def options_table(stdout: str) -> dict:
    """The listing's rows by variable: {column: cell}, cut where the header's columns start; a listing of
    several tables (`make bench-settings`) starts again at each header."""
    names = ["variable", "flag", "used by", "default", "e.g.", "meaning"]
    rows, starts = {}, None
    for line in stdout.splitlines():
        if line.split()[:2] == ["variable", "flag"]:
            starts = [line.index(name) for name in names]
        elif starts and line.startswith("  "):
            cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
            rows[cells[0]] = dict(zip(names, cells))
        else:
            starts = None
    return rows


def test_make_options_lists_every_variable():
    result = make("options")
    assert result.returncode == 0, result.stderr
    table = options_table(result.stdout)
    assert list(table) == [option.variable for option in options.OPTIONS]
    for option in options.OPTIONS:
        assert table[option.variable]["meaning"] == option.help
        assert table[option.variable]["flag"] in (option.option, "-")


def test_make_options_shows_defaults_as_defaults_and_examples_as_examples():
    table = options_table(make("options").stdout)
    assert table["PORT"]["default"] == "8000"                   # the port itself, not where it is written
    assert table["BIND_ADDRESS"]["default"] == "127.0.0.1" and table["BIND_ADDRESS"]["e.g."] == "0.0.0.0"
    assert table["REPLICAS"]["default"] == "1" and table["REPLICAS"]["e.g."] == "2"
    assert table["GPUS"]["default"] == "all" and table["PRESET"]["default"] == "basic"
    assert table["HARDWARE"]["default"] == "-" and table["API_KEY_FILE"]["default"] == "-"
    assert table["ALLOW_NO_API_KEY"]["default"] == "0" and table["DEPLOY_TIMEOUT"]["default"] == "3600"
    for variable, row in table.items():
        assert row["default"] != row["e.g."], (variable, row)   # an example that is the default says nothing


def test_make_options_lists_what_the_other_tools_and_compose_read():
    table = options_table(make("options").stdout)
    expected = {"HF_CACHE": "compose up/doctor/download", "ONLINE": "doctor", "NODES": "k8s",
                "ALLOW_TP_ACROSS_NODES": "k8s", "INVENTORY": "hosts*", "RESTART_POLICY": "compose up",
                "HEALTHCHECK_INTERVAL": "compose up", "HEALTHCHECK_TIMEOUT": "compose up",
                "HEALTHCHECK_RETRIES": "compose up", "HEALTHCHECK_START_PERIOD": "compose up",
                "PROMETHEUS_PORT": "compose up", "GRAFANA_PORT": "compose up"}
    assert {variable: table[variable]["used by"] for variable in expected} == expected
    assert table["OUT"]["used by"] == "render*/k8s*/hosts*" and table["HARDWARE"]["used by"].startswith("render*")


def compose_defaults(path) -> dict:
    return dict(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}", path.read_text()))


def test_every_variable_a_rendered_compose_file_reads_is_listed_with_its_default(tmp_path):
    """What docker compose substitutes at up time (${VAR:-default}) in the files `make render` writes,
    the gateway's and monitoring's included: each is in `make options`, with the same default."""
    out = tmp_path / "deploy" / "docker-compose.yml"
    env = {**clean_environ(), "HARDWARE": "h100x8", "REPLICAS": "2", "MONITORING": "1", "OUT": str(out),
           "SECRETS_DIR": str(tmp_path / "secrets")}
    rendered = subprocess.run([sys.executable, "-m", "bundle.render", "render"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    read = {}
    for path in [ROOT / "docker-compose.yml", *out.parent.glob("*.yml")]:
        read.update(compose_defaults(path))
    assert {"RESTART_POLICY", "HF_CACHE", "HEALTHCHECK_START_PERIOD", "GATEWAY_HEALTHCHECK_INTERVAL",
            "PROMETHEUS_PORT", "GRAFANA_PORT"} <= set(read)
    table = options_table(make("options").stdout)
    assert {variable: table[variable]["default"] for variable in read if variable in table} == read
    assert set(read) <= set(table)


def test_make_options_reads_the_defaults_from_the_data_when_it_prints(tmp_path, monkeypatch):
    """Not a copy of the number: a site that changes presets/container.yaml sees its own default."""
    for path in (ROOT / "presets").glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    container = tmp_path / "container.yaml"
    container.write_text(re.sub(r"^default_port: \d+", "default_port: 8123", container.read_text(), flags=re.M))
    monkeypatch.setattr(options, "DATA_DIR", tmp_path)
    options._data_file.cache_clear()
    try:
        table = options_table(options.listing())
    finally:
        options._data_file.cache_clear()
    assert table["PORT"]["default"] == "8123"


# Where a module reads a make variable by name: os.environ.get("X"), environ["X"], getenv("X").
ENVIRON_READ = re.compile(r"""(?:environ|getenv)(?:\.get)?[(\[]\s*["']([A-Z][A-Z0-9_]*)["']""")


def test_the_host_tools_read_make_variables_only_through_the_table():
    for path in sorted((ROOT / "bundle").rglob("*.py")):
        for variable in ENVIRON_READ.findall(path.read_text()):
            assert variable in options.BY_VARIABLE, f"{path.name} reads {variable} outside bundle/options.py"


def test_the_host_side_has_one_row_type_for_its_settings():
    """No second settings class beside options.Option: a class in bundle/ whose fields include a help text
    and a check or default is a settings row (bench's and eval's `Setting` were one)."""
    import ast
    rows = []
    for path in sorted((ROOT / "bundle").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                fields = {item.target.id for item in node.body
                          if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
                if "help" in fields and fields & {"check", "default"} or node.name in ("Setting", "Option"):
                    rows.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert rows == ["bundle/options.py:Option"]


# make bench's and make eval's variables and their defaults, written out here from docs/day-two.md and the
# seed's run (100 prompts, rate inf, ShareGPT; GSM8K 200 questions, 5-shot, 128 in flight); "-": unset.
BENCH_DEFAULTS = {"BENCH_DATASET": "sharegpt", "BENCH_DATASET_PATH": "-", "BENCH_PROMPTS": "100",
                  "BENCH_RATE": "inf", "BENCH_CONCURRENCY": "-", "BENCH_INPUT_LEN": "-", "BENCH_OUTPUT_LEN": "-",
                  "BENCH_TOKENIZER": "-", "BENCH_CLIENT": "-", "BENCH_TARGET": "guard", "BENCH_ARGS": "-",
                  "RESULTS_DIR": "results"}
EVAL_DEFAULTS = {"EVAL_QUESTIONS": "200", "EVAL_SHOTS": "5", "EVAL_DATA": "-", "EVAL_PARALLEL": "128",
                 "EVAL_CLIENT": "-", "EVAL_ARGS": "-", "RESULTS_DIR": "results"}


def test_make_bench_settings_lists_every_bench_and_eval_variable_with_its_default():
    result = make("bench-settings")
    assert result.returncode == 0, result.stderr
    table = options_table(result.stdout)
    assert {variable: row["default"] for variable, row in table.items()} == {**BENCH_DEFAULTS, **EVAL_DEFAULTS}
    assert table["RESULTS_DIR"]["used by"] == "bench/eval" and table["BENCH_RATE"]["used by"] == "bench"
    for variable, row in table.items():
        assert row["meaning"] == options.BY_VARIABLE[variable].help and row["default"] != row["e.g."], variable


def test_make_options_lists_the_bench_and_eval_variables_too():
    table = options_table(make("options").stdout)
    assert {variable: table[variable]["default"] for variable in {**BENCH_DEFAULTS, **EVAL_DEFAULTS}} == \
        {**BENCH_DEFAULTS, **EVAL_DEFAULTS}
    assert table["EVAL_SHOTS"]["used by"] == "eval" and table["BENCH_ARGS"]["flag"] == "-"


def test_a_variable_of_another_tool_is_checked_by_the_table():
    from bundle import monitoring
    with pytest.raises(render.RenderError, match=r"^PROMETHEUS_PORT='99999': expected 1-65535$"):
        monitoring.urls(environ={"PROMETHEUS_PORT": "99999"})
    assert monitoring.urls(environ={"GRAFANA_PORT": "3001"})["grafana"] == "http://127.0.0.1:3001"


def test_the_top_level_file_ignores_the_environment():
    """`make compose-file PORT=9000` still writes the default file: it takes no options."""
    command = render.render_command(**render.TOP_LEVEL, params=render.Params())
    assert (ROOT / "docker-compose.yml").read_text().startswith(f"# GENERATED FILE, do not edit: {command}\n")
    assert command == "make render HARDWARE=h100x4 PRESET=basic OUT=docker-compose.yml"


def test_down_logs_status_find_the_deployment_on_port(monkeypatch, capsys, tmp_path):
    """PORT= and OVERRIDE= from the environment, as make passes them: the file `make deploy` left for
    that port (no containers of its project here), with the override after it."""
    left = tmp_path / "port-8123" / "docker-compose.yml"
    left.parent.mkdir()
    left.write_text("services: {}\n")
    asked = []
    monkeypatch.setattr(deploy, "deploy_file", lambda port: asked.append(port) or left)
    monkeypatch.setattr(deploy, "started_files", lambda project: None)
    ran = []
    monkeypatch.setattr(os, "execvp", lambda file, argv: ran.append(argv))
    monkeypatch.setattr(os, "environ", {**clean_environ(), "PORT": "8123", "OVERRIDE": "/tmp/o.yml"})
    deploy.main(["compose", "logs", "-f"])
    assert asked == [8123]
    assert ran == [["docker", "compose", "-p", "llama31-sglang-8123", "-f", str(left), "-f", "/tmp/o.yml",
                    "logs", "-f"]]
    assert capsys.readouterr().out.startswith("docker compose -p llama31-sglang-8123 -f ")
