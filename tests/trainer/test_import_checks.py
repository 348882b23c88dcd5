"""What an import checks before it writes: the value range, parity, finite output, its range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainer.fixtures.tiny_graphs import write_linear
from trainer.importer import ImportOptions, ImportRefused, import_model


def _import(tmp_path: Path, graph: dict[str, Any], **options: Any) -> Any:
    source = write_linear(tmp_path / "source.onnx", **graph)
    return import_model(ImportOptions(source=str(source), name="m", out=tmp_path / "out", **options))


@pytest.mark.parametrize(
    ("graph", "inferred"),
    [
        ({"activation": "Sigmoid"}, (0.0, 1.0)),
        ({"activation": "Tanh"}, (-1.0, 1.0)),
        ({"activation": "Sigmoid", "scale": 255.0}, (0.0, 255.0)),
    ],
)
def test_the_value_range_is_inferred_by_sampling_and_said(
    tmp_path: Path, graph: dict[str, Any], inferred: tuple[float, float]
) -> None:
    report = _import(tmp_path, graph)
    assert report.card.image.value_range == inferred
    said = next(line for line in report.inferred if line.startswith("--value-range="))
    assert said.startswith(
        f"--value-range={inferred[0]:g},{inferred[1]:g}  (sampled 256 images: outputs span ["
    )


def test_a_source_that_does_not_reproduce_itself_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ImportRefused, match=r"differs from its source by .* \(1e-4 of the value range\)"):
        _import(tmp_path, {"noise": True}, value_range=(-2.0, 2.0))
    assert not (tmp_path / "out").exists()


def test_non_finite_output_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImportRefused, match="non-finite values"):
        _import(tmp_path, {"activation": "Log"}, value_range=(-1.0, 1.0))  # log of negatives: NaN


def test_output_outside_the_given_range_is_a_warning_with_figures(tmp_path: Path) -> None:
    report = _import(tmp_path, {"activation": "Tanh"}, value_range=(0.0, 1.0))
    (warning,) = report.warnings
    assert "of the output values of 256 sampled images fall outside [0, 1] (min -" in warning
    assert (report.directory / "model.onnx").is_file()  # a warning, not a refusal


def test_parity_and_every_label_are_measured(tmp_path: Path) -> None:
    report = _import(tmp_path, {"label": ("label", 7, ["N"])}, labels=[f"c{i}" for i in range(300)])
    assert report.parity_max_diff == 0.0  # the source's own nodes, run by the same runtime
    assert report.labels_max_diff == 0.0  # 300 labels, in two runs
    assert report.card.source is not None
    assert report.card.source.parity_max_diff == 0.0
