"""Behaviour tests for bundle/render.py, written to kill mutmut's survivors (docs/mutation.md).
In-process on copies of the committed data with one thing changed at a time; refusals are checked
next to the neighbouring valid case, messages spelled out, GPU arithmetic written by hand."""
import copy
import types

import pytest
import yaml

from paths import FIXTURES, ROOT
from bundle import render
from bundle.errors import RenderError

DATA = render.load_data()


def data():
    return copy.deepcopy(DATA)


def refusal(function, *args, **kwargs):
    with pytest.raises(RenderError) as err:
        function(*args, **kwargs)
    return str(err.value)


# --- small pieces --------------------------------------------------------------------------------

def test_gpu_count_expressions():
    assert render._gpu_count_expr("gpus", 8, "w") == 8
    assert render._gpu_count_expr("gpus/2", 8, "w") == 4
    assert render._gpu_count_expr("gpus/8", 8, "w") == 1
    assert render._gpu_count_expr("llama", 8, "w") == "llama" and render._gpu_count_expr(3, 8, "w") == 3
    assert refusal(render._gpu_count_expr, "gpus/3", 8, "p.flags.tp-size") == \
        "p.flags.tp-size: 8 GPUs are not divisible by 3"
    assert refusal(render._gpu_count_expr, "gpus*2", 8, "p.flags.tp-size") == \
        "p.flags.tp-size: 'gpus*2' is not 'gpus' or 'gpus/N'"
    assert refusal(render._gpu_count_expr, "gpus/", 8, "w") == "w: 'gpus/' is not 'gpus' or 'gpus/N'"


def test_env_values():
    assert render._env_value(True) == "true" and render._env_value(False) == "false"
    assert render._env_value(4) == "4" and render._env_value(0.85) == "0.85" and render._env_value("x") == "x"


def test_replicas_split_the_gpus_evenly():
    assert render.per_replica_gpus(8, 1, "h") == 8 and render.per_replica_gpus(8, 2, "h") == 4
    assert render.per_replica_gpus(8, 8, "h") == 1
    for replicas in (0, 3, 16):
        assert refusal(render.per_replica_gpus, 8, replicas, "h100x8") == (
            f"REPLICAS={replicas}: h100x8's 8 GPUs do not split into {replicas} equal replicas; choose a divisor of 8")


def test_base_image_and_alternatives():
    d = data()
    assert render.base_image(d, "cuda") == "lmsysorg/sglang:v%s-cu130-runtime" % d["hardware"]["sglang_version"]
    digest = "sha256:" + "ab" * 32
    d["hardware"]["images"]["cuda"]["digest"] = digest
    assert render.base_image(d, "cuda").endswith(f"-cu130-runtime@{digest}")
    d["hardware"]["images"]["cuda"]["digest"] = "sha256:xyz"
    assert refusal(render.base_image, d, "cuda") == \
        "presets/hardware.yaml images.cuda.digest='sha256:xyz': expected sha256:<64 hex digits>"
    deployment = render.resolve(DATA, "mi300x", "basic")
    version = DATA["hardware"]["sglang_version"]
    assert render.image_alternatives(DATA, deployment) == [
        f"lmsysorg/sglang:v{version}-rocm1000-mi30x", f"lmsysorg/sglang:v{version}-rocm724-mi30x",
        f"lmsysorg/sglang:v{version}-rocm720-mi30x"]
    d = data()
    del d["hardware"]["images"]["rocm"]["alternatives"]
    assert render.image_alternatives(d, deployment) == []


def test_wrap_at_98():
    assert render._wrap("a " * 60) == ["a " * 48 + "a", "a " * 10 + "a"]      # 97 characters, then the rest
    assert max(len(line) for line in render._wrap("word " * 100)) <= 98
    assert len(render._wrap("x" * 98)) == 1 and len(render._wrap("x " * 49 + "y")) == 2


# --- resolve -------------------------------------------------------------------------------------

def test_unknown_names():
    assert refusal(render.resolve, DATA, "h100x3", "basic").startswith(
        "unknown HARDWARE='h100x3'; profiles: h100x2, h100x4, h100x8, ")
    assert refusal(render.resolve, DATA, "h100x4", "fast") == \
        "unknown PRESET='fast'; presets: basic, throughput, throughput-fp8, latency"


