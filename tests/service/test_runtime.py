"""ONNX Runtime wrapper: providers, threads, IO checks, warm-up, and the uint8 conversion."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.card import load_card
from service.runtime import (
    CPU_PROVIDER,
    ModelLoadError,
    OrtRunner,
    abort_run,
    binding_device,
    select_providers,
    session_options,
    to_uint8,
)
from tests.service.conftest import GRAY, RGB, UNCOND, make_settings
from tests.service.onnx_fixtures import reference_images
from tests.service.slow_model import write_slow_model


def load(zoo: Path, name: str, **overrides: object) -> OrtRunner:
    return OrtRunner.load(zoo / name, load_card(zoo / name), make_settings(zoo, **overrides))


def test_to_uint8_maps_the_value_range_onto_0_255() -> None:
    raw = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, np.nan, np.inf, -np.inf], dtype=np.float32)
    before = raw.copy()
    out = to_uint8(raw, (-1.0, 1.0))
    assert out.dtype == np.uint8
    # -0.5 -> 63.75 -> 64; 0 -> 127.5 -> 128 (round half to even); NaN -> 0 rather than garbage.
    assert out.tolist() == [0, 0, 64, 128, 191, 255, 255, 0, 255, 0]
    np.testing.assert_array_equal(raw, before)  # the caller's array is untouched
    assert to_uint8(np.array([0.0, 0.25, 1.0], dtype=np.float32), (0.0, 1.0)).tolist() == [0, 64, 255]


def test_to_uint8_in_place_reuses_the_buffer_and_keeps_shape() -> None:
    raw = np.linspace(-1, 1, 2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    out = to_uint8(raw, (-1.0, 1.0), inplace=True)
    assert out.shape == (2, 3, 4, 5)
    assert out[0, 0, 0, 0] == 0
    assert out[-1, -1, -1, -1] == 255


def test_select_providers_keeps_order_drops_missing_and_ends_with_cpu(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    available = ["CPUExecutionProvider"]
    monkeypatch.setattr("service.runtime._reported_missing", set())
    with caplog.at_level(logging.INFO, logger="service.runtime"):
        assert select_providers(["CUDAExecutionProvider", CPU_PROVIDER], available) == [CPU_PROVIDER]
    assert "CUDAExecutionProvider" in caplog.text
    assert select_providers(["CUDAExecutionProvider"], ["CUDAExecutionProvider", CPU_PROVIDER]) == [
        "CUDAExecutionProvider",
        CPU_PROVIDER,
    ]
    assert select_providers(["TensorrtExecutionProvider"], available) == [CPU_PROVIDER]


def test_session_options_follow_settings(zoo: Path) -> None:
    opts = session_options(make_settings(zoo, intra_op_threads=2, inter_op_threads=1))
    assert opts.intra_op_num_threads == 2
    assert opts.inter_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    auto = session_options(make_settings(zoo, intra_op_threads=0))
    assert 1 <= auto.intra_op_num_threads <= 4


def test_runner_logs_its_providers_and_runs_on_cpu(zoo: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.runtime"):
        runner = load(zoo, GRAY)
    assert runner.providers[-1] == CPU_PROVIDER
    assert f"model {GRAY}: providers" in caplog.text


def test_cuda_asked_for_but_not_had_is_a_warning_and_the_real_provider_is_reported(
    zoo: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As onnxruntime-gpu without the CUDA libraries: CUDA listed as available, the session on CPU.
    monkeypatch.setattr(
        "service.runtime.ort.get_available_providers", lambda: ["CUDAExecutionProvider", CPU_PROVIDER]
    )
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        runner = load(zoo, GRAY, providers=["CUDAExecutionProvider", CPU_PROVIDER])
    assert runner.providers == [CPU_PROVIDER]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "CUDAExecutionProvider requested but not in effect" in w and "running on CPUExecutionProvider" in w
        for w in warnings
    ), warnings


def test_a_cpu_only_build_is_no_warning(zoo: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        load(zoo, GRAY, providers=["CUDAExecutionProvider", CPU_PROVIDER])
    assert "not in effect" not in caplog.text


@pytest.mark.parametrize("name", [GRAY, RGB, UNCOND])
def test_runner_output_matches_the_graph(zoo: Path, name: str) -> None:
    runner = load(zoo, name)
    card = runner.card
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, card.latent.dim)).astype(np.float32)
    labels = rng.integers(0, card.num_classes, 5) if card.conditional else None
    out = runner.run(z, labels)
    assert out.dtype == np.uint8
    assert out.shape == (5, card.image.channels, card.image.height, card.image.width)
    want = reference_images(zoo / name, z, labels)
    assert int(np.abs(out.astype(int) - want.astype(int)).max()) <= 1


def test_binding_device_follows_the_setting_and_the_primary_provider() -> None:
    cuda = ["CUDAExecutionProvider", CPU_PROVIDER]
    assert binding_device("auto", cuda) == "cuda"
    assert binding_device("auto", [CPU_PROVIDER]) is None  # a plain CPU run copies nothing
    assert binding_device("on", [CPU_PROVIDER]) == "cpu"
    assert binding_device("on", cuda) == "cuda"
    assert binding_device("off", cuda) is None
    # A provider with no known device: bound on the host when asked, plain runs otherwise.
    assert binding_device("auto", ["OpenVINOExecutionProvider", CPU_PROVIDER]) is None
    assert binding_device("on", ["OpenVINOExecutionProvider", CPU_PROVIDER]) == "cpu"


@pytest.mark.parametrize("name", [GRAY, UNCOND])
def test_io_binding_runs_give_the_plain_runs_pixels(zoo: Path, name: str) -> None:
    plain = load(zoo, name, io_binding="off")
    bound = load(zoo, name, io_binding="on", run_batch_size=4)
    assert plain.binding_device is None
    assert bound.binding_device == "cpu"
    card = plain.card
    rng = np.random.default_rng(3)
    for n in (1, 7, 3):  # batch sizes change between runs of the one binding; 7 is split in two
        z = rng.standard_normal((n, card.latent.dim)).astype(np.float32)
        labels = rng.integers(0, card.num_classes, n) if card.conditional else None
        np.testing.assert_array_equal(bound.run(z, labels), plain.run(z, labels))


def test_batched_rows_equal_rows_run_alone(zoo: Path) -> None:
    """What makes batching invisible to clients: a row's pixels do not depend on its batch."""
    runner = load(zoo, GRAY)
    rng = np.random.default_rng(1)
    z = rng.standard_normal((64, 16)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    together = runner.run(z, labels)
    for i in range(64):
        assert np.array_equal(runner.run(z[i : i + 1], labels[i : i + 1])[0], together[i])


class _CountingSession:
    """Wraps a session and records the batch size of every run; may call a hook after each."""

    def __init__(self, inner: ort.InferenceSession, after_run: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.after_run = after_run
        self.rows: list[int] = []

    def run(
        self, outputs: list[str], feed: dict[str, np.ndarray], run_options: ort.RunOptions | None = None
    ) -> list[np.ndarray]:
        result = self.inner.run(outputs, feed, run_options=run_options)
        self.rows.append(int(next(iter(feed.values())).shape[0]))
        if self.after_run is not None:
            self.after_run()
        return list(result)

    def get_providers(self) -> list[str]:
        return list(self.inner.get_providers())


def test_a_batch_larger_than_run_batch_size_is_split_into_session_runs(zoo: Path) -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((23, 16)).astype(np.float32)
    labels = rng.integers(0, 10, 23)
    whole = load(zoo, GRAY, run_batch_size=64)
    split = load(zoo, GRAY, run_batch_size=5)
    counting = _CountingSession(split.session)
    split.session = counting
    out = split.run(z, labels)
    assert counting.rows == [5, 5, 5, 5, 3]
    assert out.dtype == np.uint8
    assert out.shape == (23, 1, 8, 8)
    assert np.array_equal(out, whole.run(z, labels))
    counting.rows.clear()
    split.run(z[:5], labels[:5])  # at the limit: one run
    assert counting.rows == [5]


def test_abort_between_the_session_runs_of_a_split_batch_stops_the_rest(zoo: Path) -> None:
    runner = load(zoo, GRAY, run_batch_size=2)
    counting = _CountingSession(runner.session, after_run=runner.abort)
    runner.session = counting
    with pytest.raises(RuntimeError, match="aborted"):
        runner.run(np.zeros((6, 16), dtype=np.float32), np.zeros(6, dtype=np.int64))
    assert counting.rows == [2]  # the abort came after the first run; no further run started
    counting.after_run = None
    assert runner.run(np.zeros((6, 16), dtype=np.float32), np.zeros(6, dtype=np.int64)).shape[0] == 6


def test_conditional_runner_needs_labels(zoo: Path) -> None:
    runner = load(zoo, GRAY)
    with pytest.raises(ValueError, match="needs labels"):
        runner.run(np.zeros((1, 16), dtype=np.float32), None)


class _LyingSession:
    """Wraps a session but returns images of the wrong size, as a mislabelled export would."""

    def __init__(self, inner: ort.InferenceSession) -> None:
        self.inner = inner

    def run(
        self, outputs: list[str], feed: dict[str, np.ndarray], run_options: ort.RunOptions | None = None
    ) -> list[np.ndarray]:
        (out,) = self.inner.run(outputs, feed, run_options=run_options)
        return [out[:, :, :4, :]]

    def get_providers(self) -> list[str]:
        return list(self.inner.get_providers())


def test_warm_up_checks_the_real_output_shape(zoo: Path) -> None:
    runner = load(zoo, GRAY, warmup=False)
    runner.session = _LyingSession(runner.session)
    with pytest.raises(ModelLoadError, match=r"warm-up output has shape \(1, 1, 4, 8\)"):
        runner.warm_up([1])
    with pytest.raises(ValueError, match="returned shape"):
        runner.run(np.zeros((2, 16), dtype=np.float32), np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("io_binding", ["off", "on"])
def test_abort_stops_a_run_in_progress(tmp_path: Path, io_binding: str) -> None:
    """The watchdog's abort reaches into ONNX Runtime: a long run ends at its next operator."""
    model_dir = write_slow_model(tmp_path, rounds=600)  # seconds of work per run
    settings = make_settings(tmp_path, warmup=False, io_binding=io_binding)
    runner = OrtRunner.load(model_dir, load_card(model_dir), settings)
    assert (runner.binding_device is not None) == (io_binding == "on")
    outcome: list[BaseException | np.ndarray] = []

    def run() -> None:
        try:
            outcome.append(runner.run(np.zeros((1, 12), dtype=np.float32), None))
        except Exception as exc:
            outcome.append(exc)

    for attempt in range(2):  # the same session runs again after an abort
        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive()  # running, not ended by the previous abort
        started = time.monotonic()
        assert abort_run(runner)
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert time.monotonic() - started < 1.0
        assert isinstance(outcome[attempt], Exception)
        assert "terminate" in str(outcome[attempt]).lower()
    assert abort_run(runner)  # nothing in progress: a no-op
    assert not abort_run(object())  # type: ignore[arg-type]  # runners without abort()
