"""Monitoring (MONITORING=1): the generated dashboard and rules, the metric names against the
pinned SGLang, the per-deployment files against the real Compose and Debian's real promtool.

The expressions are evaluated against a real Prometheus in tests/e2e/test_e2e_monitoring.py."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import sglang
from bundle import monitoring, render
from bundle.errors import RenderError
from tests.paths import ROOT

PROMETHEUS_TEST_IMAGE = "bundle-prometheus:bookworm"   # .ci/provision-monitoring.sh builds it
SGLANG_SRT = Path(sglang.__file__).parent / "srt"
OBSERVABILITY = SGLANG_SRT / "observability"
METRICS_COLLECTOR = OBSERVABILITY / "metrics_collector.py"
DATA = render.load_data()
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# A capture of the real smg exporter (its header says how); the installed wheel's binary.
SMG_CAPTURE = ROOT / "tests" / "fixtures" / f"smg-{DATA['gateway']['smg_version']}-metrics.txt"
SMG_BINARY = Path(importlib.util.find_spec("smg").origin).parent / "smg_rs.abi3.so"


def queries_yaml() -> dict:
    return yaml.safe_load((ROOT / "monitoring" / "queries.yaml").read_text())


def panel_exprs(queries: dict, key: str) -> list[str]:
    return [q["expr"] for panel in queries["dashboard"].get(key) or () for q in panel["queries"]]


def all_exprs(queries: dict) -> list[str]:
    return (panel_exprs(queries, "panels") + panel_exprs(queries, "gateway_panels")
            + [alert["expr"] for alert in queries["alerts"]])


def sglang_metric_definitions() -> dict[str, list[tuple[Path, int]]]:
    """Every `name="sglang:..."` in the installed SGLang 0.5.23, with where it is defined."""
    found: dict[str, list[tuple[Path, int]]] = {}
    for path in SGLANG_SRT.rglob("*.py"):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in re.findall(r'name="(sglang:[A-Za-z0-9_:]+)"', line):
                found.setdefault(name, []).append((path, number))
    return found


def used_metric_names(expr: str) -> set[str]:
    names = set()
    for name in re.findall(r"sglang:[A-Za-z0-9_:]+", expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        names.add(name)
    return names


# ---- generated files: one source of truth ----------------------------------------------------

def test_generated_files_are_a_fresh_generation():
    for path, text in monitoring.generated_files().items():
        assert path.read_text() == text, f"{path} is stale: run python -m bundle.monitoring generate"


def test_dashboard_and_rules_carry_exactly_the_queries_of_queries_yaml():
    queries = queries_yaml()
    dashboard = json.loads(monitoring.DASHBOARD_FILE.read_text())
    rules = yaml.safe_load(monitoring.RULES_FILE.read_text())
    generated = [[t["expr"] for t in panel["targets"]] for panel in dashboard["panels"] if panel["type"] != "row"]
    assert generated == [[q["expr"] for q in panel["queries"]]
                         for key in ("panels", "gateway_panels") for panel in queries["dashboard"][key]]
    assert [p["title"] for p in dashboard["panels"] if p["type"] == "row"] == [title for _, title in monitoring.ROWS]
    assert monitoring.dashboard_expressions(dashboard, "Engines") == panel_exprs(queries, "panels")
    assert monitoring.dashboard_expressions(dashboard, monitoring.ROWS[1][1]) == panel_exprs(queries, "gateway_panels")
    assert [r["expr"] for g in rules["groups"] for r in g["rules"]] == [a["expr"] for a in queries["alerts"]]
    assert [r["alert"] for g in rules["groups"] for r in g["rules"]] == \
        ["SGLangEngineDown", "SGLangEngineNotReady", "SGLangQueueGrowing", "SGLangKVCacheFull"]


def test_panels_do_not_overlap():
    cells = set()
    for panel in json.loads(monitoring.DASHBOARD_FILE.read_text())["panels"]:
        grid = panel["gridPos"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, panel["title"]
        cells |= mine


def test_every_panel_names_the_provisioned_data_source():
    uid = yaml.safe_load(monitoring.DATASOURCE_FILE.read_text())["datasources"][0]["uid"]
    dashboard = json.loads(monitoring.DASHBOARD_FILE.read_text())
    for panel in (p for p in dashboard["panels"] if p["type"] != "row"):
        assert panel["datasource"]["uid"] == uid
        assert all(target["datasource"]["uid"] == uid for target in panel["targets"])
    provider = yaml.safe_load((monitoring.PROVISIONING_DIR / "dashboards" / "bundle.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == monitoring.GRAFANA_DASHBOARDS_IN_CONTAINER


def test_the_dashboard_covers_what_ops_watch():
    exprs = " ".join(all_exprs(queries_yaml()))
    for metric in ("sglang:num_requests_total", "sglang:generation_tokens_total",
                   "sglang:time_to_first_token_seconds_bucket", "sglang:inter_token_latency_seconds_bucket",
                   "sglang:request_time_per_output_token_seconds_bucket", "sglang:num_queue_reqs",
                   "sglang:num_running_reqs", "sglang:token_usage", "sglang:spec_accept_length",
                   "sglang:spec_accept_rate", 'up{job="sglang"}',
                   # issue 22: errors and aborts, prefix-cache hits, end-to-end latency, the gateway
                   "sglang:num_aborted_requests_total", "sglang:http_responses_total",
                   "sglang:cached_tokens_total", "sglang:e2e_request_latency_seconds_bucket",
                   "smg_http_responses_total", "smg_router_request_duration_seconds_bucket",
                   "smg_worker_requests_total", "smg_worker_health"):
        assert metric in exprs


def test_job_names_in_queries_are_the_scrape_jobs_of_the_data():
    jobs = {job["name"] for job in monitoring.load_data()["jobs"].values()}
    selected = {name for expr in all_exprs(queries_yaml()) for name in re.findall(r'job="([^"]+)"', expr)}
    assert selected and selected <= jobs


# ---- metric names from the pinned SGLang's source --------------------------------------------

def test_every_metric_name_is_defined_by_the_pinned_sglang():
    assert sglang.__version__ == json.loads((ROOT / "launcher" / "sglang_flags.json").read_text())["sglang_version"]
    defined = sglang_metric_definitions()
    assert len(defined) > 100, "the scan found too few SGLang metrics: wrong source tree?"
    for expr in all_exprs(queries_yaml()):
        for name in used_metric_names(expr):
            assert name in defined, f"{name} (in {expr!r}) is not a metric of SGLang {sglang.__version__}"


def test_the_cited_source_lines_define_the_metrics():
    """queries.yaml cites [file.py]:<line> (metrics_collector.py when no file is named) for each
    name; the line must define it."""
    text = (ROOT / "monitoring" / "queries.yaml").read_text()
    cited = re.findall(r"^#\s+(sglang:[a-z0-9_]+)\s+([a-z_]+\.py)?:(\d+)", text, re.M)
    assert len(cited) >= 15
    for name, file, number in cited:
        lines = (OBSERVABILITY / (file or METRICS_COLLECTOR.name)).read_text().splitlines()
        assert f'name="{name}"' in lines[int(number) - 1], f"{file or METRICS_COLLECTOR.name}:{number} does not define {name}"
    used = {name for expr in all_exprs(queries_yaml()) for name in used_metric_names(expr)}
    assert used <= {name for name, _, _ in cited}, "a metric is used without its source line"


def sglang_definition(name: str) -> str:
    """The text of the constructor call that defines `name` in SGLang's observability package."""
    for path in OBSERVABILITY.glob("*.py"):
        source = path.read_text()
        match = re.search(r'(Histogram|Gauge|Counter)\(\s*name="' + re.escape(name) + r'".*?\n\s*\)', source, re.S)
        if match:
            return match.group(0)
    raise AssertionError(f"{name}: no definition in {OBSERVABILITY}")