def test_a_preset_takes_every_gpu_of_the_profile():
    d = render.resolve(DATA, "h100x8", "basic")
    assert d.flags["tp-size"] == 8 and d.engine_env["ENGINE_TP_SIZE"] == "8" and d.count == 8
    assert d.gpus_per_replica == 8 and d.replicas == 1 and d.nodes == 1
    assert d.engine_env["ENGINE_ENABLE_METRICS"] == "true"


def test_replicas_and_nodes():
    two = render.resolve(DATA, "h100x8", "basic", replicas=2)
    assert two.flags["tp-size"] == 4 and two.gpus_per_replica == 4 and two.replicas == 2
    nodes = render.resolve(DATA, "h100x4", "basic", nodes=2)
    assert (nodes.flags["tp-size"], nodes.flags["pp-size"]) == (4, 2)        # a pipeline stage per node
    assert nodes.flags["nnodes"] == 2 and nodes.engine_env["ENGINE_NNODES"] == "2"
    assert render.resolve(DATA, "h100x4", "basic", nodes=2, tp_across_nodes=True).flags["tp-size"] == 8
    assert "nnodes" not in render.resolve(DATA, "h100x4", "basic").flags
    for replicas, nodes in ((2, 2), (1, 0)):
        assert refusal(render.resolve, DATA, "h100x8", "basic", replicas=replicas, nodes=nodes) == (
            f"nodes={nodes}, REPLICAS={replicas}: one engine spans several nodes, or one host runs several "
            "engines, not both")


def test_a_preset_using_fewer_gpus_than_the_profile_is_refused():
    d = data()
    d["presets"]["presets"]["basic"]["flags"]["tp-size"] = "gpus/2"
    assert refusal(render.resolve, d, "h100x8", "basic") == "basic on h100x8: tp*pp*dp = 4 GPUs, the profile has 8"
    assert refusal(render.resolve, d, "h100x8", "basic", replicas=2) == \
        "basic on h100x8: tp*pp*dp = 2 GPUs, each of 2 replicas has 4"
    assert refusal(render.resolve, d, "h100x4", "basic", nodes=2) == \
        "basic on h100x4: tp*pp*dp = 4 GPUs, 2 nodes of 4 have 8"
    d["presets"]["presets"]["basic"]["flags"]["pp-size"] = 2
    assert render.resolve(d, "h100x8", "basic").flags["pp-size"] == 2      # tp 4 x pp 2 = 8


def test_overrides_replace_and_remove_flags_and_add_their_rationale():
    d = data()
    basic = d["presets"]["presets"]["basic"]
    basic["hardware"]["h100x8"] = {"rationale": "Why here.", "flags": {"enable-metrics": None, "tp-size": 8,
                                                                        "not-there": None}}
    resolved = render.resolve(d, "h100x8", "basic")
    assert "enable-metrics" not in resolved.flags and resolved.flags["tp-size"] == 8
    assert " ".join(resolved.rationale_lines).endswith("Why here.")
    assert " ".join(resolved.rationale_lines).startswith(basic["rationale"][:40])
    plain = render.resolve(d, "h100x4", "basic")
    assert " ".join(plain.rationale_lines) == " ".join(basic["rationale"].split())


def test_unsupported_pair_is_refused_with_its_reason():
    d = data()
    d["presets"]["presets"]["basic"]["hardware"]["h100x8"] = {"unsupported": "no reason at all"}
    assert refusal(render.resolve, d, "h100x8", "basic") == "basic on h100x8: no reason at all"


def test_container_checks_apply_with_the_pair_named():
    d = data()
    d["presets"]["presets"]["basic"]["flags"]["log-requests-level"] = 9
    assert refusal(render.resolve, d, "h100x4", "basic") == \
        "basic on h100x4: ENGINE_LOG_REQUESTS_LEVEL='9': --log-requests-level must be one of: 0, 1, 2, 3"


