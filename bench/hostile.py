"""Hostile clients against a live service: does any of them stall it, hurt its neighbours, or
outlive a deadline? (``python -m bench.hostile``)

Per class (:mod:`bench.hostile_cases`) a fresh server is started, warmed up, and its idle resident
memory and open file descriptors read. A canary in its own process then probes ``/healthz`` and a
normal ``/generate`` every 50 ms while the class's hostile action runs for a bounded time; memory
and descriptors are sampled every 20 ms for the peak. After a short settle the server gets SIGTERM
and the time to its exit is measured. Each class is judged against the hostile-input goals:

- canary p99 <= 50 ms and its worst single probe <= 250 ms;
- normal requests all 200 (429/503 with ``Retry-After`` allowed in the overload classes);
- RSS peak <= 1.5x the idle RSS and RSS after within 10% of it;
- no 5xx but the documented ones (503 with ``Retry-After``), in answers or in ``/metrics``;
- exit within ``drain_timeout_s`` + 1 s of SIGTERM.

``python -m bench.hostile [--classes 1,2] [--seconds 10] [--models-dir exported] [--out bench/results]``
writes ``hostile.json`` and ``HOSTILE.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.hostile_cases import CASES, Case, CaseContext, CaseOptions
from bench.run import cpu_set, default_cpus
from bench.servers import LOOPBACK, REPO_ROOT, ServerProcess, condgen_spec, rss_mb

logger = logging.getLogger(__name__)

CANARY_INTERVAL_S = 0.05
CANARY_TIMEOUT_S = 5.0
SAMPLE_INTERVAL_S = 0.02
SETTLE_S = 1.0
WARMUP_REQUESTS = 20
DEFAULT_DRAIN_S = 10.0
P99_MS, WORST_MS = 50.0, 250.0
RSS_PEAK_RATIO, RSS_AFTER_RATIO = 1.5, 0.10
CRITERIA = ("canary_p99", "canary_worst", "normal", "rss", "no_5xx", "sigterm")


# ---------------------------------------------------------------------------------------- canary
async def _probe(client: httpx.AsyncClient, kind: str, model: str, seed: int) -> tuple[str, float, str]:
    t0 = time.perf_counter()
    try:
        if kind == "healthz":
            response = await client.get("/healthz")
        else:
            body = {"model": model, "label": 1, "seed": seed, "n": 1}
            response = await client.post("/generate", json=body)
        key = str(response.status_code)
        if response.status_code in (429, 503) and "retry-after" not in response.headers:
            key += "-no-RA"
    except httpx.TimeoutException:
        key = "timeout"
    except httpx.HTTPError as exc:
        key = type(exc).__name__
    return kind, (time.perf_counter() - t0) * 1000.0, key


async def _canary(
    base_url: str, model: str, max_s: float, stop: Event, ready: Event
) -> list[tuple[str, float, str]]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=base_url, timeout=CANARY_TIMEOUT_S, limits=limits) as client:
        ready.set()
        tasks: list[asyncio.Task[tuple[str, float, str]]] = []
        t0 = time.perf_counter()
        for i in range(int(max_s / CANARY_INTERVAL_S) + 1):
            if stop.is_set():
                break
            tasks.append(asyncio.create_task(_probe(client, "healthz", model, i)))
            tasks.append(asyncio.create_task(_probe(client, "generate", model, i)))
            await asyncio.sleep(max(0.0, t0 + (i + 1) * CANARY_INTERVAL_S - time.perf_counter()))
        return list(await asyncio.gather(*tasks))


def canary_main(base_url: str, model: str, max_s: float, stop: Event, ready: Event, out: Connection) -> None:
    """The canary's process: its own event loop, so hostile clients cannot delay its probes."""
    out.send(asyncio.run(_canary(base_url, model, max_s, stop, ready)))
    out.close()


