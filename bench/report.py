"""``results.json`` → ``RESULTS.md`` (tables, the goals as ratios) and a throughput/latency plot.

``python -m bench.report bench/results/results.json`` re-renders without re-measuring;
``--readme README.md`` also refreshes the block between the benchmark markers there.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.costs import markdown as costs_markdown
from bench.native_profile import LIBRARIES as NATIVE_LIBRARIES
from bench.native_profile import render_markdown as native_markdown
from bench.profile import render_markdown

PLOT_FILE = "throughput_latency.png"
RESULTS_FILE = "RESULTS.md"
README_START = "<!-- bench:summary:start -->"
README_END = "<!-- bench:summary:end -->"
SERVER_LABELS = {
    "condgen": "condgen",
    "bentoml": "BentoML (adaptive batching)",
    "ray": "Ray Serve (@serve.batch)",
    "torch": "FastAPI + torch eager",
}
GOAL_C = 32  # the concurrency the goals are stated at
# The raw-limit goals: (n, condgen images/s ÷ raw best-batch images/s at least). n=1 is judged at
# c=GOAL_C, the largest n at its best concurrency.
RAW_GOALS = ((1, 0.65), (64, 0.93))
P99_GOAL_MS = 25.0  # condgen's p99 at n=1 c=GOAL_C, at most
ORT_LIBRARY = "ONNX Runtime (session runs)"  # bench.native_profile's bucket for the session runs
PEER_TARGETS = {"bentoml": 2.0, "torch": 3.0}  # condgen ÷ peer images/s at c=GOAL_C, every n
PEER_N_TARGETS = {"ray": ((1, 3.0), (64, 1.5))}  # condgen ÷ peer images/s at c=GOAL_C, per n
# condgen p99 ÷ the peer's at c=GOAL_C, worst n without errors: (target, test).
P99_PEER_TARGETS = {"bentoml": ("≤ 0.5", lambda x: x <= 0.5), "ray": ("< 1", lambda x: x < 1.0)}
INT8_GOAL = 2.0  # an int8 variant's raw limit ÷ its float32 model's, at least
REWRITE_AGREEMENT_GOAL = 0.999  # a rewritten graph's pixels within one level of the graph before it


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    values: dict[str, float | None]  # per model (or "all")
    passes: bool | None  # None: not measured
    fmt: str = "{:.2f}"

    def cell(self, key: str) -> str:
        value = self.values.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if math.isinf(value):
            return "∞"
        return self.fmt.format(value)


def _cells(results: dict[str, Any]) -> list[dict[str, Any]]:
    return list(results.get("cells", []))


def find(results: dict[str, Any], server: str, model: str, n: int, c: int) -> dict[str, Any] | None:
    for cell in _cells(results):
        if (cell["server"], cell["model"], cell["n"], cell["concurrency"]) == (server, model, n, c):
            return cell
    return None


def best_over_c(results: dict[str, Any], server: str, model: str, n: int) -> dict[str, Any] | None:
    cells = [c for c in _cells(results) if c["server"] == server and c["model"] == model and c["n"] == n]
    return max(cells, key=lambda c: c["images_per_s"], default=None)


def raw_best(results: dict[str, Any], model: str) -> float | None:
    raw = results.get("raw", {}).get(model)
    return float(raw["best_images_per_s"]) if raw else None


def raw_goal_cell(results: dict[str, Any], model: str, n: int) -> dict[str, Any] | None:
    """condgen's cell a raw-limit goal judges: n=1 at c=GOAL_C, larger n at its best c."""
    return find(results, "condgen", model, n, GOAL_C) if n == 1 else best_over_c(results, "condgen", model, n)


