"""Monitoring (MONITORING=1): Prometheus and Grafana beside a deployment, as a second compose file.

    python -m bundle.monitoring generate     write the dashboard, alert rules and data source from
                                             monitoring/queries.yaml and presets/monitoring.yaml
    python -m bundle.monitoring check        exit 1 when a generated file differs from a fresh generation
    python -m bundle.monitoring expressions  print every PromQL expression of the generated files

One source of truth for the queries: monitoring/queries.yaml. The files Grafana and Prometheus
load (monitoring/grafana/dashboards/sglang.json, monitoring/prometheus/rules.yml) are generated
from it and checked in; tests evaluate the expressions of those generated files.

Per deployment, `write` renders templates/monitoring.yml.j2 into monitoring.yml and the scrape
configuration into prometheus.yml, both next to the deployment's compose file; they are used as
`docker compose -f docker-compose.yml -f monitoring.yml ...` (Compose resolves the relative paths
of both against the first file's folder, so they sit in the same one).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
from pathlib import Path

import jinja2
import yaml

from bundle import errors
from bundle import schema
from bundle.errors import RenderError

ROOT = Path(__file__).resolve().parent.parent
DATA_FILE = ROOT / "presets" / "monitoring.yaml"
QUERIES_FILE = ROOT / "monitoring" / "queries.yaml"
TEMPLATE = "monitoring.yml.j2"
GENERATE_COMMAND = "python -m bundle.monitoring generate"

DASHBOARD_FILE = ROOT / "monitoring" / "grafana" / "dashboards" / "sglang.json"
RULES_FILE = ROOT / "monitoring" / "prometheus" / "rules.yml"
DATASOURCE_FILE = ROOT / "monitoring" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVISIONING_DIR = ROOT / "monitoring" / "grafana" / "provisioning"
DASHBOARDS_DIR = DASHBOARD_FILE.parent

# templates/monitoring.yml.j2's services. They have no healthcheck (Debian's Prometheus image has
# no HTTP client to run one), so `make deploy` waits on the deployment's own services, not these.
SERVICES = ("prometheus", "grafana")
# Compose-time variables that move the published ports (the data's host_port is their default).
PORT_VARIABLES = {"prometheus": "PROMETHEUS_PORT", "grafana": "GRAFANA_PORT"}
COMPOSE_NAME = "monitoring.yml"              # beside the deployment's docker-compose.yml
SCRAPE_CONFIG_NAME = "prometheus.yml"
GRAFANA_PASSWORD_NAME = "grafana_admin_password"   # a file in the secrets folder, made at first use
API_KEY_SECRET = "api_key"                   # the main compose file's secret of API_KEY_FILE=
SECRETS_IN_CONTAINER = "/run/secrets"

PROMETHEUS_CONFIG_IN_CONTAINER = "/etc/prometheus/prometheus.yml"
RULES_IN_CONTAINER = "/etc/prometheus/rules.yml"
GRAFANA_DASHBOARDS_IN_CONTAINER = "/etc/grafana/dashboards"   # monitoring/grafana/provisioning/dashboards/bundle.yml

def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _read_checked(path: Path, record) -> dict:
    """The file's YAML, checked against its record in bundle/schema.py (SchemaError names each problem)."""
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RenderError(f"{_shown(path)}: {err}") from None
    schema.check_record(value, record, _shown(path), {})
    return value


def load_data(path: Path = DATA_FILE) -> dict:
    """presets/monitoring.yaml, checked against bundle/schema.py's MonitoringFile."""
    return _read_checked(path, schema.MonitoringFile)


# The dashboard's rows: queries.yaml's panel list of each, in this order, and the row's title.
ROWS = (("panels", "Engines"), ("gateway_panels", "Gateway (REPLICAS= > 1; empty without one)"))
PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


def load_queries(path: Path = QUERIES_FILE) -> dict:
    """monitoring/queries.yaml (the dashboard's panels, one list per row, and the alert rules),
    checked against bundle/schema.py's QueriesFile."""
    return _read_checked(path, schema.QueriesFile)


