"""Read a source graph's signature: which input is z, how it takes its label, what its output is.

Everything is taken from the options where given, else inferred from the graph when it leaves no
doubt (each inference is recorded as the option that would have said it), else refused with the
option to pass. The output's shape is read from one probe run of the source, so symbolic shapes
(tf2onnx's ``unk__79``) are no obstacle.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from service.card import SourceTensor
from service.latents import latents_for

from .options import Encoding, ImportOptions, ImportRefused, Layout

log = logging.getLogger(__name__)

# Names that say "this input is the latent" or "this input is the label", as foreign exports spell them.
_Z_NAMES = re.compile(r"(^|[^a-z])(z|noise|latent|latents|code|input_z|z_in)([^a-z]|$)", re.IGNORECASE)
_LABEL_NAMES = re.compile(
    r"(^|[^a-z])(label|labels|y|c|class|classes|cond|condition|onehot|one_hot|class_onehot|target)"
    r"([^a-z]|$)|label|class|onehot|one_hot",
    re.IGNORECASE,
)
# Ops a label passes through unchanged in meaning on its way to an embedding or a one-hot.
_PASSTHROUGH = {"Cast", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Identity"}
MIN_OPSET = 11
PROBE_SEED = 99


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: np.dtype
    shape: tuple[int | str, ...]  # static sizes, or the dimension's symbol ("?" when unnamed)

    def describe(self) -> str:
        dims = ", ".join(
            "N" if i == 0 and not isinstance(d, int) else str(d) for i, d in enumerate(self.shape)
        )
        return f"{self.name!r} ({self.dtype.name} [{dims}])"

    def card(self) -> SourceTensor:
        return SourceTensor(name=self.name, dtype=self.dtype.name, shape=list(self.shape))


def _rank(x: np.ndarray, rank: int) -> np.ndarray:
    """[N, X] as [N, X] or [N, X, 1, 1]."""
    return x if rank == 2 else x.reshape(x.shape[0], -1, 1, 1)


def _vector_rank(t: Tensor, what: str) -> int:
    """2 for [N, X], 4 for [N, X, 1, 1]; refused otherwise."""
    if len(t.shape) == 2:
        return 2
    if len(t.shape) == 4 and all(_static(d) in (1, None) for d in t.shape[2:]):
        return 4
    raise ImportRefused(f"{what} {t.describe()} must be shaped [N, X] or [N, X, 1, 1]")


@dataclass(frozen=True)
class InputSide:
    """How the source takes (z, label): what :meth:`feeds` builds from condgen's z and int64 labels."""

    z_input: str
    z_dtype: np.dtype
    latent_dim: int
    encoding: Encoding | None  # None: unconditional
    num_classes: int  # 0: unconditional
    label_input: str | None = None  # index and onehot encodings
    label_dtype: np.dtype | None = None
    label_rank: int = (
        1  # an index label shaped [N] (1) or [N, 1] (2); a one-hot [N, K] (2) or [N, K, 1, 1] (4)
    )
    z_rank: int = 2  # z shaped [N, D] (2) or, as DCGANs take it, [N, D, 1, 1] (4)
    fixed_batch: bool = False  # the source runs one row at a time

    def feeds(self, z: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
        """The source's own inputs for these rows, built in numpy (not by the adapters)."""
        z = z.astype(self.z_dtype)
        if self.encoding is None:
            return {self.z_input: _rank(z, self.z_rank)}
        assert labels is not None
        if self.encoding == "concat":
            onehot = np.eye(self.num_classes, dtype=self.z_dtype)[labels]
            return {self.z_input: _rank(np.concatenate([z, onehot], axis=1), self.z_rank)}
        z = _rank(z, self.z_rank)
        assert self.label_input is not None
        assert self.label_dtype is not None
        if self.encoding == "onehot":
            label = _rank(np.eye(self.num_classes, dtype=self.label_dtype)[labels], self.label_rank)
        else:
            label = labels.astype(self.label_dtype).reshape((-1, 1) if self.label_rank == 2 else (-1,))
        return {self.z_input: z, self.label_input: label}


@dataclass(frozen=True)
class OutputSide:
    """What the source's output is and how it becomes N×C×H×W (:meth:`to_nchw`, in numpy)."""

    name: str
    dtype: np.dtype
    row_shape: tuple[int, ...]  # one row's output shape, as the source gives it
    layout: Literal["nchw", "nhwc", "flat"]
    image: tuple[int, int, int]  # C, H, W
    flat_order: Layout = "nchw"  # the element order of a flat output

    def to_nchw(self, raw: np.ndarray) -> np.ndarray:
        c, h, w = self.image
        out = raw.astype(np.float32)
        if self.layout == "flat":
            out = out.reshape((-1, c, h, w) if self.flat_order == "nchw" else (-1, h, w, c))
            return out if self.flat_order == "nchw" else out.transpose(0, 3, 1, 2)
        return out if self.layout == "nchw" else out.transpose(0, 3, 1, 2)


@dataclass(frozen=True)
class Signature:
    inputs: InputSide
    output: OutputSide
    declared_inputs: list[Tensor]
    declared_outputs: list[Tensor]
    inferred: list[str] = field(default_factory=list)


def _np_dtype(elem_type: int) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _tensor(value: onnx.ValueInfoProto) -> Tensor:
    t = value.type.tensor_type
    dims: tuple[int | str, ...] = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim
    )
    return Tensor(value.name, _np_dtype(t.elem_type), dims)