def test_labels_selected_on_sglang_metrics_are_theirs():
    """A selector on a label the metric does not carry matches nothing, silently."""
    for expr in all_exprs(queries_yaml()):
        for name, selector in re.findall(r"(sglang:[A-Za-z0-9_:]+)\{([^}]*)\}", expr):
            base = used_metric_names(name).pop()
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                assert f'"{label}"' in sglang_definition(base), f"{base} has no label {label} ({expr!r})"


def test_histograms_are_queried_by_bucket_and_gauges_directly():
    """A histogram read without _bucket, or a gauge read with it, would return nothing."""
    source = "".join(path.read_text() for path in OBSERVABILITY.glob("*.py"))
    kinds = dict((name, kind) for kind, name in
                 re.findall(r'(Histogram|Gauge|Counter)\(\s*name="(sglang:[A-Za-z0-9_:]+)"', source))
    for expr in all_exprs(queries_yaml()):
        for raw in re.findall(r"sglang:[A-Za-z0-9_:]+(?![A-Za-z0-9_:])", expr):
            base = used_metric_names(raw).pop()
            if kinds.get(base) == "Histogram":
                assert raw.endswith("_bucket"), f"{raw}: a histogram, query its _bucket series"
            else:
                assert kinds.get(base) in ("Gauge", "Counter") and raw == base, f"{raw} in {expr!r}"


