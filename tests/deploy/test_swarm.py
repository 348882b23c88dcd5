"""Static checks of the Swarm stack (docker/stack.yaml); docker/swarm-e2e.sh deploys it for real."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from service.config import Settings
from tests.deploy.conftest import DOCKER, load_yaml

STACK = DOCKER / "stack.yaml"
SWARM_PROMETHEUS = DOCKER / "prometheus" / "prometheus-swarm.yml"
# Keys `docker stack deploy` refuses (mem_limit, cpus...) or silently ignores (build, tmpfs,
# restart, depends_on...): the stack must say these through deploy.* and mounts instead.
NOT_FOR_SWARM = {
    "build",
    "cgroup_parent",
    "container_name",
    "cpus",
    "depends_on",
    "devices",
    "links",
    "mem_limit",
    "memswap_limit",
    "network_mode",
    "restart",
    "security_opt",
    "tmpfs",
    "userns_mode",
}


@pytest.fixture(scope="module")
def stack() -> dict:
    return load_yaml(STACK)


def seconds(duration: str) -> float:
    """A compose duration such as 20s, 1m30s or 500ms, in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_seconds_reads_compose_durations() -> None:
    assert seconds("20s") == 20.0
    assert seconds("1m30s") == 90.0
    assert seconds("500ms") == 0.5
    for bad in ("20", ""):
        with pytest.raises(AssertionError):
            seconds(bad)


def test_no_key_that_stack_deploy_refuses_or_ignores(stack: dict) -> None:
    for name, svc in stack["services"].items():
        assert not NOT_FOR_SWARM & set(svc), f"{name}: {sorted(NOT_FOR_SWARM & set(svc))}"


def test_every_service_uses_dns_round_robin_and_host_mode_ports(stack: dict) -> None:
    """No IPVS needed: no virtual IP, no ingress routing mesh."""
    for name, svc in stack["services"].items():
        assert svc["deploy"]["endpoint_mode"] == "dnsrr", name
        for port in svc.get("ports", []):
            assert isinstance(port, dict), f"{name}: {port} (long syntax, for mode: host)"
            assert port["mode"] == "host", f"{name}: {port}"
    assert "ports" not in stack["services"]["condgen"], "only the balancer and Prometheus publish"


def test_replicas_are_hardened_and_bounded(stack: dict) -> None:
    svc = stack["services"]["condgen"]
    assert svc["read_only"] is True
    assert [(m["type"], m["target"]) for m in svc["volumes"]] == [("tmpfs", "/tmp")]
    limits = svc["deploy"]["resources"]["limits"]
    assert {"cpus", "memory"} <= set(limits)
    default = re.fullmatch(r"\$\{CONDGEN_REPLICAS:-(\d+)\}", str(svc["deploy"]["replicas"]))
    assert default
    assert int(default.group(1)) >= 2


def test_health_is_readiness_and_a_failed_update_rolls_back(stack: dict) -> None:
    svc = stack["services"]["condgen"]
    health = svc["healthcheck"]
    assert any("/readyz" in part for part in health["test"]), "a task joins the DNS answer once ready"
    update = svc["deploy"]["update_config"]
    assert update["order"] == "start-first"
    assert update["failure_action"] == "rollback"
    # A version that never turns ready is unhealthy after start_period + retries x interval:
    # the monitor window must cover that, or the update completes before the task fails.
    unhealthy_after = seconds(health["start_period"]) + health["retries"] * seconds(health["interval"])
    assert seconds(update["monitor"]) > unhealthy_after
    rollback = svc["deploy"]["rollback_config"]
    assert rollback["order"] == "start-first"


def test_stop_grace_period_outlasts_the_drain(stack: dict) -> None:
    svc = stack["services"]["condgen"]
    drain = float(svc["environment"].get("CONDGEN_DRAIN_TIMEOUT_S", Settings().drain_timeout_s))
    assert seconds(svc["stop_grace_period"]) > drain


def test_prometheus_discovers_the_swarm_tasks_by_dns(stack: dict) -> None:
    prom = stack["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus-swarm.yml" in prom["command"]
    dockerfile = (DOCKER / "prometheus" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^COPY .*prometheus-swarm\.yml.* /etc/prometheus/$", dockerfile, re.M)
    (job,) = [j for j in load_yaml(SWARM_PROMETHEUS)["scrape_configs"] if j["job_name"] == "condgen"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["tasks.condgen"]
    assert sd["port"] == 8000


def test_balancer_retries_and_names_the_replica() -> None:
    conf = (DOCKER / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    # Tasks come and go during updates: re-resolve every second, retry a refused connection or a
    # draining replica's 503 on another one, and say which replica answered.
    assert "resolver 127.0.0.11 valid=1s" in conf
    retry = re.search(r"proxy_next_upstream ([^;]+);", conf)
    assert retry
    assert {"error", "http_503", "non_idempotent"} <= set(retry.group(1).split())
    assert "add_header X-Upstream-Addr $upstream_addr always;" in conf


def stack_config_command() -> list[str]:
    """``docker stack config`` where this docker CLI has it (23.0 and later; Debian's 20.10 lacks it)."""
    if shutil.which("docker") is None:
        pytest.skip("docker CLI not installed")
    usage = subprocess.run(["docker", "stack", "--help"], capture_output=True, text=True, check=False).stdout
    if not re.search(r"^\s+config\s", usage, re.M):
        pytest.skip("this docker CLI has no `docker stack config` (docker/swarm-e2e.sh deploys the file)")
    return ["docker", "stack", "config", "-c"]


def test_stack_file_validates_with_docker_stack_config() -> None:
    proc = subprocess.run([*stack_config_command(), str(STACK)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "endpoint_mode: dnsrr" in proc.stdout
    assert "failure_action: rollback" in proc.stdout


def test_docker_stack_config_refuses_a_compose_only_key(tmp_path: Path) -> None:
    """So the check above can fail: mem_limit is a key that `docker stack deploy` refuses."""
    bad = tmp_path / "stack.yaml"
    text = STACK.read_text(encoding="utf-8")
    bad.write_text(text.replace("    read_only: true\n", "    mem_limit: 1g\n", 1), encoding="utf-8")
    proc = subprocess.run([*stack_config_command(), str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "forbidden" in proc.stderr
