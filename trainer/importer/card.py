"""The model card of an imported generator: what it serves, and where it came from."""

from __future__ import annotations

import hashlib

from service.card import ImageSpec, ImportSource, LatentSpec, ModelCard, OnnxSpec

from .adapters import IMAGE, LABEL, Batch, Z
from .options import ImportOptions
from .signature import Signature, opset
from .sources import Source

FAMILY = "imported"


def build_card(
    options: ImportOptions,
    source: Source,
    sig: Signature,
    graph: bytes,
    *,
    value_range: tuple[float, float],
    batch: Batch,
    adapters: list[str],
    parity_max_diff: float,
    inferred: list[str],
) -> ModelCard:
    """The card of the wrapped ``graph``: condgen's signature, and the source's own in ``source``."""
    side, out = sig.inputs, sig.output
    c, h, w = out.image
    labels = source.options.labels if side.encoding is not None else None
    if side.encoding is not None and labels is None:
        labels = [str(i) for i in range(side.num_classes)]
    what = source.class_name or source.file.name
    return ModelCard(
        name=options.name,
        version="1",
        kind="gan",
        family=FAMILY,
        description=options.description or f"Imported from {what} ({source.kind}).",
        dataset=options.dataset,
        image=ImageSpec(channels=c, height=h, width=w, value_range=value_range),  # type: ignore[arg-type]
        latent=LatentSpec(dim=side.latent_dim),
        labels=labels,
        onnx=OnnxSpec(
            opset=opset(source.model),
            z_input=Z,
            label_input=LABEL if side.encoding is not None else None,
            output=IMAGE,
            sha256=hashlib.sha256(graph).hexdigest(),
        ),
        source=ImportSource(
            kind=source.kind,
            file=source.file.name,
            sha256=source.sha256,
            class_name=source.class_name,
            weights_sha256=source.weights_sha256,
            inputs=[t.card() for t in sig.declared_inputs],
            outputs=[t.card() for t in sig.declared_outputs],
            label_encoding=side.encoding,
            layout=out.layout,
            batch=batch,
            adapters=adapters,
            parity_max_diff=parity_max_diff,
            inferred=inferred,
        ),
        license=options.license,
    )
