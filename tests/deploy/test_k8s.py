"""deploy/k8s: rendered with ``kubectl kustomize``, validated offline against the Kubernetes schemas
(kubernetes-validate bundles them), and checked against the app: probe paths are real routes that
answer without an API key, ports agree with the image and the settings, the HPA, PDB, security
context and Secret-sourced keys are what the README promises.

Without kubectl the renderer in ``kustomize_lite`` stands in; where kubectl exists, a test checks
that both render the same resources.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

from .kustomize_lite import normalize_hashes
from .kustomize_lite import render as render_lite

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KSERVE = K8S / "kserve" / "inferenceservice.yaml"
# The oldest Kubernetes we claim (HPA autoscaling/v2 and PDB policy/v1 are GA long before) and the
# newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29.0", max(kubernetes_validate.utils.all_versions(),
                              key=lambda v: tuple(map(int, v.split(".")))))
KUBECTL = shutil.which("kubectl")
IMAGE_UID = 10001  # Dockerfile: USER 10001:10001


def _kubectl_render() -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(K8S)], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return _kubectl_render() if KUBECTL else render_lite(K8S)


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in pod_spec["containers"] if c["name"] in ("gradserve", "kserve-container")]
    return c


def _validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.fixture(scope="module")
def app_routes() -> dict[str, set[str]]:
    """Method -> path templates of every route, from the app's OpenAPI document (the public view;
    FastAPI's ``app.routes`` holds lazily expanded routers)."""
    app = create_app(Settings(api_keys=["k8s-test-key"]))
    routes: dict[str, set[str]] = {}
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            routes.setdefault(method.upper(), set()).add(path)
    return routes


# ---------------------------------------------------------------- rendering and schemas
def test_renders_the_documented_resources(rendered):
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    for d in rendered:
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gradserve"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_resource_validates_against_the_kubernetes_schema(rendered, version):
    for doc in rendered:
        _validate(doc, version)


def test_the_validator_rejects_a_broken_manifest(rendered):
    """The schema check can fail: a typo'd field, a wrong type and a missing required field."""
    dep = _one(rendered, "Deployment")
    typo = copy.deepcopy(dep)
    c = _container(typo["spec"]["template"]["spec"])
    c["livenesProbe"] = c.pop("livenessProbe")
    wrong_type = copy.deepcopy(dep)
    _container(wrong_type["spec"]["template"]["spec"])["ports"][0]["containerPort"] = "8000"
    missing = copy.deepcopy(dep)
    del missing["spec"]["selector"]
    for bad in (typo, wrong_type, missing):
        with pytest.raises(kubernetes_validate.ValidationError):
            _validate(bad, K8S_VERSIONS[-1])


@pytest.mark.skipif(KUBECTL is None, reason="needs kubectl to compare the fallback renderer with")
def test_fallback_renderer_matches_kubectl():
    generated = [g["name"] for g in yaml.safe_load((K8S / "kustomization.yaml").read_text())
                 ["configMapGenerator"]]
    assert normalize_hashes(render_lite(K8S), generated) == normalize_hashes(_kubectl_render(), generated)


# ---------------------------------------------------------------- the Deployment against the app
def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in container}


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (p,) = [p for p in container["ports"] if p.get("name") == port]
    return p["containerPort"]


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_container_port_is_the_image_and_settings_port(rendered):
    c = _container(_one(rendered, "Deployment")["spec"]["template"]["spec"])
    (port,) = c["ports"]
    assert port["name"] == "http" and port["containerPort"] == 8000
    dockerfile = _dockerfile()
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.M)
    assert '"--port", "8000"' in dockerfile and '"--host", "0.0.0.0"' in dockerfile
    assert Settings.model_fields["port"].default == 8000


def test_probes_hit_real_routes_that_answer_without_a_key(rendered, app_routes):
    c = _container(_one(rendered, "Deployment")["spec"]["template"]["spec"])
    probes = _probes(c)
    assert {"livenessProbe", "readinessProbe"} <= set(probes)
    # API keys are configured (the Deployment requires them); probes send none and must get 200.
    with TestClient(create_app(Settings(api_keys=["k8s-test-key"]))) as client:
        for name, probe in probes.items():
            get = probe["httpGet"]
            assert get["path"] in app_routes["GET"], f"{name}: {get['path']} is not a GET route"
            assert _port_number(c, get["port"]) == 8000
            r = client.get(get["path"])
            assert r.status_code == 200, (name, r.status_code, r.text)
        assert client.post("/v1/grad", json={}).status_code == 401  # the key is really required
    assert probes["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_readiness_fails_while_draining(rendered):
    """The readiness path answers 503 once the app stops being ready (SIGTERM), as probes need."""
    c = _container(_one(rendered, "Deployment")["spec"]["template"]["spec"])
    path = c["readinessProbe"]["httpGet"]["path"]
    app = create_app(Settings(api_keys=[]))
    with TestClient(app) as client:
        assert client.get(path).status_code == 200
        app.state.ready = False
        assert client.get(path).status_code == 503


def test_prometheus_annotations_point_at_the_metrics_route(rendered, app_routes):
    dep = _one(rendered, "Deployment")
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] in app_routes["GET"]
    assert int(ann["prometheus.io/port"]) == _port_number(_container(dep["spec"]["template"]["spec"]), "http")
    with TestClient(create_app(Settings(api_keys=["k8s-test-key"]))) as client:
        r = client.get(ann["prometheus.io/path"])
        assert r.status_code == 200 and "gradserve_http_requests_total" in r.text