# -------------------------------------------------------------------------------------- sampling
def open_fds(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


class Sampler(threading.Thread):
    """RSS (MiB) and open fds of the server every 20 ms, bounded by ``max_s``."""

    def __init__(self, pid: int, max_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.max_samples = pid, int(max_s / SAMPLE_INTERVAL_S) + 1
        self.rss: list[float] = []
        self.fds: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        for _ in range(self.max_samples):
            if self.halt.wait(SAMPLE_INTERVAL_S):
                break
            self.rss.append(rss_mb(self.pid))
            self.fds.append(open_fds(self.pid))


# --------------------------------------------------------------------------------------- metrics
STATUS_RE = re.compile(r'^condgen_requests_total\{[^}]*status="(\d+)"[^}]*\}\s+([0-9.e+]+)', re.M)


def requests_by_status(base_url: str) -> dict[str, float]:
    try:
        text = httpx.get(base_url + "/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for status, value in STATUS_RE.findall(text):
        totals[status] = totals.get(status, 0.0) + float(value)
    return totals


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    delta = {k: int(after.get(k, 0) - before.get(k, 0)) for k in set(before) | set(after)}
    return {k: v for k, v in sorted(delta.items()) if v}


# -------------------------------------------------------------------------------------- verdicts
def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def verdicts(case: Case, r: dict[str, Any]) -> dict[str, bool]:
    allowed = {"200", "429", "503"} if case.overload else {"200"}
    normal = Counter(r["canary_statuses"]) + Counter(r["normal_statuses"])
    answers = Counter(r["hostile_statuses"]) + normal
    bad_5xx = [k for k in answers if k[:1] == "5" and k not in case.documented_5xx]
    bad_5xx += [k for k in r["metrics_delta"] if k[:1] == "5" and k != "503"]
    idle = r["rss_mb"]["idle"]
    return {
        "canary_p99": r["canary_ms"]["p99"] <= P99_MS,
        "canary_worst": r["canary_ms"]["max"] <= WORST_MS,
        "normal": bool(normal) and set(normal) <= allowed,
        "rss": r["rss_mb"]["peak"] <= RSS_PEAK_RATIO * idle
        and abs(r["rss_mb"]["after"] - idle) <= RSS_AFTER_RATIO * idle,
        "no_5xx": not bad_5xx,
        "sigterm": r["sigterm"]["exit_s"] is not None and r["sigterm"]["exit_s"] <= r["sigterm"]["bound_s"],
    }


# ------------------------------------------------------------------------------------ one class
@dataclass
class RunConfig:
    models_dir: Path
    canary_model: str
    options: CaseOptions
    env: dict[int, dict[str, str]] = field(default_factory=dict)  # class number (0: all) -> CONDGEN_*
    threads: int = 1
    # As bench.run: the server on its CPUs, the hostile clients and the canary on the others, so
    # the canary measures the server rather than the attackers' own CPU use.
    server_cpus: str | None = None
    client_cpus: str | None = None


def _warm_up(base_url: str, model: str) -> None:
    """Small requests and one of the largest a client may send (n = the default max_n, 64): the
    idle RSS is then what serving any well-formed request costs, and growth past it is the hostile's."""
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for i in range(WARMUP_REQUESTS):
            client.get("/healthz")
            client.post("/generate", json={"model": model, "label": 1, "seed": i, "n": 1})
        client.post("/generate", json={"model": model, "label": 1, "seed": 0, "n": 64})


async def _sigterm(server: ServerProcess, bound_s: float) -> float | None:
    """Seconds from SIGTERM to exit; None when it outlived the bound by 5 s (then it is killed)."""
    assert server.proc is not None
    os.kill(server.pid, signal.SIGTERM)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < bound_s + 5.0:
        if server.proc.poll() is not None:
            return round(time.perf_counter() - t0, 3)
        await asyncio.sleep(0.005)
    return None


async def _hostile_phase(
    case: Case, ctx: CaseContext, cfg: RunConfig, server: ServerProcess
) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    stop, ready = spawn.Event(), spawn.Event()
    receive, send = spawn.Pipe(duplex=False)
    canary = spawn.Process(
        target=canary_main,
        args=(ctx.base_url, cfg.canary_model, cfg.options.seconds + 60.0, stop, ready, send),
    )
    canary.start()
    # The hostile action starts once the canary probes (a spawned interpreter takes a while).
    await asyncio.to_thread(ready.wait, 60.0)
    await asyncio.sleep(0.2)
    ctx.started = time.perf_counter()
    try:
        await asyncio.wait_for(case.action(ctx), cfg.options.seconds + 30.0)
    except TimeoutError:
        ctx.notes.append("the hostile action overran its time and was cancelled")
    stop.set()
    probes: list[tuple[str, float, str]] = []
    if receive.poll(CANARY_TIMEOUT_S + 5.0):
        probes = receive.recv()
    canary.join(5.0)
    if canary.is_alive():
        canary.kill()
    latencies = [p[1] for p in probes]
    return {
        "hostile_s": round(time.perf_counter() - ctx.started, 2),
        "canary_probes": len(probes),
        "canary_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": round(max(latencies), 2) if latencies else float("nan"),
            "healthz_p99": percentile([p[1] for p in probes if p[0] == "healthz"], 99),
            "generate_p99": percentile([p[1] for p in probes if p[0] == "generate"], 99),
        },
        "canary_statuses": dict(Counter(p[2] for p in probes)),
    }


async def run_case(case: Case, cfg: RunConfig, log_dir: Path) -> dict[str, Any]:
    env = {**cfg.env.get(0, {}), **case.env, **cfg.env.get(case.number, {})}
    drain_s = float(env.get("CONDGEN_DRAIN_TIMEOUT_S", DEFAULT_DRAIN_S))
    with tempfile.TemporaryDirectory(prefix=f"hostile-{case.number}-") as tmp:
        work = Path(tmp)
        models = cfg.models_dir
        if case.zoo is not None:
            models = await asyncio.to_thread(case.zoo, cfg.models_dir, work, cfg.canary_model, cfg.options)
        spec = condgen_spec(models, threads=cfg.threads, env=env)
        server = ServerProcess(spec, cpus=cfg.server_cpus, log_dir=log_dir)
        with server:
            await asyncio.to_thread(server.wait_ready, 180.0)
            base_url = server.spec.base_url
            await asyncio.to_thread(_warm_up, base_url, cfg.canary_model)
            await asyncio.sleep(SETTLE_S)
            idle_rss, idle_fds = rss_mb(server.pid), open_fds(server.pid)
            metrics_before = requests_by_status(base_url)
            sampler = Sampler(server.pid, cfg.options.seconds + 120.0)
            sampler.start()
            ctx = CaseContext(
                base_url, LOOPBACK, server.spec.port, server.pid, models, work, cfg.canary_model, cfg.options
            )
            result = await _hostile_phase(case, ctx, cfg, server)
            await asyncio.sleep(SETTLE_S)
            after_rss, after_fds = rss_mb(server.pid), open_fds(server.pid)
            metrics_after = requests_by_status(base_url)
            if case.before_sigterm is not None:
                await case.before_sigterm(ctx)
            exit_s = await _sigterm(server, drain_s + 1.0)
            sampler.halt.set()
            sampler.join(2.0)
            for task in ctx.background:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(task, 10.0)
            log_tail = server.log_tail(800)
    result.update(
        {
            "class": case.number,
            "name": case.name,
            "title": case.title,
            "env": env,
            "rss_mb": {"idle": idle_rss, "peak": max([idle_rss, *sampler.rss]), "after": after_rss},
            "fds": {"idle": idle_fds, "peak": max([idle_fds, *sampler.fds]), "after": after_fds},
            "hostile_statuses": dict(ctx.hostile),
            "normal_statuses": dict(ctx.normal),
            "by_kind": {k: dict(v) for k, v in ctx.by_kind.items()},
            "metrics_delta": metrics_delta(metrics_before, metrics_after),
            "sigterm": {"exit_s": exit_s, "drain_timeout_s": drain_s, "bound_s": drain_s + 1.0},
            "notes": ctx.notes,
            "extra": ctx.extra,
        }
    )
    if exit_s is None:
        result["notes"].append(f"did not exit within {drain_s + 6.0:.0f} s of SIGTERM; log: {log_tail}")
    result["verdicts"] = verdicts(case, result)
    result["pass"] = all(result["verdicts"].values())
    return result


# ---------------------------------------------------------------------------------------- report
def _statuses(counts: dict[str, int]) -> str:
    return " ".join(f"{k}×{v}" for k, v in sorted(counts.items())) or "-"


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| class | canary p99 ms | worst ms | RSS MiB idle/peak/after | fds idle/peak/after "
        "| hostile statuses | normal statuses | SIGTERM exit s (bound) | verdicts |"
    )
    rows = [head, "|" + " --- |" * 9]
    for r in results:
        rss, fds, term = r["rss_mb"], r["fds"], r["sigterm"]
        normal = Counter(r["canary_statuses"]) + Counter(r["normal_statuses"])
        marks = " ".join(f"{k} {'PASS' if ok else 'FAIL'}" for k, ok in r["verdicts"].items())
        rows.append(
            f"| {r['class']} {r['name']} | {r['canary_ms']['p99']} | {r['canary_ms']['max']} "
            f"| {rss['idle']}/{rss['peak']}/{rss['after']} | {fds['idle']}/{fds['peak']}/{fds['after']} "
            f"| {_statuses(r['hostile_statuses'])} | {_statuses(dict(normal))} "
            f"| {term['exit_s']} ({term['bound_s']}) | {marks} |"
        )
    return "\n".join(rows)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Hostile clients",
        "",
        "Written by `python -m bench.hostile`; the numbers are in `hostile.json`. Acceptance per class:",
        f"canary p99 <= {P99_MS:.0f} ms, worst <= {WORST_MS:.0f} ms; normal requests all 200 (429/503 with",
        "Retry-After in the overload class 5); RSS peak <= 1.5x idle and after within 10%; no 5xx but",
        "503 with Retry-After; exit within drain_timeout_s + 1 s of SIGTERM.",
        "",
        f"Run: {meta['seconds']} s per class, models `{meta['models_dir']}`,",
        f"canary model `{meta['canary_model']}`, {meta['cpus']} CPUs, {meta['date']}.",
        "",
        table(results),
        "",
        "## Per class",
        "",
    ]
    for r in results:
        lines += [f"### {r['class']}. {r['title']}", ""]
        lines += [f"- `{kind}`: {_statuses(counts)}" for kind, counts in r["by_kind"].items()]
        lines.append(
            f"- `/metrics` condgen_requests_total by status, during: {_statuses(r['metrics_delta'])}"
        )
        if r["env"]:
            lines.append(f"- env: {' '.join(f'{k}={v}' for k, v in sorted(r['env'].items()))}")
        lines += [f"- {key}: {json.dumps(value)}" for key, value in r["extra"].items()]
        lines += [f"- note: {note}" for note in r["notes"]]
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- CLI
def parse_env(items: list[str]) -> dict[int, dict[str, str]]:
    """``KEY=VALUE`` for every class, ``N:KEY=VALUE`` for class N only."""
    out: dict[int, dict[str, str]] = {}
    for item in items:
        scope, _, assignment = item.rpartition(":") if ":" in item.split("=", 1)[0] else ("0", "", item)
        key, sep, value = assignment.partition("=")
        if not sep or not key.startswith("CONDGEN_"):
            raise SystemExit(f"--env wants [CLASS:]CONDGEN_NAME=VALUE, got {item!r}")
        out.setdefault(int(scope), {})[key] = value
    return out