def test_unknown_model_cannot_be_checked():
    d = data()
    d["presets"]["presets"]["basic"]["flags"]["model-path"] = "acme/unknown"
    assert refusal(render.resolve, d, "h100x4", "basic") == (
        "basic on h100x4: acme/unknown is not in memory.KNOWN_MODELS, so its memory cannot be checked")


def test_fp8_on_hardware_without_fp8_is_refused_weights_or_kv_cache():
    d = data()
    d["presets"]["presets"]["basic"]["flags"]["kv-cache-dtype"] = "fp8_e4m3"
    name = DATA["hardware"]["gpus"]["a100"]["name"]
    assert refusal(render.resolve, d, "a100x4", "basic") == f"basic on a100x4: uses FP8, which {name} does not support"
    assert render.resolve(d, "h100x4", "basic").plan.kv_dtype_bytes == 1
    d = data()
    d["presets"]["presets"]["basic"]["flags"]["model-path"] = "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8"
    assert refusal(render.resolve, d, "a100x4", "basic").startswith("basic on a100x4: uses FP8, which ")
    assert render.resolve(DATA, "a100x4", "basic").plan.fp8_weights is False


def test_a_pair_that_does_not_fit_shows_the_arithmetic():
    d = data()
    del d["presets"]["presets"]["basic"]["hardware"]["h200x1"]
    message = refusal(render.resolve, d, "h200x1", "basic")
    assert message.startswith("basic on h200x1 does not fit: BF16 weights 131.4 GiB per GPU; usable 140.4 GiB")


def test_deployment_fields():
    d = render.resolve(DATA, "mi300x", "basic")
    version = DATA["hardware"]["sglang_version"]
    assert (d.hardware, d.preset, d.count, d.vendor) == ("mi300x", "basic", 8, "amd")
    assert d.image_tag == f"llama31-sglang-bundle:sglang-{version}-rocm"
    assert d.base_image == f"lmsysorg/sglang:v{version}-rocm10-mi30x"
    assert d.summary == DATA["presets"]["presets"]["basic"]["summary"]
    assert d.engine_argv[-6:-2] == ["--host", "127.0.0.1", "--port", "30000"]
    assert d.memory_lines[0].startswith("BF16 weights 16.4 GiB per GPU")      # 131.4 / 8
    assert d.extra_env == {}


def test_pairs_skip_what_does_not_render():
    d = data()
    d["presets"]["presets"]["basic"]["hardware"]["h100x8"] = {"unsupported": "no"}
    assert ("h100x8", "basic") not in render.pairs(d) and ("h100x8", "latency") in render.pairs(d)
    assert ("h100x8", "basic") in render.pairs(DATA)


# --- addresses, GPUs, secrets --------------------------------------------------------------------

@pytest.mark.parametrize("text, host, loopback", [
    ("127.0.0.1", "127.0.0.1", True), ("127.0.0.2", "127.0.0.2", True), ("::1", "[::1]", True),
    ("[::1]", "[::1]", True), ("0.0.0.0", "0.0.0.0", False), ("::", "[::]", False),
    ("10.1.2.3", "10.1.2.3", False), ("192.168.0.5", "192.168.0.5", False),
])
def test_bind_addresses(text, host, loopback):
    assert render.parse_bind_address(text) == (host, loopback)


@pytest.mark.parametrize("address", ["::", "10.1.2.3", "192.168.0.5", "0.0.0.0"])
def test_every_non_loopback_bind_needs_a_key_or_the_waiver(address, tmp_path):
    deployment = render.resolve(DATA, "h100x4", "basic")
    params = render.Params(bind_address=address, secrets_dir=str(tmp_path))
    assert refusal(render.render, DATA, deployment, params, tmp_path / "c.yml", "cmd") == (
        f"BIND_ADDRESS={address} publishes the API beyond this host without an API key: set "
        "API_KEY_FILE=secrets/api_key, or ALLOW_NO_API_KEY=1 to waive it; `make api-key` writes a new random key "
        "to secrets/api_key (API_KEY_FILE= for another file)")
    for ok in (render.Params(bind_address=address, secrets_dir=str(tmp_path), api_key_file="secrets/api_key"),
               render.Params(bind_address=address, secrets_dir=str(tmp_path), allow_no_api_key=True)):
        assert render.render(DATA, deployment, ok, tmp_path / "c.yml", "cmd")


