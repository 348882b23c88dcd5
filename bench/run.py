"""The whole benchmark in one run: raw ONNX Runtime limit, condgen, BentoML, Ray Serve and naive torch,
same load.

Steps, each bounded in time:

1. Raw limit: ``bench.raw_ort`` per model, in its own process on the server's CPUs; and every
   int8 variant exported beside its float32 model against that model (``bench.graph_ratio``, one
   thread, alternated, in thread CPU time), with both cards' quality figures; and the float32
   graphs against the ones committed before their rewrites (``bench.rewrites``, the same timing,
   plus the share of pixels within one level).
2. Cold start: spawn condgen on the whole model directory ``--cold-starts`` times; seconds from
   spawn to ``/readyz`` 200 and resident memory at that moment.
3. Load: for each server and model, one warm-up, then a closed loop for every (n, concurrency)
   cell, with a drain probe after each cell so no cell inherits the previous one's backlog. The
   64×64 slot (``--model64``, skipped with a note when that model is not exported) gets its own,
   smaller cell set: there a session run costs more per image, so serving's share is smaller. A
   cell whose expected latency is long gets a longer window (at least ``latency_windows`` times
   the latency the previous cell implies, at most ``--max-cell-seconds``), so closed-loop counts
   are not dominated by the requests still in flight at the end.
4. Profile: ``py-spy`` on condgen under n=1 and n=64 load at c=32 (the small and large models).
5. ``results.json``, then ``bench.report`` renders ``RESULTS.md`` and the plot.

Pinning: on a machine with C CPUs the servers get ``--server-cpus`` (default: all but the last)
and the load generator, py-spy and this orchestrator get ``--client-cpus`` (default: the last),
with ``taskset``. Every server, and the raw measurement, gets the same ONNX Runtime (or torch)
thread count, ``--threads`` (default: the number of server CPUs). Traffic goes to 127.0.0.1 only.

``python -m bench.run --models-dir exported --out bench/results`` (``make bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import http_floor
from bench import native_profile as native
from bench import profile as prof
from bench.load import LoadResult, LoadSpec, pin_prefix, resolve_loadgen, run_load
from bench.raw_ort import DEFAULT_BATCH_SIZES, RawResult
from bench.servers import (
    REPO_ROOT,
    ServerProcess,
    ServerSpec,
    bentoml_spec,
    check_png,
    condgen_spec,
    peak_rss_mb,
    ray_spec,
    torch_spec,
)
from service.card import load_card

logger = logging.getLogger("bench")

SERVERS = ("condgen", "bentoml", "ray", "torch")
SMALL_MODEL = "cdcgan-mnist"
LARGE_PREFIX = "cgan-fashion-"
PREFERRED_LARGE = "cgan-fashion-bce-10"
MODEL64 = "cdcgan64-lego"  # 64×64 gray, 50 classes
# The 64×64 slot's one cell set: n=1 (a request's serving cost against a dearer session) and n=16
# (full batches) at c=8 and c=32 (the goals' concurrency); about 2 min for the three servers.
NS64 = (1, 16)
CONCURRENCY64 = (8, 32)


@dataclass
class Config:
    models_dir: Path
    out: Path
    runs_dir: Path
    small: str
    large: str | None
    servers: tuple[str, ...]
    concurrency: tuple[int, ...]
    ns: tuple[int, ...]
    duration_s: float
    max_cell_s: float
    latency_windows: float
    warmup_s: float
    raw_seconds: float
    raw_batch_sizes: tuple[int, ...]
    cold_starts: int
    profile_s: float
    server_cpus: str | None
    client_cpus: str | None
    threads: int
    loadgen: str
    max_batch_size: int = 64
    no_report: bool = False
    max_latency_s: float = 8.0
    costs_seconds: float = 0.2
    readme: Path | None = None
    condgen_env: dict[str, str] = field(default_factory=dict)
    goal_rounds: int = 3
    model64: str | None = None  # the 64×64 slot; measured only when exported
    ns64: tuple[int, ...] = NS64
    concurrency64: tuple[int, ...] = CONCURRENCY64


@dataclass(frozen=True)
class CellSet:
    """The (n, concurrency) cells one model is measured at, and whether the raw-limit goals read them."""

    ns: tuple[int, ...]
    concurrency: tuple[int, ...]
    goals: bool


def cell_set(cfg: Config, model: str) -> CellSet:
    if model == cfg.model64:
        return CellSet(cfg.ns64, cfg.concurrency64, goals=False)
    return CellSet(cfg.ns, cfg.concurrency, goals=True)


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    cold_start: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    cells: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, dict[str, str]] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    native_profile: dict[str, Any] = field(default_factory=dict)
    costs: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)
    rewrites: dict[str, Any] = field(default_factory=dict)
    http_floor: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ------------------------------------------------------------------------------------ helpers
def parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def default_cpus() -> tuple[str | None, str | None]:
    """Servers on all CPUs but the last, clients on the last; no pinning on one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    server = cpus[:-1]
    return (f"{server[0]}-{server[-1]}" if len(server) > 1 else str(server[0])), str(cpus[-1])