def test_every_pair_that_renders_serves_metrics():
    """Without --enable-metrics SGLang mounts no /metrics (facts: lifespan, utils/common.py)."""
    for hardware, preset in render.pairs(DATA):
        assert render.resolve(DATA, hardware, preset).flags.get("enable-metrics") is True, (hardware, preset)


# ---- the data file ---------------------------------------------------------------------------

def test_images_are_pinned_by_tag_and_bad_data_is_named(tmp_path):
    data = monitoring.load_data()
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", data["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", data["grafana"]["image"])
    broken = yaml.safe_load(monitoring.DATA_FILE.read_text())
    broken["grafana"]["image"] = "grafana/grafana"
    path = tmp_path / "monitoring.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(RenderError) as raised:
        monitoring.load_data(path)
    assert str(raised.value) == f"{path}: grafana.image: 'grafana/grafana': expected an image pinned by tag, repository:tag"
    del broken["prometheus"]["scrape_interval"]
    broken["grafana"]["image"] = "registry:5000/grafana"   # the colon of a registry's port is no tag
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(RenderError) as raised:
        monitoring.load_data(path)
    assert str(raised.value).splitlines() == [
        f"{path}: prometheus: missing required key 'scrape_interval'",
        f"{path}: grafana.image: 'registry:5000/grafana': expected an image pinned by tag, repository:tag"]


@pytest.mark.parametrize("mutate,message", [
    (lambda q: q["dashboard"].update(panels=[]), "dashboard.panels: empty: expected at least one entry"),
    (lambda q: q["dashboard"].pop("panels"), "dashboard: missing required key 'panels'"),
    (lambda q: q["dashboard"]["panels"][2].update(title=""), "dashboard.panels[2].title: empty: expected text"),
    (lambda q: q["dashboard"]["gateway_panels"][0].update(queries=[]),
     "dashboard.gateway_panels[0].queries: empty: expected at least one entry"),
    (lambda q: q["dashboard"]["panels"][1]["queries"][0].pop("legend"),
     "dashboard.panels[1].queries[0]: missing required key 'legend'"),
    (lambda q: q["dashboard"]["panels"][1]["queries"][0].update(expr=""),
     "dashboard.panels[1].queries[0].expr: empty: expected text"),
    (lambda q: q["dashboard"]["panels"][0].update(titel="x"),
     "dashboard.panels[0].titel: unknown key; did you mean title?"),
    (lambda q: q["alerts"][1].update({"for": ""}), "alerts[1].for: empty: expected text"),
    (lambda q: q["alerts"][0].pop("for"), "alerts[0]: missing required key 'for'"),
    (lambda q: q["alerts"][3].update(severity=None), "alerts[3].severity: expected a string, got null"),
    (lambda q: q.pop("alerts"), "missing required key 'alerts'"),
], ids=["no-panels", "panels-missing", "title", "queries", "legend", "expr", "unknown", "for-empty", "for-missing",
        "severity", "alerts"])
