"""The three kinds of source: an ONNX file, a TorchScript file, a PyTorch class with its weights.

Each becomes an ONNX graph plus a way to run the source itself on its own inputs (the reference
the import is checked against). ONNX files need no torch; the other two are exported here with
``torch.onnx.export`` (dynamic batch) and run by torch for the reference.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort

from .options import Encoding, ImportOptions, ImportRefused

log = logging.getLogger(__name__)

EXPORT_OPSET = 17
# Constructor attributes that name a generator's latent size or class count in the seeds' code.
LATENT_ATTRS = ("latent_dim", "z_dim", "nz", "noise_dim", "dim_z", "n_z")
CLASS_ATTRS = ("num_classes", "n_classes", "nclasses", "class_num", "n_class")
SourceKind = Literal["onnx", "torchscript", "pytorch"]
Run = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Source:
    """A source made ONNX: the graph, how to run the source on its own feeds, what it was."""

    kind: SourceKind
    model: onnx.ModelProto
    run: Run
    file: Path
    sha256: str
    options: ImportOptions  # the user's options, completed with what the source kind fixes
    class_name: str | None = None
    weights_sha256: str | None = None
    inferred: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def load_source(options: ImportOptions) -> Source:
    """Read ``options.source`` as ONNX, TorchScript or ``file.py:Class`` / ``package.module:Class``."""
    text = options.source
    path = Path(text)
    if ":" in text and not path.is_file():
        return _pytorch_source(options)
    if not path.is_file():
        raise ImportRefused(f"{text}: no such file (an .onnx or TorchScript file, or file.py:Class)")
    head = path.read_bytes()[:4]
    if head.startswith(b"PK"):  # a zip archive: TorchScript (torch.jit.save)
        return _torchscript_source(options, path)
    return _onnx_source(options, path)


def _onnx_source(options: ImportOptions, path: Path) -> Source:
    if options.weights is not None or options.kwargs:
        raise ImportRefused(
            "--weights and --kwargs are for a PyTorch class (file.py:Class); drop them for ONNX"
        )
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ImportRefused(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
    output_names = [o.name for o in model.graph.output]

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        names = [options.output] if options.output else output_names[:1]
        out: np.ndarray = session.run(names, feeds)[0]
        return out

    return Source("onnx", model, run, path, _sha256(path), options)


def _torchscript_source(options: ImportOptions, path: Path) -> Source:
    import torch

    if options.weights is not None or options.kwargs:
        raise ImportRefused("--weights and --kwargs are for a PyTorch class (file.py:Class); drop them")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ImportRefused(f"{path}: neither ONNX nor TorchScript ({_first_line(exc)})") from None
    params = [a.name for a in module.forward.schema.arguments[1:]]
    return _export_module(module, params, len(params), options, "torchscript", path, _sha256(path))


def _load_class(spec: str) -> tuple[type, Path]:
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        file = Path(where)
        if not file.is_file():
            raise ImportRefused(f"{where}: no such file (SOURCE is file.py:Class or package.module:Class)")
        module_name = f"condgen_import_{file.stem}"
        loader = importlib.util.spec_from_file_location(module_name, file)
        if loader is None or loader.loader is None:
            raise ImportRefused(f"{where}: cannot be imported as Python")
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # dataclasses and pickling look their module up here
        try:
            loader.loader.exec_module(module)
        except Exception as exc:
            raise ImportRefused(f"{where}: importing it failed ({_first_line(exc)})") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise ImportRefused(f"{where}: no such module ({_first_line(exc)})") from None
        file = Path(module.__file__ or where)
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ImportRefused(f"{where} has no class {name!r}")
    return cls, file


def _read_state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ImportRefused(f"--weights {path}: not a torch state_dict ({_first_line(exc)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ImportRefused(f"--weights {path}: holds a {type(state).__name__}, not a state_dict")
    return state


def _pytorch_source(options: ImportOptions) -> Source:
    import torch

    cls, file = _load_class(options.source)
    try:
        module = cls(**options.kwargs)
    except Exception as exc:
        raise ImportRefused(
            f"{cls.__name__}(**{options.kwargs}) failed: {_first_line(exc)}; "
            "pass its arguments with --kwargs JSON"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ImportRefused(f"{cls.__name__} is not a torch.nn.Module")
    weights_sha = None
    if options.weights is not None:
        if not options.weights.is_file():
            raise ImportRefused(f"--weights {options.weights}: no such file")
        try:
            module.load_state_dict(_read_state_dict(options.weights))
        except RuntimeError as exc:
            raise ImportRefused(
                f"--weights do not fit {cls.__name__}(**{options.kwargs}): {_first_line(exc)[:160]}; "
                "pass the constructor's arguments with --kwargs JSON"
            ) from None
        weights_sha = _sha256(options.weights)
    signature = inspect.signature(module.forward)
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    required = sum(p.default is inspect.Parameter.empty for p in positional)
    arity = 2 if len(positional) >= 2 and (required >= 2 or options.labels is not None) else max(required, 1)
    source = _export_module(
        module, [p.name for p in positional], arity, options, "pytorch", file, _sha256(file)
    )
    where = options.source.rpartition(":")[0]
    source.class_name = f"{file.name if where.endswith('.py') else where}:{cls.__name__}"
    source.weights_sha256 = weights_sha
    if weights_sha is None:
        log.warning("no --weights: %s serves the weights its constructor made", cls.__name__)
    return source


def _attribute(module: Any, names: tuple[str, ...]) -> tuple[int, str] | None:
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, name
    return None


def _module_sizes(
    module: Any, arity: int, options: ImportOptions, inferred: list[str]
) -> tuple[int, list[str] | None]:
    """(latent size, class names) of a module source, from the options or its attributes."""
    # A TorchScript module's Python type is RecursiveScriptModule; its original class name says more.
    cls = str(getattr(module, "original_name", "")) or type(module).__name__
    d = options.latent_dim
    if d is None:
        found = _attribute(module, LATENT_ATTRS)
        if found is None:
            raise ImportRefused(f"cannot tell {cls}'s latent size: pass --latent-dim D")
        d = found[0]
        inferred.append(f"--latent-dim {d}  (from {cls}.{found[1]})")
    labels = options.labels
    if labels is None and (arity == 2 or options.label_encoding == "concat"):
        found = _attribute(module, CLASS_ATTRS)
        if found is None:
            raise ImportRefused(
                f"cannot tell how many classes {cls} takes: pass --num-classes K or --labels a,b,..."
            )
        labels = [str(i) for i in range(found[0])]
        inferred.append(f"--num-classes {found[0]}  (from {cls}.{found[1]})")
    return d, labels


def _export_module(
    module: Any, params: list[str], arity: int, options: ImportOptions, kind: SourceKind, file: Path, sha: str
) -> Source:
    """Export a torch module (eval, no grad, dynamic batch) and wrap it as a :class:`Source`."""
    import torch

    if arity > 2:
        raise ImportRefused(
            f"{type(module).__name__}.forward takes {arity} inputs ({', '.join(params)}); "
            "condgen serves z and one label"
        )
    inferred: list[str] = []
    module = module.eval()
    d, labels = _module_sizes(module, arity, options, inferred)
    k = len(labels) if labels is not None else 0
    encoding: Encoding | None
    if arity == 2:
        encoding = options.label_encoding or "index"
        if encoding == "concat":
            raise ImportRefused(
                "--label-encoding concat: forward takes z and a label apart; pass index or onehot"
            )
        names = ["z", "label"]
        label = (
            torch.zeros(2, dtype=torch.long)
            if encoding == "index"
            else torch.eye(k)[torch.zeros(2, dtype=torch.long)]
        )
        args: tuple[torch.Tensor, ...] = (torch.zeros(2, d), label)
    else:
        encoding = "concat" if labels is not None else None
        names, args = ["z_onehot" if labels is not None else "z"], (torch.zeros(2, d + k),)
    with tempfile.TemporaryDirectory(prefix="condgen-import-") as scratch:
        path = Path(scratch) / "source.onnx"
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notes
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=names,
                    output_names=["output"],
                    dynamic_axes={n: {0: "N"} for n in [*names, "output"]},
                    opset_version=EXPORT_OPSET,
                    do_constant_folding=True,
                    dynamo=False,
                )
        except Exception as exc:
            raise ImportRefused(
                f"exporting {type(module).__name__} to ONNX failed: {_first_line(exc)[:160]} "
                "(check --latent-dim, --num-classes and --label-encoding)"
            ) from None
        model = onnx.load(str(path))

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])
        if not isinstance(out, torch.Tensor):
            raise ImportRefused(
                f"{type(module).__name__}.forward returns {type(out).__name__}, not one tensor"
            )
        result: np.ndarray = out.numpy()
        return result

    completed = replace(
        options,
        z_input=names[0],
        label_input="label" if arity == 2 else None,
        output="output",
        latent_dim=d,
        labels=labels,
        label_encoding=encoding,
    )
    return Source(kind, model, run, file, sha, completed, inferred=inferred)