def cpu_set(cpus: str) -> set[int]:
    """A taskset CPU list (``0``, ``0-3``, ``0,2-3``) as a set."""
    out: set[int] = set()
    for part in cpus.split(","):
        lo, _, hi = part.strip().partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def cpu_count(cpus: str | None) -> int:
    return len(cpu_set(cpus)) if cpus else len(os.sched_getaffinity(0))


def other_load() -> list[str]:
    """Command lines of other busy benchmark-hostile processes we know of (a training job).

    A stopped one (SIGSTOP, state T: paused so that the machine is quiet for a benchmark) takes
    no CPU and does not count.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if ("trainer zoo" in cmd or "trainer train" in cmd) and not _stopped(proc):
                found.append(cmd[:120])
    return found


def _stopped(proc: Path) -> bool:
    # /proc/PID/stat is "pid (comm) state ..."; comm may hold spaces and parentheses.
    stat = (proc / "stat").read_text()
    return stat[stat.rindex(")") + 2 :].startswith(("T", "t"))


# The packages the report names, with the versions of the lock `make install-dev` installs from.
REPORTED_PACKAGES = (
    "onnxruntime",
    "numpy",
    "fastapi",
    "uvicorn",
    "starlette",
    "pydantic",
    "torch",
    "bentoml",
    "ray",
)
DEV_LOCK = REPO_ROOT / "requirements" / "dev.txt"


def locked_versions(lock: Path) -> dict[str, str]:
    """`name==version` pins of a pip-compile lock, by lower-case name."""
    pins = {}
    for line in lock.read_text().splitlines():
        name, pinned, rest = line.partition("==")
        if pinned and line[:1].isalpha():
            pins[name.lower()] = rest.split()[0]
    return pins


def lock_drift(locked: dict[str, str]) -> list[str]:
    """Reported packages whose installed version is not the lock's: their figures are not the lock's."""
    drift = []
    for mod in REPORTED_PACKAGES:
        try:
            installed = importlib.metadata.version(mod)
        except importlib.metadata.PackageNotFoundError:
            continue
        if mod in locked and installed != locked[mod]:
            drift.append(f"{mod} {installed} is installed, the lock has {locked[mod]} (make install-dev)")
    return drift


def machine_info(cfg: Config, loadgen: str) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    locked = locked_versions(DEV_LOCK)
    versions = {mod: locked[mod] for mod in REPORTED_PACKAGES if mod in locked}
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "cpu": cpu_model,
        "cpus_online": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "server_cpus": cfg.server_cpus,
        "client_cpus": cfg.client_cpus,
        "threads": cfg.threads,
        "loadgen": loadgen,
        "duration_s": cfg.duration_s,
        "max_cell_s": cfg.max_cell_s,
        "goal_rounds": cfg.goal_rounds,
        "warmup_s": cfg.warmup_s,
        "max_batch_size": cfg.max_batch_size,
        "condgen_env": cfg.condgen_env,
        "load_average": os.getloadavg(),
        "other_load": other_load(),
    }


def pick_large(models_dir: Path, wanted: str | None) -> str | None:
    if wanted:
        return wanted
    names = (
        sorted(p.name for p in models_dir.iterdir() if (p / "model.json").is_file())
        if models_dir.is_dir()
        else []
    )
    if PREFERRED_LARGE in names:
        return PREFERRED_LARGE
    return next((n for n in names if n.startswith(LARGE_PREFIX)), None)


def torch_source(cfg: Config, model: str) -> tuple[Path | None, str | None]:
    """The trainer checkpoint for ``model`` when there is one, else its recipe (untrained weights)."""
    ckpt = cfg.runs_dir / model / "checkpoint.pt"
    if ckpt.is_file():
        return ckpt, None
    card = load_card(cfg.models_dir / model)
    return None, card.training.recipe if card.training is not None else model


def label_for(cfg: Config, model: str) -> int | None:
    """Label 3 (a class every MNIST-like model has), or the last class of a smaller model; None
    (no label in the body) for an unconditional model, which refuses one."""
    card = load_card(cfg.models_dir / model)
    return min(3, card.num_classes - 1) if card.conditional else None


def run_json(cmd: list[str], timeout_s: float) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def drain(base_url: str, model: str, label: int | None, timeout_s: float = 60.0) -> None:
    """One n=1 request: it queues behind whatever the last cell left, so when it returns the
    server is idle again (true for all three servers: batcher queue, dispatcher, thread pool).
    It carries the cells' label: a refused body (422) would return without waiting."""
    body: dict[str, Any] = {"model": model, "seed": 0, "n": 1}
    if label is not None:
        body["label"] = label
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(base_url + "/generate", json=body, timeout=timeout_s)