def test_service_routes_to_the_named_container_port(rendered):
    svc, dep = _one(rendered, "Service"), _one(rendered, "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert _port_number(_container(dep["spec"]["template"]["spec"]), port["targetPort"]) == 8000


def test_hpa_is_autoscaling_v2_on_cpu_for_the_deployment(rendered):
    hpa, dep = _one(rendered, "HorizontalPodAutoscaler"), _one(rendered, "Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", dep["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Utilization is relative to the request: without a CPU request the HPA cannot compute it.
    c = _container(dep["spec"]["template"]["spec"])
    assert "cpu" in c["resources"]["requests"] and "memory" in c["resources"]["limits"]


def test_pdb_selects_the_pods_and_leaves_room_to_drain(rendered):
    pdb, dep, hpa = _one(rendered, "PodDisruptionBudget"), _one(rendered, "Deployment"), \
        _one(rendered, "HorizontalPodAutoscaler")
    assert pdb["apiVersion"] == "policy/v1"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a node drain can evict one


def _check_security(pod_spec: dict[str, Any]) -> None:
    pod_sc = pod_spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == IMAGE_UID and pod_sc["runAsUser"] != 0
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    sc = _container(pod_spec)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod_spec["automountServiceAccountToken"] is False
    # A read-only root needs a writable /tmp (the CLI's metrics directory with several workers).
    mounts = {m["mountPath"]: m["name"] for m in _container(pod_spec).get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod_spec.get("volumes", [])}
    assert "emptyDir" in vols[mounts["/tmp"]]


def test_runs_as_the_images_non_root_user(rendered):
    _check_security(_one(rendered, "Deployment")["spec"]["template"]["spec"])
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in _dockerfile()


def _check_keys_from_secret(container: dict[str, Any]) -> None:
    (keys,) = [e for e in container["env"] if e["name"] == "GRADSERVE_API_KEYS"]
    assert "value" not in keys
    ref = keys["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "gradserve-api-keys" and ref["key"] == "api-keys"
    assert ref.get("optional", False) is False  # no Secret, no pod: never serve unauthenticated


def test_api_keys_come_from_a_secret_only(rendered):
    dep, cm = _one(rendered, "Deployment"), _one(rendered, "ConfigMap")
    c = _container(dep["spec"]["template"]["spec"])
    _check_keys_from_secret(c)
    assert "GRADSERVE_API_KEYS" not in cm["data"]
    assert not any(d["kind"] == "Secret" for d in rendered)  # keys are never in the repository
    (src,) = c["envFrom"]
    assert src["configMapRef"]["name"] == cm["metadata"]["name"]


def test_configmap_settings_are_real_settings(rendered):
    """Every GRADSERVE_* key names a setting (a typo would be silently ignored) and parses."""
    data = _one(rendered, "ConfigMap")["data"]
    prefix = Settings.model_config["env_prefix"]
    fields = {prefix + name.upper() for name in Settings.model_fields}
    ours = {k: v for k, v in data.items() if k.startswith(prefix)}
    assert ours and set(ours) <= fields, sorted(set(ours) - fields)
    s = Settings(**{k[len(prefix):].lower(): v for k, v in ours.items()})
    assert s.max_concurrency == 2 and s.workers == 1 and s.log_format == "json"


# ---------------------------------------------------------------- KServe example
_KSERVE_ONLY = {"minReplicas", "maxReplicas", "scaleMetric", "scaleMetricType", "scaleTarget",
                "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher",
                "labels", "annotations", "deploymentStrategy", "autoScaling"}


@pytest.fixture(scope="module")
def inference_service() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(KSERVE.read_text()) if d]
    return doc


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kserve_predictor_is_a_valid_pod_spec(inference_service, version):
    """KServe's CRD schema is not bundled; its predictor is a PodSpec plus KServe's scaling keys,
    so the rest is validated as a Pod's spec."""
    assert inference_service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert inference_service["kind"] == "InferenceService"
    pred = inference_service["spec"]["predictor"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kserve-check"},
           "spec": {k: v for k, v in pred.items() if k not in _KSERVE_ONLY}}
    _validate(pod, version)


def test_kserve_example_matches_the_app(inference_service, app_routes):
    pred = inference_service["spec"]["predictor"]
    _check_security(pred)
    c = _container(pred)
    _check_keys_from_secret(c)
    assert [p["containerPort"] for p in c["ports"]] == [8000]
    for name, probe in _probes(c).items():
        assert probe["httpGet"]["path"] in app_routes["GET"], name
        assert _port_number(c, probe["httpGet"]["port"]) == 8000
    # The Open Inference Protocol routes KServe clients call are served by the same image.
    assert {"/v2/health/ready", "/v2/models/{model_name}"} <= app_routes["GET"]
    assert "/v2/models/{model_name}/infer" in app_routes["POST"]
