"""Static checks of the image and compose stack; docker/e2e.sh runs them for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest

from tests.deploy.conftest import COMPOSE, DOCKER, REPO, load_yaml


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


def replicas(service: dict) -> int:
    return int(service.get("deploy", {}).get("replicas", service.get("scale", 1)))


def test_service_runs_at_least_two_replicas(compose: dict) -> None:
    svc = compose["services"]["condgen"]
    assert replicas(svc) >= 2
    # Replicas cannot share a fixed host port or container name: only the balancer publishes.
    assert "ports" not in svc
    assert "container_name" not in svc
    assert "8000" in [str(p) for p in svc["expose"]]


def test_service_containers_are_hardened(compose: dict) -> None:
    svc = compose["services"]["condgen"]
    assert svc["read_only"] is True
    assert "/tmp" in svc["tmpfs"]
    assert svc["build"]["context"] == ".."
    assert svc["build"]["args"]["BASE_IMAGE"]


def test_load_balancer_proxies_to_the_service_by_its_dns_name(compose: dict) -> None:
    lb = compose["services"]["lb"]
    assert lb["ports"], "the balancer is the stack's entry point"
    conf = (DOCKER / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    assert re.search(r"set \$\w+ condgen:8000;", conf), "nginx must name the compose service"
    assert "resolver 127.0.0.11" in conf, "re-resolve through Docker's DNS so scaling needs no reload"
    assert "condgen" in compose["services"]


def test_prometheus_and_grafana_services(compose: dict) -> None:
    prom = compose["services"]["prometheus"]
    assert any(a == "--config.file=/etc/prometheus/prometheus.yml" for a in prom["command"])
    # Nobody who can reach its port may stop it (POST /-/quit) or delete its series.
    stack = load_yaml(DOCKER / "stack.yaml")["services"]["prometheus"]
    for command in (prom["command"], stack["command"]):
        assert not {"--web.enable-lifecycle", "--web.enable-admin-api"} & set(command)
    grafana = compose["services"]["grafana"]
    assert grafana["profiles"] == ["grafana"], "Grafana is optional (its image is not buildable offline)"
    for volume in grafana["volumes"] + prom["volumes"]:
        src = volume.split(":", 1)[0]
        if src.startswith("."):
            assert (DOCKER / src).exists(), f"compose mounts missing {src}"


def test_every_image_builds_from_the_base_image_argument() -> None:
    for path in [REPO / "Dockerfile", DOCKER / "nginx" / "Dockerfile", DOCKER / "prometheus" / "Dockerfile"]:
        text = path.read_text(encoding="utf-8")
        assert "ARG BASE_IMAGE=python:3.11-slim" in text, path
        froms = re.findall(r"^FROM (\S+)", text, flags=re.M)
        assert froms, path
        assert all(f == "${BASE_IMAGE}" for f in froms), (path, froms)
        assert "# syntax=" not in text, "a syntax directive would pull a frontend image from a registry"


def test_dockerfile_is_multistage_non_root_with_healthcheck(dockerfile: str) -> None:
    assert len(re.findall(r"^FROM ", dockerfile, flags=re.M)) >= 2
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    health = re.search(r"^HEALTHCHECK .*?CMD (.*)$", dockerfile, flags=re.M | re.S)
    assert health
    assert "urllib.request" in health.group(1)
    assert "/healthz" in health.group(1)
    assert "CONDGEN_MODELS_DIR=/models" in dockerfile
    assert "COPY exported/ /models/" in dockerfile
    assert "chmod -R a+rX,go-w /models" in dockerfile, "the non-root user must read every model"
    assert "COPY --from=build /models /models" in dockerfile
    assert "--workers" not in dockerfile, "one worker per container: the batcher is in-process"
    instructions = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in instructions if "torch" in line]


def test_image_installs_only_the_service_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("torch")]
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    # Everything is excluded, then only what the image needs is let back in.
    assert ignore[ignore.index("*")] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    # The serving lock is what the image installs (tests/test_locks.py: it holds no torch).
    assert allowed == {"pyproject.toml", "requirements/serve.txt", "README.md", "service", "exported"}
    assert "--require-hashes -r serve.txt" in (REPO / "Dockerfile").read_text(encoding="utf-8")


def test_scripts_are_valid_bash() -> None:
    for script in ["base-image.sh", "e2e.sh", "swarm-e2e.sh", "e2e-lib.sh"]:
        path = DOCKER / script
        # The library is sourced, not run.
        assert script == "e2e-lib.sh" or os.access(path, os.X_OK), f"{script} should be executable"
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr


def test_base_image_script_reads_the_mirror_from_apt_sources() -> None:
    text = (DOCKER / "base-image.sh").read_text(encoding="utf-8")
    assert "debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates" in text
    assert "/etc/apt/sources.list" in text
    assert "EXTERNALLY-MANAGED" in text
    assert "PIP_CERT" in text
    assert not re.search(r"https?://[\w.-]*debian", text), "the mirror must come from apt sources"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_validates_with_docker_compose() -> None:
    proc = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "--profile", "grafana", "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
