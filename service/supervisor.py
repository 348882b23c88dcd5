"""Model lifecycle: one batcher per loaded model, session re-creation, and repository reloads.

* :func:`start_batchers` gives every loaded model a started :class:`DynamicBatcher` whose
  ``recover()`` re-loads the model's directory (card, sha256, session, a probe run) when its session
  hangs or keeps failing. A directory that changed on disk meanwhile is not picked up by recovery:
  that is what a reload is for.
* :func:`reload_repository` re-scans the models directory. Unchanged models keep their batcher
  (and their queue); changed and new ones get a new batcher; removed ones are retired. A model
  whose new files fail to load keeps serving its previous version, and the report says why. The
  caller swaps the result in without awaiting in between, so a request sees either the old set of
  models or the new one, and retires the old batchers with :meth:`DynamicBatcher.stop`, which
  lets the work already queued on them finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from service.batcher import DynamicBatcher
from service.card import ModelCard, load_card, sha256_file
from service.config import Settings
from service.metrics import Metrics
from service.registry import ModelEntry, ModelRegistry, RunnerFactory, file_identity, load_entry
from service.runtime import ModelLoadError, Runner, images_problem

logger = logging.getLogger(__name__)


def probe(runner: Runner, card: ModelCard) -> None:
    """One row through a fresh runner: it must answer with one uint8 image of the card's shape."""
    z = np.zeros((1, card.latent.dim), dtype=np.float32)
    labels = np.zeros(1, dtype=np.int64) if card.conditional else None
    try:
        out = runner.run(z, labels)
    except Exception as exc:
        raise ModelLoadError(f"the re-created session failed its probe run ({type(exc).__name__})") from exc
    chw = (card.image.channels, card.image.height, card.image.width)
    if images_problem(out, 1, chw) is not None:
        raise ModelLoadError(f"the re-created session's probe run did not return uint8 {(1, *chw)}")


def recover_fn(entry: ModelEntry, settings: Settings, factory: RunnerFactory) -> Callable[[], Runner]:
    """What a batcher calls (on a worker thread) to re-create ``entry``'s session."""

    def recover() -> Runner:
        fresh = load_entry(entry.directory, settings, factory)
        if not fresh.loaded or fresh.runner is None or fresh.card is None:
            raise ModelLoadError(fresh.reason or "the model no longer loads")
        if fresh.card != entry.card:
            # Requests are planned with the card this batcher serves; a different card (new
            # latent size, new labels) must come in through a reload, never under its feet.
            raise ModelLoadError("the model's files changed on disk; reload the repository to serve them")
        probe(fresh.runner, fresh.card)
        return fresh.runner

    return recover


def start_batcher(
    entry: ModelEntry, settings: Settings, metrics: Metrics, factory: RunnerFactory
) -> DynamicBatcher:
    batcher = _batcher(entry, settings, factory)
    batcher.attach_metrics(metrics)
    batcher.start()
    return batcher


def start_batchers(
    registry: ModelRegistry, settings: Settings, metrics: Metrics, factory: RunnerFactory
) -> dict[str, DynamicBatcher]:
    """A started batcher for every loaded model (call on the event loop)."""
    return {entry.name: start_batcher(entry, settings, metrics, factory) for entry in registry.loaded}


@dataclass
class ReloadReport:
    """What one reload did, by model name."""

    loaded: list[str] = field(default_factory=list)  # new or changed, now serving the new files
    unchanged: list[str] = field(default_factory=list)  # same files: batcher and queue kept
    removed: list[str] = field(default_factory=list)  # directory gone: retired
    failed: dict[str, str] = field(default_factory=dict)  # cannot serve: reason
    kept: dict[str, str] = field(default_factory=dict)  # new files broken: previous version serves

    @property
    def ok(self) -> bool:
        return not self.failed and not self.kept

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "partial",
            "loaded": self.loaded,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": self.failed,
            "kept_previous": self.kept,
        }


@dataclass
class Reloaded:
    registry: ModelRegistry
    batchers: dict[str, DynamicBatcher]  # not started yet: see :func:`activate`
    retired: list[DynamicBatcher]
    report: ReloadReport


