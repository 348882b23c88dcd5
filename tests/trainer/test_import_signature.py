"""Reading a foreign signature: what is inferred (and said), and what is refused (and how to say it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto

from service.card import load_card
from tests.trainer.fixtures.tiny_graphs import write_linear
from trainer.importer import ImportOptions, ImportRefused, import_model

INT64, INT32, FLOAT = TensorProto.INT64, TensorProto.INT32, TensorProto.FLOAT


def _import(tmp_path: Path, graph: dict[str, Any], **options: Any) -> Any:
    source = write_linear(tmp_path / "source.onnx", **graph)
    return import_model(ImportOptions(source=str(source), name="m", out=tmp_path / "out", **options))


REFUSALS = [
    # (graph, options, the option the message must name)
    ({"z": ("a", ["N", 8]), "extra_inputs": ["b"]}, {}, "--z-input NAME and --label-input NAME"),
    ({"row": (3, 3, 3)}, {}, "--layout nchw|nhwc"),
    ({"row": (3 * 16 * 16,)}, {}, "--image C,H,W"),
    ({"row": (3 * 16 * 16,)}, {"image": (3, 16, 16)}, "--layout nchw|nhwc"),
    ({"label": ("label", INT64, ["N"])}, {}, "--num-classes K or --labels"),
    ({"z": ("x", ["N", 26])}, {"label_encoding": "concat"}, "--latent-dim D or --num-classes K"),
    ({"z": ("z", ["N", "width"])}, {}, "--latent-dim D"),
    ({"z": ("z", [8, 8])}, {}, "re-export the source with a dynamic batch axis"),
    ({"label": ("label", INT64, ["N"]), "extra_inputs": ["c"]}, {}, "condgen serves z and one label"),
    ({"outputs": 2}, {}, "--output NAME"),
    ({"scale": 3.0}, {}, "--value-range LO,HI"),
    ({"label": ("label", FLOAT, ["N", 10])}, {"label_encoding": "index"}, "which suits onehot"),
    ({}, {"z_input": "nope"}, "the source's inputs are 'z'"),
    ({"opset": 9}, {}, "opset 11 or later"),
]


@pytest.mark.parametrize(("graph", "options", "names"), REFUSALS)
def test_an_ambiguous_or_unsupported_source_is_refused_naming_what_to_pass(
    tmp_path: Path, graph: dict[str, Any], options: dict[str, Any], names: str
) -> None:
    with pytest.raises(ImportRefused) as refused:
        _import(tmp_path, graph, **options)
    message = str(refused.value)
    assert names in message
    assert len(message.splitlines()) <= 2
    assert not (tmp_path / "out").exists()  # nothing written


def test_two_float_inputs_are_told_apart_by_their_names(tmp_path: Path) -> None:
    report = _import(tmp_path, {"z": ("noise", ["N", 8]), "label": ("class_onehot", FLOAT, ["N", 10])})
    assert report.inferred[:4] == [
        "--z-input noise",
        "--label-input class_onehot",
        "--label-encoding onehot",
        "--num-classes 10  (from label input 'class_onehot')",
    ]
    assert report.card.labels == [str(i) for i in range(10)]


def test_an_index_label_of_any_integer_type_and_either_shape(tmp_path: Path) -> None:
    report = _import(tmp_path, {"label": ("y", INT32, ["N", 1])}, labels=["a", "b", "c"])
    card = load_card(report.directory)
    assert card.labels == ["a", "b", "c"]
    assert card.source is not None
    assert card.source.label_encoding == "index"
    assert "Cast(label int64 → int32)" in card.source.adapters
    assert "Unsqueeze(label [N] → [N, 1])" in card.source.adapters
    assert card.source.inputs[1].model_dump() == {"name": "y", "dtype": "int32", "shape": ["N", 1]}


def test_given_options_must_agree_with_the_graph(tmp_path: Path) -> None:
    with pytest.raises(ImportRefused, match="--latent-dim 5, but z input 'z'"):
        _import(tmp_path, {}, latent_dim=5)
    with pytest.raises(ImportRefused, match="3 labels given, but label input 'onehot' fixes 10 classes"):
        _import(tmp_path, {"label": ("onehot", FLOAT, ["N", 10])}, labels=["a", "b", "c"])


def test_a_square_flat_output_is_one_gray_channel(tmp_path: Path) -> None:
    report = _import(tmp_path, {"row": (28 * 28,)})
    assert "--image 1,28,28" in report.inferred
    assert (report.card.image.channels, report.card.image.height, report.card.image.width) == (1, 28, 28)
    assert report.card.labels is None  # no label input, no --labels: unconditional