def declared_io(model: onnx.ModelProto) -> tuple[list[Tensor], list[Tensor]]:
    """The graph's real inputs (initializers listed as inputs by old exporters left out) and outputs."""
    weights = {t.name for t in model.graph.initializer}
    inputs = [_tensor(v) for v in model.graph.input if v.name not in weights]
    return inputs, [_tensor(v) for v in model.graph.output]


def opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _pick_output(outputs: list[Tensor], options: ImportOptions) -> Tensor:
    if options.output is not None:
        found = [o for o in outputs if o.name == options.output]
        if not found:
            names = ", ".join(repr(o.name) for o in outputs)
            raise ImportRefused(f"--output {options.output!r}: the source's outputs are {names}")
        return found[0]
    if len(outputs) != 1:
        names = ", ".join(repr(o.name) for o in outputs)
        raise ImportRefused(f"the source has {len(outputs)} outputs ({names}): pass --output NAME")
    return outputs[0]


def _by_name(inputs: list[Tensor], name: str, option: str) -> Tensor:
    for t in inputs:
        if t.name == name:
            return t
    names = ", ".join(repr(t.name) for t in inputs)
    raise ImportRefused(f"{option} {name!r}: the source's inputs are {names}")


def _roles(inputs: list[Tensor], options: ImportOptions, inferred: list[str]) -> tuple[Tensor, Tensor | None]:
    """(z input, label input or None) of the source."""
    names = ", ".join(t.describe() for t in inputs)
    if len(inputs) > 2:
        raise ImportRefused(
            f"the source takes {len(inputs)} inputs ({names}); condgen serves z and one label"
        )
    z = _by_name(inputs, options.z_input, "--z-input") if options.z_input else None
    label = _by_name(inputs, options.label_input, "--label-input") if options.label_input else None
    if len(inputs) == 1:
        if label is not None:
            raise ImportRefused(f"the source takes one input ({names}): it is z; drop --label-input")
        return z or inputs[0], None
    if z is None and label is not None:
        z = next(t for t in inputs if t is not label)
    elif label is None and z is not None:
        label = next(t for t in inputs if t is not z)
    elif z is None:
        z, label = _guess_roles(inputs, names)
        inferred += [f"--z-input {z.name}", f"--label-input {label.name}"]
    assert z is not None
    assert label is not None
    if z is label:
        raise ImportRefused("--z-input and --label-input name the same input")
    return z, label