def models_of(results: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for name in [*results.get("raw", {}), *(c["model"] for c in _cells(results))]:
        if name not in seen:
            seen.append(name)
    return seen


def model64(results: dict[str, Any]) -> str | None:
    """The 64×64 slot's model, when the run measured one."""
    name = results.get("meta", {}).get("model64")
    return str(name) if name else None


def goal_models(results: dict[str, Any]) -> list[str]:
    """The models the goals are stated for: every model but the 64×64 slot's."""
    return [m for m in models_of(results) if m != model64(results)]


def _goal_ns(results: dict[str, Any]) -> list[int]:
    models = set(goal_models(results))
    return sorted({c["n"] for c in _cells(results) if c["model"] in models})


# A cell counts for latency comparisons only when at most this share of its answers were errors:
# the latency of fast failures says nothing about serving.
MAX_ERROR_SHARE = 0.01


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b; infinite when only b is zero (a peer that served nothing), None when unknown."""
    if a is None or b is None:
        return None
    if b == 0:
        return math.inf if a > 0 else None
    return a / b


def _clean(cell: dict[str, Any] | None) -> bool:
    if not cell:
        return False
    answered = max(1, int(cell.get("requests", 0)))
    return int(cell.get("error_count", 0)) <= MAX_ERROR_SHARE * answered


def _p99_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    return _ratio(_p99(a), _p99(b)) if _clean(a) and _clean(b) else None


def _img(cell: dict[str, Any] | None) -> float | None:
    return float(cell["images_per_s"]) if cell else None


def _p99(cell: dict[str, Any] | None) -> float | None:
    if not cell or "p99" not in cell.get("latency_ms", {}):
        return None
    return float(cell["latency_ms"]["p99"])


def _all(values: Iterable[float | None], test: Any) -> bool | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return all(test(v) for v in vals)


def _worst(values: list[float | None], lowest: bool) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return min(vals) if lowest else max(vals)


def _raw_goals(results: dict[str, Any], models: list[str]) -> list[Goal]:
    out = []
    for n, least in RAW_GOALS:
        v = {m: _ratio(_img(raw_goal_cell(results, m, n)), raw_best(results, m)) for m in models}
        where = f"c={GOAL_C}" if n == 1 else "best c"
        out.append(
            Goal(
                f"HTTP n={n} {where} ÷ raw best batch (images/s)",
                f"≥ {least:.2f}",
                v,
                _all(v.values(), lambda x, t=least: x >= t),
                # Three places: a ratio just under the line must not print as on it.
                "{:.3f}",
            )
        )
    return out


def _throughput_vs(results: dict[str, Any], peer: str, model: str, ns: Iterable[int]) -> float | None:
    """condgen ÷ peer images/s at c=GOAL_C, the worst of ``ns``."""
    ratios = [
        _ratio(_img(find(results, "condgen", model, n, GOAL_C)), _img(find(results, peer, model, n, GOAL_C)))
        for n in ns
    ]
    return _worst(ratios, lowest=True)


def _throughput_goal(
    results: dict[str, Any], models: list[str], peer: str, ns: list[int], bound: float, where: str
) -> Goal:
    v = {m: _throughput_vs(results, peer, m, ns) for m in models}
    return Goal(
        f"condgen ÷ {SERVER_LABELS[peer]} images/s at {where}",
        f"≥ {bound:g}×",
        v,
        _all(v.values(), lambda x: x >= bound),
        "{:.2f}×",
    )


def _peer_goals(results: dict[str, Any], models: list[str]) -> list[Goal]:
    ns = _goal_ns(results)
    out = [
        _throughput_goal(results, models, peer, ns, bound, f"c={GOAL_C} (worst n)")
        for peer, bound in PEER_TARGETS.items()
    ]
    out += [
        _throughput_goal(results, models, peer, [n], bound, f"n={n} c={GOAL_C}")
        for peer, targets in PEER_N_TARGETS.items()
        for n, bound in targets
    ]
    for peer, (target, test) in P99_PEER_TARGETS.items():
        v = {
            m: _worst(
                [
                    _p99_ratio(find(results, "condgen", m, n, GOAL_C), find(results, peer, m, n, GOAL_C))
                    for n in ns
                ],
                lowest=False,
            )
            for m in models
        }
        out.append(
            Goal(
                f"condgen p99 ÷ {SERVER_LABELS[peer]} p99 at c={GOAL_C} (worst n without errors)",
                target,
                v,
                _all(v.values(), test),
            )
        )
    return out


def _service_goals(results: dict[str, Any], models: list[str]) -> list[Goal]:
    v = {m: _p99(find(results, "condgen", m, 1, GOAL_C)) for m in models}
    out = [
        Goal(
            f"condgen p99 at n=1 c={GOAL_C}, ms",
            f"≤ {P99_GOAL_MS:g}",
            v,
            _all(v.values(), lambda x: x <= P99_GOAL_MS),
            "{:.1f}",
        )
    ]
    cold = results.get("cold_start", {}).get("median_s")
    n_models = results.get("cold_start", {}).get("models_ready")
    out.append(
        Goal(
            f"cold start, spawn → /readyz 200, whole zoo ({n_models or '?'} models), s",
            "≤ 3",
            {"all": cold},
            None if cold is None else cold <= 3.0,
        )
    )
    mem = results.get("memory", {})
    rss = max(
        (x for x in (mem.get("condgen_rss_mb_ready"), mem.get("condgen_rss_mb_after_load")) if x is not None),
        default=None,
    )
    out.append(
        Goal(
            "condgen RSS with the zoo loaded (after load), MiB",
            "≤ 600",
            {"all": rss},
            None if rss is None else rss <= 600,
            "{:.0f}",
        )
    )
    return out


def goals(results: dict[str, Any]) -> list[Goal]:
    models = goal_models(results)
    return [*_raw_goals(results, models), *_peer_goals(results, models), *_service_goals(results, models)]


def _verdict(passes: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[passes]


def goals_table(results: dict[str, Any]) -> str:
    models = goal_models(results)
    header = "| goal | target | " + " | ".join(f"`{m}`" for m in models) + " | verdict |"
    lines = [header, "| --- | --- | " + " | ".join("---:" for _ in models) + " | --- |"]
    for g in goals(results):
        if "all" in g.values:
            value = g.cell("all")
            cells = [value] + ["″" for _ in models[1:]] if models else [value]
        else:
            cells = [g.cell(m) for m in models]
        lines.append(f"| {g.name} | {g.target} | " + " | ".join(cells) + f" | {_verdict(g.passes)} |")
    return "\n".join(lines)


def ceilings_table(results: dict[str, Any]) -> str:
    """Raw best ÷ each peer at c=GOAL_C, per n: the most ``condgen ÷ peer`` can be, since condgen
    cannot serve faster than the raw limit; a goal is out of reach where this is below it."""
    models = goal_models(results)
    ns = _goal_ns(results)
    lines = [
        f"| raw best ÷ peer at c={GOAL_C} | n | " + " | ".join(f"`{m}`" for m in models) + " | goal |",
        "| --- | ---: | " + " | ".join("---:" for _ in models) + " | ---: |",
    ]
    bounds = [(peer, n, target) for peer, target in PEER_TARGETS.items() for n in ns]
    bounds += [(peer, n, target) for peer, targets in PEER_N_TARGETS.items() for n, target in targets]
    for peer, n, target in bounds:
        values = [_ratio(raw_best(results, m), _img(find(results, peer, m, n, GOAL_C))) for m in models]
        if all(v is None for v in values):
            continue
        cells = " | ".join(_fmt(v, "{:.2f}×") for v in values)
        lines.append(f"| {SERVER_LABELS[peer]} | {n} | {cells} | ≥ {target:g}× |")
    return "\n".join(lines)


INT8_TEXT = (
    "Each int8 variant in the model directory against the float32 model it was made from: raw "
    "limit at each graph's best batch, one ONNX Runtime thread, the two graphs alternated in one "
    "process and timed in the thread's CPU time (`python -m bench.graph_ratio`); quality from the "
    "two cards (Inception FID and label accuracy, the sample counts in brackets)."
)


def _metric(quality: dict[str, Any], name: str, spec: str) -> str:
    m = quality.get(name)
    return "–" if m is None else f"{spec.format(m['value'])} ({m['n']:,})"


def int8_table(results: dict[str, Any]) -> str:
    rows = results.get("int8", {})
    if not rows:
        return "(no int8 variant in the model directory)"
    lines = [
        "| int8 variant | float32 raw limit (batch) | int8 raw limit (batch) | int8 ÷ float32 | goal "
        "| Inception FID float32 → int8 | label accuracy float32 → int8 |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for variant, row in rows.items():
        base, int8 = row["graphs"]["graphs"]
        q = row["quality"]
        fid = [_metric(q[k], "fid_inception", "{:.3f}") for k in (row["source"], variant)]
        acc = [_metric(q[k], "label_accuracy", "{:.2%}") for k in (row["source"], variant)]
        lines.append(
            f"| `{variant}` | {base['raw_limit']:.0f} ({base['best_batch']}) | "
            f"{int8['raw_limit']:.0f} ({int8['best_batch']}) | {int8['ratio']:.2f}× | "
            f"≥ {INT8_GOAL:g}×: {_verdict(int8['ratio'] >= INT8_GOAL)} | "
            f"{' → '.join(fid)} | {' → '.join(acc)} |"
        )
    return "\n".join(lines)


REWRITES_TEXT = (
    "The float32 graphs against the graphs committed before their rewrites (`trainer/graph_passes.py`, "
    "listed in each card): raw limit at each graph's best batch, timed like the int8 variants "
    "(`python -m bench.rewrites`), and the share of uint8 pixels within one level of the earlier "
    "graph's on the same latents and labels."
)


def rewrites_table(results: dict[str, Any]) -> str:
    rewrites = results.get("rewrites") or {}
    rows = rewrites.get("models", [])
    if not rows:
        return "(the rewrites were not measured)"
    lines = [
        f"| model | raw limit at {rewrites['commit']} (batch) | raw limit now (batch) | now ÷ before "
        f"| pixels within one level (images) | goal | rewrites |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        if row["baseline"] != "ok":
            lines.append(f"| `{row['model']}` | – | – | – | – | {row['baseline']} | |")
            continue
        before, now = row["graphs"]
        agreement = row["agreement"]
        share = agreement["within_one_level"]
        lines.append(
            f"| `{row['model']}` | {before['raw_limit']:.0f} ({before['best_batch']}) | "
            f"{now['raw_limit']:.0f} ({now['best_batch']}) | {now['ratio']:.2f}× | "
            f"{share:.4%} ({agreement['images']:,}) | ≥ {REWRITE_AGREEMENT_GOAL:.1%}: "
            f"{_verdict(share >= REWRITE_AGREEMENT_GOAL)} | {'; '.join(row['rewrites'])} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Gap:
    """Where one raw-limit goal stands, in server CPU µs per image (one core, so images/s ∝ 1 ÷ it)."""

    model: str
    n: int
    concurrency: int
    ratio: float  # condgen ÷ raw best
    target: float
    cpu_us: float  # the server's CPU per image in the goal's cell
    raw_us: float  # the raw limit's time per image at its best batch (one thread)
    libraries: dict[str, float]  # µs per image by library (perf at this n), ONNX Runtime included

    @property
    def budget_us(self) -> float:
        """CPU per image at which the goal would hold, the core as busy as it was."""
        return self.cpu_us * self.ratio / self.target

    @property
    def cut_us(self) -> float:
        return max(0.0, self.cpu_us - self.budget_us)

    @property
    def ort_us(self) -> float | None:
        """ONNX Runtime's part of ``cpu_us``; None where this n was not profiled."""
        return self.libraries.get(ORT_LIBRARY)

    @property
    def serving_us(self) -> float | None:
        return None if self.ort_us is None else self.cpu_us - self.ort_us


def gaps(results: dict[str, Any]) -> list[Gap]:
    out: list[Gap] = []
    for model in goal_models(results):
        raw = raw_best(results, model)
        for n, target in RAW_GOALS:
            cell = raw_goal_cell(results, model, n)
            if not raw or not cell or not cell.get("server_cpu_ms_per_image") or not cell["images_per_s"]:
                continue
            cpu_us = float(cell["server_cpu_ms_per_image"]) * 1000.0
            # perf runs at c=GOAL_C; for n > 1 the goal's cell may be at another c, and the shares
            # at the same n stand in for it.
            perf = results.get("native_profile", {}).get(f"{model} n={n} c={GOAL_C}", {})
            libraries = {row["name"]: cpu_us * row["percent"] / 100.0 for row in perf.get("libraries", [])}
            out.append(
                Gap(
                    model,
                    n,
                    int(cell["concurrency"]),
                    float(cell["images_per_s"]) / raw,
                    target,
                    cpu_us,
                    1e6 / raw,
                    libraries,
                )
            )
    return out


def gaps_table(results: dict[str, Any]) -> str:
    rows = gaps(results)
    if not rows:
        return "(not measured)"
    lines = [
        "| model | cell | ÷ raw | goal | CPU µs/image | at the goal | ONNX Runtime µs/image (raw best) "
        "| serving µs/image | to cut |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for g in rows:
        serving = g.serving_us
        if g.cut_us <= 0:
            cut = "met"
        elif serving:
            cut = f"**{g.cut_us:.0f} ({g.cut_us / serving:.0%} of serving)**"
        else:
            cut = f"**{g.cut_us:.0f}**"
        lines.append(
            f"| `{g.model}` | n={g.n} c={g.concurrency} | {g.ratio:.3f} | {g.target:.2f} | {g.cpu_us:.0f} | "
            f"{g.budget_us:.0f} | {_fmt(g.ort_us)} ({g.raw_us:.0f}) | {_fmt(serving)} | {cut} |"
        )
    profiled = [g for g in rows if g.libraries]
    if profiled:
        names = [name for name, _ in NATIVE_LIBRARIES if any(name in g.libraries for g in profiled)]
        names += sorted({k for g in profiled for k in g.libraries} - set(names))
        lines += [
            "",
            "| CPU µs per image (perf shares × the cell's CPU) | "
            + " | ".join(f"`{g.model}` n={g.n}" for g in profiled)
            + " |",
            "| --- | " + " | ".join("---:" for _ in profiled) + " |",
        ]
        for name in names:
            lines.append(f"| {name} | " + " | ".join(_fmt(g.libraries.get(name)) for g in profiled) + " |")
    return "\n".join(lines)


def http_floor_line(results: dict[str, Any]) -> str:
    floor = results.get("http_floor")
    if not floor:
        return "(the HTTP floor was not measured)"
    return (
        f"The HTTP floor (`python -m bench.http_floor`, c={floor['concurrency']}): "
        f"{floor['cpu_us_per_request']:.0f} µs of server CPU per request at "
        f"{floor['requests_per_s']:,.0f} requests/s, for uvicorn as condgen runs it answering a "
        "constant body: the event loop, the HTTP protocol, the ASGI hand-off and the kernel's "
        "socket work, before any of condgen's own code. At n=1 each image pays it once."
    )


GAPS_TEXT = (
    "What stands between condgen and the raw limit, per image. With its cores kept busy, the "
    "server's images/s go as 1 ÷ its CPU per image, so a goal holds once the CPU per image falls to "
    "*at the goal* (now × ratio ÷ goal). ONNX Runtime's part (perf) is about the raw limit's time "
    "per image at its best batch (in brackets), which no serving change lowers; everything else "
    "(*serving*: HTTP, Python, latents, PNG, the kernel) is what a change to the service can cut, "
    "and *to cut* is how much of it must go. The second table splits each profiled cell's CPU per "
    f"image by library (perf at c={GOAL_C}; for n > 1 the goal's cell may run at another "
    "concurrency)."
)

CEILINGS_TEXT = (
    "condgen cannot serve faster than the raw limit, so condgen ÷ peer is at most raw ÷ peer "
    "(next table). Where that is below the goal, no serving change meets it on this machine: "
    "against BentoML, which runs the same ONNX file, not even a cheaper graph; against torch "
    "eager, only a cheaper graph (torch runs the trainer's module, which graph rewrites do not touch)."
)


def _fmt(x: float | None, spec: str = "{:.0f}") -> str:
    if x is None:
        return "–"
    return "∞" if math.isinf(x) else spec.format(x)


def cells_table(results: dict[str, Any], model: str) -> str:
    raw = raw_best(results, model)
    lines = [
        "| server | n | c | images/s | requests/s | p50 ms | p95 ms | p99 ms | errors | ÷ raw | CPU ms/img |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = {s: i for i, s in enumerate(SERVER_LABELS)}
    cells = sorted(
        (c for c in _cells(results) if c["model"] == model),
        key=lambda c: (order.get(c["server"], 9), c["n"], c["concurrency"]),
    )
    for c in cells:
        lat = c.get("latency_ms", {})
        ms = [_fmt(lat.get(k), "{:.1f}") for k in ("p50", "p95", "p99")]
        vs_raw = _fmt(_ratio(c["images_per_s"], raw), "{:.2f}")
        lines.append(
            f"| {c['server']} | {c['n']} | {c['concurrency']} | {c['images_per_s']:.0f} | "
            f"{c['requests_per_s']:.1f} | {' | '.join(ms)} | {c['error_count']} | {vs_raw} | "
            f"{_fmt(c.get('server_cpu_ms_per_image'), '{:.3f}')} |"
        )
    return "\n".join(lines)


def peers_table(results: dict[str, Any]) -> str:
    lines = [
        "| model | n | condgen images/s | BentoML | condgen ÷ BentoML | Ray Serve | condgen ÷ Ray Serve | "
        "torch eager | condgen ÷ torch | condgen p99 ms | BentoML p99 ms | p99 ratio | Ray Serve p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in models_of(results):
        for n in sorted({c["n"] for c in _cells(results) if c["model"] == m}):
            cg, bm, ry, tc = (find(results, s, m, n, GOAL_C) for s in ("condgen", "bentoml", "ray", "torch"))
            cells = [
                _fmt(_img(cg)),
                _fmt(_img(bm)),
                _fmt(_ratio(_img(cg), _img(bm)), "{:.2f}×"),
                _fmt(_img(ry)),
                _fmt(_ratio(_img(cg), _img(ry)), "{:.2f}×"),
                _fmt(_img(tc)),
                _fmt(_ratio(_img(cg), _img(tc)), "{:.2f}×"),
                _fmt(_p99(cg), "{:.1f}"),
                _fmt(_p99(bm), "{:.1f}"),
                _fmt(_p99_ratio(cg, bm), "{:.2f}"),
                _fmt(_p99(ry), "{:.1f}"),
            ]
            lines.append(f"| `{m}` | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SESSION_TEXT = (
    "The 64×64 slot: one cell set, outside the goals above. Session time per image at each raw "
    "limit's best batch, µs: {costs}. The dearer the session per image, the less each request's "
    "fixed serving cost (HTTP, Python, latents) weighs; PNG and float→uint8 grow with the pixels. "
    "HTTP ÷ raw is each server's images/s ÷ the raw limit; *session share* is the raw limit's time "
    "per image ÷ condgen's CPU per image in the cell: about the part of the server's CPU the "
    "session itself takes (wall time over CPU time: past 100% only where other work slowed the raw "
    "limit). The 28×28 models' condgen ÷ raw at the same cells are for comparison."
)


def _session_share(raw: float | None, cell: dict[str, Any] | None) -> float | None:
    """Raw time per image ÷ the cell's server CPU per image (both µs)."""
    if not raw or not cell or not cell.get("server_cpu_ms_per_image"):
        return None
    return (1e6 / raw) / (float(cell["server_cpu_ms_per_image"]) * 1000.0)


def session_section(results: dict[str, Any]) -> list[str]:
    """Markdown lines for the 64×64 slot (heading-less): its text and HTTP ÷ raw per cell; none
    when the run measured no 64×64 model."""
    big = model64(results)
    if big is None:
        return []
    others = goal_models(results)
    raw = raw_best(results, big)
    costs = "; ".join(
        f"`{m}` {_fmt(_ratio(1e6, raw_best(results, m)))}" for m in [big, *others] if raw_best(results, m)
    )
    lines = [
        "| n | c | condgen ÷ raw | BentoML ÷ raw | Ray Serve ÷ raw | torch eager ÷ raw | "
        "condgen session share | " + " | ".join(f"`{m}` condgen ÷ raw" for m in others) + " |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in others) + " |",
    ]
    for n, c in sorted({(x["n"], x["concurrency"]) for x in _cells(results) if x["model"] == big}):
        by_server = [
            _ratio(_img(find(results, s, big, n, c)), raw) for s in ("condgen", "bentoml", "ray", "torch")
        ]
        share = _session_share(raw, find(results, "condgen", big, n, c))
        theirs = [_ratio(_img(find(results, "condgen", m, n, c)), raw_best(results, m)) for m in others]
        cells = [
            *(_fmt(v, "{:.2f}") for v in by_server),
            _fmt(share, "{:.0%}"),
            *(_fmt(v, "{:.2f}") for v in theirs),
        ]
        lines.append(f"| {n} | {c} | " + " | ".join(cells) + " |")
    return [SESSION_TEXT.format(costs=costs or "not measured"), "", *lines]


def raw_table(results: dict[str, Any]) -> str:
    raws = results.get("raw", {})
    if not raws:
        return "(not measured)"
    batches = sorted({p["batch"] for r in raws.values() for p in r["points"]})
    lines = [
        "| model | " + " | ".join(f"batch {b}" for b in batches) + " | best |",
        "| --- | " + " | ".join("---:" for _ in batches) + " | ---: |",
    ]
    for model, r in raws.items():
        by_batch = {p["batch"]: p["images_per_s"] for p in r["points"]}
        cells = [_fmt(by_batch.get(b)) for b in batches]
        lines.append(
            f"| `{model}` | "
            + " | ".join(cells)
            + f" | **{r['best_images_per_s']:.0f}** (batch {r['best_batch']}) |"
        )
    return "\n".join(lines)


def meta_lines(results: dict[str, Any]) -> list[str]:
    m = results.get("meta", {})
    v = m.get("versions", {})
    libs = ", ".join(f"{k} {v.get(k, '?')}" for k in ("onnxruntime", "torch", "bentoml", "ray", "uvicorn"))
    lines = [
        f"- Measured {m.get('date', '?')} at commit `{m.get('commit', '?')}` on "
        f"{m.get('cpus_online', '?')} × {m.get('cpu', '?')}; Python {m.get('python', '?')}, {libs}.",
        f"- Servers pinned to CPU(s) `{m.get('server_cpus')}`; load generator (`{m.get('loadgen')}`), py-spy "
        f"and orchestrator to CPU(s) `{m.get('client_cpus')}`; {m.get('threads')} ONNX Runtime / torch "
        f"thread(s) everywhere, raw limit included; max batch {m.get('max_batch_size')}.",
        f"- Closed loop, {m.get('duration_s')} s per cell (longer, up to {m.get('max_cell_s')} s, where "
        f"latency is long), {m.get('warmup_s')} s warm-up per server and model; whole run "
        f"{m.get('wall_s', '?')} s.",
    ]
    if m.get("goal_rounds", 1) > 1:
        lines.append(
            f"- condgen's cells behind the raw-limit goals (n=1 at c=32; the largest n at every c) "
            f"are the median of {m['goal_rounds']} rounds (`round_images_per_s` in results.json)."
        )
    for note in results.get("notes", []):
        lines.append(f"- Note: {note}")
    if m.get("condgen_env"):
        lines.append(f"- condgen settings changed from the defaults: `{m['condgen_env']}`.")
    for problem in results.get("problems", []):
        lines.append(f"- Problem: {problem}")
    return lines


def render_markdown_report(results: dict[str, Any]) -> str:
    parts = [
        "# Benchmark results",
        "",
        "Written by `python -m bench.run` (`make bench`); re-render with `python -m bench.report`.",
        "",
        *meta_lines(results),
        "",
        "## Goals",
        "",
        goals_table(results),
        "",
        INT8_TEXT,
        "",
        int8_table(results),
        "",
        REWRITES_TEXT,
        "",
        rewrites_table(results),
        "",
        f"Ratios against peers are taken at c={GOAL_C} for every n and the worst one is shown (∞: the "
        f"peer answered nothing but errors); p99 ratios leave out cells where either side had more "
        f"than {MAX_ERROR_SHARE:.0%} errors, whose latency is that of failures. Latency percentiles "
        "(wrk) cover every answer, errors included.",
        "",
        GAPS_TEXT,
        "",
        gaps_table(results),
        "",
        http_floor_line(results),
        "",
        CEILINGS_TEXT,
        "",
        ceilings_table(results),
        "",
        f"![throughput vs p99 latency]({PLOT_FILE})",
        "",
        "## Raw ONNX Runtime limit (images/s, in-process, float→uint8 included)",
        "",
        "One session run per batch, whatever its size; each size's figure is the median of "
        "interleaved rounds (`python -m bench.raw_ort`).",
        "",
        raw_table(results),
        "",
        f"## condgen vs peers at c={GOAL_C}",
        "",
        peers_table(results),
        "",
    ]
    big = model64(results)
    if big is not None:
        parts += [
            f"## `{big}` (64×64 slot): HTTP ÷ raw",
            "",
            *session_section(results),
            "",
        ]
    for model in models_of(results):
        parts += [f"## `{model}`: every cell", "", cells_table(results, model), ""]
    cold = results.get("cold_start", {})
    mem = results.get("memory", {})
    parts += ["## Cold start and memory", ""]
    if cold:
        parts.append(
            f"- condgen cold start (spawn → `/readyz` 200, {cold.get('models_ready')} models): "
            f"median {cold.get('median_s')} s over {len(cold.get('runs_s', []))} runs {cold.get('runs_s')}; "
            f"RSS at ready {cold.get('rss_mb_at_ready')} MiB."
        )
    for key, value in mem.items():
        parts.append(f"- `{key}`: {value} MiB")
    checks = results.get("checks", {})
    if checks:
        parts += ["", "## Same bytes", ""]
        labels = results.get("meta", {}).get("labels", {})
        for model in models_of(results):
            hashes = {s: h.get(model) for s, h in checks.items() if h.get(model)}
            same = sorted(s for s, h in hashes.items() if h == hashes.get("condgen"))
            label = labels.get(model, 3)  # results written before labels were recorded used 3
            asked = "no label" if label is None else f"label {label}"
            parts.append(
                f"- `{model}` ({asked}, seed 7, n 4): identical PNG bytes from {', '.join(same) or 'none'}"
                + (
                    f"; different: {', '.join(sorted(set(hashes) - set(same)))}"
                    if set(hashes) - set(same)
                    else ""
                )
            )
    if results.get("costs"):
        parts += [
            "",
            "## Per-step costs (in-process, µs per call, on the servers' CPU)",
            "",
            "What each step of the request path costs on its own (`python -m bench.costs`); the HTTP "
            "stack's share is what a cell costs beyond their sum.",
            "",
        ]
        for model, rows in results["costs"].items():
            parts += [costs_markdown(rows, f"`{model}`"), ""]
    if results.get("profile"):
        parts += ["", "## Profile (py-spy on condgen)", ""]
        for title, summary in results["profile"].items():
            load = summary.get("load", {})
            parts.append(
                render_markdown(
                    summary, f"{title}: {load.get('images_per_s', 0):.0f} images/s under the profiler"
                )
            )
            threads = ", ".join(f"{t['name']} {t['percent']} %" for t in summary.get("threads", []))
            parts += [f"Samples by thread: {threads}.", ""]
    if results.get("native_profile"):
        parts += [
            "",
            "## On-CPU time by library (perf on condgen)",
            "",
            "py-spy above counts a thread as busy whenever it is runnable, so on a one-core server "
            "its hand-off and event-loop buckets include threads waiting their turn for the CPU. "
            "perf samples only what runs: the ONNX Runtime share is the fraction of the raw limit "
            "that the server can reach at its batch sizes; the rest is what serving costs.",
            "",
        ]
        for title, summary in results["native_profile"].items():
            load = summary.get("load", {})
            parts.append(
                native_markdown(summary, f"{title}: {load.get('images_per_s', 0):.0f} images/s under perf")
            )
    return "\n".join(parts).rstrip() + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = models_of(results)
    ns = sorted({c["n"] for c in _cells(results)}) or [1]
    fig, axes = plt.subplots(
        max(1, len(models)), len(ns), figsize=(4.2 * len(ns), 3.4 * max(1, len(models))), squeeze=False
    )
    colors = {"condgen": "tab:blue", "bentoml": "tab:orange", "ray": "tab:red", "torch": "tab:green"}
    for i, model in enumerate(models):
        for j, n in enumerate(ns):
            ax = axes[i][j]
            if not any(c["model"] == model and c["n"] == n for c in _cells(results)):
                ax.axis("off")  # an n this model is not measured at (the 64×64 slot's cell set)
                continue
            for server, label in SERVER_LABELS.items():
                pts = sorted(
                    (
                        c
                        for c in _cells(results)
                        if c["server"] == server and c["model"] == model and c["n"] == n
                    ),
                    key=lambda c: c["concurrency"],
                )
                pts = [c for c in pts if "p99" in c.get("latency_ms", {})]
                if not pts:
                    continue
                xs = [c["images_per_s"] for c in pts]
                ys = [c["latency_ms"]["p99"] for c in pts]
                ax.plot(xs, ys, "-", color=colors[server], label=label, linewidth=1.2)
                for c, x, y in zip(pts, xs, ys, strict=True):
                    # x: a cell with errors (its p99 includes fast failures, or it shed load)
                    clean = _clean(c)
                    ax.plot(
                        [x], [y], "o" if clean else "x", color=colors[server], markersize=4 if clean else 6
                    )
                    ax.annotate(
                        f"c{c['concurrency']}" + ("" if clean else " err"),
                        (x, y),
                        fontsize=6,
                        xytext=(3, 2),
                        textcoords="offset points",
                    )
            raw = raw_best(results, model)
            if raw:
                ax.axvline(raw, color="black", linestyle="--", linewidth=1, label="raw ORT, best batch")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_title(f"{model}, n={n}", fontsize=9)
            ax.set_xlabel("images/s")
            ax.set_ylabel("p99 latency, ms")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlim(left=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(
        "Closed loop: throughput vs p99 latency (points: concurrency; x: cell with errors)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_block(results: dict[str, Any], results_dir: str) -> str:
    return "\n".join(
        [
            README_START,
            *meta_lines(results),
            "",
            goals_table(results),
            "",
            INT8_TEXT,
            "",
            int8_table(results),
            "",
            REWRITES_TEXT,
            "",
            rewrites_table(results),
            "",
            GAPS_TEXT,
            "",
            gaps_table(results),
            "",
            http_floor_line(results),
            "",
            CEILINGS_TEXT,
            "",
            ceilings_table(results),
            "",
            *session_section(results),
            *([""] if model64(results) else []),
            f"![throughput vs p99 latency]({results_dir}/{PLOT_FILE})",
            "",
            "Every cell, the raw limit per batch size, memory and the profile: "
            f"[{results_dir}/{RESULTS_FILE}]({results_dir}/{RESULTS_FILE}).",
            README_END,
        ]
    )


def update_readme(readme: Path, block: str) -> bool:
    """Replace the text between the markers; returns False (and leaves the file) without them."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(text[:start] + block + text[end + len(README_END) :])
    return True


def write_all(results_path: Path, out_dir: Path, readme: Path | None = None) -> Path:
    results = json.loads(results_path.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / RESULTS_FILE
    md.write_text(render_markdown_report(results))
    if _cells(results):
        plot(results, out_dir / PLOT_FILE)
    if readme is not None:
        rel = out_dir.resolve().relative_to(readme.resolve().parent).as_posix()
        update_readme(readme, readme_block(results, rel))
    return md


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="?", default=Path("bench/results/results.json"))
    parser.add_argument("--out", type=Path, help="default: the results file's directory")
    parser.add_argument("--readme", type=Path, help="refresh the summary block in this README")
    args = parser.parse_args(argv)
    print(write_all(args.results, args.out or args.results.parent, args.readme))


if __name__ == "__main__":
    main()