def rule_parameters(deployment_data: dict | None = None) -> dict[str, str]:
    """The facts the alert rules take from the deployment's data, as `${name}` in queries.yaml:
    start_period, the engine healthcheck's (presets/container.yaml), in seconds."""
    from bundle import k8s, render   # imported here: render imports this module lazily
    container = (deployment_data or render.load_data())["container"]
    return {"start_period": f"{k8s._seconds(container['healthcheck']['start_period'])}s"}


def _substituted(alert: dict, parameters: dict[str, str]) -> dict:
    def value(match):
        if match.group(1) not in parameters:
            raise RenderError(f"{_shown(QUERIES_FILE)}: alert {alert['name']}: unknown ${{{match.group(1)}}}; "
                              f"known: {', '.join(sorted(parameters))}")
        return parameters[match.group(1)]

    return {key: PLACEHOLDER.sub(value, text) if isinstance(text, str) else text for key, text in alert.items()}


# ---- generated, checked-in files -----------------------------------------------------------

def _generated_header(comment: str) -> str:
    return (f"{comment} GENERATED FILE, do not edit: {GENERATE_COMMAND}\n"
            f"{comment} From monitoring/queries.yaml and presets/monitoring.yaml by bundle/monitoring.py.\n")


def _panel(number: int, panel: dict, datasource: dict, y: int) -> dict:
    return {
        "id": number,
        "type": "timeseries",
        "title": panel["title"],
        "description": panel.get("description", ""),
        "datasource": datasource,
        "gridPos": {"h": 8, "w": 12, "x": 0, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.get("unit", "none")}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
        "targets": [{"refId": chr(ord("A") + index), "datasource": datasource, "expr": query["expr"],
                     "legendFormat": query["legend"], "range": True}
                    for index, query in enumerate(panel["queries"])],
    }


