"""Sources: ONNX, TorchScript, a PyTorch class (by file or by module) with its state_dict."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.latents import latents_for
from tests.trainer.fixtures.seed_generators import MLPCGAN, cdcgan_output, mlp_output, seeded
from trainer.importer import ImportOptions, ImportRefused, import_model

FIXTURES = Path(__file__).parent / "fixtures"
CLASS = str(FIXTURES / "seed_generators.py") + ":CDCGANGenerator"


def _served(model_dir: Path, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(["image"], {"z": z, "label": labels})[0]
    return out


def test_a_class_file_with_its_state_dict(tmp_path: Path) -> None:
    weights = FIXTURES / "cdcgan_state.pt"
    report = import_model(ImportOptions(source=CLASS, name="cls", out=tmp_path, weights=weights))
    src = report.card.source
    assert src is not None
    assert (src.kind, src.file, src.class_name) == (
        "pytorch",
        "seed_generators.py",
        "seed_generators.py:CDCGANGenerator",
    )
    assert src.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert report.inferred[:2] == [
        "--latent-dim 16  (from CDCGANGenerator.nz)",
        "--num-classes 10  (from CDCGANGenerator.num_classes)",
    ]
    assert 0 < report.parity_max_diff < 1e-5  # torch against ONNX Runtime
    z, labels = latents_for(5, 6, 16), np.array([0, 9, 1, 8, 2, 7])
    np.testing.assert_allclose(_served(report.directory, z, labels), cdcgan_output(z, labels), atol=1e-5)


def test_a_module_path_with_constructor_kwargs(tmp_path: Path) -> None:
    torch.save(seeded(MLPCGAN(sigmoid=True), 1).state_dict(), tmp_path / "mlp.pt")
    report = import_model(
        ImportOptions(
            source="tests.trainer.fixtures.seed_generators:MLPCGAN",
            name="mlp",
            out=tmp_path / "out",
            weights=tmp_path / "mlp.pt",
            kwargs={"sigmoid": True},
            latent_dim=16,
            labels=[str(i) for i in range(10)],
        )
    )
    assert report.card.source is not None
    assert report.card.source.label_encoding == "concat"
    assert report.card.image.value_range == (0.0, 1.0)
    z, labels = latents_for(6, 4, 16), np.array([3, 1, 4, 1])
    np.testing.assert_allclose(_served(report.directory, z, labels), mlp_output(z, labels), atol=1e-5)


def test_torchscript(tmp_path: Path) -> None:
    report = import_model(ImportOptions(source=str(FIXTURES / "cdcgan_scripted.pt"), name="ts", out=tmp_path))
    assert report.card.source is not None
    assert report.card.source.kind == "torchscript"
    z, labels = latents_for(7, 3, 16), np.array([5, 5, 0])
    np.testing.assert_allclose(
        _served(report.directory, z, labels), cdcgan_output(z, labels, seed=1), atol=1e-5
    )


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            {"source": CLASS, "weights": FIXTURES / "cdcgan_state.pt", "kwargs": {"ngf": 8}},
            "pass the constructor's arguments with --kwargs JSON",
        ),
        ({"source": CLASS, "kwargs": {"colour": 3}}, "pass its arguments with --kwargs JSON"),
        ({"source": "tests.trainer.fixtures.seed_generators:MLPCGAN"}, "pass --latent-dim D"),
        ({"source": "tests.trainer.fixtures.seed_generators:Nope"}, "has no class 'Nope'"),
        ({"source": "missing/gen.py:G"}, "no such file"),
        ({"source": "missing.onnx"}, "no such file"),
        (
            {"source": str(FIXTURES / "keras_cgan.onnx"), "weights": FIXTURES / "cdcgan_state.pt"},
            "drop them for ONNX",
        ),
        ({"source": str(FIXTURES / "README.md")}, "not a valid ONNX model"),
        ({"source": CLASS, "weights": FIXTURES / "keras_cgan.onnx"}, "not a torch state_dict"),
    ],
)
def test_a_source_that_cannot_be_loaded_is_refused_in_a_line_or_two(
    tmp_path: Path, options: dict[str, object], says: str
) -> None:
    with pytest.raises(ImportRefused) as refused:
        import_model(ImportOptions(name="m", out=tmp_path / "out", **options))  # type: ignore[arg-type]
    assert says in str(refused.value)
    assert len(str(refused.value).splitlines()) <= 2
    assert not (tmp_path / "out").exists()