async def run_all(numbers: list[int], cfg: RunConfig, out: Path | None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hostile-logs-") as logs:
        for number in numbers:
            logger.info("class %d: %s", number, CASES[number].title)
            results.append(await run_case(CASES[number], cfg, Path(logs)))
    meta = {
        "seconds": cfg.options.seconds,
        "models_dir": str(
            cfg.models_dir.relative_to(REPO_ROOT)
            if cfg.models_dir.is_relative_to(REPO_ROOT)
            else cfg.models_dir.name
        ),
        "server_cpus": cfg.server_cpus,
        "client_cpus": cfg.client_cpus,
        "canary_model": cfg.canary_model,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "options": cfg.options.__dict__,
    }
    if out is not None:
        write_results(out, results, meta)
    return results


def write_results(out: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "hostile.json").write_text(json.dumps({"meta": meta, "classes": results}, indent=2) + "\n")
    (out / "HOSTILE.md").write_text(markdown(results, meta))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", default=",".join(map(str, CASES)), help="comma-separated, e.g. 1,2,5")
    parser.add_argument("--seconds", type=float, default=10.0, help="hostile time per class")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "exported")
    parser.add_argument("--canary-model", default="cdcgan-mnist")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--env", action="append", default=[], help="[CLASS:]CONDGEN_NAME=VALUE, repeatable")
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument("--half-open", type=int, default=2000)
    parser.add_argument("--slow-header-mb", type=float, default=200.0)
    parser.add_argument("--drain-model-mb", type=int, default=1024)
    server_cpus, client_cpus = default_cpus()
    parser.add_argument("--server-cpus", default=server_cpus, help="taskset list for the server ('' = none)")
    parser.add_argument("--client-cpus", default=client_cpus, help="for the clients and the canary")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the progress
    numbers = [int(n) for n in args.classes.split(",") if n.strip()]
    if unknown := [n for n in numbers if n not in CASES]:
        parser.error(f"unknown classes {unknown}; known: {sorted(CASES)}")
    options = replace(
        CaseOptions(),
        seconds=args.seconds,
        reloads=args.reloads,
        half_open=args.half_open,
        slow_header_mb=args.slow_header_mb,
        drain_model_mb=args.drain_model_mb,
    )
    cfg = RunConfig(
        args.models_dir.resolve(),
        args.canary_model,
        options,
        env=parse_env(args.env),
        server_cpus=args.server_cpus or None,
        client_cpus=args.client_cpus or None,
    )
    if cfg.client_cpus:
        os.sched_setaffinity(0, cpu_set(cfg.client_cpus))  # the canary's process inherits it
    results = asyncio.run(run_all(numbers, cfg, args.out))
    sys.stdout.write(table(results) + "\n")
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