# ------------------------------------------------------------------------------------ stages
def stage_raw(cfg: Config, models: list[str], res: Results) -> None:
    for model in models:
        cmd = [
            *pin_prefix(cfg.server_cpus),
            sys.executable,
            "-m",
            "bench.raw_ort",
            "--model-dir",
            str(cfg.models_dir / model),
            "--threads",
            str(cfg.threads),
            "--batch-sizes",
            ",".join(map(str, cfg.raw_batch_sizes)),
            "--seconds",
            str(cfg.raw_seconds),
        ]
        try:
            data = run_json(cmd, timeout_s=60 + 3 * cfg.raw_seconds * len(cfg.raw_batch_sizes))
        except Exception as exc:
            res.problems.append(f"raw {model}: {exc}")
            logger.error("raw %s failed: %s", model, exc)
            continue
        res.raw[model] = data
        best = RawResult.from_json(data).best
        logger.info("raw %s: best %.0f images/s at batch %d", model, best.images_per_s, best.batch)


def _measured(res: Results, what: str, cmd: list[str], timeout_s: float) -> dict[str, Any] | None:
    """A measuring subprocess's JSON; a failure is listed among the run's problems, and None."""
    try:
        return run_json(cmd, timeout_s=timeout_s)
    except Exception as exc:
        res.problems.append(f"{what}: {exc}")
        logger.error("%s failed: %s", what, exc)
        return None


def int8_pairs(models_dir: Path) -> list[tuple[str, str]]:
    """(float32 model, int8 variant) for every variant exported beside the model it was made from."""
    pairs = []
    for card_file in sorted(models_dir.glob("*/model.json")):
        quantization = load_card(card_file.parent).quantization
        if quantization is not None and (models_dir / quantization.source / "model.json").is_file():
            pairs.append((quantization.source, card_file.parent.name))
    return pairs


def _quality(model_dir: Path) -> dict[str, Any]:
    return {m.name: {"value": m.value, "n": m.n_samples} for m in load_card(model_dir).metrics}


def stage_int8(cfg: Config, res: Results) -> None:
    """Each int8 variant's raw limit against its float32 model's: one thread, the two graphs
    alternated in one process and timed in thread CPU time, as the quantizer's acceptance reads it."""
    for source, variant in int8_pairs(cfg.models_dir):
        cmd = [
            *pin_prefix(cfg.server_cpus),
            sys.executable,
            "-m",
            "bench.graph_ratio",
            str(cfg.models_dir / source),
            str(cfg.models_dir / variant),
            "--threads",
            "1",
        ]
        data = _measured(res, f"int8 {variant}", cmd, timeout_s=300)
        if data is None:
            continue
        res.int8[variant] = {
            "source": source,
            "graphs": data,
            "quality": {
                source: _quality(cfg.models_dir / source),
                variant: _quality(cfg.models_dir / variant),
            },
        }
        logger.info("int8 %s: %.2f× %s's raw limit", variant, data["graphs"][1]["ratio"], source)


def stage_rewrites(cfg: Config, models: list[str], res: Results) -> None:
    """The float32 graphs against the graphs committed before their rewrites (``bench.rewrites``):
    raw limit, one thread, alternated, in thread CPU time; pixels within one level."""
    sources = [source for source, _ in int8_pairs(cfg.models_dir)]
    names = [m for m in dict.fromkeys([*models, *sources]) if (cfg.models_dir / m / "model.json").is_file()]
    if not names:
        return
    repo = Path(__file__).resolve().parents[1]  # the checkout whose history holds the baseline
    cmd = [*pin_prefix(cfg.server_cpus), sys.executable, "-m", "bench.rewrites", *names]
    cmd += ["--models-dir", str(cfg.models_dir), "--repo", str(repo)]
    res.rewrites = _measured(res, "rewrites", cmd, timeout_s=900) or {}
    for row in res.rewrites.get("models", []):
        if row["baseline"] == "ok":
            now = row["graphs"][1]
            logger.info("rewrites %s: %.2f× the raw limit before them", row["model"], now["ratio"])


