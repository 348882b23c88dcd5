"""Kubernetes manifests: validated against the API's JSON schemas (kubernetes-validate ships them,
so this runs offline) in strict mode, rendered by `kubectl kustomize` as `kubectl apply -k` would,
plus the wiring between the objects. No cluster is involved."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import K8S, REPO, load_yaml, load_yaml_all

kv = pytest.importorskip("kubernetes_validate")

# The oldest Kubernetes these manifests target (autoscaling/v2, policy/v1 are GA since 1.23/1.21)
# and the newest the installed schemas know.
VERSIONS = ["1.29.0", kv.latest_version()]
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def objects() -> dict[str, dict[str, Any]]:
    out = {}
    for path in MANIFESTS:
        for doc in load_yaml_all(path):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schema(path: Path, version: str) -> None:
    for doc in load_yaml_all(path):
        kv.validate(doc, version, strict=True)


def test_validation_is_real() -> None:
    """A typo and a wrong type are both rejected, so the schema test above can fail."""
    deployment = objects()["Deployment/condgen"]
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(kv.ValidationError):
        kv.validate(typo, VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(wrong_type, VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (c,) = obj["spec"]["template"]["spec"]["containers"]
    return c


def test_deployment_probes_resources_and_security() -> None:
    dep = objects()["Deployment/condgen"]
    c = container(dep)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    pod_sc = dep["spec"]["template"]["spec"]["securityContext"]
    sc = c["securityContext"]
    assert pod_sc["runAsNonRoot"]
    assert sc["runAsNonRoot"]
    assert pod_sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # The only writable path is /tmp.
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/tmp"]
    assert dep["spec"]["replicas"] >= 2


def test_deployment_matches_the_image() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    c = container(objects()["Deployment/condgen"])
    (port,) = c["ports"]
    assert f"EXPOSE {port['containerPort']}" in dockerfile
    uid = objects()["Deployment/condgen"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert f"USER {uid}:" in dockerfile


def test_selectors_match_the_pods() -> None:
    objs = objects()
    dep = objs["Deployment/condgen"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    for selector in (
        dep["spec"]["selector"]["matchLabels"],
        objs["Service/condgen"]["spec"]["selector"],
        objs["PodDisruptionBudget/condgen"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert objs["Service/condgen"]["spec"]["ports"][0]["targetPort"] == container(dep)["ports"][0]["name"]


def test_pdb_leaves_room_for_disruption() -> None:
    objs = objects()
    pdb = objs["PodDisruptionBudget/condgen"]["spec"]
    assert pdb["minAvailable"] < objs["HorizontalPodAutoscaler/condgen"]["spec"]["minReplicas"]


def test_hpa_scales_the_deployment_on_cpu_and_queue_depth() -> None:
    objs = objects()
    hpa = objs["HorizontalPodAutoscaler/condgen"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "condgen")
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["Pods"]["pods"]["metric"]["name"] == "condgen_queue_depth"


def test_prometheus_adapter_serves_the_hpa_metric() -> None:
    objs = objects()
    config = yaml.safe_load(objs["ConfigMap/condgen-prometheus-adapter"]["data"]["config.yaml"])
    (rule,) = config["rules"]
    assert "condgen_queue_depth" in rule["seriesQuery"]
    assert rule["name"]["as"] == "condgen_queue_depth"
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    assert "<<.Series>>" in rule["metricsQuery"]
    assert "<<.LabelMatchers>>" in rule["metricsQuery"]


@pytest.fixture(scope="module")
def kubectl() -> str:
    """kubectl (Debian's kubernetes-client, which .ci/run installs): absent in CI is a failure."""
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is not installed: .ci/run installs it (apt-get install kubernetes-client)")
        pytest.skip("kubectl not installed (apt-get install kubernetes-client)")
    return path


def test_kustomize_renders_every_object_with_the_image(kubectl: str) -> None:
    """What `kubectl apply -k k8s/` would send: every manifest, the image set by kustomization.yaml,
    and every rendered object still valid for the oldest Kubernetes targeted."""
    proc = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    rendered = {
        f"{doc['kind']}/{doc['metadata']['name']}": doc
        for doc in yaml.safe_load_all(proc.stdout)
        if doc is not None
    }
    assert set(rendered) == set(objects())
    (image,) = load_yaml(K8S / "kustomization.yaml")["images"]
    assert container(rendered["Deployment/condgen"])["image"] == f"{image['newName']}:{image['newTag']}"
    for doc in rendered.values():
        kv.validate(doc, VERSIONS[0], strict=True)


def test_kustomize_render_can_fail(kubectl: str, tmp_path: Path) -> None:
    """A kustomization naming a missing manifest is refused, so the render check above can fail."""
    for path in K8S.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "hpa.yaml").unlink()
    proc = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "hpa.yaml" in proc.stderr
