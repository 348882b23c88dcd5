"""Write one model directory, ``<out>/<name>/{model.onnx, model.json, samples.png}``, as a whole.

Export and import both finish a graph and its card in memory, then call :func:`write_model_dir`:
the files are staged in a hidden directory beside the destination (the registry skips names that
start with a dot) and renamed into place, so a reader sees the old model or the new one, never a
mix, and a failure leaves the old one as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from service.card import ONNX_FILE, SAMPLES_FILE, ModelCard, write_card

from .card_graph import CardGraph
from .plots import sample_grid

log = logging.getLogger(__name__)

# The served copy must be readable by a service running as another user (the container's).
DIR_MODE = 0o755


def draw_samples(graph: CardGraph, path: Path) -> Path:
    """The card's label × z grid of ``graph`` as a PNG (what ``samples.png`` holds)."""
    card = graph.card
    return sample_grid(graph, card.latent.dim, card.num_classes, card.image.value_range, path)


def write_model_dir(out_root: Path, graph: bytes, card: ModelCard) -> Path:
    """Write ``graph``, ``card`` and the sample grid to ``out_root/<card.name>/``, replacing any
    model of that name only once all three are written; returns the directory."""
    out_root.mkdir(parents=True, exist_ok=True)
    dest = out_root / card.name
    stage = Path(tempfile.mkdtemp(prefix=f".{card.name}-", dir=out_root))
    try:
        (stage / ONNX_FILE).write_bytes(graph)
        write_card(card, stage)
        draw_samples(CardGraph(card, graph), stage / SAMPLES_FILE)
        stage.chmod(DIR_MODE)  # mkdtemp creates 0700
        if dest.exists():
            # Two renames within one file system: the old model is gone only once the new one is whole.
            old = Path(tempfile.mkdtemp(prefix=f".{card.name}-old-", dir=out_root))
            os.replace(dest, old / card.name)
            try:
                os.replace(stage, dest)
            except OSError:
                os.replace(old / card.name, dest)  # the old model back where it was
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, dest)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    log.debug("wrote %s", dest)
    return dest
