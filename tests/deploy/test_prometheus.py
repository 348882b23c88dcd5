"""Prometheus config and alert rules: promtool accepts them and the alerts' unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.conftest import ALERTS, COMPOSE, PROMETHEUS_CONFIG, load_yaml


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)


def test_promtool_check_rules(promtool: str) -> None:
    proc = run([promtool, "check", "rules", str(ALERTS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_unit_tests(promtool: str) -> None:
    proc = run([promtool, "test", "rules", "alerts.test.yml"], cwd=ALERTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_check_config(promtool: str, tmp_path: Path) -> None:
    # The config names its rule file by the in-container path; check a copy pointing at the repo.
    text = PROMETHEUS_CONFIG.read_text(encoding="utf-8").replace("/etc/prometheus/alerts.yml", str(ALERTS))
    path = tmp_path / "prometheus.yml"
    path.write_text(text, encoding="utf-8")
    proc = run([promtool, "check", "config", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_required_alerts_exist_with_severity_and_summary() -> None:
    rules = {r["alert"]: r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r}
    for needed, metric in [
        ("CondgenHighErrorRate", "condgen_requests_total"),
        ("CondgenQueueSaturated", "condgen_queue_depth"),
        ("CondgenLatencyP99OverObjective", "condgen_request_duration_seconds_bucket"),
    ]:
        assert needed in rules, f"missing alert {needed}"
        assert metric in rules[needed]["expr"]
    for name, rule in rules.items():
        assert rule.get("for"), f"{name} fires on a single evaluation: give it a `for`"
        assert rule["labels"]["severity"] in {"page", "warn"}, name
        assert rule["annotations"]["summary"], name


def test_scrape_config_discovers_the_compose_service_by_dns() -> None:
    cfg = load_yaml(PROMETHEUS_CONFIG)
    compose = load_yaml(COMPOSE)
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "condgen"]
    (sd,) = job["dns_sd_configs"]
    assert sd["type"] == "A"
    assert sd["port"] == 8000
    assert sd["names"]
    assert all(name in compose["services"] for name in sd["names"])
    assert cfg["rule_files"] == ["/etc/prometheus/alerts.yml"]
    # The rule file is where the compose stack mounts it.
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
