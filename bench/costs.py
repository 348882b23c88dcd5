"""What one request costs, step by step, in-process: a budget to set against the HTTP numbers.

Each step of condgen's request path is timed on its own with the real functions (parse and
validate the body, plan the latents, run the session per image at a few batch sizes, convert to
uint8, encode the PNG, observe the metrics), in microseconds per call, best of ``repeat`` timings
of a loop sized to last about ``target_s``. Nothing here needs HTTP; what the HTTP stack adds on
top is what the load cells show beyond the sum.

``python -m bench.costs --model-dir exported/cdcgan-mnist`` prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.card import ModelCard, load_card
from service.config import Settings
from service.encode import negotiate, png_of_batch
from service.metrics import Metrics
from service.plan import plan_generate
from service.runtime import OrtRunner, to_uint8
from service.schemas import GenerateRequest


def time_us(fn: Callable[[], object], target_s: float = 0.2, repeat: int = 3) -> float:
    """Microseconds per call of ``fn``: best of ``repeat`` loops of about ``target_s`` each."""
    timer = timeit.Timer(fn)
    once = max(timer.timeit(number=1), 1e-7)  # also the warm-up call
    number = max(1, min(1_000_000, int(target_s / once)))
    best = min(timer.repeat(repeat=repeat, number=number))
    return best / number * 1e6


def measure(
    model_dir: Path, threads: int = 1, ns: tuple[int, ...] = (1, 64), target_s: float = 0.2
) -> list[dict[str, object]]:
    card = load_card(model_dir)
    settings = Settings(providers=["CPUExecutionProvider"], intra_op_threads=threads, warmup=False)
    runner = OrtRunner.load(model_dir, card, settings)
    metrics = Metrics()
    label = min(3, card.num_classes - 1) if card.conditional else None
    rows: list[dict[str, object]] = []
    for n in ns:
        rows += _request_steps(card, settings, runner, metrics, label, n, target_s)

    rng = np.random.default_rng(0)
    for batch in (1, 8, 32, 64):
        z = rng.standard_normal((batch, card.latent.dim)).astype(np.float32)
        labels = np.full(batch, label or 0, dtype=np.int64) if card.conditional else None
        runner.run(z, labels)

        def run(z: np.ndarray = z, labels: np.ndarray | None = labels) -> object:
            return runner.run(z, labels)

        rows.append(
            _row(
                f"session run + uint8, batch {batch} (per image)", 1, time_us(run, target_s) / batch, "image"
            )
        )
    return rows


def _row(step: str, n: int, us: float, per: str = "request") -> dict[str, object]:
    return {"step": step, "n": n, "us": round(us, 1), "per": per}


def _request_steps(
    card: ModelCard,
    settings: Settings,
    runner: OrtRunner,
    metrics: Metrics,
    label: int | None,
    n: int,
    target_s: float,
) -> list[dict[str, object]]:
    """The per-request steps for requests of ``n`` images."""
    name = card.name.encode()
    body = (
        b'{"model":"'
        + name
        + b'",'
        + (b'"label":%d,' % label if label is not None else b"")
        + b'"seed":7,"n":%d}' % n
    )
    req = GenerateRequest.model_validate_json(body)
    plan = plan_generate(req, card, settings)
    raw = runner.raw(plan.z, plan.labels)
    images = runner.run(plan.z, plan.labels)
    level = settings.png_compress_level

    def observe() -> None:  # what the middleware, batcher and route record per request
        metrics.requests.labels(card.name, "200").inc()
        metrics.request_duration.labels(card.name).observe(0.01)
        metrics.queue_wait.labels(card.name).observe(0.001)
        metrics.images_generated.labels(card.name).inc(n)

    steps: list[tuple[str, Callable[[], object], str]] = [
        (
            "parse + validate JSON body (pydantic)",
            lambda: GenerateRequest.model_validate_json(body),
            "request",
        ),
        ("plan: labels + latents from (seed, i)", lambda: plan_generate(req, card, settings), "request"),
        ("content negotiation", lambda: negotiate("image/png"), "request"),
        ("float→uint8", lambda: to_uint8(raw, card.image.value_range), "batch"),
        (f"PNG encode (level {level})", lambda: png_of_batch(images, plan.layout, level), "request"),
        ("PNG encode (level 0, stored)", lambda: png_of_batch(images, plan.layout, 0), "request"),
        ("metrics (4 observations)", observe, "request"),
    ]
    return [_row(step, n, time_us(fn, target_s), per) for step, fn, per in steps]


def markdown(rows: list[dict[str, object]], title: str) -> str:
    lines = [f"**{title}**", "", "| step | n | µs | per |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {r['step']} | {r['n']} | {r['us']} | {r['per']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.costs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.2, help="per timing loop")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = measure(args.model_dir, args.threads, target_s=args.seconds)
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        sys.stdout.write(markdown(rows, f"Per-step cost, {args.model_dir.name}") + "\n")


if __name__ == "__main__":
    main()
