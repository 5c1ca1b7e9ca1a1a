"""Kubernetes manifests (bundle/k8s.py): every pair renders, validates against Kubernetes' own strict
schemas (kubernetes-validate) and LeaderWorkerSet's CRD (jsonschema), every pod's environment passes the
container's own checks, the gateway's flags pass smg's own parser, and the committed Kustomize tree is
what `make k8s-tree` writes. No cluster: docs/kubernetes.md says what was not run."""
import copy
import hashlib
import os
import shutil
import subprocess

import pytest
import yaml
from paths import ROOT, VENDOR

from bundle import k8s, render
from launcher import gateway as gateway_launcher
from launcher.command import build_config
from launcher.settings import BundleSettings

DATA = render.load_data()
LWS_CRD_SHA256 = "c5dcad8ed943e495490241f00b9a1b45d51203b6d484020db3636d5bf553568e"   # presets/vendor/SOURCE.md
# Shapes beyond the tree's one-engine-per-pair: replicas splitting a host, LeaderWorkerSet groups, AMD.
SHAPES = [("h100x8", "latency", 2, 1), ("h100x4", "throughput-fp8", 2, 1), ("h100x4", "basic", 1, 2),
          ("h100x8", "basic", 3, 2), ("mi300x", "basic", 2, 1)]


def kind_and_name(manifest: dict) -> tuple:
    return manifest["kind"], manifest["metadata"]["name"]


def objects_of(files: dict) -> list[dict]:
    return [obj for name, text in files.items() if name != "kustomization.yaml"
            for obj in yaml.safe_load_all(text) if obj]


def rendered(hardware, preset, replicas=1, nodes=1) -> list[dict]:
    shape = k8s.resolve(DATA, hardware, preset, replicas, nodes)
    return objects_of(k8s.render_files(DATA, shape, "test"))


