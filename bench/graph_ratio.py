"""Raw-limit ratios of model graphs, measured side by side in one process.

``python -m bench.graph_ratio exported/cdcgan-mnist exported/cdcgan-mnist-int8`` loads each model
directory with the service's own session (:class:`service.runtime.OrtRunner`, one intra-op thread,
the same float→uint8 step) and, for ``reps`` rounds, times ``runs`` session runs of every graph at
every batch size in turn: A, B, A, B, … so a burst of other work on a shared machine lands on both
sides. A graph's rate at a batch size is its best round (the least disturbed); its raw limit is
its best batch size, as in :mod:`bench.raw_ort`. With one intra-op thread ONNX Runtime computes on
the calling thread, so by default a round is timed in that thread's CPU time (``--clock cpu``):
on a machine shared with other work, wall time also counts the time the thread waited for a core.
Prints JSON: per graph the rate at each batch size, the best batch, and the ratio of its raw
limit to the first graph's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.card import load_card
from service.config import Settings
from service.runtime import OrtRunner

DEFAULT_BATCH_SIZES = (16, 32, 64, 128)
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


@dataclass(frozen=True)
class RatioConfig:
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    reps: int = 7
    runs: int = 5  # session runs per timed round
    threads: int = 1
    clock: str = "cpu"  # "cpu": the calling thread's CPU time; "wall": elapsed time


def _runner(model_dir: Path, cfg: RatioConfig) -> OrtRunner:
    card = load_card(model_dir)
    biggest = max(cfg.batch_sizes)
    settings = Settings(
        providers=["CPUExecutionProvider"],
        intra_op_threads=cfg.threads,
        warmup=False,
        max_batch_size=biggest,
        run_batch_size=biggest,
        max_n=biggest,
        max_grid_images=biggest,
        max_queue_images=max(1024, biggest),
    )
    return OrtRunner.load(model_dir, card, settings)


def measure(model_dirs: list[Path], cfg: RatioConfig) -> dict[str, object]:
    if len(model_dirs) < 1 or cfg.reps < 1 or cfg.runs < 1:
        raise ValueError("need at least one model, one rep and one run")
    if cfg.clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}")
    if cfg.clock == "cpu" and cfg.threads != 1:
        raise ValueError("--clock cpu needs --threads 1 (other threads' work is not on this thread's clock)")
    clock = CLOCKS[cfg.clock]
    runners = [_runner(d, cfg) for d in model_dirs]
    cards = [load_card(d) for d in model_dirs]
    rng = np.random.default_rng(0)
    best = {(i, b): float("inf") for i in range(len(runners)) for b in cfg.batch_sizes}
    inputs = {}
    for b in cfg.batch_sizes:
        for i, (runner, card) in enumerate(zip(runners, cards, strict=True)):
            z = rng.standard_normal((b, card.latent.dim)).astype(np.float32)
            labels = rng.integers(0, card.num_classes, b).astype(np.int64) if card.conditional else None
            runner.run(z, labels)  # warm-up: allocations for this shape
            inputs[i, b] = (z, labels)
    for _ in range(cfg.reps):
        for b in cfg.batch_sizes:
            for i, runner in enumerate(runners):
                z, labels = inputs[i, b]
                started = clock()
                for _ in range(cfg.runs):
                    runner.run(z, labels)
                best[i, b] = min(best[i, b], (clock() - started) / cfg.runs)
    graphs = []
    for i, card in enumerate(cards):
        rates = {b: b / best[i, b] for b in cfg.batch_sizes}
        top = max(rates, key=lambda b: rates[b])
        graphs.append(
            {
                "model": card.name,
                "images_per_s": {str(b): round(r, 1) for b, r in rates.items()},
                "best_batch": top,
                "raw_limit": round(rates[top], 1),
            }
        )
    base = float(graphs[0]["raw_limit"])  # type: ignore[arg-type]
    for g in graphs:
        g["ratio"] = round(float(g["raw_limit"]) / base, 3)  # type: ignore[arg-type]
    return {"threads": cfg.threads, "clock": cfg.clock, "reps": cfg.reps, "runs": cfg.runs, "graphs": graphs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_ratio", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dirs", type=Path, nargs="+", help="model directories; ratios are to the first")
    parser.add_argument(
        "--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)), help="comma-separated"
    )
    parser.add_argument("--reps", type=int, default=7, help="alternated rounds; a rate is its best round")
    parser.add_argument("--runs", type=int, default=5, help="session runs per round")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="what a round is timed in")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.batch_sizes.split(",") if s.strip())
    cfg = RatioConfig(
        batch_sizes=sizes, reps=args.reps, runs=args.runs, threads=args.threads, clock=args.clock
    )
    try:
        result = measure(args.model_dirs, cfg)
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"{exc}\n")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