FLOOR_CONCURRENCY = 32  # the n=1 goal's concurrency
FLOOR_SECONDS = 5.0


def stage_http_floor(cfg: Config, res: Results, log_dir: Path) -> None:
    """Server CPU per request for the HTTP stack alone (``bench.http_floor``), at the goals' c,
    with the cells' load generator and pinning; its server is stopped like the bench's others."""
    try:
        res.http_floor = http_floor.measure(
            FLOOR_CONCURRENCY, FLOOR_SECONDS, cfg.loadgen, log_dir, cfg.server_cpus, cfg.client_cpus
        )
    except Exception as exc:
        res.problems.append(f"http floor: {exc}")
        logger.error("http floor failed: %s", exc)
        return
    logger.info("http floor: %.1f µs of server CPU per request", res.http_floor["cpu_us_per_request"])


def stage_costs(cfg: Config, models: list[str], res: Results) -> None:
    """Per-step costs of the request path (``bench.costs``), on the servers' CPUs."""
    for model in models:
        cmd = [
            *pin_prefix(cfg.server_cpus),
            sys.executable,
            "-m",
            "bench.costs",
            "--model-dir",
            str(cfg.models_dir / model),
            "--threads",
            str(cfg.threads),
            "--seconds",
            str(cfg.costs_seconds),
            "--json",
        ]
        try:
            proc = subprocess.run(
                cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False
            )
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.strip()[-1500:])
            res.costs[model] = json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception as exc:
            res.problems.append(f"costs {model}: {exc}")


def stage_cold_start(cfg: Config, res: Results, log_dir: Path) -> None:
    times: list[float] = []
    rss: list[float] = []
    models = 0
    for _ in range(cfg.cold_starts):
        server = ServerProcess(
            condgen_spec(cfg.models_dir, cfg.threads, env=cfg.condgen_env), cfg.server_cpus, log_dir
        )
        try:
            with server:
                times.append(round(server.wait_ready(timeout_s=120.0), 3))
                rss.append(server.rss_mb())
                ready = server.ready_body if isinstance(server.ready_body, dict) else {}
                models = sum(1 for m in ready.get("models", {}).values() if m.get("status") == "ready")
        except Exception as exc:
            res.problems.append(f"cold start: {exc}")
            logger.error("cold start failed: %s", exc)
            return
    if times:
        res.cold_start = {
            "runs_s": times,
            "median_s": round(statistics.median(times), 3),
            "models_ready": models,
            "rss_mb_at_ready": rss,
        }
        logger.info(
            "cold start: median %.2f s for %d models, RSS %.0f MiB", statistics.median(times), models, rss[-1]
        )


def cell_duration(cfg: Config, prev: LoadResult | None, concurrency: int) -> float:
    """The base window, longer when the previous (lower-concurrency) cell implies long latency."""
    if prev is None or prev.requests_per_s <= 0:
        return cfg.duration_s
    expected_latency_s = concurrency / prev.requests_per_s  # closed loop: L = c / throughput
    return min(cfg.max_cell_s, max(cfg.duration_s, cfg.latency_windows * expected_latency_s))


def is_goal_cell(cells: CellSet, server: str, n: int, concurrency: int) -> bool:
    """condgen's cells that the raw-limit goals are read from: n=1 at c=32, the largest n at every c."""
    return cells.goals and server == "condgen" and ((n == 1 and concurrency == 32) or n == max(cells.ns))


def _measure_cell(cfg: Config, server: ServerProcess, spec: LoadSpec) -> tuple[LoadResult, float]:
    """One closed-loop window: its result and the server's CPU seconds over it."""
    cpu0 = server.cpu_seconds()
    result = run_load(spec, cfg.loadgen, cfg.client_cpus)
    if result.requests < spec.concurrency and spec.duration_s < cfg.max_cell_s:
        # Fewer answers than connections: the window was shorter than one latency (first cell of
        # a slow server). Once more with the longest window.
        drain(server.spec.base_url, spec.model, spec.label)
        spec = LoadSpec(**{**spec.__dict__, "duration_s": cfg.max_cell_s})
        cpu0 = server.cpu_seconds()
        result = run_load(spec, cfg.loadgen, cfg.client_cpus)
    return result, server.cpu_seconds() - cpu0  # CPU includes the few requests in flight at the end


