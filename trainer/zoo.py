"""The bundled zoo: which recipes ``exported/`` holds, for how many epochs, and one command to
rebuild it (``python -m trainer zoo``).

Epoch counts, each recipe's own, are what it needed to meet its quality goal on a 2-core CPU
machine, where one was met (``docs/quality.md``): the cards' training times add up to about 22
hours, so the zoo takes about 11 with two workers, longer while other work shares the cores.
Each model card records the epochs and wall time the model actually got. Recipes run in
separate processes with one torch thread each: these small networks scale poorly across threads,
so two single-threaded workers train about twice as fast as one two-threaded one.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path

from .device import resolve_device
from .recipes import get_recipe, zoo64

log = logging.getLogger(__name__)

# Longest job first (by wall time at the recipes' epochs, two jobs sharing 2 cores) so the two
# workers finish together.
ZOO_ORDER = (
    "condgen-fashion",
    "condgen-mnist",
    "cgan-fashion-wgangp-10",
    "cgan-fashion-wgangp-32",
    "cgan-fashion-bce-32",
    "cgan-fashion-hinge-32",
    "cgan-fashion-lsgan-32",
    "cdcgan-mnist",
    "cgan-fashion-hinge-10",
    "dcgan-mnist",
    "lsgan-mnist",
    "cgan-fashion-lsgan-10",
    "cgan-fashion-bce-10",
    "cgan-mnist",
    "gan-mnist",
    "cvae-mnist",
)
# recipe → epochs: each recipe's own count, the one source.
ZOO_PLAN: dict[str, int] = {name: get_recipe(name).epochs for name in ZOO_ORDER}
# The 64×64 models train on folders with per-model options (attributes, image limits), so
# `make train-64` trains them, not `python -m trainer zoo`; `exported/` holds both sets.
ZOO64_PLAN: dict[str, int] = {recipe.name: recipe.epochs for recipe in zoo64.RECIPES}
EXPORTED_MODELS: dict[str, int] = {**ZOO_PLAN, **ZOO64_PLAN}
# The models `exported/` also holds as `<model>-int8` (`python -m trainer quantize zoo`): the
# flagships and the benchmark's two, each variant behind the quantizer's quality gate.
INT8_SOURCES = ("condgen-mnist", "condgen-fashion", "cdcgan-mnist", "cgan-fashion-bce-10")


@dataclass(frozen=True)
class ZooJob:
    recipe: str
    epochs: int
    runs: Path
    export_to: Path
    data_dir: Path | None
    seed: int
    device: str = "auto"


def _run_job(job: ZooJob) -> tuple[str, float, str | None]:
    """Train then export one recipe (in a worker process); returns (name, seconds, error)."""
    from .export import export_checkpoint
    from .training import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.monotonic()
    try:
        ckpt, _ = train(
            job.recipe,
            TrainConfig(
                run_dir=job.runs / job.recipe,
                epochs=job.epochs,
                seed=job.seed,
                data_dir=job.data_dir,
                threads=1,
                device=job.device,
            ),
        )
        export_checkpoint(ckpt, job.export_to, data_dir=job.data_dir)
    except Exception as exc:  # one failed recipe must not stop the others
        log.exception("%s failed", job.recipe)
        return job.recipe, time.monotonic() - start, f"{type(exc).__name__}: {exc}"
    return job.recipe, time.monotonic() - start, None


def build_zoo(
    export_to: Path,
    runs: Path = Path("runs"),
    workers: int = 2,
    only: list[str] | None = None,
    epochs_scale: float = 1.0,
    data_dir: Path | None = None,
    seed: int = 0,
    device: str = "auto",
) -> list[tuple[str, float, str | None]]:
    resolve_device(device)  # a device this machine lacks fails here, not in every worker
    names = only or list(ZOO_PLAN)
    unknown = [n for n in names if n not in ZOO_PLAN]
    if unknown:
        raise KeyError(f"not in the zoo plan: {', '.join(unknown)}")
    jobs = [
        ZooJob(n, max(1, round(ZOO_PLAN[n] * epochs_scale)), runs, export_to, data_dir, seed, device)
        for n in names
    ]
    results: list[tuple[str, float, str | None]] = []
    # spawn: a fresh interpreter per worker, so torch's thread pool is configured from scratch.
    with mp.get_context("spawn").Pool(processes=workers, maxtasksperchild=1) as pool:
        for name, seconds, error in pool.imap_unordered(_run_job, jobs):
            status = "FAILED " + error if error else "ok"
            log.info("zoo: %s %s in %.0f s", name, status, seconds)
            results.append((name, seconds, error))
    return results
