"""``condgen generate`` in-process against the raw ONNX Runtime limit, on the same machine.

Each round measures :func:`bench.raw_ort.measure` (the best batch size's images/s) and then a
whole in-process dataset run (:func:`condgen.generate.make_dataset` writing an ``.npz``: latents,
session runs, float→uint8, the writes and the manifest after each step) on the same model and
thread count. Rounds alternate the two, so a burst of other work on a shared box falls on both;
the answer is the median of the rounds' ratios.

``python -m bench.generate_rate --model-dir exported/condgen-mnist --n 10000 --rounds 3`` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.raw_ort import measure
from condgen.generate import DatasetSpec, make_dataset
from condgen.sources import LocalSource
from service.config import Settings


@dataclass(frozen=True)
class Round:
    raw_images_per_s: float  # bench.raw_ort's best batch size
    raw_best_batch: int
    generate_images_per_s: float  # the whole dataset run, first image to manifest

    @property
    def ratio(self) -> float:
        return self.generate_images_per_s / self.raw_images_per_s


def generate_rate(model_dir: Path, n: int, threads: int) -> float:
    settings = Settings(models_dir=model_dir.parent, intra_op_threads=threads, probe_labels=False)
    with tempfile.TemporaryDirectory() as tmp:
        spec = DatasetSpec(model=model_dir.name, n=n, out=Path(tmp) / "set.npz", fmt="npz", seed=1)
        manifest = make_dataset(spec, LocalSource(model_dir.parent, settings), progress=False)
    return float(manifest["images_per_s"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate_rate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="an exported <name>/ directory")
    parser.add_argument("--n", type=int, default=10_000, help="images of each in-process run")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads, both sides")
    parser.add_argument("--seconds", type=float, default=2.0, help="bench.raw_ort's time per batch size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rounds = []
    for _ in range(args.rounds):
        raw = measure(args.model_dir, args.threads, seconds=args.seconds)
        made = generate_rate(args.model_dir, args.n, args.threads)
        rounds.append(Round(raw.best.images_per_s, raw.best.batch, made))
    summary = {
        "model": args.model_dir.name,
        "threads": args.threads,
        "n": args.n,
        "rounds": [{**asdict(r), "ratio": round(r.ratio, 3)} for r in rounds],
        "median_raw_images_per_s": round(statistics.median(r.raw_images_per_s for r in rounds), 1),
        "median_generate_images_per_s": round(statistics.median(r.generate_images_per_s for r in rounds), 1),
        "median_ratio": round(statistics.median(r.ratio for r in rounds), 3),
    }
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
