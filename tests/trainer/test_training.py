"""A tiny real train on real MNIST: checkpoints, resume, sample grids, loss curves."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.checkpoint import FORMAT
from trainer.data import CLASS_NAMES
from trainer.nets.auxiliary import AuxClassifier
from trainer.recipes import RECIPES, get_recipe
from trainer.training import (
    CHECKPOINT,
    EPOCHS_DIR,
    LinearDecay,
    TrainConfig,
    generator_from_checkpoint,
    load_checkpoint,
    train,
)


def _cfg(run_dir: Path, mnist_dir: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "run_dir": run_dir,
        "epochs": 1,
        "limit": 500,
        "max_steps": 3,
        "data_dir": mnist_dir,
        "threads": 1,
        "log_every": 1,
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("recipe", ["cdcgan-mnist", "cvae-mnist", "dcgan-mnist"])
def test_a_few_real_steps_leave_a_checkpoint_grid_and_curves(
    recipe: str, tmp_path: Path, in_repo: Path, mnist_dir: Path
) -> None:
    ckpt, state = train(recipe, _cfg(tmp_path, mnist_dir))
    assert ckpt == tmp_path / CHECKPOINT
    assert state.step == 3
    assert state.epoch == 1
    assert state.finished
    assert all(np.isfinite(v) for h in state.history for v in h.values())
    grid = Image.open(tmp_path / "samples" / "epoch_001.png")
    # 28 or 32 px cells, 8 per row, 2 px padding, drawn at 2× scale.
    assert grid.width in (2 * (8 * 30 + 2), 2 * (8 * 34 + 2))
    assert (tmp_path / "losses.png").stat().st_size > 1000
    generator, resolved, _ = generator_from_checkpoint(ckpt)
    assert not generator.training
    assert resolved.name == recipe
    assert state.devices == ["cpu"]  # what the card's training.device will say


def test_the_run_records_each_device_once(tmp_path: Path, in_repo: Path, mnist_dir: Path) -> None:
    train("gan-mnist", _cfg(tmp_path, mnist_dir, device="cpu"))
    _, state = train("gan-mnist", _cfg(tmp_path, mnist_dir, epochs=2, device="cpu"))
    assert state.devices == ["cpu"]  # resumed on the same device: listed once
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["state"]["devices"] == ["cpu"]
    assert ckpt["cuda_rng"] is None
    assert json.loads((tmp_path / "run.json").read_text())["devices"] == ["cpu"]
    # A checkpoint from before devices were recorded resumes, and lists the device it resumes on.
    del ckpt["state"]["devices"]
    torch.save(ckpt, tmp_path / CHECKPOINT)
    _, state = train("gan-mnist", _cfg(tmp_path, mnist_dir, epochs=3, device="cpu"))
    assert state.devices == ["cpu"]


def test_resume_continues_from_the_checkpoint(tmp_path: Path, in_repo: Path, mnist_dir: Path) -> None:
    train("gan-mnist", _cfg(tmp_path, mnist_dir, epochs=1, max_steps=None, limit=256))
    first = load_checkpoint(tmp_path / CHECKPOINT)["state"]
    assert first["epoch"] == 1
    _, state = train("gan-mnist", _cfg(tmp_path, mnist_dir, epochs=2, max_steps=None, limit=256))
    assert state.epoch == 2
    assert state.step == 2 * first["step"]
    # The 1-epoch run had reached its end: training it on is a continuation, marked where it began.
    assert first["continued_at"] == []
    assert state.continued_at == [1]
    assert state.epochs == 2
    assert len(state.history) > len(first["history"])
    # One generator snapshot per epoch, each the weights of its epoch (not of the last one).
    snapshots = sorted((tmp_path / EPOCHS_DIR).glob("*.pt"))
    assert [p.name for p in snapshots] == ["epoch_001.pt", "epoch_002.pt"]
    one, _, kept = generator_from_checkpoint(snapshots[0])
    two, _, _ = generator_from_checkpoint(snapshots[1])
    last, _, _ = generator_from_checkpoint(tmp_path / CHECKPOINT)
    assert kept["state"]["epoch"] == 1
    assert "disc" not in kept  # the generator only
    weights = [dict(g.state_dict()) for g in (one, two, last)]
    assert all(torch.equal(weights[1][k], weights[2][k]) for k in weights[2])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[2])
    train("gan-mnist", _cfg(tmp_path / "lean", mnist_dir, keep_epochs=False))
    assert not (tmp_path / "lean" / EPOCHS_DIR).exists()


def test_a_run_stopped_short_and_resumed_is_not_a_continuation(
    tmp_path: Path, in_repo: Path, mnist_dir: Path
) -> None:
    train("gan-mnist", _cfg(tmp_path, mnist_dir, epochs=3, max_steps=2))  # stops in epoch 1 of 3
    _, state = train("gan-mnist", _cfg(tmp_path, mnist_dir, epochs=3, max_steps=4))
    assert state.epoch == 2
    assert state.continued_at == []


def test_a_checkpoint_of_another_recipe_is_refused(tmp_path: Path, in_repo: Path, mnist_dir: Path) -> None:
    train("gan-mnist", _cfg(tmp_path, mnist_dir))
    with pytest.raises(ValueError, match="belongs to recipe"):
        train("cgan-mnist", _cfg(tmp_path, mnist_dir))


@pytest.mark.parametrize(
    ("recipe", "tamper", "refusal"),
    [
        # trained on other data: its embedding and class names are not this data's
        (
            "cgan-mnist",
            lambda c: c["overrides"].update(class_names=[f"c{i}" for i in range(10)]),
            "other classes",
        ),
        ("gan-mnist", lambda c: c.update(format=FORMAT + 1), "newer than this trainer reads"),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_run_is_refused(
    tmp_path: Path, in_repo: Path, mnist_dir: Path, recipe: str, tamper: Callable[[dict], None], refusal: str
) -> None:
    train(recipe, _cfg(tmp_path, mnist_dir))
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    tamper(ckpt)
    torch.save(ckpt, tmp_path / CHECKPOINT)
    with pytest.raises(ValueError, match=refusal):
        train(recipe, _cfg(tmp_path, mnist_dir))


def test_restart_ignores_the_checkpoint(tmp_path: Path, in_repo: Path, mnist_dir: Path) -> None:
    train("gan-mnist", _cfg(tmp_path, mnist_dir))
    _, state = train("gan-mnist", _cfg(tmp_path, mnist_dir, resume=False, max_steps=2))
    assert state.step == 2


def test_linear_decay_holds_then_falls_to_zero() -> None:
    flat = LinearDecay(total_steps=100, decay_steps=0)
    assert [flat.factor(s) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    decay = LinearDecay(total_steps=100, decay_steps=40)
    assert decay.factor(0) == 1.0
    assert decay.factor(60) == 1.0
    assert decay.factor(80) == pytest.approx(0.5)
    assert decay.factor(99) == pytest.approx(1 / 40)
    assert decay.factor(100) == 0.0
    assert decay.factor(120) == 0.0  # past the end (a run cut short and extended): never negative


def test_the_flagship_decays_its_learning_rates_over_its_last_epochs(
    tmp_path: Path, in_repo: Path, mnist_dir: Path
) -> None:
    recipe = get_recipe("condgen-mnist")
    assert recipe.lr_decay_epochs > 0
    # 256 images → 4 steps per epoch; one epoch lies wholly inside the decay window, so the
    # last step (step 3 of 4) trains at (4 − 3) ÷ (4 × lr_decay_epochs) of the base rates.
    train("condgen-mnist", _cfg(tmp_path, mnist_dir, max_steps=None, limit=256))
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    expected = 1 / (4 * recipe.lr_decay_epochs)
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == pytest.approx(recipe.lr_g * expected)
    assert ckpt["opt_d"]["param_groups"][0]["lr"] == pytest.approx(recipe.lr_d * expected)


def test_the_auxiliary_classifier_learns_the_classes_and_resumes(
    tmp_path: Path, in_repo: Path, mnist_dir: Path
) -> None:
    assert get_recipe("cdcgan-mnist").aux_weight > 0
    # Out of the closing learning-rate decay (the recipe's last epochs of 4): full rates.
    cfg = _cfg(tmp_path, mnist_dir, epochs=4, max_steps=10, limit=1000, log_every=2)
    _, state = train("cdcgan-mnist", cfg)
    # 10 steps of 100 real digits: its loss on the real batches falls from chance (ln 10 ≈ 2.3).
    real = [h["aux_real"] for h in state.history]
    assert real[0] > 1.8
    assert real[-1] < real[0] - 0.3
    assert all(np.isfinite(h["aux_fake"]) for h in state.history)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["aux"] is not None
    assert ckpt["opt_aux"]["state"]  # Adam moments: a resumed run continues them
    _, resumed = train("cdcgan-mnist", _cfg(tmp_path, mnist_dir, epochs=2, max_steps=None, limit=1000))
    assert resumed.step == 2 * state.step
    # A run made before the recipe had the classifier cannot resume silently without it.
    del ckpt["aux"]
    torch.save(ckpt, tmp_path / CHECKPOINT)
    with pytest.raises(ValueError, match="auxiliary classifier"):
        train("cdcgan-mnist", _cfg(tmp_path, mnist_dir, epochs=3, limit=1000))


def test_a_run_whose_auxiliary_classifier_had_another_shape_goes_on_with_a_fresh_one(
    tmp_path: Path, in_repo: Path, mnist_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _cfg(tmp_path, mnist_dir, epochs=4, max_steps=10, limit=1000, log_every=1)
    _, state = train("cdcgan-mnist", cfg)
    learnt = state.history[-1]["aux_real"]
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    older = AuxClassifier(1, 28, 10, width=16)  # another shape of it, as an earlier run made
    ckpt["aux"] = older.state_dict()
    ckpt["opt_aux"] = torch.optim.Adam(older.parameters()).state_dict()
    torch.save(ckpt, tmp_path / CHECKPOINT)
    with caplog.at_level("WARNING", logger="trainer.training"):
        _, resumed = train("cdcgan-mnist", replace(cfg, max_steps=12))
    assert "auxiliary classifier has a new shape" in caplog.text
    # The generator and critics went on; the classifier learns the classes again from chance.
    assert resumed.step == 12
    assert resumed.history[-2]["aux_real"] > learnt + 0.3
    saved = load_checkpoint(tmp_path / CHECKPOINT)["aux"]
    fresh = AuxClassifier(1, 28, 10).state_dict()
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in fresh.items()}


def test_a_late_auxiliary_loss_joins_at_its_epoch_and_a_run_resumed_before_it_begins_it(
    tmp_path: Path, in_repo: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = replace(get_recipe("cdcgan-mnist"), aux_start_epoch=1)
    monkeypatch.setitem(RECIPES, "cdcgan-mnist", late)
    cfg = _cfg(tmp_path, mnist_dir, epochs=1, max_steps=None, limit=400, log_every=2)
    _, first = train("cdcgan-mnist", cfg)
    # Epoch 1 is a plain GAN epoch: no classifier trained.
    assert first.history
    assert not any("aux_real" in h or "aux_fake" in h for h in first.history)
    # A run made before the recipe had the classifier, resumed at its start epoch, begins one.
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    ckpt["aux"] = ckpt["opt_aux"] = None
    torch.save(ckpt, tmp_path / CHECKPOINT)
    _, second = train("cdcgan-mnist", replace(cfg, epochs=2))
    joined = [h for h in second.history if h["epoch"] == 1]
    assert joined
    assert all("aux_real" in h and "aux_fake" in h for h in joined)
    assert load_checkpoint(tmp_path / CHECKPOINT)["aux"] is not None
    assert late.hyperparameters()["aux_start_epoch"] == 1
    # Past its start epoch a checkpoint without the classifier is refused, as before.
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    ckpt["aux"] = ckpt["opt_aux"] = None
    torch.save(ckpt, tmp_path / CHECKPOINT)
    with pytest.raises(ValueError, match="from epoch 2"):
        train("cdcgan-mnist", replace(cfg, epochs=3))


def test_the_run_records_its_data_and_refuses_to_resume_on_other_data(
    tmp_path: Path, in_repo: Path, mnist_dir: Path
) -> None:
    train("cgan-mnist", _cfg(tmp_path, mnist_dir, max_steps=1))
    data = json.loads((tmp_path / "run.json").read_text())["data"]
    assert data["dir"] == mnist_dir.as_posix()
    assert (data["images"], data["name"], data["labels_from"]) == (500, "mnist", "dataset labels")
    assert data["classes"] == CLASS_NAMES["mnist"]
    assert load_checkpoint(tmp_path / CHECKPOINT)["data"]["fingerprint"] == data["fingerprint"]
    # Other images (the first 400, not the first 500): refused, saying how to start afresh.
    with pytest.raises(ValueError, match=r"\(500 images, 10 classes\).*\(400 images.*--restart.*--name"):
        train("cgan-mnist", _cfg(tmp_path, mnist_dir, limit=400, epochs=2))
    _, state = train("cgan-mnist", _cfg(tmp_path, mnist_dir, limit=400, resume=False, max_steps=1))
    assert state.step == 1
    assert json.loads((tmp_path / "run.json").read_text())["data"]["images"] == 400
