"""The raw limit: ONNX Runtime in-process, no HTTP, no queue, images/s per batch size.

Same session as the service (``service.runtime.OrtRunner``: the same session options, the same
thread count, the same model file) and the same float→uint8 conversion, so the gap between this
and the HTTP numbers is exactly what serving costs: parsing, latents, batching, PNG encoding,
the event loop. Inputs are drawn once per batch size. Each batch size runs for ``seconds`` in
all (at most ``max_runs`` runs) after one warm-up run, split into ``rounds`` that visit the batch
sizes in turn; its images/s is the median over the rounds, so a burst of other work on the box
skews one round of one size rather than the whole answer.

``python -m bench.raw_ort --model-dir exported/cdcgan-mnist --threads 1`` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from service.card import load_card
from service.config import Settings
from service.runtime import OrtRunner

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class BatchPoint:
    batch: int
    runs: int
    seconds: float
    ms_per_run: float
    images_per_s: float  # median over the rounds
    # Each round's rate; empty in results written before rounds existed.
    round_images_per_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class RawResult:
    model: str
    threads: int
    points: list[BatchPoint]

    @property
    def best(self) -> BatchPoint:
        return max(self.points, key=lambda p: p.images_per_s)

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "threads": self.threads,
            "points": [asdict(p) for p in self.points],
            "best_batch": self.best.batch,
            "best_images_per_s": self.best.images_per_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RawResult:
        points = [BatchPoint(**p) for p in data["points"]]  # type: ignore[attr-defined]
        return cls(model=str(data["model"]), threads=int(data["threads"]), points=points)  # type: ignore[call-overload]


def measure(
    model_dir: Path,
    threads: int,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    seconds: float = 1.0,
    max_runs: int = 100_000,
    rounds: int = 3,
) -> RawResult:
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    card = load_card(model_dir)
    settings = Settings(
        providers=["CPUExecutionProvider"],
        intra_op_threads=threads,
        warmup=False,
        max_batch_size=max(batch_sizes),
        run_batch_size=max(batch_sizes),  # one session run per batch: the limit at each size
        max_n=max(batch_sizes),
        max_grid_images=max(batch_sizes),
        max_queue_images=max(1024, max(batch_sizes)),
    )
    runner = OrtRunner.load(model_dir, card, settings)
    rng = np.random.default_rng(0)
    inputs = {}
    for batch in batch_sizes:
        z = rng.standard_normal((batch, card.latent.dim)).astype(np.float32)
        labels = rng.integers(0, card.num_classes, batch).astype(np.int64) if card.conditional else None
        runner.run(z, labels)  # warm-up: allocations for this shape
        inputs[batch] = (z, labels)
    runs = dict.fromkeys(batch_sizes, 0)
    elapsed = dict.fromkeys(batch_sizes, 0.0)
    rates: dict[int, list[float]] = {batch: [] for batch in batch_sizes}
    for _ in range(rounds):
        for batch in batch_sizes:
            z, labels = inputs[batch]
            budget = max(1, (max_runs - runs[batch]) // max(1, rounds - len(rates[batch])))
            count = 0
            started = time.perf_counter()
            deadline = started + seconds / rounds
            while count < budget:
                runner.run(z, labels)  # session run + float→uint8, as the batcher calls it
                count += 1
                if time.perf_counter() >= deadline:
                    break
            took = time.perf_counter() - started
            runs[batch] += count
            elapsed[batch] += took
            rates[batch].append(batch * count / took)
    points = []
    for batch in batch_sizes:
        rate = statistics.median(rates[batch])
        points.append(
            BatchPoint(
                batch=batch,
                runs=runs[batch],
                seconds=round(elapsed[batch], 4),
                ms_per_run=round(batch / rate * 1000.0, 4),
                images_per_s=round(rate, 2),
                round_images_per_s=[round(r, 2) for r in rates[batch]],
            )
        )
    return RawResult(model=card.name, threads=threads, points=points)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_ort", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="an exported <name>/ directory")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument(
        "--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)), help="comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="per batch size, all rounds together")
    parser.add_argument("--max-runs", type=int, default=100_000, help="per batch size")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the batch sizes; median")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.batch_sizes.split(",") if s.strip())
    result = measure(args.model_dir, args.threads, sizes, args.seconds, args.max_runs, args.rounds)
    sys.stdout.write(json.dumps(result.to_json()) + "\n")


if __name__ == "__main__":
    main()
