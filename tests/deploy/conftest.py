"""Shared helpers for the deployment tests: repository paths and YAML loading."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = REPO / "k8s"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "condgen.json"
ALERTS = DOCKER / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
COMPOSE = DOCKER / "compose.yaml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian's `prometheus` package; docker/e2e.sh installs it)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path