def _guess_roles(inputs: list[Tensor], names: str) -> tuple[Tensor, Tensor]:
    ints = [t for t in inputs if np.issubdtype(t.dtype, np.integer)]
    if len(ints) == 1:
        return next(t for t in inputs if t is not ints[0]), ints[0]
    zs = [t for t in inputs if _Z_NAMES.search(t.name) and not _LABEL_NAMES.search(t.name)]
    labels = [t for t in inputs if _LABEL_NAMES.search(t.name) and t not in zs]
    if len(zs) == 1 and len(labels) == 1:
        return zs[0], labels[0]
    if len(labels) == 1:
        return next(t for t in inputs if t is not labels[0]), labels[0]
    raise ImportRefused(f"cannot tell which input is z ({names}): pass --z-input NAME and --label-input NAME")


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def classes_in_graph(model: onnx.ModelProto, label: str) -> tuple[int, str] | None:
    """The class count an index label's embedding table or one-hot depth fixes, and where it was read."""
    consts = _constants(model)
    frontier, seen = [label], set()
    while frontier:
        name = frontier.pop()
        seen.add(name)
        for node in model.graph.node:
            if name not in node.input:
                continue
            if node.op_type == "Gather" and node.input[1] == name and node.input[0] in consts:
                return int(consts[node.input[0]].shape[0]), f"the embedding table {node.input[0]!r}"
            if node.op_type == "OneHot" and node.input[0] == name and node.input[1] in consts:
                return int(
                    consts[node.input[1]].reshape(-1)[0]
                ), f"the one-hot depth of {node.name or 'OneHot'}"
            if node.op_type in _PASSTHROUGH and node.input[0] == name:
                frontier += [o for o in node.output if o not in seen]
    return None


def _static(dim: int | str) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _encoding(z: Tensor, label: Tensor | None, options: ImportOptions) -> tuple[Encoding | None, bool]:
    """The label encoding, and whether it was inferred."""
    if label is None:
        if options.label_encoding not in (None, "concat"):
            raise ImportRefused(
                f"--label-encoding {options.label_encoding}: the source takes one input, so its label "
                "can only be concatenated to z (--label-encoding concat)"
            )
        conditional = options.labels is not None or options.label_encoding == "concat"
        return ("concat" if conditional else None), options.label_encoding is None and conditional
    if options.label_encoding == "concat":
        raise ImportRefused(
            "--label-encoding concat: the source takes z and a label apart; pass index or onehot"
        )
    integer = np.issubdtype(label.dtype, np.integer)
    found: Encoding = "index" if integer else "onehot"
    if options.label_encoding is not None:
        if options.label_encoding != found:
            raise ImportRefused(
                f"--label-encoding {options.label_encoding}: label input {label.describe()} "
                f"is {'an integer' if integer else 'a float'} tensor, which suits {found}"
            )
        return found, False
    return found, True


def _check_label_shape(label: Tensor, encoding: Encoding) -> int:
    rank = len(label.shape)
    if encoding == "index" and rank in (1, 2):
        if rank == 2 and _static(label.shape[1]) not in (None, 1):
            raise ImportRefused(f"index label {label.describe()} must be shaped [N] or [N, 1]")
        return rank
    if encoding == "onehot":
        return _vector_rank(label, "one-hot label input")
    want = "[N] or [N, 1]" if encoding == "index" else "[N, K]"
    raise ImportRefused(
        f"label input {label.describe()} has rank {rank}; {encoding} labels are shaped {want}"
    )


def _classes(
    model: onnx.ModelProto, label: Tensor | None, encoding: Encoding, options: ImportOptions
) -> tuple[int | None, str | None]:
    """(K, where it was read) for a z + label source; K None when the graph does not fix it."""
    if label is None:
        return None, None
    if encoding == "onehot":
        k = _static(label.shape[1])
        return (k, f"label input {label.name!r}") if k else (None, None)
    found = classes_in_graph(model, label.name)
    return (found[0], found[1]) if found else (None, None)