def _unchanged(model_dir: Path, old: ModelEntry, batcher: DynamicBatcher | None) -> bool:
    """The directory still holds exactly what ``old`` was loaded from, and its worker lives."""
    if not old.loaded or old.card is None or batcher is None or batcher.state not in {"ready", "recovering"}:
        return False
    try:
        card = load_card(model_dir)
    except (OSError, ValueError, ValidationError):
        return False
    if card != old.card:
        return False
    onnx = model_dir / card.onnx.file
    try:
        if old.onnx_identity is not None and file_identity(onnx) == old.onnx_identity:
            return True  # the very file that was hashed at load: a 1 GB model costs a stat
        return sha256_file(onnx) == card.onnx.sha256
    except OSError:
        return False


def reload_repository(
    registry: ModelRegistry,
    batchers: dict[str, DynamicBatcher],
    settings: Settings,
    factory: RunnerFactory,
) -> Reloaded:
    """Scan the models directory again (blocking: call it on a worker thread).

    Loads only what changed. Returns the new registry and batcher map for the caller to swap in,
    and the batchers it replaces, for the caller to retire.
    """
    report = ReloadReport()

    def reuse(model_dir: Path) -> ModelEntry | None:
        old = registry.get(model_dir.name)
        if old is not None and _unchanged(model_dir, old, batchers.get(old.name)):
            report.unchanged.append(old.name)
            return old
        return None

    scanned = ModelRegistry.scan(registry.models_dir, settings, factory, reuse=reuse)
    entries: list[ModelEntry] = []
    new_batchers: dict[str, DynamicBatcher] = {}
    retired: list[DynamicBatcher] = []
    for entry in scanned:
        old = registry.get(entry.name)
        old_batcher = batchers.get(entry.name)
        if entry.name in report.unchanged:
            assert old_batcher is not None
            new_batchers[entry.name] = old_batcher
        elif entry.loaded:
            report.loaded.append(entry.name)
            new_batchers[entry.name] = _batcher(entry, settings, factory)
            if old_batcher is not None:
                retired.append(old_batcher)
        elif old is not None and old.loaded and old_batcher is not None and old_batcher.state != "dead":
            # Never trade a serving model for a broken one: the previous version stays.
            reason = entry.reason or "failed to load"
            report.kept[entry.name] = reason
            logger.error(
                "model %s: its new files failed to load (%s); the previous version serves", entry.name, reason
            )
            entry = old
            new_batchers[entry.name] = old_batcher
        else:
            report.failed[entry.name] = entry.reason or "failed to load"
            if old_batcher is not None:
                retired.append(old_batcher)
        entries.append(entry)
    seen = {e.name for e in entries}
    for name, old_batcher in batchers.items():
        if name not in seen:
            report.removed.append(name)
            retired.append(old_batcher)
    problem = scanned.problem if not any(e.loaded for e in entries) else None
    return Reloaded(ModelRegistry(registry.models_dir, entries, problem), new_batchers, retired, report)


def _batcher(entry: ModelEntry, settings: Settings, factory: RunnerFactory) -> DynamicBatcher:
    """A batcher for a freshly loaded entry; started by :func:`activate` on the event loop."""
    assert entry.runner is not None
    return DynamicBatcher.from_settings(
        entry.name,
        entry.runner,
        settings,
        None,
        recover=recover_fn(entry, settings, factory),
        card=entry.card,
    )


def activate(reloaded: Reloaded, old_batchers: dict[str, DynamicBatcher], metrics: Metrics) -> None:
    """Start the reload's new batchers and point them at ``metrics`` (call on the event loop)."""
    for old in reloaded.retired:
        if old.name in reloaded.batchers:
            old.superseded = True  # its successor owns the model's ready gauge now
    for name, batcher in reloaded.batchers.items():
        if old_batchers.get(name) is not batcher:
            batcher.attach_metrics(metrics)
            batcher.start()
    metrics.register_models(
        ready=[n for n, b in reloaded.batchers.items() if old_batchers.get(n) is not b],
        failed=list(reloaded.report.failed),
    )


def log_report(report: ReloadReport, trigger: str) -> None:
    logger.log(
        logging.INFO if report.ok else logging.ERROR,
        "reload (%s): loaded %s; unchanged %s; removed %s; failed %s; kept previous %s",
        trigger,
        ", ".join(report.loaded) or "none",
        ", ".join(report.unchanged) or "none",
        ", ".join(report.removed) or "none",
        ", ".join(f"{n} ({r})" for n, r in report.failed.items()) or "none",
        ", ".join(f"{n} ({r})" for n, r in report.kept.items()) or "none",
    )