def test_a_bad_queries_file_is_named_with_the_key(tmp_path, mutate, message):
    queries = queries_yaml()
    mutate(queries)
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(queries))
    with pytest.raises(RenderError) as raised:
        monitoring.load_queries(path)
    assert str(raised.value) == f"{path}: {message}"


def test_a_queries_file_that_is_no_mapping_is_named(tmp_path):
    path = tmp_path / "queries.yaml"
    path.write_text("- title: x\n")
    with pytest.raises(RenderError) as raised:
        monitoring.load_queries(path)
    assert str(raised.value) == f"{path}: expected a mapping, got a list"


def test_an_unknown_rule_parameter_is_refused_by_name(tmp_path):
    queries = queries_yaml()
    queries["alerts"][1]["for"] = "${start_perod}"
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(queries))
    with pytest.raises(RenderError, match=r"alert SGLangEngineNotReady: unknown \$\{start_perod\}; known: start_period"):
        monitoring.generated_files(queries=monitoring.load_queries(path))


def test_the_not_ready_alert_waits_the_engines_start_period():
    """One fact: the engine healthcheck's start_period (presets/container.yaml) is the alert's `for`."""
    changed = {**DATA, "container": {**DATA["container"],
                                     "healthcheck": {**DATA["container"]["healthcheck"], "start_period": "1h5m"}}}
    assert monitoring.rule_parameters(changed) == {"start_period": "3900s"}
    rules = yaml.safe_load(monitoring.generated_files(parameters=monitoring.rule_parameters(changed))[monitoring.RULES_FILE])
    assert {r["alert"]: r["for"] for r in rules["groups"][0]["rules"]}["SGLangEngineNotReady"] == "3900s"


# ---- the gateway's metric names: smg's own ---------------------------------------------------

def smg_capture() -> dict[str, tuple[str, set[str]]]:
    """metric family -> (TYPE, label names) in the capture of smg's exporter."""
    kinds, labels = {}, {}
    for line in SMG_CAPTURE.read_text().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            kinds[name] = kind
        elif line and not line.startswith("#"):
            sample, _, rest = line.partition("{")
            family = next((sample[: -len(s)] for s in HISTOGRAM_SUFFIXES
                           if sample.endswith(s) and sample[: -len(s)] in kinds), sample)
            labels.setdefault(family, set()).update(re.findall(r'(\w+)="', rest.split("}")[0]) if rest else ())
    return {name: (kind, labels.get(name, set())) for name, kind in kinds.items()}


def test_the_smg_capture_is_of_the_pinned_release():
    assert f"smg {DATA['gateway']['smg_version']} " in SMG_CAPTURE.read_text().splitlines()[0], \
        f"{SMG_CAPTURE.name}: capture the exporter of smg {DATA['gateway']['smg_version']} again"
    assert importlib.metadata.version("smg") == DATA["gateway"]["smg_version"]
    assert len(smg_capture()) > 40


def test_every_gateway_metric_is_smgs_with_its_type_and_labels():
    capture, binary = smg_capture(), SMG_BINARY.read_bytes()
    exprs = panel_exprs(queries_yaml(), "gateway_panels")
    assert exprs
    for expr in exprs:
        used = set()
        for raw in re.findall(r"smg_[a-z0-9_]+", expr):
            base = next((raw[: -len(s)] for s in HISTOGRAM_SUFFIXES if raw.endswith(s)), raw)
            assert base in capture, f"{raw} (in {expr!r}) is not exported by smg"
            assert base.encode() in binary, f"{base} is not in the installed smg's binary"
            kind, labels = capture[base]
            if kind == "histogram":
                assert raw == base + "_bucket", f"{raw}: a histogram, query its _bucket series"
                labels = labels | {"le"}
            else:
                assert raw == base, f"{raw}: smg exports {base} as a {kind}"
            used.add(base)
            for selector in re.findall(re.escape(raw) + r"\{([^}]*)\}", expr):
                for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                    assert label in labels, f"{base} has no label {label}"
        grouped = {label.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(",")}
        carried = set().union(*(capture[name][1] for name in used)) | {"le"}
        assert grouped <= carried, f"{expr!r} groups by {grouped - carried}, which no metric of it carries"


