"""ONNX Runtime: one session per model, checked against its card, warmed up, output as uint8.

The batcher only needs something with ``run(z, labels) -> uint8 N×C×H×W``: the :class:`Runner`
protocol. :class:`OrtRunner` is the real one; tests (and anything else that wants to wrap a model,
e.g. to inject failures) hand the registry a different ``runner_factory``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort

from service.card import ModelCard
from service.config import Settings
from service.malloc import tune_malloc

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"

# Where IOBinding allocates the output, by the provider that runs the session.
_DEVICES = {"CUDAExecutionProvider": "cuda", CPU_PROVIDER: "cpu"}

_reported_missing: set[str] = set()
_malloc_tuned: set[int] = set()  # thresholds already applied in this process

_ORT_TYPES = {"z": "tensor(float)", "label": "tensor(int64)", "image": "tensor(float)"}

# The output contract of every runner: uint8 images, N x C x H x W, one per input row.
IMAGE_DTYPE = np.dtype(np.uint8)


def images_problem(out: object, rows: int, chw: tuple[int, int, int] | None = None) -> str | None:
    """None when ``out`` keeps the output contract for ``rows`` rows (of C x H x W ``chw``, if
    given); otherwise what ``out`` is instead, for the log."""
    if (
        isinstance(out, np.ndarray)
        and out.ndim == 4
        and out.shape[0] == rows
        and out.dtype == IMAGE_DTYPE
        and (chw is None or out.shape[1:] == chw)
    ):
        return None
    return f"{type(out).__name__} {getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}".strip()


class ModelLoadError(Exception):
    """A model cannot serve: its file, its graph or its card disagree. The message says why."""


@runtime_checkable
class Runner(Protocol):
    """What the batcher drives. Called from one worker thread at a time, never concurrently.

    ``z`` is float32 ``(N, dim)``; ``labels`` is int64 ``(N,)`` for conditional models and None
    otherwise. Returns uint8 ``(N, C, H, W)`` (:func:`images_problem` checks it). Raising fails
    exactly the requests of that batch.
    """

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray: ...


def abort_run(runner: Runner) -> bool:
    """Ask ``runner`` to abandon the run in progress, if it can (an optional ``abort()`` method).

    Called from the event loop while the run blocks the model's worker thread; True when asked.
    """
    abort = getattr(runner, "abort", None)
    if not callable(abort):
        return False
    try:
        abort()
    except Exception:
        logger.exception("aborting a session run failed")
        return False
    return True


def select_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """Requested providers this build has, in the requested order, always ending with the CPU one."""
    chosen = [p for p in requested if p in available]
    missing = [p for p in requested if p not in available and p not in _reported_missing]
    if missing:
        # Once per process, not once per model: the build does not change between models.
        _reported_missing.update(missing)
        logger.info("execution providers not available in this onnxruntime build: %s", ", ".join(missing))
    if CPU_PROVIDER not in chosen:
        chosen.append(CPU_PROVIDER)
    return chosen


def warn_on_fallback(model: str, chosen: Sequence[str], running: Sequence[str]) -> None:
    """Warn when a provider this build offers was asked for but the session runs without it.

    onnxruntime-gpu without the CUDA libraries lists CUDA as available, then creates a CPU-only
    session with nothing but a line on stderr: only ``session.get_providers()`` tells the truth.
    """
    lost = [p for p in chosen if p != CPU_PROVIDER and p not in running]
    if lost:
        logger.warning(
            "model %s: %s requested but not in effect (missing libraries or device?); running on %s",
            model,
            ", ".join(lost),
            ", ".join(running),
        )


def session_options(settings: Settings) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.effective_intra_op_threads
    opts.inter_op_num_threads = settings.inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning pool threads burn a core while idle; on a small box that core belongs to the event
    # loop and to other models' sessions. Costs a few microseconds of wake-up per run.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No memory arena: these graphs are small, and the arena kept each session's largest batch
    # allocated (35 MiB per model, 520 MiB for the zoo) for no measurable speed (±4% per image).
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
    return opts


def to_uint8(raw: np.ndarray, value_range: tuple[float, float], *, inplace: bool = False) -> np.ndarray:
    """Map raw output in ``value_range`` linearly onto 0..255: scale, clip, round.

    Vectorised over the whole batch, in place on a float32 buffer (``inplace=True`` reuses
    ``raw`` itself, which the runner owns). ``fmax``/``fmin`` rather than ``clip`` so a NaN from a
    misbehaving model becomes 0 instead of an undefined integer.
    """
    lo, hi = value_range
    x = np.asarray(raw, dtype=np.float32)
    if x is raw and not inplace:
        x = x.copy()  # never scribble over a caller's array
    scale = np.float32(255.0 / (hi - lo))
    np.subtract(x, np.float32(lo), out=x)
    np.multiply(x, scale, out=x)
    np.fmax(x, np.float32(0.0), out=x)
    np.fmin(x, np.float32(255.0), out=x)
    np.rint(x, out=x)
    return x.astype(IMAGE_DTYPE)


def binding_device(setting: str, providers: Sequence[str]) -> str | None:
    """The device IOBinding puts the output on, or None for plain ``session.run``.

    ``setting`` is :attr:`Settings.io_binding`; ``providers`` the session's, first one first.
    """
    primary = providers[0] if providers else CPU_PROVIDER
    device = _DEVICES.get(primary, "cpu")
    if setting == "on":
        return device
    if setting == "auto" and primary != CPU_PROVIDER and primary in _DEVICES:
        return device
    return None


def _dims(shape: Sequence[Any]) -> list[int | None]:
    """ONNX shapes mix ints and symbolic names (or None); keep only the static ints."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def check_io(session: ort.InferenceSession, card: ModelCard) -> None:
    """Raise :class:`ModelLoadError` unless the graph's inputs and output are the card's."""
    inputs = {i.name: i for i in session.get_inputs()}
    expected = {card.onnx.z_input}
    if card.onnx.label_input is not None:
        expected.add(card.onnx.label_input)
    if set(inputs) != expected:
        raise ModelLoadError(
            f"ONNX inputs {sorted(inputs)} do not match the card's {sorted(expected)}"
            + ("" if card.conditional else " (an unconditional model takes z only)")
        )
    z = inputs[card.onnx.z_input]
    if z.type != _ORT_TYPES["z"]:
        raise ModelLoadError(f"input {z.name!r} is {z.type}, expected {_ORT_TYPES['z']}")
    zdims = _dims(z.shape)
    if len(zdims) != 2:
        raise ModelLoadError(f"input {z.name!r} has rank {len(zdims)}, expected 2 (N x latent dim)")
    if zdims[0] is not None:
        raise ModelLoadError(f"input {z.name!r} has a fixed batch size {zdims[0]}; it must be dynamic")
    if zdims[1] is not None and zdims[1] != card.latent.dim:
        raise ModelLoadError(
            f"input {z.name!r} takes latents of size {zdims[1]}, the card says latent.dim={card.latent.dim}"
        )
    if card.onnx.label_input is not None:
        label = inputs[card.onnx.label_input]
        if label.type != _ORT_TYPES["label"]:
            raise ModelLoadError(f"input {label.name!r} is {label.type}, expected {_ORT_TYPES['label']}")
        if len(label.shape) != 1:
            raise ModelLoadError(f"input {label.name!r} has rank {len(label.shape)}, expected 1 (N)")

    outputs = {o.name: o for o in session.get_outputs()}
    if card.onnx.output not in outputs:
        raise ModelLoadError(f"ONNX outputs {sorted(outputs)} lack the card's output {card.onnx.output!r}")
    out = outputs[card.onnx.output]
    if out.type != _ORT_TYPES["image"]:
        raise ModelLoadError(f"output {out.name!r} is {out.type}, expected {_ORT_TYPES['image']}")
    odims = _dims(out.shape)
    want = [card.image.channels, card.image.height, card.image.width]
    if len(odims) != 4:
        raise ModelLoadError(f"output {out.name!r} has rank {len(odims)}, expected 4 (N x C x H x W)")
    for axis, got, exp in zip("CHW", odims[1:], want, strict=True):
        if got is not None and got != exp:
            raise ModelLoadError(
                f"output {out.name!r} has {axis}={got}, the card says {axis}={exp} "
                f"(image {want[0]}x{want[1]}x{want[2]})"
            )