def infer_inputs(
    model: onnx.ModelProto, options: ImportOptions, inferred: list[str]
) -> tuple[InputSide, int | None]:
    """The input side of the signature, and the class count the graph fixes (None if none)."""
    if opset(model) < MIN_OPSET:
        raise ImportRefused(
            f"the source's opset is {opset(model)}; re-export it with opset {MIN_OPSET} or later"
        )
    inputs, _ = declared_io(model)
    z, label = _roles(inputs, options, inferred)
    encoding, enc_inferred = _encoding(z, label, options)
    if enc_inferred and encoding is not None:
        inferred.append(f"--label-encoding {encoding}")
    if not np.issubdtype(z.dtype, np.floating):
        raise ImportRefused(f"z input {z.describe()} is not a float tensor: pass --z-input NAME")
    z_rank = _vector_rank(z, "z input")
    k_graph, k_where = _classes(model, label, encoding, options) if encoding else (None, None)
    k = options.num_classes
    if k is not None and k_graph is not None and k != k_graph:
        raise ImportRefused(
            f"{len(options.labels or [])} labels given, but {k_where} fixes {k_graph} classes"
        )
    if encoding is not None and k is None:
        k = k_graph
        if k is not None:
            inferred.append(f"--num-classes {k}  (from {k_where})")
    width = _static(z.shape[1])
    d = _latent_dim(z, width, encoding, k, options, inferred)
    if encoding == "concat" and k is None:
        assert width is not None
        k = width - d
        inferred.append(f"--num-classes {k}  (input width {width} - latent {d})")
    if encoding is not None and k is None:
        assert label is not None
        raise ImportRefused(
            f"cannot tell how many classes label {label.describe()} takes: "
            "pass --num-classes K or --labels a,b,..."
        )
    batch = [t.shape[0] for t in ([z, label] if label is not None else [z]) if t.shape]
    fixed = _fixed_batch(batch, z)
    rank = _check_label_shape(label, encoding) if label is not None and encoding is not None else 1
    side = InputSide(
        z_input=z.name,
        z_dtype=z.dtype,
        latent_dim=d,
        encoding=encoding,
        num_classes=k or 0,
        label_input=label.name if label is not None and encoding in ("index", "onehot") else None,
        label_dtype=label.dtype if label is not None else None,
        label_rank=rank,
        z_rank=z_rank,
        fixed_batch=fixed,
    )
    return side, k_graph


def _latent_dim(
    z: Tensor,
    width: int | None,
    encoding: Encoding | None,
    k: int | None,
    options: ImportOptions,
    inferred: list[str],
) -> int:
    d = options.latent_dim
    if encoding == "concat":
        if width is None:
            raise ImportRefused(
                f"concat input {z.describe()} has no static width: pass --latent-dim D and --num-classes K"
            )
        if d is None and k is None:
            raise ImportRefused(
                f"input {z.describe()} holds [z, one-hot] of {width} values: "
                "pass --latent-dim D or --num-classes K"
            )
        if d is None:
            assert k is not None
            d = width - k
            inferred.append(f"--latent-dim {d}  (input width {width} - {k} classes)")
        elif k is not None and d + k != width:
            raise ImportRefused(
                f"--latent-dim {d} + {k} classes != the input width {width} of {z.describe()}"
            )
        if d < 1:
            raise ImportRefused(f"input {z.describe()} is too narrow for {k} classes and a latent")
        return d
    if width is not None:
        if d is not None and d != width:
            raise ImportRefused(f"--latent-dim {d}, but z input {z.describe()} takes {width} values")
        if d is None:
            inferred.append(f"--latent-dim {width}")
        return width
    if d is None:
        raise ImportRefused(f"cannot tell the latent size: z input {z.describe()}; pass --latent-dim D")
    return d


def _fixed_batch(batch: list[int | str], z: Tensor) -> bool:
    static = {b for b in batch if isinstance(b, int) and b > 0}
    if not static:
        return False
    if static != {1}:
        raise ImportRefused(
            f"input {z.describe()} has a fixed batch of {max(static)}; condgen can make a batch of 1 "
            "dynamic, not this: re-export the source with a dynamic batch axis"
        )
    return True


def probe_rows(side: InputSide) -> tuple[np.ndarray, np.ndarray | None]:
    rows = 1 if side.fixed_batch else 2
    z = latents_for(PROBE_SEED, rows, side.latent_dim)
    labels = np.arange(rows, dtype=np.int64) % side.num_classes if side.num_classes else None
    return z, labels