# ---- per deployment: rendered files, real Compose, real promtool -----------------------------

def render_deployment(tmp_path: Path, hardware="h100x4", preset="basic", replicas=1, api_key=True):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    (secrets_dir / "hf_token").write_text("hf_test\n")
    key_file = secrets_dir / "api_key"
    key_file.write_text("sk-monitoring-secret-value\n")
    params = render.Params(secrets_dir=str(secrets_dir), api_key_file=str(key_file) if api_key else None,
                           replicas=replicas)
    out = tmp_path / "deploy" / "docker-compose.yml"
    deployment = render.write(DATA, hardware, preset, params, out, "make test")
    engines = render.engine_services(deployment, [])
    monitoring_file = monitoring.write(
        out, engine_services=[e["name"] for e in engines], engine_port=8000,
        gateway=DATA["gateway"] if replicas > 1 else None, api_key=api_key, secrets_dir=secrets_dir,
        command="make test MONITORING=1")
    return out, monitoring_file


def compose_config(*files: Path) -> dict:
    args = ["docker", "compose", "-p", "monitoring-unit"]
    for path in files:
        args += ["-f", str(path)]
    result = subprocess.run(args + ["config", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_one_engine_with_a_key_scrapes_through_the_guard_with_the_key_file(tmp_path):
    out, monitoring_file = render_deployment(tmp_path)
    scrape = yaml.safe_load((out.parent / "prometheus.yml").read_text())
    job = scrape["scrape_configs"][0]
    assert job["job_name"] == "sglang" and job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["engine:8000"]}]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/api_key"}
    assert [job["job_name"] for job in scrape["scrape_configs"]] == ["sglang", "prometheus"]
    assert scrape["scrape_configs"][1]["static_configs"] == [{"targets": ["localhost:9090"]}]   # itself
    for path in out.parent.iterdir():
        assert "sk-monitoring-secret-value" not in path.read_text()
    config = compose_config(out, monitoring_file)
    assert set(yaml.safe_load(monitoring_file.read_text())["services"]) == set(monitoring.SERVICES)
    prometheus = config["services"]["prometheus"]
    assert [s["source"] for s in prometheus["secrets"]] == ["api_key"]
    assert prometheus["ports"][0]["host_ip"] == "127.0.0.1"
    assert config["services"]["grafana"]["ports"][0]["host_ip"] == "127.0.0.1"
    mounts = {v["target"]: Path(v["source"]) for v in prometheus["volumes"] if v["type"] == "bind"}
    assert mounts["/etc/prometheus/rules.yml"] == monitoring.RULES_FILE
    assert mounts["/etc/prometheus/prometheus.yml"] == out.parent / "prometheus.yml"
    grafana_mounts = {v["target"]: Path(v["source"]) for v in config["services"]["grafana"]["volumes"]
                      if v["type"] == "bind"}
    assert grafana_mounts["/etc/grafana/dashboards"] == monitoring.DASHBOARDS_DIR
    assert grafana_mounts["/etc/grafana/provisioning"] == monitoring.PROVISIONING_DIR
    assert "GF_SECURITY_ADMIN_PASSWORD" not in config["services"]["grafana"]["environment"]


def test_without_a_key_prometheus_gets_no_secret(tmp_path):
    out, monitoring_file = render_deployment(tmp_path, api_key=False)
    job = yaml.safe_load((out.parent / "prometheus.yml").read_text())["scrape_configs"][0]
    assert "authorization" not in job
    assert "secrets" not in compose_config(out, monitoring_file)["services"]["prometheus"]


def test_replicas_scrape_every_engine_and_the_gateway(tmp_path):
    out, monitoring_file = render_deployment(tmp_path, hardware="h200x4", replicas=2)
    scrape = yaml.safe_load((out.parent / "prometheus.yml").read_text())
    engine, _, gateway = scrape["scrape_configs"]
    assert engine["static_configs"] == [{"targets": ["engine-1:8000", "engine-2:8000"]}]
    assert gateway["job_name"] == "sglang-gateway"
    assert gateway["static_configs"] == [{"targets": [f"gateway:{DATA['gateway']['metrics_port']}"]}]
    services = compose_config(out, monitoring_file)["services"]
    assert {"engine-1", "engine-2", "gateway", "prometheus", "grafana"} <= set(services)


