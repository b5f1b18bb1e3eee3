"""The Kubernetes manifests (deploy/kubernetes), rendered offline with ``kubectl kustomize`` and
validated against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields are
errors) for the oldest and newest versions we support. The ServiceMonitor is a Prometheus
Operator resource without a bundled schema: it is checked against the Service it must select.
Beyond the schemas: probes, drain timing, GPU, autoscaler and dashboards agree with the app."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.metrics import IN_FLIGHT
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["base", "overlays/gpu", "overlays/cpu"]
VERSIONS = ["1.30.0", "1.37.0"]
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed: the manifests cannot be rendered"
)


def render(path: str) -> list[dict]:
    r = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def one(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def container(docs: list[dict]) -> dict:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_core_resource_validates_against_the_schemas(rendered, version):
    _, docs = rendered
    kinds = set()
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: test_servicemonitor_scrapes_the_service
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.add(doc["kind"])
    expected = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    assert kinds == expected


def test_validation_catches_a_broken_manifest():
    dep = one(render("base"), "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, VERSIONS[-1], strict=True)


def test_probes_match_the_app(rendered):
    _, docs = rendered
    c = container(docs)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    paths = set(create_app(Settings()).openapi()["paths"])
    for probe, path in [
        ("startupProbe", "/health"),
        ("livenessProbe", "/health"),
        ("readinessProbe", "/ready"),
    ]:
        get = c[probe]["httpGet"]
        assert get["path"] == path and path in paths
        assert get["port"] in port and port[get["port"]] == int(
            env_of(c)["HOMOGRAPHY_PORT"]["value"]
        )
    # a not-ready pod leaves the endpoints within one readiness period of the drain's start
    assert c["readinessProbe"]["periodSeconds"] * c["readinessProbe"]["failureThreshold"] <= 5
    # liveness must not kill a pod that is still warming up: it answers from the first second,
    # and the startup probe gives it (period x threshold) to do so
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 10


def test_stop_fits_in_the_grace_period(rendered):
    _, docs = rendered
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(env_of(c)["HOMOGRAPHY_DRAIN_SECONDS"]["value"])
    assert drain == Settings().drain_seconds < 30  # the default fits Kubernetes' default grace
    # preStop sleep + drain + uvicorn's close of stragglers (app/cli.py: 5 s) within the grace
    assert int(pre_stop[1]) + drain + 5 <= spec["terminationGracePeriodSeconds"]


def test_runs_as_the_image_user_on_a_read_only_root(rendered):
    _, docs = rendered
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # the writable /tmp the service copies the baked Numba cache to (and uploads spool to)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_settings_and_the_api_key_secret(rendered):
    path, docs = rendered
    env = env_of(container(docs))
    assert set(env) <= {f"HOMOGRAPHY_{n.upper()}" for n in Settings.model_fields}
    ref = env["HOMOGRAPHY_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "homography-api-key" and ref["key"] == "api-key"
    assert ref["optional"] is (path != "overlays/gpu")  # production fails closed


def test_gpu_per_pod_and_resource_requests(rendered):
    path, docs = rendered
    res = container(docs)["resources"]
    assert {"cpu", "memory"} <= set(res["requests"])
    if path == "overlays/cpu":
        assert "nvidia.com/gpu" not in json.dumps(docs)
    else:
        assert res["limits"]["nvidia.com/gpu"] == 1 == res["requests"]["nvidia.com/gpu"]


def test_service_pdb_and_servicemonitor_select_the_pods(rendered):
    _, docs = rendered
    dep = one(docs, "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = one(docs, "Service")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= {
        p["name"] for p in container(docs)["ports"]
    }
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_servicemonitor_scrapes_the_service(rendered):
    _, docs = rendered
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_autoscaler_scales_the_deployment_on_the_in_flight_gauge(rendered):
    path, docs = rendered
    hpa, dep = one(docs, "HorizontalPodAutoscaler"), one(docs, "Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    assert "replicas" not in dep["spec"]  # the HPA owns the count
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == IN_FLIGHT._name
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    if path != "overlays/cpu":
        assert hpa["spec"]["minReplicas"] >= 2  # one pod can drain while another serves


def test_prometheus_adapter_serves_the_hpa_metric():
    values = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == IN_FLIGHT._name
    assert rule["seriesQuery"].startswith(IN_FLIGHT._name + "{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Metric names the app serves on /metrics after a little traffic."""
    solve = {"src": [[[0, 0], [1, 0], [1, 1], [0, 1]]], "dst": [[[0, 0], [2, 0], [2, 2], [0, 2]]]}
    with TestClient(create_app(Settings(log_json=False, log_level="warning"))) as c:
        c.post("/solve", json=solve)
        text = c.get("/metrics").text
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def test_dashboard_queries_only_exported_metrics(exported):
    docs = render("monitoring")
    dash = json.loads(one(docs, "ConfigMap")["data"]["grafana-dashboard.json"])
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bhomography_[a-z_]+", e)}
    assert used, "the dashboard queries the service's metrics"
    assert used <= exported, used - exported
    for name in ("homography_requests_in_flight", "homography_ready"):
        assert name in used