def infer_output(
    out: Tensor, raw: np.ndarray, rows: int, options: ImportOptions, inferred: list[str]
) -> OutputSide:
    """The output side, from the declared output and the probe's ``raw`` output of ``rows`` rows."""
    if not np.issubdtype(raw.dtype, np.floating):
        raise ImportRefused(f"output {out.describe()} is not a float tensor: pass --output NAME")
    if raw.ndim < 2 or raw.shape[0] != rows:
        raise ImportRefused(
            f"output {out.describe()} gave shape {list(raw.shape)} for {rows} input rows; "
            "expected the batch first: pass --output NAME"
        )
    row = tuple(int(d) for d in raw.shape[1:])
    shown = f"{out.name!r} [N, {', '.join(map(str, row))}]"
    if len(row) == 3:
        return _image_output(out, raw.dtype, row, shown, options, inferred)
    if len(row) == 2:  # [N, H, W]: one channel
        image = (1, row[0], row[1])
        _check_image(options, image, shown)
        return OutputSide(out.name, raw.dtype, row, "flat", image)
    if len(row) == 1:
        return _flat_output(out, raw.dtype, row, shown, options, inferred)
    raise ImportRefused(f"output {shown} is not an image batch: pass --output NAME")


def _check_image(options: ImportOptions, image: tuple[int, int, int], shown: str) -> None:
    if options.image is not None and tuple(options.image) != image:
        raise ImportRefused(f"--image {','.join(map(str, options.image))}, but output {shown} is {image}")
    if image[0] not in (1, 3):
        raise ImportRefused(f"output {shown} has {image[0]} channels; condgen serves 1 (gray) or 3 (RGB)")


def _image_output(
    out: Tensor,
    dtype: np.dtype,
    row: tuple[int, ...],
    shown: str,
    options: ImportOptions,
    inferred: list[str],
) -> OutputSide:
    a, b, c = row
    layout = options.layout
    if layout is None:
        candidates = [name for name, ok in (("nchw", a in (1, 3)), ("nhwc", c in (1, 3))) if ok]
        if len(candidates) != 1:
            raise ImportRefused(
                f"output {shown}: cannot tell channels-first from channels-last; pass --layout nchw|nhwc"
            )
        layout = candidates[0]  # type: ignore[assignment]
        inferred.append(f"--layout {layout}")
    image = (a, b, c) if layout == "nchw" else (c, a, b)
    _check_image(options, image, shown)
    return OutputSide(out.name, dtype, row, layout, image)  # type: ignore[arg-type]


def _flat_output(
    out: Tensor,
    dtype: np.dtype,
    row: tuple[int, ...],
    shown: str,
    options: ImportOptions,
    inferred: list[str],
) -> OutputSide:
    (size,) = row
    image = options.image
    if image is None:
        side = math.isqrt(size)
        rgb = math.isqrt(size // 3) if size % 3 == 0 else 0
        if side * side == size and rgb * rgb * 3 != size:
            image = (1, side, side)
            inferred.append(f"--image 1,{side},{side}")
        else:
            raise ImportRefused(f"output {shown} is flat: pass --image C,H,W (and --layout for 3 channels)")
    if image[0] * image[1] * image[2] != size:
        raise ImportRefused(
            f"--image {','.join(map(str, image))} has {math.prod(image)} values; output {shown} has {size}"
        )
    _check_image(options, image, shown)
    order = options.layout
    if order is None:
        if image[0] != 1:
            raise ImportRefused(
                f"flat output {shown} of {image[0]} channels: pass --layout nchw|nhwc (its element order)"
            )
        order = "nchw"
    return OutputSide(out.name, dtype, row, "flat", image, order)


Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def infer_signature(model: onnx.ModelProto, run: Runner, options: ImportOptions) -> Signature:
    """The whole signature; ``run`` runs the source on its own feeds (one probe run here)."""
    inferred: list[str] = []
    side, _ = infer_inputs(model, options, inferred)
    declared_in, declared_out = declared_io(model)
    out = _pick_output(declared_out, options)
    z, labels = probe_rows(side)
    try:
        raw = run(side.feeds(z, labels))
    except ImportRefused:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ImportRefused(f"the source failed on a probe batch as read ({_said(side)}): {first}") from None
    output = infer_output(out, raw, z.shape[0], options, inferred)
    return Signature(side, output, declared_in, declared_out, inferred)


def _said(side: InputSide) -> str:
    if side.encoding is None:
        return f"z {side.z_input!r} [N, {side.latent_dim}], unconditional"
    return f"z {side.z_input!r} [N, {side.latent_dim}], {side.num_classes} classes {side.encoding}"
