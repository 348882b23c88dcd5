"""The model repository: discovery, card and file checks, and skipping broken models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from service.card import ModelCard, sha256_file
from service.config import Settings
from service.registry import ModelRegistry
from service.runtime import OrtRunner, Runner
from tests.service.conftest import GRAY, RGB, UNCOND, make_settings
from tests.service.onnx_fixtures import DIGITS, build_graph, edit_card, write_model


def scan(root: Path, **overrides: object) -> ModelRegistry:
    return ModelRegistry.scan(root, make_settings(root, warmup=False, **overrides))


def test_healthy_zoo_loads_every_model(zoo: Path) -> None:
    registry = scan(zoo)
    assert registry.names == [GRAY, RGB, UNCOND]
    assert [e.name for e in registry.loaded] == [GRAY, RGB, UNCOND]
    assert registry.failed == []
    assert registry.problem is None
    entry = registry.get(GRAY)
    assert entry is not None
    assert entry.card is not None
    assert entry.card.num_classes == 10
    assert isinstance(entry.runner, OrtRunner)
    assert isinstance(entry.runner, Runner)
    assert entry.samples_path is not None
    assert entry.samples_path.name == "samples.png"


def _resave_onnx(model_dir: Path, model: onnx.ModelProto) -> None:
    onnx.save(model, model_dir / "model.onnx")
    edit_card(model_dir, onnx__sha256=sha256_file(model_dir / "model.onnx"))


def _break_bad_json(d: Path) -> None:
    (d / "model.json").write_text("{ this is not json")


def _break_missing_field(d: Path) -> None:
    data = json.loads((d / "model.json").read_text())
    del data["latent"]
    (d / "model.json").write_text(json.dumps(data))


def _break_sha(d: Path) -> None:
    edit_card(d, onnx__sha256="0" * 64)


def _break_latent_dim(d: Path) -> None:
    edit_card(d, latent__dim=32)


def _break_input_names(d: Path) -> None:
    _resave_onnx(d, build_graph(dim=16, channels=1, height=8, width=8, num_classes=10, z_name="noise"))


def _break_label_input_on_unconditional_card(d: Path) -> None:
    edit_card(d, labels=None, onnx__label_input=None)


def _break_missing_label_input(d: Path) -> None:
    _resave_onnx(d, build_graph(dim=16, channels=1, height=8, width=8, num_classes=None))


def _break_output_channels(d: Path) -> None:
    edit_card(d, image__channels=3)


def _break_output_name(d: Path) -> None:
    edit_card(d, onnx__output="images")


def _break_static_batch(d: Path) -> None:
    _resave_onnx(d, build_graph(dim=16, channels=1, height=8, width=8, num_classes=10, batch=1))


def _break_symbolic_output_wrong_size(d: Path) -> None:
    # The graph declares symbolic C, H, W; onnxruntime's shape inference (or else the warm-up
    # run) must still catch that the real image is 8x8, not the card's 4x16.
    _resave_onnx(d, build_graph(dim=16, channels=1, height=8, width=8, num_classes=10, symbolic_output=True))
    edit_card(d, image__height=4, image__width=16)


def _break_corrupt_onnx(d: Path) -> None:
    (d / "model.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf")
    edit_card(d, onnx__sha256=sha256_file(d / "model.onnx"))


def _break_missing_onnx(d: Path) -> None:
    (d / "model.onnx").unlink()


def _break_extra_labels(d: Path) -> None:
    edit_card(d, labels=[*DIGITS, "ten", "eleven"])


def _break_name_mismatch(d: Path) -> None:
    edit_card(d, name="someone-else")


def _break_missing_card(d: Path) -> None:
    (d / "model.json").unlink()


BREAKAGES = {
    "bad_json": (_break_bad_json, "model.json is invalid"),
    "missing_field": (_break_missing_field, "latent: Field required"),
    "sha_mismatch": (_break_sha, "sha256 mismatch"),
    "latent_dim": (_break_latent_dim, "latents of size 16, the card says latent.dim=32"),
    "input_names": (_break_input_names, "ONNX inputs ['label', 'noise'] do not match"),
    "label_input_on_unconditional": (
        _break_label_input_on_unconditional_card,
        "unconditional model takes z only",
    ),
    "missing_label_input": (_break_missing_label_input, "do not match the card's ['label', 'z']"),
    "output_channels": (_break_output_channels, "C=1, the card says C=3"),
    "output_name": (_break_output_name, "lack the card's output 'images'"),
    "static_batch": (_break_static_batch, "fixed batch size 1"),
    "symbolic_output": (_break_symbolic_output_wrong_size, "H=8, the card says H=4"),
    "corrupt_onnx": (_break_corrupt_onnx, "onnxruntime cannot load model.onnx"),
    "missing_onnx": (_break_missing_onnx, "model.onnx is missing"),
    "extra_labels": (_break_extra_labels, "label 10 ('ten') of the card does not run on the graph"),
    "name_mismatch": (_break_name_mismatch, "does not match its directory"),
    "missing_card": (_break_missing_card, "model.json is missing"),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_broken_model_is_skipped_with_a_reason_and_others_load(tmp_path: Path, zoo: Path, case: str) -> None:
    root = tmp_path / "models"
    shutil.copytree(zoo / UNCOND, root / UNCOND)
    broken = write_model(root, "broken", dim=16, labels=DIGITS)
    breaker, reason = BREAKAGES[case]
    breaker(broken)
    registry = ModelRegistry.scan(root, make_settings(root))  # with warm-up
    entry = registry.get("broken")
    assert entry is not None
    assert not entry.loaded
    assert entry.runner is None
    assert entry.reason is not None
    assert reason in entry.reason, entry.reason
    assert str(tmp_path) not in entry.reason
    assert [e.name for e in registry.loaded] == [UNCOND]
    assert registry.problem is None


def test_invalid_directory_name_is_skipped(tmp_path: Path) -> None:
    write_model(tmp_path, "ok", dim=4)
    (tmp_path / "Bad Name").mkdir()
    (tmp_path / "Bad Name" / "model.json").write_text("{}")
    registry = scan(tmp_path)
    bad = registry.get("Bad Name")
    assert bad is not None
    assert not bad.loaded
    assert "not a valid model name" in str(bad.reason)
    assert [e.name for e in registry.loaded] == ["ok"]


def test_unrelated_and_hidden_directories_are_ignored(tmp_path: Path) -> None:
    write_model(tmp_path, "ok", dim=4)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("not a model")
    shutil.copytree(write_model(tmp_path, "staged", dim=4), tmp_path / ".staging")
    shutil.rmtree(tmp_path / "staged")
    (tmp_path / "stray-file.onnx").write_bytes(b"")
    assert scan(tmp_path).names == ["ok"]


def test_empty_and_missing_repositories_explain_themselves(tmp_path: Path) -> None:
    empty = scan(tmp_path)
    assert len(empty) == 0
    assert empty.problem is not None
    assert "no models were found in" in empty.problem
    missing = scan(tmp_path / "absent")
    assert missing.problem is not None
    assert "does not exist" in missing.problem


def test_all_models_broken_is_a_repository_problem(tmp_path: Path) -> None:
    _break_sha(write_model(tmp_path, "a", dim=4))
    registry = scan(tmp_path)
    assert registry.problem is not None
    assert "none of the 1 model(s)" in registry.problem


def test_a_crashing_runner_factory_skips_only_that_model(zoo: Path) -> None:
    from service.registry import default_runner_factory

    def factory(model_dir: Path, card: ModelCard, settings: Settings) -> Runner:
        if card.name == RGB:
            raise KeyError("factory bug")
        return default_runner_factory(model_dir, card, settings)

    registry = ModelRegistry.scan(zoo, make_settings(zoo, warmup=False), factory)
    rgb = registry.get(RGB)
    assert rgb is not None
    assert not rgb.loaded
    assert "KeyError" in str(rgb.reason)
    assert rgb.card is not None  # the card itself was fine and stays visible
    assert [e.name for e in registry.loaded] == [GRAY, UNCOND]
