"""The model repository: every ``<models_dir>/<name>/`` with a ``model.json`` and a ``model.onnx``.

Each model is checked before it may serve: the card must validate (:class:`service.card.ModelCard`),
its name must be the directory's, the ONNX file's sha256 must be the card's, and the session's
inputs and output must be the ones the card describes. A model that fails any check is skipped
with one log line and a reason that ``/readyz`` and ``/models`` show; the others serve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from service.card import CARD_FILE, ONNX_FILE, SAMPLES_FILE, ModelCard, is_valid_name, load_card, sha256_file
from service.config import Settings
from service.errors import validation_message
from service.runtime import ModelLoadError, OrtRunner, Runner

logger = logging.getLogger(__name__)

# (model directory, validated card, settings) -> a ready-to-run Runner, or ModelLoadError.
RunnerFactory = Callable[[Path, ModelCard, Settings], Runner]
# A model directory -> an entry already loaded from it that is still current, or None to load it.
Reuse = Callable[[Path], "ModelEntry | None"]


def default_runner_factory(model_dir: Path, card: ModelCard, settings: Settings) -> Runner:
    return OrtRunner.load(model_dir, card, settings)


@dataclass(frozen=True)
class ModelEntry:
    """One directory of the repository, loaded or not."""

    name: str
    directory: Path
    status: Literal["loaded", "failed"]
    card: ModelCard | None = None
    runner: Runner | None = None
    reason: str | None = None
    # The ONNX file as it was hashed (see file_identity): a reload skips hashing it again while
    # this still holds.
    onnx_identity: tuple[int, ...] | None = None

    @property
    def loaded(self) -> bool:
        return self.status == "loaded"

    @property
    def samples_path(self) -> Path | None:
        path = self.directory / SAMPLES_FILE
        return path if path.is_file() else None


def _scrub(message: str, model_dir: Path) -> str:
    """Drop file-system locations from a reason: clients see ``<name>/model.onnx``, never ``/srv/...``."""
    prefixes = {str(model_dir.resolve()), str(model_dir.absolute()), str(model_dir)}
    for prefix in sorted(prefixes, key=len, reverse=True):  # longest first: one may contain another
        message = message.replace(prefix, model_dir.name)
    return message


class ModelRegistry:
    """The outcome of scanning ``models_dir``: at start-up, and again at each reload."""

    def __init__(self, models_dir: Path, entries: list[ModelEntry], problem: str | None = None) -> None:
        self.models_dir = models_dir
        self._entries = {e.name: e for e in entries}
        # Why the repository as a whole has nothing to serve (missing or empty directory), if so.
        # Client-visible (/readyz), so it never names the directory's path; the log does.
        self.problem = problem

    @classmethod
    def scan(
        cls,
        models_dir: Path,
        settings: Settings,
        runner_factory: RunnerFactory = default_runner_factory,
        reuse: Reuse | None = None,
    ) -> ModelRegistry:
        """Load every model directory; ``reuse`` may hand back a still-current entry instead."""
        if not models_dir.is_dir():
            missing = "the models directory does not exist"
            logger.error("%s (%s); nothing to serve", missing, models_dir)
            return cls(models_dir, [], missing)
        entries = []
        for model_dir in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (model_dir / CARD_FILE).exists() and not (model_dir / ONNX_FILE).exists():
                logger.debug("ignoring %s: neither %s nor %s", model_dir.name, CARD_FILE, ONNX_FILE)
                continue
            entry = reuse(model_dir) if reuse is not None else None
            if entry is None:
                entry = load_entry(model_dir, settings, runner_factory)
                if entry.loaded:
                    logger.info("model %s loaded from %s", entry.name, model_dir)
                else:
                    logger.error("model %s skipped: %s", entry.name, entry.reason)
            entries.append(entry)
        problem: str | None = None
        if not entries:
            problem = (
                "no models were found in the models directory "
                f"(expected <name>/{CARD_FILE} + <name>/{ONNX_FILE})"
            )
            logger.error("%s (%s)", problem, models_dir)
        elif not any(e.loaded for e in entries):
            problem = f"none of the {len(entries)} model(s) in the models directory could be loaded"
            logger.error("%s (%s)", problem, models_dir)
        return cls(models_dir, entries, problem)

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    @property
    def loaded(self) -> list[ModelEntry]:
        return [e for e in self._entries.values() if e.loaded]

    @property
    def failed(self) -> list[ModelEntry]:
        return [e for e in self._entries.values() if not e.loaded]


def load_entry(model_dir: Path, settings: Settings, runner_factory: RunnerFactory) -> ModelEntry:
    """Validate one model directory and build its runner; never raises for a broken model."""
    name = model_dir.name
    if not is_valid_name(name):
        return ModelEntry(
            name,
            model_dir,
            "failed",
            reason="directory name is not a valid model name (lower-case a-z, 0-9, '.', '_', '-')",
        )
    card: ModelCard | None = None
    try:
        try:
            card = load_card(model_dir)
        except FileNotFoundError:
            raise ModelLoadError(f"{CARD_FILE} is missing") from None
        except ValidationError as exc:
            detail = validation_message(exc.errors(), root="card")
            raise ModelLoadError(f"{CARD_FILE} is invalid: {detail}") from exc
        except ValueError as exc:  # malformed JSON text
            raise ModelLoadError(f"{CARD_FILE} is not valid JSON: {exc}") from exc
        if card.name != name:
            raise ModelLoadError(f"card name {card.name!r} does not match its directory {name!r}")
        onnx_path = model_dir / card.onnx.file
        if not onnx_path.is_file():
            raise ModelLoadError(f"{card.onnx.file} is missing")
        identity = file_identity(onnx_path)  # before hashing: a write during the hash changes it
        digest = sha256_file(onnx_path)
        if digest != card.onnx.sha256:
            raise ModelLoadError(
                f"sha256 mismatch for {card.onnx.file}: file has {digest[:12]}..., "
                f"card says {card.onnx.sha256[:12]}... (re-export, or fix the card)"
            )
        runner = runner_factory(model_dir, card, settings)
    except ModelLoadError as exc:
        return ModelEntry(name, model_dir, "failed", card=card, reason=_scrub(str(exc), model_dir))
    except Exception as exc:  # a factory bug must not take the other models down
        logger.exception("unexpected error loading %s", name)
        return ModelEntry(
            name,
            model_dir,
            "failed",
            card=card,
            reason=_scrub(f"unexpected load error: {type(exc).__name__}: {exc}", model_dir),
        )
    return ModelEntry(name, model_dir, "loaded", card=card, runner=runner, onnx_identity=identity)


def file_identity(path: Path) -> tuple[int, ...]:
    """Device, inode, size and modification time in ns: any write or replacement changes one."""
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