class OrtRunner:
    """One ONNX Runtime session for one model, with the card's uint8 conversion."""

    def __init__(
        self,
        session: ort.InferenceSession,
        card: ModelCard,
        run_rows: int = 4096,
        binding_device: str | None = None,
    ) -> None:
        if run_rows < 1:
            raise ValueError("run_rows must be >= 1")
        self.session = session
        # Not None: runs go through one reused IOBinding, the output allocated on this device.
        self.binding_device = binding_device
        self._binding = session.io_binding() if binding_device is not None else None
        self.card = card
        self.run_rows = run_rows  # most rows per session run; larger batches are split
        self._z_name = card.onnx.z_input
        self._label_name = card.onnx.label_input
        self._output = [card.onnx.output]
        self._shape = (card.image.channels, card.image.height, card.image.width)
        self._run_options: ort.RunOptions | None = None  # of the run in progress
        self._aborted = False  # abort() was called during the current split batch

    @classmethod
    def load(cls, model_dir: Path, card: ModelCard, settings: Settings) -> OrtRunner:
        """Create the session, check it against the card and (if configured) warm it up."""
        path = model_dir / card.onnx.file
        if settings.malloc_threshold_mb not in _malloc_tuned:
            _malloc_tuned.add(settings.malloc_threshold_mb)
            tune_malloc(settings.malloc_threshold_mb)
        providers = select_providers(settings.providers, ort.get_available_providers())
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(settings), providers=providers
            )
        except Exception as exc:  # ORT raises its own (unexported) exception types
            raise ModelLoadError(f"onnxruntime cannot load {card.onnx.file}: {exc}") from exc
        check_io(session, card)
        warn_on_fallback(card.name, providers, session.get_providers())
        device = binding_device(settings.io_binding, session.get_providers())
        runner = cls(session, card, settings.run_batch_size, device)
        logger.info(
            "model %s: providers %s, %d intra-op thread(s), %s",
            card.name,
            ",".join(session.get_providers()),
            settings.effective_intra_op_threads,
            "plain runs" if device is None else f"IOBinding (output on {device})",
        )
        if settings.warmup:
            # One small run proves the graph and its output shape; a batch-sized warm-up was
            # 45% of the zoo's cold start and buys nothing without a memory arena to pre-grow.
            runner.warm_up([1])
        if settings.probe_labels and card.labels is not None:
            runner.probe_labels()
        return runner

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def raw(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        feed: dict[str, np.ndarray] = {self._z_name: np.ascontiguousarray(z, dtype=np.float32)}
        if self._label_name is not None:
            if labels is None:
                raise ValueError(f"model {self.card.name!r} is conditional and needs labels")
            feed[self._label_name] = np.ascontiguousarray(labels, dtype=np.int64)
        options = ort.RunOptions()
        self._run_options = options
        try:
            if self._binding is None:
                (out,) = self.session.run(self._output, feed, run_options=options)
            else:
                out = self._run_bound(self._binding, feed, options)
        finally:
            self._run_options = None
        return np.asarray(out)

    def _run_bound(
        self, binding: ort.IOBinding, feed: dict[str, np.ndarray], options: ort.RunOptions
    ) -> np.ndarray:
        # Rebound every run: the batch size changes, and ORT allocates the output to fit.
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        assert self.binding_device is not None
        binding.bind_output(self._output[0], self.binding_device)
        try:
            self.session.run_with_iobinding(binding, options)
            (out,) = binding.copy_outputs_to_cpu()
        finally:
            # Drop the references to this batch's buffers until the next run.
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        return np.asarray(out)

    def abort(self) -> None:
        """Make the run in progress (if any) stop at its next operator and raise; thread-safe."""
        self._aborted = True
        options = self._run_options
        if options is not None:
            options.terminate = True

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """uint8 ``(N, C, H, W)`` for the batch, in session runs of at most ``run_rows`` rows."""
        n = z.shape[0]
        if n <= self.run_rows:
            return self._run_rows(z, labels)
        self._aborted = False
        out = np.empty((n, *self._shape), dtype=IMAGE_DTYPE)
        for start in range(0, n, self.run_rows):
            if self._aborted:  # abort() between two session runs of this batch
                raise RuntimeError(f"model {self.card.name!r}: run aborted")
            end = min(start + self.run_rows, n)
            out[start:end] = self._run_rows(z[start:end], None if labels is None else labels[start:end])
        return out

    def _run_rows(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        raw = self.raw(z, labels)
        expected = (z.shape[0], *self._shape)
        if raw.shape != expected:
            raise ValueError(f"model {self.card.name!r} returned shape {raw.shape}, expected {expected}")
        return to_uint8(raw, self.card.image.value_range, inplace=True)

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run once per batch size so first clients do not pay for allocation and kernel selection.

        Also the last load-time check: the output must really have the card's C×H×W (symbolic
        dimensions pass :func:`check_io`) and a float dtype.
        """
        dim = self.card.latent.dim
        for n in batch_sizes:
            z = np.zeros((n, dim), dtype=np.float32)
            labels = np.zeros(n, dtype=np.int64) if self._label_name is not None else None
            try:
                raw = self.raw(z, labels)
            except Exception as exc:
                raise ModelLoadError(f"warm-up run with batch {n} failed: {exc}") from exc
            expected = (n, *self._shape)
            if raw.shape != expected:
                raise ModelLoadError(f"warm-up output has shape {raw.shape}, the card implies {expected}")
            if raw.dtype != np.float32:
                raise ModelLoadError(f"warm-up output is {raw.dtype}, expected float32")

    def probe_labels(self) -> None:
        """Run every label id of the card once (one run of ``num_classes`` rows); raise
        :class:`ModelLoadError` naming the first label the graph cannot serve."""
        labels = self.card.labels or []
        z = np.zeros((len(labels), self.card.latent.dim), dtype=np.float32)
        try:
            self.run(z, np.arange(len(labels), dtype=np.int64))
            return
        except Exception as exc:
            failure: Exception = exc
        # Only on a failed probe: one run per label finds the one to name.
        for i, name in enumerate(labels):
            try:
                self.run(z[:1], np.array([i], dtype=np.int64))
            except Exception as exc:
                raise ModelLoadError(
                    f"label {i} ({name!r}) of the card does not run on the graph "
                    f"({len(labels)} labels in the card; {type(exc).__name__})"
                ) from exc
        raise ModelLoadError(f"the label probe run failed ({type(failure).__name__})") from failure
