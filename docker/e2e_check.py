"""Checks of the running compose stack, for docker/e2e.sh. Standard library only.

Talks to the published ports on 127.0.0.1 only: the load balancer (nginx) and Prometheus.
Prints one PASS/FAIL line per check and a closing "e2e-check: N passed, M failed" line; exits
non-zero when any check failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Grafana's interval variables, replaced as Grafana would for a 5 s scrape interval
# ($__rate_interval = max(4 x scrape interval, step + scrape interval)).
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def report(self, ok: bool, name: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'}: {name}{' - ' + detail if detail else ''}", flush=True)
        return ok


def http(
    method: str, url: str, body: Any = None, accept: str = "image/png", timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", accept)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        return 0, {}, str(err).encode()


def prom_query(prom: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, _, body = http("GET", url, accept="application/json")
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise RuntimeError(str(doc))
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    values = [float(r["value"][1]) for r in result]
    return [v for v in values if math.isfinite(v)]


def panel_queries(dashboard: Path) -> list[tuple[str, str]]:
    """(panel title + refId, PromQL with Grafana's variables filled in) for every panel target."""
    doc = json.loads(dashboard.read_text(encoding="utf-8"))
    panels = list(doc.get("panels", []))
    # Rows may nest panels.
    for p in list(panels):
        panels.extend(p.get("panels", []))
    out = []
    for p in panels:
        for t in p.get("targets", []):
            expr = t.get("expr")
            if not expr:
                continue
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((f"{p['title']} [{t.get('refId', '?')}]", expr))
    return out


def wait_until(deadline: float, fn: Any, interval: float = 2.0) -> Any:
    """Call fn until it returns a truthy value or the deadline passes; returns the last value."""
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def generate_requests(models: list[dict[str, Any]], rounds: int) -> list[dict[str, Any]]:
    reqs = []
    for i in range(rounds):
        for card in models:
            body: dict[str, Any] = {"model": card["name"], "seed": i, "n": 1 + i % 4}
            if card.get("labels"):
                body["label"] = i % len(card["labels"])
            reqs.append(body)
    return reqs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lb", default="http://127.0.0.1:8080")
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--dashboard", type=Path, default=Path("docker/grafana/dashboards/condgen.json"))
    ap.add_argument("--load-seconds", type=float, default=15.0)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=180.0, help="Overall budget for waits, seconds.")
    args = ap.parse_args()
    checks = Checks()
    deadline = time.monotonic() + args.timeout
    lb, prom = args.lb.rstrip("/"), args.prometheus.rstrip("/")

    # 1. Every replica ready behind the balancer: Prometheus finds them all, and /readyz through
    #    the balancer answers 200 many times in a row (round robin reaches each replica).
    def all_up() -> bool:
        try:
            res = prom_query(prom, 'up{job="condgen"} == 1')
        except Exception:
            return False
        return len(res) >= args.replicas

    checks.report(
        bool(wait_until(deadline, all_up)),
        f"Prometheus discovers {args.replicas} condgen replicas by DNS and scrapes them (up == 1)",
    )

    def ready_streak() -> bool:
        return all(http("GET", f"{lb}/readyz")[0] == 200 for _ in range(4 * args.replicas))

    if not checks.report(bool(wait_until(deadline, ready_streak)), "GET /readyz through the load balancer"):
        status, _, body = http("GET", f"{lb}/readyz", accept="application/json")
        print(f"  /readyz: {status} {body[:500]!r}")

    status, _, body = http("GET", f"{lb}/models", accept="application/json")
    models: list[dict[str, Any]] = []
    if status == 200:
        doc = json.loads(body)
        entries = doc.get("models", doc) if isinstance(doc, dict) else doc
        # Each entry is {"name", "status", "card": {...}}; only models that serve are exercised.
        models = [e.get("card", e) for e in entries if e.get("status", "ready") == "ready"]
    if not checks.report(
        status == 200 and len(models) > 0, "GET /models lists the zoo", f"{len(models)} models"
    ):
        print(f"  /models: {status} {body[:500]!r}")
        return finish(checks)
    print("  models: " + ", ".join(m["name"] for m in models))

    first = models[0]

    def invalid(card: dict[str, Any]) -> dict[str, Any]:
        """A request the service must refuse with 422: a label the model does not have."""
        labels = card.get("labels")
        return {"model": card["name"], "seed": 1, "n": 1, "label": len(labels) + 5 if labels else 0}

    # 2. Client errors are answered with the JSON error shape. Sent before the load as well as
    #    during it, so the error counters exist before they grow and the error panel has a rate.
    codes = []
    shaped = True
    for _ in range(2 * args.replicas):
        status, _, data = http("POST", f"{lb}/generate", invalid(first), accept="application/json")
        codes.append(status)
        try:
            shaped = shaped and "error" in json.loads(data or b"{}")
        except ValueError:
            shaped = False
    checks.report(
        set(codes) == {422} and shaped, "invalid request answers 422 with the JSON error", str(codes)
    )
    status, _, _ = http(
        "POST", f"{lb}/generate", {"model": "no-such-model", "n": 1}, accept="application/json"
    )
    checks.report(status == 404, "unknown model answers 404", str(status))

    # 3. Real generation through the balancer, concurrent so batches form; one invalid request
    #    per model and round keeps the error rate above zero.
    reqs = generate_requests(models, rounds=8)
    bad_reqs = [invalid(card) for card in models]
    ok = bad = refused = 0
    load_end = time.monotonic() + args.load_seconds
    sent = 0
    failures: list[str] = []
    with cf.ThreadPoolExecutor(args.concurrency) as pool:
        while time.monotonic() < load_end or sent == 0:
            for status, _headers, data in pool.map(lambda b: http("POST", f"{lb}/generate", b), reqs):
                sent += 1
                if status == 200 and data.startswith(PNG_MAGIC):
                    ok += 1
                else:
                    bad += 1
                    if len(failures) < 3:
                        failures.append(f"{status} {data[:200]!r}")
            refused += sum(http("POST", f"{lb}/generate", b)[0] == 422 for b in bad_reqs)
    detail = f"{ok}/{sent} ok over {args.load_seconds:.0f} s, {refused} invalid ones refused"
    checks.report(
        bad == 0 and ok > 0,
        "POST /generate through the load balancer returns PNGs",
        detail + (f"; e.g. {failures}" if failures else ""),
    )

    # Same request, many times: identical bytes whichever replica served it.
    body_same: dict[str, Any] = {"model": first["name"], "seed": 1234, "n": 4}
    if first.get("labels"):
        body_same["label"] = 1 % len(first["labels"])
    outs = {http("POST", f"{lb}/generate", body_same)[2] for _ in range(4 * args.replicas)}
    checks.report(
        len(outs) == 1, "same request gives the same bytes across replicas", f"{len(outs)} distinct"
    )

    # 4. The balancer spread the load: every replica counted requests.
    def per_replica() -> list[dict[str, Any]]:
        try:
            res = prom_query(prom, 'sum by (instance) (condgen_requests_total{job="condgen"}) > 0')
        except Exception:
            return []
        return res if len(res) >= args.replicas else []

    spread = wait_until(deadline, per_replica)
    checks.report(
        len(spread) >= args.replicas,
        "every replica served requests through the balancer",
        ", ".join(f"{r['metric'].get('instance')}={float(r['value'][1]):.0f}" for r in spread),
    )

    # 5. Every dashboard panel's PromQL returns data from this Prometheus.
    queries = panel_queries(args.dashboard)
    checks.report(len(queries) > 0, f"dashboard {args.dashboard.name} has panel queries", str(len(queries)))
    for title, expr in queries:
        while True:
            try:
                res = prom_query(prom, expr)
                vals = finite_values(res)
                # A rate over the load just sent must be above zero somewhere; gauges such as
                # queue depth may rightly read 0.
                ok_panel = bool(vals) and (max(vals) > 0 if "rate(" in expr else True)
                detail = f"{len(res)} series, e.g. {[round(v, 4) for v in vals[:3]]}"
            except Exception as err:
                ok_panel, detail = False, f"error: {err}"
            if ok_panel or time.monotonic() >= deadline:
                break
            time.sleep(3.0)
        checks.report(ok_panel, f"panel {title}", detail)
        if not ok_panel:
            print(f"  expr: {expr}")

    # 6. Prometheus loaded the alert rules and evaluates them without error.
    status, _, body = http("GET", f"{prom}/api/v1/rules", accept="application/json")
    rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]] if status == 200 else []
    unhealthy = [r["name"] for r in rules if r.get("health") not in ("ok", "unknown")]
    checks.report(
        len(rules) > 0 and not unhealthy,
        "Prometheus loaded the alert rules and evaluates them",
        f"{len(rules)} rules" + (f"; unhealthy: {unhealthy}" if unhealthy else ""),
    )
    return finish(checks)


def finish(checks: Checks) -> int:
    print(f"e2e-check: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