def stage_cells(cfg: Config, server: ServerProcess, model: str, res: Results, seed0: int) -> None:
    url = server.spec.base_url
    label = label_for(cfg, model)
    cells = cell_set(cfg, model)
    spec0 = LoadSpec(port=server.spec.port, model=model, label=label, n=min(16, max(cells.ns)), concurrency=8)
    if cfg.warmup_s > 0:
        run_load(
            LoadSpec(**{**spec0.__dict__, "duration_s": cfg.warmup_s, "seed0": seed0}),
            cfg.loadgen,
            cfg.client_cpus,
        )
        drain(url, model, label)
    for n in cells.ns:
        prev: LoadResult | None = None
        for c in sorted(cells.concurrency):
            expected = c / prev.requests_per_s if prev is not None and prev.requests_per_s > 0 else 0.0
            if expected > cfg.max_latency_s:
                # Closed loop: latency = c / throughput. Past this bound a cell only measures a
                # queue (and nears the service's request timeout); higher c even more so.
                note = (
                    f"{server.spec.name} {model} n={n}: c >= {c} skipped, expected latency "
                    f"{expected:.1f} s > {cfg.max_latency_s:g} s (--max-latency)"
                )
                res.notes.append(note)
                logger.info("%s", note)
                break
            duration = cell_duration(cfg, prev, c)
            rounds = cfg.goal_rounds if is_goal_cell(cells, server.spec.name, n, c) else 1
            measured: list[tuple[LoadResult, float]] = []
            try:
                for _ in range(rounds):
                    spec = LoadSpec(
                        port=server.spec.port,
                        model=model,
                        label=label,
                        n=n,
                        concurrency=c,
                        duration_s=duration,
                        seed0=seed0,
                    )
                    seed0 += 10_000_000
                    measured.append(_measure_cell(cfg, server, spec))
                    if len(measured) < rounds:
                        drain(url, model, label)
            except Exception as exc:
                res.problems.append(f"{server.spec.name} {model} n={n} c={c}: {exc}")
                logger.error("%s %s n=%d c=%d failed: %s", server.spec.name, model, n, c, exc)
                drain(url, model, label)
                continue
            # The round with the median images/s stands for the cell (a lone round's noise, ±5%
            # here, is as large as the margins the goals are judged by).
            result, cpu_s = sorted(measured, key=lambda m: m[0].images_per_s)[len(measured) // 2]
            prev = result
            cell: dict[str, Any] = {"server": server.spec.name, "model": model, **result.to_json()}
            if rounds > 1:
                cell["round_images_per_s"] = [round(m[0].images_per_s, 2) for m in measured]
            if result.requests:
                cell["server_cpu_ms_per_request"] = round(cpu_s * 1000.0 / result.requests, 3)
                cell["server_cpu_ms_per_image"] = round(cpu_s * 1000.0 / (result.requests * n), 4)
            res.cells.append(cell)
            lat = result.latency_ms
            logger.info(
                "%-8s %-22s n=%-3d c=%-4d %8.0f img/s %7.1f req/s  p50 %7.1f  p99 %7.1f ms  "
                "errors %d  (%.0f s)",
                server.spec.name,
                model,
                n,
                c,
                result.images_per_s,
                result.requests_per_s,
                lat.get("p50", float("nan")),
                lat.get("p99", float("nan")),
                result.error_count,
                result.duration_s,
            )
            drain(url, model, label)


def _profiled_cell(
    cfg: Config, server: ServerProcess, model: str, n: int, recorder: subprocess.Popen[bytes]
) -> tuple[LoadResult, int, str]:
    """One c=32 load cell while ``recorder`` samples the server: (load, its exit code, its stderr)."""
    time.sleep(0.3)  # let the profiler attach before the load starts
    label = label_for(cfg, model)
    spec = LoadSpec(
        port=server.spec.port,
        model=model,
        label=label,
        n=n,
        concurrency=32,
        duration_s=cfg.profile_s + 1,
    )
    load = run_load(spec, cfg.loadgen, cfg.client_cpus)
    try:
        _, err = recorder.communicate(timeout=cfg.profile_s + 30)
    except subprocess.TimeoutExpired:
        recorder.kill()
        _, err = recorder.communicate()
    drain(server.spec.base_url, model, label)
    return load, recorder.returncode, err.decode(errors="replace").strip()[-500:]


def stage_profile(cfg: Config, server: ServerProcess, model: str, res: Results) -> None:
    """py-spy (Python stacks) then perf (on-CPU time by library) at n=1 and n=64, c=32."""
    if cfg.profile_s <= 0:
        return
    if not prof.py_spy_available():
        res.notes.append("profile skipped: py-spy is not installed (pip install py-spy, or the bench extra)")
    else:
        for n in (1, 64):
            out = cfg.out / f"profile-{model}-n{n}.txt"
            recorder = prof.start_record(server.pid, cfg.profile_s, out, rate=100, cpus=cfg.client_cpus)
            load, code, err = _profiled_cell(cfg, server, model, n, recorder)
            if code != 0 or not out.is_file():
                res.problems.append(f"py-spy n={n}: {err}")
                continue
            summary = prof.summarise(out.read_text())
            summary["load"] = load.to_json()
            res.profile[f"{model} n={n} c=32"] = summary
            out.unlink()  # the summary is what is kept; raw stacks hold machine paths
    problem = native.perf_problem()
    if problem is not None:
        res.notes.append(f"on-CPU profile skipped: {problem}")
        return
    for n in (1, 64):
        data = cfg.out / f"perf-{model}-n{n}.data"
        recorder = native.start_record(server.pid, cfg.profile_s, data, cpus=cfg.client_cpus)
        load, code, err = _profiled_cell(cfg, server, model, n, recorder)
        try:
            if code != 0 or not data.is_file():
                raise RuntimeError(f"perf record exited {code}: {err}")
            summary = native.summarise(native.parse_report(native.report(data)))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            res.problems.append(f"perf n={n}: {exc}")
            continue
        finally:
            data.unlink(missing_ok=True)
        summary["load"] = load.to_json()
        res.native_profile[f"{model} n={n} c=32"] = summary


@contextlib.contextmanager
def running(spec: ServerSpec, cfg: Config, log_dir: Path, res: Results) -> Iterator[ServerProcess | None]:
    server = ServerProcess(spec, cfg.server_cpus, log_dir)
    try:
        server.start()
        ready_s = server.wait_ready(timeout_s=180.0)
        logger.info("%s ready in %.2f s on port %d", spec.name, ready_s, spec.port)
    except Exception as exc:
        res.problems.append(f"{spec.name} did not start: {exc}")
        logger.error("%s did not start: %s", spec.name, exc)
        server.stop()
        yield None
        return
    try:
        yield server
    finally:
        server.stop()


def begin(cfg: Config) -> Results:
    """The run's metadata, and what in this machine's state makes its figures less comparable."""
    res = Results()
    cfg.loadgen = resolve_loadgen(cfg.loadgen)
    res.meta = machine_info(cfg, cfg.loadgen)
    res.problems.extend(lock_drift(locked_versions(DEV_LOCK)))
    if res.meta["other_load"]:
        res.notes.append(
            "measured while other CPU-heavy work ran on this machine (a training job): "
            "numbers are for developing the harness, not for comparison"
        )
    if cfg.loadgen == "python":
        res.notes.append("wrk not found: the asyncio load generator was used (may limit n=1 at high c)")
    return res


def resolve_models(cfg: Config, res: Results) -> list[str]:
    """The models to measure. The small and large ones must be exported; the 64×64 slot is
    skipped, with a log line and a note in the results, while its model is not (still training)."""
    models = [m for m in (cfg.small, cfg.large) if m]
    missing = [m for m in models if not (cfg.models_dir / m / "model.json").is_file()]
    if missing:
        raise SystemExit(f"models not found in {cfg.models_dir}: {', '.join(missing)}")
    if cfg.model64 and (cfg.models_dir / cfg.model64 / "model.json").is_file():
        models.append(cfg.model64)
    elif cfg.model64:
        note = (
            f"64×64 slot skipped: {cfg.model64} is not in {cfg.models_dir} "
            "(export it, or name another with --model64; --model64 '' turns the slot off)"
        )
        logger.warning("%s", note)
        res.notes.append(note)
    res.meta["model64"] = cfg.model64 if cfg.model64 in models else None
    res.meta["labels"] = {m: label_for(cfg, m) for m in models}
    return models


def stage_condgen(cfg: Config, models: list[str], log_dir: Path, res: Results, seed0: int) -> None:
    """One condgen on the whole model directory: every model's cells, then the profiles."""
    with running(condgen_spec(cfg.models_dir, cfg.threads, env=cfg.condgen_env), cfg, log_dir, res) as server:
        if server is None:
            return
        res.memory["condgen_rss_mb_ready"] = server.rss_mb()
        for model in models:
            res.checks.setdefault("condgen", {})[model] = check_png(
                server.spec.base_url, model, label_for(cfg, model)
            )
            stage_cells(cfg, server, model, res, seed0)
        res.memory["condgen_rss_mb_after_load"] = server.rss_mb()
        res.memory["condgen_peak_rss_mb"] = peak_rss_mb(server.pid)
        # Every goal model: a goal missed on one is explained by that model's own profile. The
        # 64×64 slot has no goals (and its n=64 profile would measure a cell it does not run).
        for model in models:
            if cell_set(cfg, model).goals:
                stage_profile(cfg, server, model, res)


def peer_spec(cfg: Config, name: str, model: str, res: Results) -> ServerSpec:
    if name == "bentoml":
        return bentoml_spec(cfg.models_dir / model, cfg.threads, cfg.max_batch_size)
    if name == "ray":
        return ray_spec(cfg.models_dir / model, cfg.threads, cfg.max_batch_size)
    if name == "torch":
        ckpt, recipe = torch_source(cfg, model)
        rel = ckpt.relative_to(REPO_ROOT) if ckpt is not None and ckpt.is_relative_to(REPO_ROOT) else ckpt
        spec = torch_spec(model, rel, recipe, cfg.threads)
        res.notes.append(f"torch peer, {model}: {spec.note}")
        return spec
    raise SystemExit(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")


def stage_peer(cfg: Config, name: str, model: str, log_dir: Path, res: Results, seed0: int) -> None:
    """One peer server for one model (each peer serves a single model): its cells."""
    with running(peer_spec(cfg, name, model, res), cfg, log_dir, res) as server:
        if server is None:
            return
        res.memory[f"{name}_rss_mb_ready:{model}"] = server.rss_mb()
        try:
            res.checks.setdefault(name, {})[model] = check_png(
                server.spec.base_url, model, label_for(cfg, model)
            )
        except Exception as exc:
            res.problems.append(f"{name} {model}: {exc}")
            return
        stage_cells(cfg, server, model, res, seed0)
        res.memory[f"{name}_rss_mb_after_load:{model}"] = server.rss_mb()


def run(cfg: Config) -> Results:
    res = begin(cfg)
    models = resolve_models(cfg, res)
    # The queue bounds (in images and requests) sized for the largest offered load, so that a
    # closed loop of c clients x n images measures serving, not load shedding (429); the
    # defaults (1024 images) would shed from c=32 x n=64 on. --condgen-env overrides.
    sets = [cell_set(cfg, m) for m in models]
    offered = max(max(s.concurrency) * max(s.ns) for s in sets)
    cfg.condgen_env = {
        "CONDGEN_MAX_QUEUE_IMAGES": str(max(1024, offered)),
        "CONDGEN_MAX_QUEUE_REQUESTS": str(max(512, *(max(s.concurrency) for s in sets))),
        **cfg.condgen_env,
    }
    res.meta["condgen_env"] = cfg.condgen_env
    cfg.out.mkdir(parents=True, exist_ok=True)
    log_dir = cfg.out / "logs"
    log_dir.mkdir(exist_ok=True)
    started = time.perf_counter()

    stage_raw(cfg, models, res)
    stage_int8(cfg, res)
    stage_rewrites(cfg, models, res)
    if cfg.costs_seconds > 0:
        stage_costs(cfg, models, res)
    if "condgen" in cfg.servers and cfg.cold_starts > 0:
        stage_cold_start(cfg, res, log_dir)
    if "condgen" in cfg.servers:
        stage_http_floor(cfg, res, log_dir)

    seed0 = 1
    for name in cfg.servers:
        if name == "condgen":
            stage_condgen(cfg, models, log_dir, res, seed0)
            continue
        for model in models:
            stage_peer(cfg, name, model, log_dir, res, seed0)
    res.meta["wall_s"] = round(time.perf_counter() - started, 1)
    return res


def parse_args(argv: list[str] | None = None) -> Config:
    server_cpus, client_cpus = default_cpus()
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", type=Path, default=Path("exported"))
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="trainer checkpoints (torch peer)")
    p.add_argument("--small", default=SMALL_MODEL, help="the small-latent model")
    p.add_argument(
        "--large", help=f"the large-latent model (default: {PREFERRED_LARGE} or any {LARGE_PREFIX}*)"
    )
    p.add_argument(
        "--model64",
        default=MODEL64,
        help=f"the 64×64 model, skipped when not exported (default {MODEL64}; '' turns the slot off)",
    )
    p.add_argument("--n64", default=",".join(map(str, NS64)), help="the 64×64 slot's n values")
    p.add_argument(
        "--concurrency64", default=",".join(map(str, CONCURRENCY64)), help="the 64×64 slot's concurrencies"
    )
    p.add_argument("--servers", default=",".join(SERVERS), help="subset of condgen,bentoml,ray,torch")
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument("--n", default="1,16,64")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per cell (the base window)")
    p.add_argument("--max-cell-seconds", type=float, default=20.0)
    p.add_argument(
        "--goal-rounds",
        type=int,
        default=3,
        help="condgen's cells behind the raw-limit goals (n=1 c=32; the largest n at every c) are "
        "measured this many times, and the median round kept",
    )
    p.add_argument("--latency-windows", type=float, default=6.0, help="window >= this many latencies")
    p.add_argument(
        "--max-latency",
        type=float,
        default=8.0,
        help="skip cells whose expected latency (c / previous throughput) exceeds this, seconds",
    )
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before a model's cells")
    p.add_argument("--raw-seconds", type=float, default=1.5, help="per batch size, over 3 rounds")
    p.add_argument("--raw-batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)))
    p.add_argument("--costs-seconds", type=float, default=0.2, help="per step timing loop; 0 skips")
    p.add_argument("--cold-starts", type=int, default=3)
    p.add_argument("--profile-seconds", type=float, default=8.0, help="0 skips py-spy")
    p.add_argument(
        "--server-cpus", default=server_cpus, help=f"taskset list for servers (default {server_cpus})"
    )
    p.add_argument(
        "--client-cpus", default=client_cpus, help=f"taskset list for clients (default {client_cpus})"
    )
    p.add_argument("--threads", type=int, help="ONNX Runtime / torch threads (default: server CPU count)")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument(
        "--condgen-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for condgen, e.g. CONDGEN_MAX_WAIT_MS=2 (repeatable; default: its defaults)",
    )
    p.add_argument("--no-report", action="store_true", help="write results.json only")
    p.add_argument("--readme", type=Path, help="also refresh the summary block in this README")
    a = p.parse_args(argv)
    servers = tuple(s.strip() for s in a.servers.split(",") if s.strip())
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        p.error(f"unknown servers: {', '.join(unknown)}")
    if a.goal_rounds < 1:
        p.error("--goal-rounds must be >= 1")
    cfg = Config(
        models_dir=a.models_dir,
        out=a.out,
        runs_dir=a.runs_dir,
        small=a.small,
        large=pick_large(a.models_dir, a.large),
        servers=servers,
        concurrency=parse_ints(a.concurrency),
        ns=parse_ints(a.n),
        duration_s=a.duration,
        max_cell_s=max(a.max_cell_seconds, a.duration),
        latency_windows=a.latency_windows,
        warmup_s=a.warmup,
        raw_seconds=a.raw_seconds,
        raw_batch_sizes=parse_ints(a.raw_batch_sizes),
        cold_starts=a.cold_starts,
        profile_s=a.profile_seconds,
        server_cpus=a.server_cpus or None,
        client_cpus=a.client_cpus or None,
        threads=a.threads or cpu_count(a.server_cpus or None),
        loadgen=a.loadgen,
        no_report=a.no_report,
        max_latency_s=a.max_latency,
        costs_seconds=a.costs_seconds,
        readme=a.readme,
        condgen_env=dict(kv.split("=", 1) for kv in a.condgen_env),
        goal_rounds=a.goal_rounds,
        model64=a.model64 or None,
        ns64=parse_ints(a.n64),
        concurrency64=parse_ints(a.concurrency64),
    )
    if cfg.model64 is not None and cfg.model64 in (cfg.small, cfg.large):
        p.error(f"--model64 {cfg.model64} is already the small or large model")
    return cfg


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe otherwise
    cfg = parse_args(argv)
    if cfg.client_cpus:
        # The orchestrator (mostly asleep) stays off the servers' CPUs too.
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpu_set(cfg.client_cpus))
    logger.info(
        "models %s; servers %s on CPUs %s, load on CPUs %s, %d thread(s)",
        ", ".join(m for m in (cfg.small, cfg.large, cfg.model64) if m),
        ",".join(cfg.servers),
        cfg.server_cpus,
        cfg.client_cpus,
        cfg.threads,
    )
    res = run(cfg)
    path = cfg.out / "results.json"
    path.write_text(json.dumps(res.to_json(), indent=1) + "\n")
    logger.info("wrote %s (%d cells, %.0f s)", path, len(res.cells), res.meta.get("wall_s", 0))
    if not cfg.no_report:
        from bench import report

        report.write_all(path, cfg.out, readme=cfg.readme)
    if res.problems:
        for problem in res.problems:
            logger.warning("problem: %s", problem)
        sys.exit(1)


if __name__ == "__main__":
    main()