def one(objects, kind, component=None) -> dict:
    found = [o for o in objects if o["kind"] == kind and
             (component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"{len(found)} {kind} {component or ''}"
    return found[0]


def engine_pod_specs(objects) -> dict:
    """role -> pod template of the engine ('single', or 'leader' and 'worker')."""
    engine = next(o for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet")
                  and o["metadata"]["name"].endswith("-engine"))
    if engine["kind"] == "Deployment":
        return {"single": engine["spec"]["template"]}
    template = engine["spec"]["leaderWorkerTemplate"]
    return {"leader": template["leaderTemplate"], "worker": template["workerTemplate"]}


def selects(selector: dict, labels: dict) -> bool:
    """A label selector's meaning (matchLabels, and matchExpressions with In) over a pod's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or ():
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


# ---- validation against the schemas ---------------------------------------------------------

def test_the_committed_tree_validates_against_kubernetes_and_the_lws_crd():
    paths = [ROOT / "k8s" / "base", *sorted((ROOT / "k8s" / "overlays").iterdir())]
    objects = k8s.load_objects(paths)
    assert len(objects) == 7 + len(render.pairs(DATA)) + len(k8s.MULTI_NODE_OVERLAYS)
    assert k8s.validate_objects(objects) == []


@pytest.mark.parametrize("hardware,preset,replicas,nodes", SHAPES)
def test_other_shapes_validate(hardware, preset, replicas, nodes):
    assert k8s.validate_objects(rendered(hardware, preset, replicas, nodes)) == []


def test_the_lws_crd_is_the_vendored_release():
    crd = VENDOR / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
    assert hashlib.sha256(crd.read_bytes()).hexdigest() == LWS_CRD_SHA256
    assert LWS_CRD_SHA256 in (VENDOR / "SOURCE.md").read_text()


def _mutated(objects, kind, change):
    objects = copy.deepcopy(objects)
    change(next(o for o in objects if o["kind"] == kind))
    return k8s.validate_objects(objects)


def test_the_validators_refuse_what_kubernetes_refuses():
    deployment_objects = rendered("h100x4", "basic")
    lws_objects = rendered("h100x4", "basic", 1, 2)

    def typo(deployment):   # an unknown field: only a strict schema sees it
        deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    problems = _mutated(deployment_objects, "Deployment", typo)
    assert problems and all("livenesProbe" in p.message for p in problems), problems

    def wrong_type(lws):     # the CRD's own schema
        lws["spec"]["leaderWorkerTemplate"]["size"] = "two"
    problems = _mutated(lws_objects, "LeaderWorkerSet", wrong_type)
    assert [p.message for p in problems] == [("LeaderWorkerSet CRD: spec.leaderWorkerTemplate.size: 'two' is not "
                                              "of type 'integer'")]

    def unknown_in_pod(lws):  # the CRD lets it through (structural schemas prune); PodTemplate's strict one does not
        lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["gpus"] = 4
    problems = _mutated(lws_objects, "LeaderWorkerSet", unknown_in_pod)
    assert problems and all("workerTemplate" in p.object and "gpus" in p.message for p in problems), problems

    def missing(service):
        del service["spec"]["ports"][0]["port"]
    assert _mutated(deployment_objects, "Service", missing)


# ---- the committed Kustomize tree and make k8s --------------------------------------------------

def test_the_committed_tree_is_what_make_k8s_tree_writes():
    expected = k8s.tree_files(DATA)
    on_disk = {str(p.relative_to(ROOT / "k8s")): p.read_text() for p in (ROOT / "k8s").glob("**/*.yaml")}
    assert sorted(on_disk) == sorted(expected), "run make k8s-tree"
    stale = [name for name in expected if on_disk[name] != expected[name]]
    assert not stale, f"run make k8s-tree: {stale[:5]}"


def test_an_overlay_is_the_base_plus_the_pairs_engine_as_make_k8s_writes_it(tmp_path):
    k8s.write_plain(DATA, "h100x4", "basic", tmp_path, 1, 2)
    plain = k8s.load_objects([tmp_path])
    overlay = k8s.load_objects([ROOT / "k8s" / "base", ROOT / "k8s" / "overlays" / "h100x4-basic-nodes2"])
    assert sorted(plain, key=kind_and_name) == sorted(overlay, key=kind_and_name)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here to run its built-in kustomize")
def test_kubectl_kustomize_builds_an_overlay_into_the_same_objects(tmp_path):
    built = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / "h100x8-latency")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    k8s.write_plain(DATA, "h100x8", "latency", tmp_path)
    assert sorted(yaml.safe_load_all(built.stdout), key=kind_and_name) == sorted(k8s.load_objects([tmp_path]),
                                                                               key=kind_and_name)


def make(*args):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "VENV": str(ROOT / ".venv")}, timeout=120, check=False)


def test_make_k8s_writes_what_kubectl_apply_f_takes(tmp_path):
    result = make("k8s", "HARDWARE=h100x8", "PRESET=throughput-fp8", "REPLICAS=2", f"OUT={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(k8s.FILES)
    objects = k8s.load_objects([tmp_path])
    assert not any(o["kind"] == "Kustomization" for o in objects)
    engine = one(objects, "Deployment", "engine")
    assert engine["spec"]["replicas"] == 2
    assert engine["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 4}
    assert (tmp_path / "engine.yaml").read_text().startswith(
        f"# GENERATED FILE, do not edit: make k8s HARDWARE=h100x8 PRESET=throughput-fp8 REPLICAS=2 OUT={tmp_path}\n")


@pytest.mark.parametrize("args,message", [
    (["PRESET=basic", "OUT=x"], "k8s: HARDWARE= is required"),
    (["HARDWARE=h100x4", "REPLICAS=3", "OUT=x"], "do not split into 3 equal replicas"),
    (["HARDWARE=h100x4", "PRESET=throughput-fp8", "NODES=2", "OUT=x"],
     "data-parallel replicas across nodes are not supported by SGLang (ENGINE_DP_SIZE, ENGINE_NNODES)"),
    (["HARDWARE=h100x4", "NODES=0", "OUT=x"], "NODES='0': expected a whole number, 1 or more"),
    (["HARDWARE=h100x8", "PRESET=latency", "NODES=2", "OUT=x"],
     "pipeline parallelism (--pp-size 2) with speculative decoding (EAGLE3) is refused by SGLang 0.5.23"),
    (["HARDWARE=h100x4", "NODES=2", "ALLOW_TP_ACROSS_NODES=maybe", "OUT=x"],
     "ALLOW_TP_ACROSS_NODES='maybe': expected 1 or 0"),
])
def test_make_k8s_refuses_a_shape_that_cannot_work_before_writing(tmp_path, args, message):
    result = subprocess.run(["make", "--no-print-directory", "k8s", *[a.replace("OUT=x", f"OUT={tmp_path}/out")
                                                                      for a in args]],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                            env={k: v for k, v in os.environ.items() if k not in ("HARDWARE", "PRESET")})
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_make_k8s_nodes_2_on_h100x4_is_one_pipeline_stage_per_node(tmp_path):
    result = make("k8s", "HARDWARE=h100x4", "PRESET=basic", "NODES=2", f"OUT={tmp_path}")
    assert result.returncode == 0, result.stderr
    objects = k8s.load_objects([tmp_path])
    assert k8s.validate_objects(objects) == []
    for pod in engine_pod_specs(objects).values():
        env = {e["name"]: e["value"] for e in env_of(pod)}
        assert (env["ENGINE_TP_SIZE"], env["ENGINE_PP_SIZE"], env["ENGINE_NNODES"]) == ("4", "2", "2")
        assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 4}
    assert "one pipeline stage per node (--pp-size 2" in (tmp_path / "engine.yaml").read_text()


def test_make_k8s_renders_tp_across_nodes_only_with_the_opt_in(tmp_path):
    result = make("k8s", "HARDWARE=h100x4", "PRESET=basic", "NODES=2", "ALLOW_TP_ACROSS_NODES=1", f"OUT={tmp_path}")
    assert result.returncode == 0, result.stderr
    objects = k8s.load_objects([tmp_path])
    assert k8s.validate_objects(objects) == []
    for pod in engine_pod_specs(objects).values():
        env = {e["name"]: e["value"] for e in env_of(pod)}
        assert env["ENGINE_TP_SIZE"] == "8" and "ENGINE_PP_SIZE" not in env
    assert (tmp_path / "engine.yaml").read_text().startswith(
        f"# GENERATED FILE, do not edit: make k8s HARDWARE=h100x4 PRESET=basic NODES=2 ALLOW_TP_ACROSS_NODES=1 "
        f"OUT={tmp_path}\n")


def test_a_presets_tp_across_nodes_is_refused_naming_the_opt_in():
    data = copy.deepcopy(DATA)
    data["presets"]["presets"]["basic"]["hardware"]["h100x4"] = {"rationale": "test", "flags": {"tp-size": 8}}
    with pytest.raises(render.RenderError) as err:
        k8s.resolve(data, "h100x4", "basic", 1, 2)
    assert "tp-size 8 spans nodes of 4 GPUs" in str(err.value) and "ALLOW_TP_ACROSS_NODES=1" in str(err.value)
    shape = k8s.resolve(data, "h100x4", "basic", 1, 2, tp_across_nodes=True)
    assert k8s.validate_objects(objects_of(k8s.render_files(data, shape, "test"))) == []


# ---- the engine ---------------------------------------------------------------------------------

def env_of(pod_template) -> list[dict]:
    return pod_template["spec"]["containers"][0]["env"]


def test_every_pod_environment_passes_the_containers_own_checks(tmp_path):
    """What each LeaderWorkerSet pod sees after the kubelet substitutes LWS's values, through build_config."""
    objects = rendered("h100x4", "basic", 1, 2)
    pods = engine_pod_specs(objects)
    assert env_of(pods["leader"]) == env_of(pods["worker"])
    (tmp_path / "api_key").write_text("k" * 32)
    (tmp_path / "hf_token").write_text("t" * 32)
    leader = "llama31-sglang-engine-0.llama31-sglang-engine.prod"
    for rank in range(2):
        environ = k8s.expand(env_of(pods["leader"]), {"LWS_LEADER_ADDRESS": leader, "LWS_WORKER_INDEX": str(rank)})
        environ = {k: str(tmp_path / os.path.basename(v)) if k.endswith("_FILE") else v for k, v in environ.items()}
        argv = build_config(environ, [], render._catalogue()).engine_argv(BundleSettings.from_environ(environ))
        flags = {arg: argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg.startswith("--")}
        # 2 nodes x 4 H100: one engine, a pipeline stage of TP4 per node; rank from LWS_WORKER_INDEX;
        # rendezvous on the leader's port 20000
        assert (flags["--tp-size"], flags["--pp-size"], flags["--nnodes"], flags["--node-rank"]) == (
            "4", "2", "2", str(rank))
        assert flags["--dist-init-addr"] == f"{leader}:20000"
        assert "k" * 32 not in argv


def test_a_multi_node_group_is_a_leaderworkerset_with_the_leader_alone_discoverable():
    objects = rendered("h100x8", "basic", 3, 2)
    lws = one(objects, "LeaderWorkerSet")
    assert lws["spec"]["replicas"] == 3 and lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    pods = engine_pod_specs(objects)
    args = one(objects, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = parse_gateway(args)
    assert selects({"matchLabels": parsed.selector}, pods["leader"]["metadata"]["labels"])
    assert not selects({"matchLabels": parsed.selector}, pods["worker"]["metadata"]["labels"])
    worker = pods["worker"]["spec"]["containers"][0]
    assert "readinessProbe" not in worker       # ranks >= 1 have no /ready (SGLang's stand-in health app)
    assert worker["startupProbe"]["httpGet"]["path"] == worker["livenessProbe"]["httpGet"]["path"] == "/health"
    for pod in pods.values():
        assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 8}


@pytest.mark.parametrize("hardware,preset,resource,count", [("h100x4", "basic", "nvidia.com/gpu", 4),
                                                             ("mi300x", "basic", "amd.com/gpu", 8),
                                                             ("h200x1", "basic", "nvidia.com/gpu", 1)])
def test_gpu_resources_per_vendor(hardware, preset, resource, count):
    container = engine_pod_specs(rendered(hardware, preset))["single"]["spec"]["containers"][0]
    assert container["resources"] == {"limits": {resource: count}}


def test_probes_fit_a_cold_start_and_follow_the_compose_healthcheck():
    health = DATA["container"]["healthcheck"]
    assert (health["start_period"], health["interval"], health["timeout"], health["retries"]) == \
        ("1800s", "5s", "30s", 3)
    generate = BundleSettings.from_environ({}).healthcheck_generate_seconds
    assert generate == 30.0
    pod = engine_pod_specs(rendered("h100x4", "basic"))["single"]["spec"]
    engine = pod["containers"][0]
    port = {p["name"]: p["containerPort"] for p in engine["ports"]}
    assert port == {"http": 8000}
    startup, ready, live = engine["startupProbe"], engine["readinessProbe"], engine["livenessProbe"]
    assert (startup["httpGet"], ready["httpGet"], live["httpGet"]) == (
        {"path": "/ready", "port": "http"}, {"path": "/ready", "port": "http"}, {"path": "/health", "port": "http"})
    # 30 minutes of download, load and CUDA graphs in 5 s probes: 360 of them
    assert (startup["periodSeconds"], startup["failureThreshold"]) == (5, 360)
    assert (ready["periodSeconds"], ready["failureThreshold"]) == (5, 3)
    # /health's generation (up to SGLang's 20 s) every 30 s as the image's healthcheck runs it, 30 s timeout
    assert (live["periodSeconds"], live["timeoutSeconds"], live["failureThreshold"]) == (30, 30, 3)
    assert pod["terminationGracePeriodSeconds"] == 120


def test_shm_is_memory_and_the_model_cache_a_claim():
    objects = rendered("h100x4", "basic")
    pod = engine_pod_specs(objects)["single"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory" and mounts["shm"] == "/dev/shm"
    claim = one(objects, "PersistentVolumeClaim")
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert mounts["model-cache"] == "/root/.cache/huggingface"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


# ---- secrets ------------------------------------------------------------------------------------

def test_secrets_are_referenced_as_files_never_rendered_or_put_in_env():
    objects = rendered("h100x4", "basic", 1, 2)
    text = yaml.safe_dump_all(objects)
    assert "secretKeyRef" not in text and not any(o["kind"] == "Secret" for o in objects)
    secret = DATA["kubernetes"]["secret_name"]
    pods = [*engine_pod_specs(objects).values(), one(objects, "Deployment", "gateway")["spec"]["template"]]
    for pod in pods:
        container = pod["spec"]["containers"][0]
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        files = {f"{m['mountPath']}/{item['path']}" for m in container["volumeMounts"]
                 if "secret" in volumes[m["name"]] for item in volumes[m["name"]]["secret"]["items"]}
        assert all(v["secret"]["secretName"] == secret for v in volumes.values() if "secret" in v)
        file_env = {e["name"]: e["value"] for e in container["env"] if e["name"].endswith("_FILE")}
        assert file_env and set(file_env.values()) <= files
        assert not any(e["name"] in ("HF_TOKEN", "ENGINE_API_KEY", "GATEWAY_API_KEY") for e in container["env"])


# ---- the gateway --------------------------------------------------------------------------------

def parse_gateway(args, namespace="prod"):
    """smg's own parser, through the gateway container's entrypoint, after the kubelet's $(VAR) substitution."""
    args = [a.replace("$(POD_NAMESPACE)", namespace) for a in args]
    gateway_launcher.refuse_secret_flags(args)
    return gateway_launcher.router_args(args, "edge-key", "admin-key")


def test_the_gateway_discovers_ready_engine_pods_in_its_own_namespace():
    objects = rendered("h100x8", "latency", 2)
    gateway = one(objects, "Deployment", "gateway")["spec"]["template"]
    container = gateway["spec"]["containers"][0]
    parsed = parse_gateway(container["args"])
    engine_pod = engine_pod_specs(objects)["single"]
    assert parsed.discovery_provider == "kubernetes" and not parsed.worker_urls
    assert parsed.selector == engine_pod["metadata"]["labels"]
    assert parsed.service_discovery_port == engine_pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert parsed.service_discovery_namespace == "prod"
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in container["env"]
    assert (parsed.policy, parsed.health_check_endpoint) == ("cache_aware", "/ready")
    assert parsed.api_key == "edge-key"
    from smg.router import Router
    Router.from_args(parsed)        # the whole configuration through smg's Rust side; not started


def test_the_gateways_rbac_lets_it_list_and_watch_pods_and_nothing_else():
    objects = rendered("h100x4", "basic")
    gateway = one(objects, "Deployment", "gateway")
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    role, binding = one(objects, "Role"), one(objects, "RoleBinding")
    assert gateway["spec"]["template"]["spec"]["serviceAccountName"] == account
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    for pod in engine_pod_specs(objects).values():
        assert pod["spec"]["automountServiceAccountToken"] is False


def test_the_service_and_the_network_policy_put_the_gateway_in_front():
    objects = rendered("h100x4", "basic", 1, 2)
    service = one(objects, "Service")
    gateway_pod = one(objects, "Deployment", "gateway")["spec"]["template"]
    pods = engine_pod_specs(objects)
    assert selects({"matchLabels": service["spec"]["selector"]}, gateway_pod["metadata"]["labels"])
    assert not any(selects({"matchLabels": service["spec"]["selector"]}, p["metadata"]["labels"]) for p in pods.values())
    assert service["spec"]["type"] == "ClusterIP"
    policy = one(objects, "NetworkPolicy")["spec"]
    assert all(selects(policy["podSelector"], p["metadata"]["labels"]) for p in pods.values())
    assert not selects(policy["podSelector"], gateway_pod["metadata"]["labels"])
    to_api, between_engines = policy["ingress"]
    assert selects(to_api["from"][0]["podSelector"], gateway_pod["metadata"]["labels"])
    assert to_api["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert all(selects(between_engines["from"][0]["podSelector"], p["metadata"]["labels"]) for p in pods.values())
    assert not selects(between_engines["from"][0]["podSelector"], gateway_pod["metadata"]["labels"])


def test_probes_of_the_gateway_are_smgs_own():
    container = one(rendered("h100x4", "basic"), "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": gateway_launcher.READINESS_PATH, "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": "http"}


# ---- the data -----------------------------------------------------------------------------------

def test_a_bad_kubernetes_setting_is_refused_with_its_file_and_path(tmp_path):
    folder = tmp_path / "presets"
    shutil.copytree(ROOT / "presets", folder)
    text = (folder / "kubernetes.yaml").read_text().replace("shm_size: 32Gi", "shm_size: 32GB")
    (folder / "kubernetes.yaml").write_text(text)
    with pytest.raises(render.RenderError, match=r"kubernetes.yaml: shm_size: '32GB': expected a size such as 400Gi"):
        render.load_data(folder)


def test_the_image_registry_prefixes_both_images():
    data = copy.deepcopy(DATA)
    data["kubernetes"]["image_registry"] = "registry.example.com/llm/"
    objects = objects_of(k8s.render_files(data, k8s.resolve(data, "h100x4", "basic"), "test"))
    images = sorted(p["spec"]["containers"][0]["image"] for p in
                    [*engine_pod_specs(objects).values(), one(objects, "Deployment", "gateway")["spec"]["template"]])
    assert images == ["registry.example.com/llm/llama31-sglang-bundle:sglang-0.5.23-cuda",
                      "registry.example.com/llm/llama31-sglang-gateway:smg-1.13.0"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here to run its built-in kustomize")
def test_the_site_overlay_in_the_docs_builds_and_validates(tmp_path):
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    section = text[text.index("## A site overlay"):]
    overlay = section[section.index("```yaml\n") + len("```yaml\n"):section.index("```\n", section.index("```yaml"))]
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    (tmp_path / "my-site").mkdir()
    (tmp_path / "my-site" / "kustomization.yaml").write_text(overlay)
    built = subprocess.run(["kubectl", "kustomize", str(tmp_path / "my-site")], capture_output=True, text=True,
                           timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    objects = list(yaml.safe_load_all(built.stdout))
    assert k8s.validate_objects(objects) == []
    assert {o["metadata"].get("namespace") for o in objects} == {"llm"}
    pods = [*engine_pod_specs(objects).values(), one(objects, "Deployment", "gateway")["spec"]["template"]]
    assert all(p["spec"]["containers"][0]["image"].startswith("registry.example.com/llm/") for p in pods)
    assert one(objects, "PersistentVolumeClaim")["spec"]["storageClassName"] == "nfs-client"
    assert one(objects, "RoleBinding")["subjects"][0]["namespace"] == "llm"
