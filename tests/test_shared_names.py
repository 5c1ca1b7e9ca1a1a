"""The names several files must spell alike (bundle/names.py) meet where they are used: the gateway
container reads the key-file variables the compose file and the Kubernetes manifest give it, the
Kubernetes probe asks the path the gateway's own healthcheck asks, `make status` finds the gateway
service a REPLICAS= file has, and the Kubernetes cache volume is where the image's HF_HOME points."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml
from paths import ROOT

from bundle import deploy, dockerfiles, k8s, render
from launcher import gateway

DATA = render.load_data()


def gateway_objects() -> list[dict]:
    files = k8s.render_files(DATA, k8s.resolve(DATA, "h100x8", "basic", 2), "test")
    return [obj for obj in yaml.safe_load_all(files["gateway.yaml"]) if obj]


def gateway_container() -> dict:
    [deployment] = [obj for obj in gateway_objects() if obj["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def compose_services(tmp_path, replicas: int, **params) -> dict:
    deployment = render.resolve(DATA, "h100x4", "throughput-fp8", replicas)
    text = render.render(DATA, deployment, render.Params(replicas=replicas, **params), tmp_path / "c.yml", "t")
    return yaml.safe_load(text)["services"]


def in_secrets_folder(tmp_path, environment: dict, contents: dict) -> dict:
    """The environment as the container sees it, /run/secrets/NAME pointing at a file holding contents[NAME]."""
    result = {}
    for variable, path in environment.items():
        name = path.rsplit("/", 1)[1]
        (tmp_path / name).write_text(contents[name] + "\n")
        result[variable] = str(tmp_path / name)
    return result


def test_the_gateway_reads_the_keys_the_compose_file_hands_it(tmp_path):
    services = compose_services(tmp_path, 2, api_key_file="secrets/api_key", admin_api_key_file="secrets/admin")
    environ = in_secrets_folder(tmp_path, services[deploy.GATEWAY_SERVICE]["environment"],
                                {"api_key": "sk-client", "admin_api_key": "sk-control"})
    assert gateway.gateway_keys(environ) == ("sk-client", "sk-control")


def test_the_gateway_reads_the_key_the_kubernetes_manifest_hands_it(tmp_path):
    environment = {e["name"]: e["value"] for e in gateway_container()["env"] if "value" in e}
    environ = in_secrets_folder(tmp_path, environment, {"api_key": "sk-client"})
    api_key, admin_key = gateway.gateway_keys(environ)
    assert api_key == "sk-client" and admin_key not in ("", "sk-client")


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.paths = []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_the_kubernetes_readiness_probe_asks_what_the_gateway_healthcheck_asks():
    server = Recorder()
    try:
        assert gateway.main(["--healthcheck", "--port", str(server.server_address[1])], environ={}) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert [gateway_container()["readinessProbe"]["httpGet"]["path"]] == server.paths == ["/readiness"]


def test_make_status_finds_the_gateway_service_only_in_a_replicas_file(tmp_path):
    assert deploy.GATEWAY_SERVICE in compose_services(tmp_path, 2, api_key_file="secrets/api_key")
    assert deploy.GATEWAY_SERVICE not in compose_services(tmp_path, 1)


def test_the_kubernetes_model_cache_is_mounted_at_the_images_hf_home():
    files = k8s.render_files(DATA, k8s.resolve(DATA, "h100x4", "basic"), "test")
    [engine] = [obj for obj in yaml.safe_load_all(files["engine.yaml"]) if obj and obj["kind"] == "Deployment"]
    [container] = engine["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    dockerfile = dockerfiles.generate(DATA)["Dockerfile"]
    assert f"HF_HOME={mounts['model-cache']}" in dockerfile
    assert (ROOT / "Dockerfile").read_text() == dockerfile
