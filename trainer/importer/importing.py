"""``trainer import``: a foreign generator made condgen's, checked, and written as a model directory.

Source → ONNX (:mod:`.sources`) → its signature (:mod:`.signature`) → adapters composed around it
(:mod:`.adapters`) → value range, parity, every label, range (:mod:`.checks`) → card → one write of
``<out>/<name>/`` (:func:`trainer.model_dir.write_model_dir`). Nothing is written unless every check
passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from service.card import ModelCard, is_valid_name

from ..card_graph import CardGraph
from ..model_dir import write_model_dir
from . import checks
from .adapters import MADE_DYNAMIC, ROW_BY_ROW, Batch, wrap
from .card import build_card
from .options import ImportOptions, ImportRefused
from .signature import Signature, infer_signature
from .sources import Run, Source, load_source

log = logging.getLogger(__name__)

DYNAMIC_PROBE_ROWS = 3  # a batch-1 graph declared dynamic must reproduce its source on this many rows
DYNAMIC_TOL = 1e-4  # ... to within this (output units; the value range is not known yet)


@dataclass
class ImportReport:
    """What an import did: where it wrote, what it inferred, what it measured."""

    directory: Path
    card: ModelCard
    inferred: list[str]
    adapters: list[str]
    parity_max_diff: float
    labels_max_diff: float
    seconds: float
    warnings: list[str] = field(default_factory=list)


def reference(sig: Signature, run: Run) -> checks.Generate:
    """The source's own output for condgen's (z, labels), as float N×C×H×W, built in numpy; a
    batch-1 source runs one row at a time."""

    def generate(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if sig.inputs.fixed_batch:
            rows = [
                run(sig.inputs.feeds(z[i : i + 1], None if labels is None else labels[i : i + 1]))
                for i in range(len(z))
            ]
            return sig.output.to_nchw(np.concatenate(rows))
        return sig.output.to_nchw(run(sig.inputs.feeds(z, labels)))

    return generate


def _provisional(
    options: ImportOptions, source: Source, sig: Signature, graph: bytes, batch: Batch
) -> ModelCard:
    """A card good enough to run ``graph`` by (names, sizes) before the checks fill in the rest."""
    return build_card(
        options,
        source,
        sig,
        graph,
        value_range=options.value_range or (-1.0, 1.0),
        batch=batch,
        adapters=[],
        parity_max_diff=0.0,
        inferred=[],
    )


def _wrap_batch(
    options: ImportOptions, source: Source, sig: Signature, ref: checks.Generate
) -> tuple[bytes, list[str], Batch]:
    """The wrapped graph; a batch-1 source is declared dynamic when that reproduces it, else Scanned."""
    if not sig.inputs.fixed_batch:
        model, adapters = wrap(source.model, sig, "dynamic")
        return model.SerializeToString(), adapters, "dynamic"
    model, adapters = wrap(source.model, sig, MADE_DYNAMIC)
    graph = model.SerializeToString()
    rows = checks.sample_rows(sig.inputs.latent_dim, sig.inputs.num_classes, DYNAMIC_PROBE_ROWS, 7)
    try:
        # threads=1 also quiets ONNX Runtime's own log of the failure this probe may provoke.
        got = CardGraph(_provisional(options, source, sig, graph, MADE_DYNAMIC), graph, threads=1)(*rows)
        if checks.max_diff(got, ref(*rows)) <= DYNAMIC_TOL:
            log.info("batch-1 source: its batch axis runs any batch once declared dynamic")
            return graph, adapters, MADE_DYNAMIC
        log.info("batch-1 source: declared dynamic it no longer reproduces itself; served row by row")
    except Exception as exc:  # ONNX Runtime refuses the graph at other batch sizes
        log.info(
            "batch-1 source: declared dynamic it fails (%s); served row by row",
            str(exc).splitlines()[0][:120],
        )
    model, adapters = wrap(source.model, sig, ROW_BY_ROW)
    return model.SerializeToString(), adapters, ROW_BY_ROW


def import_model(options: ImportOptions, announce: Callable[[str], None] = log.info) -> ImportReport:
    """Import ``options.source`` to ``options.out/options.name/``; raises :class:`ImportRefused`."""
    started = time.perf_counter()
    if not is_valid_name(options.name):
        raise ImportRefused(f"--name {options.name!r}: use lower-case a-z, 0-9, '.', '_', '-' (at most 64)")
    if (options.out / options.name).exists() and not options.replace:
        raise ImportRefused(
            f"{options.out / options.name} already exists: choose another --name, or pass --replace to "
            "replace that model"
        )
    source = load_source(options)
    sig = infer_signature(source.model, source.run, source.options)
    inferred = [*source.inferred, *sig.inferred]
    ref = reference(sig, source.run)
    graph, adapters, batch = _wrap_batch(options, source, sig, ref)
    imported = CardGraph(_provisional(options, source, sig, graph, batch), graph)
    d, k = sig.inputs.latent_dim, sig.inputs.num_classes
    value_range = options.value_range
    if value_range is None:
        finding = checks.infer_value_range(imported, d, k)
        value_range = finding.value_range
        inferred.append(finding.describe())
    for line in inferred:
        announce(f"inferred {line}")
    width = value_range[1] - value_range[0]
    diff = checks.check_parity(imported, ref, d, k, width)
    labels_diff = checks.check_labels(imported, ref, d, k, width)
    warnings = [w for w in [checks.range_warning(imported, d, k, value_range)] if w]
    for w in warnings:
        log.warning("%s: %s", options.name, w)
    card = build_card(
        options,
        source,
        sig,
        graph,
        value_range=value_range,
        batch=batch,
        adapters=adapters,
        parity_max_diff=float(f"{max(diff, labels_diff):.3g}"),
        inferred=inferred,
    )
    onnx.checker.check_model(onnx.load_from_string(graph))
    directory = write_model_dir(options.out, graph, card)
    return ImportReport(
        directory, card, inferred, adapters, diff, labels_diff, time.perf_counter() - started, warnings
    )