def test_compose_files_follow_the_last_render(tmp_path):
    out, monitoring_file = render_deployment(tmp_path)
    assert monitoring.compose_files(out) == [monitoring_file]
    monitoring.remove(out)
    assert monitoring.compose_files(out) == []
    assert not any(path.exists() for path in monitoring.rendered_files(out))
    assert out.is_file()


def test_published_ports_move_with_their_compose_variables(tmp_path):
    out, monitoring_file = render_deployment(tmp_path)
    args = ["docker", "compose", "-p", "monitoring-unit", "-f", str(out), "-f", str(monitoring_file),
            "config", "--format", "json"]
    env = {**os.environ, "PROMETHEUS_PORT": "19090", "GRAFANA_PORT": "13000"}
    services = json.loads(subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout)["services"]
    assert services["prometheus"]["ports"][0]["published"] == "19090"
    assert services["grafana"]["ports"][0]["published"] == "13000"
    assert monitoring.urls(environ={"PROMETHEUS_PORT": "19090"}) == {
        "prometheus": "http://127.0.0.1:19090", "grafana": "http://127.0.0.1:3000"}


def test_grafana_password_is_made_once_private_and_kept(tmp_path):
    path = monitoring.ensure_grafana_password(tmp_path / "secrets")
    first = path.read_text()
    assert len(first.strip()) >= 20 and path.stat().st_mode & 0o777 == 0o600
    assert monitoring.ensure_grafana_password(tmp_path / "secrets").read_text() == first


