"""A/B one service change: two condgen servers side by side, the same cells, alternating rounds.

For tuning: each variant is ``python -m service`` with extra ``CONDGEN_*`` settings and,
optionally, another source tree first on ``PYTHONPATH`` (a patched copy of ``service/``). Both
run at once on the same pinned CPUs but are loaded in turn (A, B, A, B, ...), so slow drift on
the machine hits both alike. Reported per round: images/s, p99 and the server's CPU milliseconds
per request, the number least disturbed by anything else running on the machine.

``python -m bench.ab --b-env CONDGEN_MAX_WAIT_MS=1 --n 1 --concurrency 8 --rounds 3``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.load import LoadSpec, run_load
from bench.run import default_cpus
from bench.servers import ServerProcess, condgen_spec

logger = logging.getLogger("bench.ab")


@dataclass(frozen=True)
class Variant:
    name: str
    env: dict[str, str]
    pythonpath: Path | None = None


def start(variant: Variant, models_dir: Path, threads: int, cpus: str | None, log_dir: Path) -> ServerProcess:
    spec = condgen_spec(models_dir, threads, env=variant.env)
    if variant.pythonpath is not None:
        # Its service/ must shadow ours: first on the path, and the working directory (which
        # ``python -m`` puts ahead of PYTHONPATH).
        spec.env["PYTHONPATH"] = str(variant.pythonpath.resolve())
        spec.cwd = variant.pythonpath.resolve()
    return ServerProcess(spec, cpus, log_dir).start()


def compare(
    a: Variant,
    b: Variant,
    models_dir: Path,
    model: str,
    n: int,
    concurrency: int,
    rounds: int,
    duration_s: float,
    threads: int,
    server_cpus: str | None,
    client_cpus: str | None,
    loadgen: str,
    log_dir: Path,
) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {a.name: [], b.name: []}
    servers = [start(v, models_dir, threads, server_cpus, log_dir) for v in (a, b)]
    try:
        for server in servers:
            server.wait_ready(timeout_s=120.0)
        for r in range(rounds):
            for variant, server in zip((a, b), servers, strict=True):
                spec = LoadSpec(
                    port=server.spec.port,
                    model=model,
                    n=n,
                    concurrency=concurrency,
                    duration_s=duration_s,
                    seed0=1 + r * 10_000_000,
                )
                cpu0 = server.cpu_seconds()
                result = run_load(spec, loadgen, client_cpus)
                cpu = server.cpu_seconds() - cpu0
                row = {
                    "images_per_s": round(result.images_per_s, 1),
                    "p99_ms": result.latency_ms.get("p99", float("nan")),
                    "errors": float(result.error_count),
                    "cpu_ms_per_request": round(cpu * 1000.0 / max(1, result.requests), 3),
                }
                out[variant.name].append(row)
                logger.info("round %d %-3s %s", r + 1, variant.name, row)
    finally:
        for server in servers:
            server.stop()
    return out


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in pairs)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    server_cpus, client_cpus = default_cpus()
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", type=Path, default=Path("exported"))
    p.add_argument("--model", default="cdcgan-mnist")
    p.add_argument("--a-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--b-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--a-pythonpath", type=Path, help="a source tree whose service/ replaces this one's")
    p.add_argument("--b-pythonpath", type=Path)
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--server-cpus", default=server_cpus)
    p.add_argument("--client-cpus", default=client_cpus)
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--log-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")))
    a = p.parse_args(argv)
    va = Variant("A", _env(a.a_env), a.a_pythonpath)
    vb = Variant("B", _env(a.b_env), a.b_pythonpath)
    rows = compare(
        va,
        vb,
        a.models_dir,
        a.model,
        a.n,
        a.concurrency,
        a.rounds,
        a.duration,
        a.threads,
        a.server_cpus or None,
        a.client_cpus or None,
        a.loadgen,
        a.log_dir,
    )
    summary = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in rows.items()
        if results
    }
    sys.stdout.write(
        json.dumps({"A": va.env, "B": vb.env, "median": summary, "rounds": rows}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