def test_gpus_must_match_the_profile_count(tmp_path):
    deployment = render.resolve(DATA, "h100x4", "basic")
    assert refusal(render.render, DATA, deployment, render.Params(gpus=["0", "1", "2"]), tmp_path / "c.yml", "c") == \
        "GPUS lists 3 GPUs (0,1,2) but h100x4 has 4"
    text = render.render(DATA, deployment, render.Params(gpus=["3", "2", "1", "0"]), tmp_path / "c.yml", "c")
    compose = yaml.safe_load(text)
    (engine,) = compose["services"].values()
    devices = engine["deploy"]["resources"]["reservations"]["devices"][0]
    assert devices["device_ids"] == ["3", "2", "1", "0"]


def test_amd_gpus_are_handed_over_as_devices_and_selected_by_id(tmp_path):
    deployment = render.resolve(DATA, "mi300x", "basic")
    ids = [str(i) for i in range(7, -1, -1)]
    compose = yaml.safe_load(render.render(DATA, deployment, render.Params(gpus=ids), tmp_path / "c.yml", "c"))
    (engine,) = compose["services"].values()
    assert engine["devices"] == ["/dev/kfd", "/dev/dri"] and engine["group_add"] == ["video"]
    assert "deploy" not in engine
    assert engine["environment"]["ROCR_VISIBLE_DEVICES"] == "7,6,5,4,3,2,1,0"
    compose = yaml.safe_load(render.render(DATA, deployment, render.Params(), tmp_path / "c.yml", "c"))
    (engine,) = compose["services"].values()
    assert "ROCR_VISIBLE_DEVICES" not in engine["environment"] and engine["devices"] == ["/dev/kfd", "/dev/dri"]


def test_healthcheck_values_come_from_the_data(tmp_path):
    d = data()
    d["container"]["healthcheck"] = {"interval": "7s", "timeout": "41s", "retries": 9, "start_period": "1234s"}
    text = render.render(d, render.resolve(d, "h100x4", "basic"), render.Params(), tmp_path / "c.yml", "c")
    (engine,) = yaml.safe_load(text)["services"].values()
    check = engine["healthcheck"]
    # the data gives the defaults; the operator may override each at `up` time
    assert (check["interval"], check["timeout"], check["retries"], check["start_period"]) == (
        "${HEALTHCHECK_INTERVAL:-7s}", "${HEALTHCHECK_TIMEOUT:-41s}", "${HEALTHCHECK_RETRIES:-9}", "${HEALTHCHECK_START_PERIOD:-1234s}")


def test_engine_services_split_the_gpus_in_order():
    two = render.resolve(DATA, "h200x4", "basic", replicas=2)
    services = render.engine_services(two, ["3", "2", "1", "0"])
    assert [(s["name"], s["gpu_ids"]) for s in services] == [("engine-1", ["3", "2"]), ("engine-2", ["1", "0"])]
    assert [s["gpu_ids"] for s in render.engine_services(two, [])] == [["0", "1"], ["2", "3"]]
    four = types.SimpleNamespace(replicas=4, count=8, gpus_per_replica=2)     # only these are read
    assert [s["gpu_ids"] for s in render.engine_services(four, [])] == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]
    assert [s["name"] for s in render.engine_services(four, [])] == ["engine-1", "engine-2", "engine-3", "engine-4"]
    one = render.resolve(DATA, "h100x8", "basic")
    assert render.engine_services(one, []) == [{"name": "engine", "gpu_ids": None, "publish": None, "env": {},
                                               "network_mode": None}]
    assert render.engine_services(one, ["1"])[0]["gpu_ids"] == ["1"]


def test_secrets_path(tmp_path):
    assert render.secrets_path(DATA, render.Params()) == render.ROOT / "secrets"
    assert render.secrets_path(DATA, render.Params(secrets_dir=str(tmp_path))) == tmp_path
    assert render.secrets_path(DATA, render.Params(secrets_dir="my/keys")) == render.ROOT / "my" / "keys"


# --- the gateway ---------------------------------------------------------------------------------

