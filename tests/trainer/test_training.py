"""A tiny real train on real MNIST: checkpoints, resume, sample grids, loss curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.training import (
    CHECKPOINT,
    EPOCHS_DIR,
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


def test_resume_continues_from_the_checkpoint(tmp_path: Path, in_repo: Path, mnist_dir: Path) -> None:
    train("gan-mnist", _cfg(tmp_path, mnist_dir, epochs=1, max_steps=None, limit=256))
    first = load_checkpoint(tmp_path / CHECKPOINT)["state"]
    assert first["epoch"] == 1
    _, state = train("gan-mnist", _cfg(tmp_path, mnist_dir, epochs=2, max_steps=None, limit=256))
    assert state.epoch == 2
    assert state.step == 2 * first["step"]
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


def test_a_checkpoint_of_another_recipe_is_refused(tmp_path: Path, in_repo: Path, mnist_dir: Path) -> None:
    train("gan-mnist", _cfg(tmp_path, mnist_dir))
    with pytest.raises(ValueError, match="belongs to recipe"):
        train("cgan-mnist", _cfg(tmp_path, mnist_dir))


def test_restart_ignores_the_checkpoint(tmp_path: Path, in_repo: Path, mnist_dir: Path) -> None:
    train("gan-mnist", _cfg(tmp_path, mnist_dir))
    _, state = train("gan-mnist", _cfg(tmp_path, mnist_dir, resume=False, max_steps=2))
    assert state.step == 2