def promtool(*args: str, mounts: dict[Path, str]) -> subprocess.CompletedProcess:
    if shutil.which("docker") is None or subprocess.run(
            ["docker", "image", "inspect", PROMETHEUS_TEST_IMAGE], capture_output=True).returncode != 0:
        pytest.fail(f"{PROMETHEUS_TEST_IMAGE} is missing: run bash .ci/provision-monitoring.sh (make provision)")
    volumes = [arg for source, target in mounts.items() for arg in ("-v", f"{source}:{target}:ro")]
    return subprocess.run(["docker", "run", "--rm", "--pull=never", "--network=none", *volumes,
                           "--entrypoint", "promtool", PROMETHEUS_TEST_IMAGE, *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.docker
def test_promtool_checks_the_rendered_config_and_the_rules(tmp_path):
    out, _ = render_deployment(tmp_path, hardware="h200x4", replicas=2)
    result = promtool("check", "config", "/etc/prometheus/prometheus.yml", mounts={
        out.parent / "prometheus.yml": "/etc/prometheus/prometheus.yml",
        monitoring.RULES_FILE: "/etc/prometheus/rules.yml",
        tmp_path / "secrets" / "api_key": "/run/secrets/api_key"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout + result.stderr
    result = promtool("check", "rules", "/rules.yml", mounts={monitoring.RULES_FILE: "/rules.yml"})
    assert result.returncode == 0 and "SUCCESS: 4 rules found" in result.stdout, result.stdout + result.stderr


@pytest.mark.docker
def test_promtool_refuses_a_broken_rule(tmp_path):
    """The check above can fail: a misspelt function is refused by the real promtool."""
    rules = yaml.safe_load(monitoring.RULES_FILE.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "rat(sglang:num_requests_total[1m])"
    broken = tmp_path / "rules.yml"
    broken.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", "/rules.yml", mounts={broken: "/rules.yml"})
    assert result.returncode != 0 and "rat" in result.stdout + result.stderr


# ---- the engine-down alert against Debian's real promtool: loading is not down ---------------

STEP = 30                                     # seconds between the test series' samples
ENGINE = {"job": "sglang", "instance": "engine:8000"}
START_PERIOD = int(monitoring.rule_parameters()["start_period"].rstrip("s"))


def samples(*segments: tuple) -> str:
    """promtool's notation for (value, seconds) segments, one sample per STEP; value None: no
    sample (Prometheus not running)."""
    parts = []
    for value, seconds in segments:
        count = seconds // STEP
        parts.append(f"_x{count}" if value is None else f"{value}x{count - 1}")
    return " ".join(parts)


def scenario(up: list, prometheus_started: list, checks: dict) -> dict:
    """checks: eval time in seconds -> {alert: fires?}."""
    alerts = {"SGLangEngineDown": "critical", "SGLangEngineNotReady": "warning"}
    return {
        "interval": f"{STEP}s",
        "input_series": [
            {"series": 'up{job="sglang",instance="engine:8000"}', "values": samples(*up)},
            {"series": 'process_start_time_seconds{job="prometheus",instance="localhost:9090"}',
             "values": samples(*prometheus_started)}],
        "alert_rule_test": [
            {"eval_time": f"{at}s", "alertname": name,
             "exp_alerts": [{"exp_labels": {**ENGINE, "severity": alerts[name]}}] if fires else []}
            for at, expected in checks.items() for name, fires in expected.items()],
    }


@pytest.mark.docker
def test_promtool_engine_down_is_silent_while_loading_and_fires_when_the_engine_goes(tmp_path):
    """The rules Prometheus loads, evaluated by promtool over made-up `up` histories: a cold start
    as long as the start period allows is no outage; an engine that served and stops is."""
    minutes = 60
    loading = START_PERIOD - 2 * minutes            # a slow 70B cold start, within the start period
    tests = [
        # Cold start with Prometheus beside it (`make deploy MONITORING=1`): 503 (up 0), then ready.
        scenario(up=[(0, loading), (1, 10 * minutes)], prometheus_started=[(0, loading + 10 * minutes)],
                 checks={minutes * 2: {"SGLangEngineDown": False, "SGLangEngineNotReady": False},
                         loading - minutes: {"SGLangEngineDown": False, "SGLangEngineNotReady": False},
                         loading + 5 * minutes: {"SGLangEngineDown": False, "SGLangEngineNotReady": False}}),
        # The engine served for 10 minutes, then went away (stopped, crashed, or restarts).
        scenario(up=[(1, 10 * minutes), (0, START_PERIOD + 5 * minutes)],
                 prometheus_started=[(0, START_PERIOD + 15 * minutes)],
                 checks={10 * minutes + 30: {"SGLangEngineDown": False},          # within its `for`
                         13 * minutes: {"SGLangEngineDown": True, "SGLangEngineNotReady": False},
                         START_PERIOD + 12 * minutes: {"SGLangEngineDown": True, "SGLangEngineNotReady": True}}),
        # A cold start that never finishes: the warning after the start period, never the page.
        scenario(up=[(0, START_PERIOD + 10 * minutes)], prometheus_started=[(0, START_PERIOD + 10 * minutes)],
                 checks={START_PERIOD - minutes: {"SGLangEngineDown": False, "SGLangEngineNotReady": False},
                         START_PERIOD + 5 * minutes: {"SGLangEngineDown": False, "SGLangEngineNotReady": True}}),
        # `make down` then `make deploy` a minute later: Prometheus restarts with the engines
        # (its start time moves), the engine loads again: loading, though it served before.
        scenario(up=[(1, 10 * minutes), (None, minutes), (0, 20 * minutes)],
                 prometheus_started=[(0, 10 * minutes), (None, minutes), (11 * minutes, 20 * minutes)],
                 checks={15 * minutes: {"SGLangEngineDown": False},
                         25 * minutes: {"SGLangEngineDown": False, "SGLangEngineNotReady": False}}),
    ]
    # Annotations are prose; promtool compares them too, so the copy it reads leaves them out.
    rules = yaml.safe_load(monitoring.RULES_FILE.read_text())
    for rule in rules["groups"][0]["rules"]:
        rule.pop("annotations")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(
        {"rule_files": ["/w/rules.yml"], "evaluation_interval": "15s", "tests": tests}))
    result = promtool("test", "rules", "/w/tests.yml", mounts={tmp_path: "/w"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