def test_gateway_command_from_the_data():
    d = data()
    d["gateway"].update(port=8100, metrics_port=29100, policy="round_robin", health_check_endpoint="/health",
                        health_check_interval_secs=7, health_failure_threshold=3, health_success_threshold=2,
                        worker_startup_timeout_secs=900)
    assert render.gateway_command(d, ["http://a:8000", "http://b:8000"]) == [
        "--host", "0.0.0.0", "--port", "8100", "--worker-urls", "http://a:8000", "http://b:8000",
        "--policy", "round_robin", "--prometheus-host", "0.0.0.0", "--prometheus-port", "29100",
        "--health-check-endpoint", "/health", "--health-check-interval-secs", "7",
        "--health-failure-threshold", "3", "--health-success-threshold", "2", "--worker-startup-timeout-secs", "900"]


def test_gateway_view():
    secrets = [{"name": "hf_token"}, {"name": "api_key"}, {"name": "admin_api_key"}]
    view = render.gateway_view(DATA, ["http://a:8000"], secrets)
    gateway = DATA["gateway"]
    assert view["image_tag"] == f"llama31-sglang-gateway:smg-{gateway['smg_version']}"
    assert view["worker_count"] == 1 and view["port"] == gateway["port"]
    assert view["healthcheck"] == ["CMD", "python3", "-m", "launcher.gateway", "--healthcheck", "--port",
                                   str(gateway["port"])]
    assert view["healthcheck_interval"] == f"{gateway['health_check_interval_secs']}s"
    assert view["secrets"] == [{"name": "api_key", "env": "GATEWAY_API_KEY_FILE"},
                               {"name": "admin_api_key", "env": "GATEWAY_ADMIN_API_KEY_FILE"}]


# --- detection -----------------------------------------------------------------------------------

def capture(machine):
    return (FIXTURES / "gpu" / machine / "query-gpu.csv").read_text()


def test_detection_with_a_gpu_subset_and_its_refusals():
    assert render.detect_hardware(DATA, capture("h200x4"), ["0", "2"]) == "h200x2"
    assert render.detect_hardware(DATA, capture("h200x4"), ["3"]) == "h200x1"
    assert refusal(render.detect_hardware, DATA, capture("h200x2"), ["1", "5", "4"]) == \
        "GPUS=1,5,4: no GPU 4, 5 on this host (nvidia-smi lists 0, 1)"
    message = refusal(render.detect_hardware, DATA, capture("h200x4"), ["0", "1", "2"])
    assert message.startswith("this host has 3x NVIDIA H200, which matches no profile; set HARDWARE= to one of: h100x2")
    assert refusal(render.detect_hardware, DATA, "").startswith("this host has 0x no GPU, which matches no profile")


def test_detection_of_two_matching_profiles_names_both():
    d = data()
    d["hardware"]["hardware"]["h200x2-copy"] = dict(d["hardware"]["hardware"]["h200x2"])
    assert refusal(render.detect_hardware, d, capture("h200x2")).startswith(
        "this host has 2x NVIDIA H200, which matches h200x2 and h200x2-copy; set HARDWARE=")


# --- the command line, in-process (the subprocess tests are invisible to mutmut) ------------------

@pytest.fixture
def clean_options(monkeypatch):
    """No HARDWARE=, PRESET=, ... from the caller's environment: main() reads them."""
    from bundle import options
    for option in options.OPTIONS:
        monkeypatch.delenv(option.variable, raising=False)


def main(*argv):
    return render.main(list(argv))


def test_main_presets_and_table(capsys, clean_options):
    assert main("presets") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "h100x4 basic" in lines and "mi300x basic" in lines
    assert "a100x4 throughput-fp8" not in lines            # A100s have no FP8
    profiles, presets = set(DATA["hardware"]["hardware"]), set(DATA["presets"]["presets"])
    assert all(len(line.split()) == 2 and line.split()[0] in profiles and line.split()[1] in presets for line in lines)
    assert main("table") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == ("| hardware | preset | GPUs | weights; engine flags | weights/GPU | mem-fraction-static | "
                        "KV tokens per replica |")
    assert len(table) == 2 + len(lines)
    row = next(r for r in table if r.startswith("| h100x4 | basic |"))
    assert row.startswith("| h100x4 | basic | 4x ") and "| BF16; `--tp-size 4` |" in row and "| 32.9 GiB | 0.819 (SGLang's) |" in row


