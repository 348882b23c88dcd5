"""The Grafana dashboard: required panels, metric names the service really exports, and PromQL
that Prometheus' own parser accepts (each panel query is wrapped as a recording rule and checked
with promtool). docker/e2e.sh additionally runs every query against a live Prometheus."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ALERTS, DASHBOARD, DOCKER, load_yaml
from tests.deploy.promql import metric_names

# DESIGN.md's metric names, as exposed (counters with _total, histograms with their series).
DESIGN_METRICS = {
    "condgen_requests_total": "counter",
    "condgen_request_duration_seconds": "histogram",
    "condgen_queue_wait_seconds": "histogram",
    "condgen_inference_duration_seconds": "histogram",
    "condgen_batch_size": "histogram",
    "condgen_queue_depth": "gauge",
    "condgen_model_ready": "gauge",
    "condgen_images_generated_total": "counter",
}
# Series Prometheus itself adds to every scrape target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Grafana's built-in interval variables, as Grafana would fill them for a 5 s scrape interval.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def _series(name: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def design_series() -> set[str]:
    out: set[str] = set()
    for name, kind in DESIGN_METRICS.items():
        out |= _series(name, kind)
    return out


def service_series() -> set[str]:
    """Series names the service's own metrics registry exposes (read from its code)."""
    metrics = pytest.importorskip("service.metrics")
    names: set[str] = set()
    for family in metrics.Metrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        else:
            names |= _series(family.name, family.type)
    return names


def panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in doc["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def queries() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(p["title"], t["expr"]) for p in panels(doc) for t in p.get("targets", [])]


def fill(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def test_dashboard_is_grafana_json_with_unique_ids() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert doc["uid"]
    assert doc["title"]
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(doc):
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["expr"].strip()
            assert t["refId"]


@pytest.mark.parametrize(
    ("needle", "why"),
    [
        ("request rate", "request rate by model"),
        ("error", "errors by model"),
        ("p50", "latency quantiles"),
        ("queue wait", "queue wait vs inference"),
        ("batch size", "batch size"),
        ("queue depth", "queue depth"),
        ("replicas up", "replicas up"),
    ],
)
def test_required_panels_present(needle: str, why: str) -> None:
    titles = [t.lower() for t, _ in queries()]
    assert any(needle in t for t in titles), f"no panel for {why}"


def test_latency_panel_has_p50_p95_p99_over_the_request_histogram() -> None:
    exprs = [e for t, e in queries() if "p50" in t.lower()]
    joined = " ".join(exprs)
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}," in joined
    assert all("condgen_request_duration_seconds_bucket" in e for e in exprs)
    assert all("le" in e.split("by", 1)[1] for e in exprs), "quantiles need `by (le, ...)`"


def test_queue_and_inference_time_share_a_panel() -> None:
    exprs = " ".join(e for t, e in queries() if "queue wait" in t.lower())
    assert "condgen_queue_wait_seconds" in exprs
    assert "condgen_inference_duration_seconds" in exprs


def test_rates_use_grafana_rate_interval() -> None:
    for title, expr in queries():
        if "rate(" in expr:
            assert "[$__rate_interval]" in expr, f"{title}: use $__rate_interval in rate()"


def test_panel_queries_read_only_design_metrics() -> None:
    allowed = design_series() | SCRAPE_SERIES
    for title, expr in queries():
        unknown = metric_names(fill(expr)) - allowed
        assert not unknown, f"panel {title!r} reads metrics DESIGN.md does not define: {unknown}"


def test_panel_and_alert_metrics_are_exported_by_the_service() -> None:
    exported = service_series() | SCRAPE_SERIES
    exprs = [(t, fill(e)) for t, e in queries()]
    exprs += [(r["alert"], r["expr"]) for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]
    for name, expr in exprs:
        missing = metric_names(expr) - exported
        assert not missing, f"{name!r} reads series the service does not export: {missing}"
    # And the service exports everything DESIGN.md promises.
    assert design_series() <= exported


def test_panel_queries_parse_with_prometheus(promtool: str, tmp_path: Path) -> None:
    """promtool cannot check a bare query, but it parses every rule's expr with Prometheus' parser."""
    rules = [
        {"record": f"condgen:dashboard_query_{i}", "expr": fill(expr)}
        for i, (_, expr) in enumerate(queries())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules)} rules found" in proc.stdout


def test_parse_check_rejects_bad_promql(promtool: str, tmp_path: Path) -> None:
    """The check above is real: a malformed query fails it."""
    path = tmp_path / "bad.yml"
    bad = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (model (rate(x[1m]))"}]}]}
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    ds = load_yaml(DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (var,) = [v for v in doc["templating"]["list"] if v["type"] == "datasource"]
    assert var["current"]["value"] == source["uid"]
    for p in panels(doc):
        assert p["datasource"]["uid"] == "${" + var["name"] + "}"
    providers = load_yaml(DOCKER / "grafana" / "provisioning" / "dashboards" / "condgen.yaml")
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            "histogram_quantile(0.99, sum by (le) (rate(condgen_request_duration_seconds_bucket[5m])))",
            {"condgen_request_duration_seconds_bucket"},
        ),
        (
            'sum by (model) (rate(condgen_requests_total{status=~"5..|429"}[1m])) / on(model) x',
            {
                "condgen_requests_total",
                "x",
            },
        ),
        ('up{job="condgen"} == 0 or absent(condgen_queue_depth offset 5m)', {"up", "condgen_queue_depth"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