def dashboard(data: dict, queries: dict) -> dict:
    """The Grafana dashboard: a row per ROWS entry, its panels two abreast."""
    spec = queries["dashboard"]
    datasource = {"type": "prometheus", "uid": data["grafana"]["datasource_uid"]}
    panels, y = [], 0
    for key, title in ROWS:
        panels.append({"id": len(panels) + 1, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        y += 1
        for index, panel in enumerate(spec.get(key) or ()):
            generated = _panel(len(panels) + 1, panel, datasource, y + 8 * (index // 2))
            generated["gridPos"]["x"] = 12 * (index % 2)
            panels.append(generated)
        y += 8 * ((len(spec.get(key) or ()) + 1) // 2)
    return {
        "__generated": f"GENERATED FILE, do not edit: {GENERATE_COMMAND} (from monitoring/queries.yaml)",
        "uid": data["grafana"]["dashboard_uid"],
        "title": spec["title"],
        "tags": ["sglang", "llama-3.1-70b"],
        "timezone": "browser",
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": spec["refresh"],
        "time": {"from": spec["time_from"], "to": "now"},
        "panels": panels,
    }


def rules(queries: dict, parameters: dict[str, str]) -> dict:
    alerts = [_substituted(alert, parameters) for alert in queries["alerts"]]
    return {"groups": [{"name": "sglang", "rules": [
        {"alert": alert["name"], "expr": alert["expr"], "for": alert["for"],
         "labels": {"severity": alert["severity"]},
         "annotations": {"summary": alert["summary"], "description": alert["description"]}}
        for alert in alerts]}]}


def datasource(data: dict) -> dict:
    return {"apiVersion": 1, "datasources": [{
        "name": "Prometheus", "uid": data["grafana"]["datasource_uid"], "type": "prometheus",
        "access": "proxy", "url": f"http://prometheus:{data['prometheus']['port']}",
        "isDefault": True, "editable": False}]}


def _yaml_text(value: dict) -> str:
    return yaml.safe_dump(value, sort_keys=False, width=100, allow_unicode=True)


def generated_files(data: dict | None = None, queries: dict | None = None,
                    parameters: dict[str, str] | None = None) -> dict[Path, str]:
    """path -> the text a fresh generation writes there."""
    data = data or load_data()
    queries = queries or load_queries()
    parameters = parameters or rule_parameters()
    return {
        DASHBOARD_FILE: json.dumps(dashboard(data, queries), indent=2) + "\n",
        RULES_FILE: _generated_header("#") + _yaml_text(rules(queries, parameters)),
        DATASOURCE_FILE: _generated_header("#") + _yaml_text(datasource(data)),
    }


def dashboard_expressions(dashboard_json: dict, row: str | None = None) -> list[str]:
    """Every panel's expressions, or only those of the row titled `row` (a ROWS title)."""
    exprs, current = [], None
    for panel in dashboard_json["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
        elif row is None or current == row:
            exprs += [target["expr"] for target in panel["targets"]]
    return exprs


def rule_expressions(rules_yaml: dict) -> list[str]:
    return [rule["expr"] for group in rules_yaml["groups"] for rule in group["rules"]]


# ---- per deployment ------------------------------------------------------------------------

def scrape_config(data: dict, engine_targets: list[str], gateway_target: str | None, api_key: bool) -> dict:
    """prometheus.yml: the engines through their guards (service:port on the deployment's network)
    and the gateway's exporter when there is one. The key, when the deployment has one, is read
    from the secret file by Prometheus, never written here."""
    prometheus, jobs = data["prometheus"], data["jobs"]
    engine = {"job_name": jobs["engine"]["name"], "metrics_path": jobs["engine"]["metrics_path"]}
    if api_key:
        # /metrics is exempt from the key (the guard checks as SGLang does); sending it anyway keeps
        # the scrape working if the exemption ever goes, and costs nothing.
        engine["authorization"] = {"type": "Bearer",
                                   "credentials_file": f"{SECRETS_IN_CONTAINER}/{API_KEY_SECRET}"}
    engine["static_configs"] = [{"targets": list(engine_targets)}]
    config = {
        "global": {"scrape_interval": prometheus["scrape_interval"],
                   "evaluation_interval": prometheus["evaluation_interval"]},
        "rule_files": [RULES_IN_CONTAINER],
        "scrape_configs": [engine],
    }
    # Prometheus's own process_start_time_seconds tells the engine-down rule a cold start (nothing
    # served since this Prometheus started) from an engine gone after serving (queries.yaml).
    config["scrape_configs"].append({"job_name": jobs["prometheus"]["name"],
                                     "metrics_path": jobs["prometheus"]["metrics_path"],
                                     "static_configs": [{"targets": [f"localhost:{prometheus['port']}"]}]})
    if gateway_target:
        config["scrape_configs"].append({"job_name": jobs["gateway"]["name"],
                                         "metrics_path": jobs["gateway"]["metrics_path"],
                                         "static_configs": [{"targets": [gateway_target]}]})
    return config


def ensure_grafana_password(secrets_dir: Path) -> Path:
    """secrets/grafana_admin_password: made once with a random password, mode 0600, and kept."""
    path = secrets_dir / GRAFANA_PASSWORD_NAME
    if path.is_file() and path.read_text().strip():
        return path
    secrets_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(18) + "\n")
    return path


def _relative(path: Path, out_dir: Path) -> str:
    """A path relative to the compose files' folder, always starting with . (else a volume name)."""
    relative = os.path.relpath(path.resolve(), out_dir.resolve())
    return relative if relative.startswith(".") else "./" + relative


def render(data: dict, out_dir: Path, *, engine_services: list[str], engine_port: int,
           gateway: dict | None, api_key: bool, secrets_dir: Path, command: str) -> dict[str, str]:
    """file name -> text: monitoring.yml (compose) and prometheus.yml (scrape configuration).

    engine_services: the compose services of the engines (render.engine_services' names);
    engine_port: the guard's port inside them; gateway: presets/gateway.yaml's data when the
    deployment has SGLang's gateway (REPLICAS= > 1), else None; api_key: whether the main file
    defines the api_key secret (API_KEY_FILE=)."""
    gateway_target = f"gateway:{gateway['metrics_port']}" if gateway else None
    targets = [f"{service}:{engine_port}" for service in engine_services]
    scrape = scrape_config(data, targets, gateway_target, api_key)
    view = {
        "command": command,
        "prometheus": data["prometheus"],
        "grafana": data["grafana"],
        "port_variables": PORT_VARIABLES,
        "api_key_secret": API_KEY_SECRET if api_key else None,
        "grafana_password_secret": GRAFANA_PASSWORD_NAME,
        "grafana_password_file": _relative(secrets_dir / GRAFANA_PASSWORD_NAME, out_dir),
        "scrape_config": "./" + SCRAPE_CONFIG_NAME,
        "scrape_config_in_container": PROMETHEUS_CONFIG_IN_CONTAINER,
        "rules": _relative(RULES_FILE, out_dir),
        "rules_in_container": RULES_IN_CONTAINER,
        "provisioning": _relative(PROVISIONING_DIR, out_dir),
        "dashboards": _relative(DASHBOARDS_DIR, out_dir),
        "dashboards_in_container": GRAFANA_DASHBOARDS_IN_CONTAINER,
        "home_dashboard": f"{GRAFANA_DASHBOARDS_IN_CONTAINER}/{DASHBOARD_FILE.name}",
        "targets": targets,
        "gateway_target": gateway_target,
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    compose_text = env.get_template(TEMPLATE).render(**view)
    scrape_text = (f"# GENERATED FILE, do not edit: {command}\n"
                   f"# Prometheus's scrape configuration for this deployment, by bundle/monitoring.py.\n"
                   + _yaml_text(scrape))
    return {COMPOSE_NAME: compose_text, SCRAPE_CONFIG_NAME: scrape_text}


def write(compose_file: Path, **kwargs) -> Path:
    """Render next to the deployment's compose file; returns monitoring.yml's path. Makes the
    Grafana admin password file when it is missing (kwargs: those of `render`, less out_dir)."""
    out_dir = compose_file.resolve().parent
    ensure_grafana_password(kwargs["secrets_dir"])
    texts = render(load_data(), out_dir, **kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (out_dir / name).write_text(text)
    return out_dir / COMPOSE_NAME


def rendered_files(compose_file: Path) -> list[Path]:
    """The deployment's monitoring files, rendered or not."""
    return [compose_file.resolve().parent / name for name in (COMPOSE_NAME, SCRAPE_CONFIG_NAME)]


def compose_files(compose_file: Path) -> list[Path]:
    """[monitoring.yml] when the deployment beside it was rendered with MONITORING=1, else []:
    what `make deploy|down|logs|status` add after the deployment's file."""
    path = compose_file.resolve().parent / COMPOSE_NAME
    return [path] if path.is_file() else []


def remove(compose_file: Path) -> None:
    """A render without MONITORING=1 removes the files of an earlier one, so that `make down`
    and the others stop adding them."""
    for path in rendered_files(compose_file):
        path.unlink(missing_ok=True)


def urls(data: dict | None = None, environ=os.environ) -> dict[str, str]:
    """Where the operator finds Prometheus and Grafana on this host: PROMETHEUS_PORT= and
    GRAFANA_PORT= as Compose reads them, else the data's defaults."""
    from bundle import options
    data = data or load_data()
    return {service: f"http://127.0.0.1:{options.read_one(variable, environ) or data[service]['host_port']}"
            for service, variable in PORT_VARIABLES.items()}


# ---- command line --------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle.monitoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("generate", "check", "expressions"))
    args = parser.parse_args(argv)
    try:
        files = generated_files()
    except RenderError as err:
        print(f"monitoring: {err}", file=sys.stderr)
        return errors.USAGE
    if args.command == "generate":
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {_shown(path)}")
    elif args.command == "check":
        stale = [_shown(path) for path, text in files.items() if not path.is_file() or path.read_text() != text]
        if stale:
            print(f"monitoring: out of date, run `{GENERATE_COMMAND}`: {', '.join(stale)}", file=sys.stderr)
            return errors.FAILED
    else:
        for expr in dashboard_expressions(json.loads(files[DASHBOARD_FILE])):
            print(expr)
        for expr in rule_expressions(yaml.safe_load(files[RULES_FILE])):
            print(expr)
    return 0


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