def test_main_explain(capsys, clean_options):
    assert main("explain", "--hardware", "h200x4", "--preset", "basic", "--replicas", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"h200x4 basic: {DATA['presets']['presets']['basic']['summary']}"
    assert any(line.startswith("BF16 weights 65.7 GiB per GPU") for line in lines)     # 131.4 / 2
    assert lines[-1].startswith("python3 -m sglang.launch_server ") and "--tp-size 2" in lines[-1]


def test_main_render_writes_the_file_and_removes_old_monitoring(tmp_path, capsys, clean_options):
    out = tmp_path / "deploy" / "docker-compose.yml"
    (tmp_path / "deploy").mkdir()
    stale = tmp_path / "deploy" / "monitoring.yml"
    stale.write_text("old")
    assert main("render", "--hardware", "h100x4", "--preset", "basic", "--out", str(out), "--port", "8123") == 0
    text = out.read_text()
    compose = yaml.safe_load(text)
    (engine,) = compose["services"].values()
    assert engine["ports"] == ["127.0.0.1:8123:8000"]
    assert "make render HARDWARE=h100x4 PRESET=basic" in text and "PORT=8123" in text
    assert not stale.exists()


def test_main_render_with_monitoring_writes_its_files(tmp_path, capsys, clean_options):
    out = tmp_path / "docker-compose.yml"
    assert main("render", "--hardware", "h200x4", "--preset", "basic", "--out", str(out), "--replicas", "2",
                "--monitoring", "--secrets-dir", str(tmp_path / "secrets")) == 0
    prometheus = (tmp_path / "prometheus.yml").read_text()
    assert (tmp_path / "monitoring.yml").exists()
    assert "engine-1:8000" in prometheus and "engine-2:8000" in prometheus


def test_main_compose_file_is_the_top_level_pair(tmp_path, monkeypatch, capsys, clean_options):
    out = tmp_path / "top.yml"
    monkeypatch.setitem(render.TOP_LEVEL, "out", str(out))   # absolute: the repository's file stays as it is
    monkeypatch.setenv("HARDWARE", "h200x1")                 # ignored: no options, whatever the environment
    assert main("compose-file") == 0
    (engine,) = yaml.safe_load(out.read_text())["services"].values()
    assert engine["environment"]["ENGINE_TP_SIZE"] == "4"


def test_main_detect(tmp_path, monkeypatch, capsys, clean_options):
    import os
    import shutil
    import stat
    folder = tmp_path / "bin"
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\ncat {FIXTURES / 'gpu' / 'h200x2' / 'query-gpu-noheader-nounits.csv'}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}:{os.path.dirname(shutil.which('sh'))}")
    assert main("detect") == 0 and capsys.readouterr().out == "h200x2\n"
    tool.write_text("#!/bin/sh\nexit 9\n")
    assert main("detect") == 2
    assert capsys.readouterr().err == ("render: no NVIDIA GPU detected (nvidia-smi missing or failing); set HARDWARE= "
                                       f"to one of: {', '.join(DATA['hardware']['hardware'])}\n")


def test_main_refusals_exit_2_with_the_reason(tmp_path, capsys, clean_options):
    assert main("explain", "--hardware", "h100x4", "--preset", "nope") == 2
    assert capsys.readouterr().err == \
        f"render: unknown PRESET='nope'; presets: {', '.join(DATA['presets']['presets'])}\n"
    bad = tmp_path / "data"
    bad.mkdir()
    for name in ("hardware", "presets", "container", "gateway", "kubernetes"):
        (bad / f"{name}.yaml").write_text((ROOT / "presets" / f"{name}.yaml").read_text())
    (bad / "container.yaml").write_text("default_port: [\n")
    assert main("--data", str(bad), "presets") == 2
    assert capsys.readouterr().err.startswith(f"render: {bad / 'container.yaml'}: while parsing")
