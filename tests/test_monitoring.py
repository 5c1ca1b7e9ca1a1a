"""Monitoring (MONITORING=1): the generated dashboard and rules, the metric names against the
pinned SGLang, the per-deployment files against the real Compose and Debian's real promtool.

The expressions are evaluated against a real Prometheus in tests/e2e/test_e2e_monitoring.py."""
from __future__ import annotations

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
METRICS_COLLECTOR = SGLANG_SRT / "observability" / "metrics_collector.py"
DATA = render.load_data()
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def queries_yaml() -> dict:
    return yaml.safe_load((ROOT / "monitoring" / "queries.yaml").read_text())


def all_exprs(queries: dict) -> list[str]:
    return ([q["expr"] for panel in queries["dashboard"]["panels"] for q in panel["queries"]]
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
    panel_exprs = [[t["expr"] for t in panel["targets"]] for panel in dashboard["panels"]]
    assert panel_exprs == [[q["expr"] for q in panel["queries"]] for panel in queries["dashboard"]["panels"]]
    assert [r["expr"] for g in rules["groups"] for r in g["rules"]] == [a["expr"] for a in queries["alerts"]]
    assert [r["alert"] for g in rules["groups"] for r in g["rules"]] == \
        ["SGLangEngineDown", "SGLangQueueGrowing", "SGLangKVCacheFull"]


def test_every_panel_names_the_provisioned_data_source():
    uid = yaml.safe_load(monitoring.DATASOURCE_FILE.read_text())["datasources"][0]["uid"]
    dashboard = json.loads(monitoring.DASHBOARD_FILE.read_text())
    for panel in dashboard["panels"]:
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
                   "sglang:spec_accept_rate", 'up{job="sglang"}'):
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
    """queries.yaml cites metrics_collector.py:<line> for each name; the line must define it."""
    text = (ROOT / "monitoring" / "queries.yaml").read_text()
    cited = re.findall(r"^#\s+(sglang:[a-z0-9_]+)\s+:(\d+)", text, re.M)
    assert len(cited) >= 12
    lines = METRICS_COLLECTOR.read_text().splitlines()
    for name, number in cited:
        assert f'name="{name}"' in lines[int(number) - 1], f"metrics_collector.py:{number} does not define {name}"
    used = {name for expr in all_exprs(queries_yaml()) for name in used_metric_names(expr)}
    assert used <= {name for name, _ in cited}, "a metric is used without its source line"


def test_histograms_are_queried_by_bucket_and_gauges_directly():
    """A histogram read without _bucket, or a gauge read with it, would return nothing."""
    source = METRICS_COLLECTOR.read_text()
    kinds = dict((name, kind) for kind, name in
                 re.findall(r'(Histogram|Gauge|Counter)\(\s*name="(sglang:[A-Za-z0-9_:]+)"', source))
    for expr in all_exprs(queries_yaml()):
        for raw in re.findall(r"sglang:[A-Za-z0-9_:]+", expr):
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
    with pytest.raises(RenderError,
                       match=r"monitoring.yaml: grafana.image='grafana/grafana': expected an image pinned by tag"):
        monitoring.load_data(path)
    del broken["prometheus"]["scrape_interval"]
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(RenderError, match=r"prometheus.scrape_interval is missing"):
        monitoring.load_data(path)


def test_gateway_panels_are_refused_until_tested(tmp_path):
    queries = queries_yaml()
    queries["dashboard"]["gateway_panels"] = [{"title": "x", "queries": [{"expr": "up", "legend": ""}]}]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(queries))
    with pytest.raises(RenderError, match="gateway_panels"):
        monitoring.load_queries(path)


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
    assert len(scrape["scrape_configs"]) == 1
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
    engine, gateway = scrape["scrape_configs"]
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


def test_promtool_checks_the_rendered_config_and_the_rules(tmp_path):
    out, _ = render_deployment(tmp_path, hardware="h200x4", replicas=2)
    result = promtool("check", "config", "/etc/prometheus/prometheus.yml", mounts={
        out.parent / "prometheus.yml": "/etc/prometheus/prometheus.yml",
        monitoring.RULES_FILE: "/etc/prometheus/rules.yml",
        tmp_path / "secrets" / "api_key": "/run/secrets/api_key"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 3 rules found" in result.stdout + result.stderr
    result = promtool("check", "rules", "/rules.yml", mounts={monitoring.RULES_FILE: "/rules.yml"})
    assert result.returncode == 0 and "SUCCESS: 3 rules found" in result.stdout, result.stdout + result.stderr


def test_promtool_refuses_a_broken_rule(tmp_path):
    """The check above can fail: a misspelt function is refused by the real promtool."""
    rules = yaml.safe_load(monitoring.RULES_FILE.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "rat(sglang:num_requests_total[1m])"
    broken = tmp_path / "rules.yml"
    broken.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", "/rules.yml", mounts={broken: "/rules.yml"})
    assert result.returncode != 0 and "rat" in result.stdout + result.stderr
