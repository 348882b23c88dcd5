"""The 64×64 image-folder recipes: networks, hyperparameters, and train → export → serve end to end."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from service.card import ModelCard, load_card
from tests.service.conftest import make_settings, serve_app
from tests.trainer.folder_fixtures import write_folder
from trainer.export import export_checkpoint
from trainer.recipes import RECIPES, Recipe
from trainer.training import RunState, TrainConfig, to_range, train, training_data

FOLDER_RECIPES = ("dcgan64-folder", "wgangp64-folder", "cgan64-folder", "condgen64-folder")
ATTRIBUTES = ["Red_Shape", "Round"]
CLASS_NAMES = ["none", "Red_Shape", "Round", "Red_Shape+Round"]
# Images trained on end to end: one step of 16 (the recipes' batch is 64) keeps a train + export
# well under 10 s per recipe; the first 16 files of the folder cover all four attribute classes.
LIMIT = 16


def _options(name: str) -> dict[str, Any]:
    return {"attributes": ATTRIBUTES} if RECIPES[name].conditional else {}


def _with_classes(recipe: Recipe, num_classes: int) -> Recipe:
    return recipe.with_classes(num_classes) if recipe.conditional else recipe


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("folder"))


def test_the_folder_recipes_are_registered_at_64_pixels() -> None:
    for name in FOLDER_RECIPES:
        recipe = RECIPES[name]
        assert recipe.dataset == "folder"
        assert (recipe.image_size, recipe.channels) == (64, 3)
        assert recipe.z_dim == (64 if name == "condgen64-folder" else 100)  # the flagship's latent size
        assert recipe.value_range == (-1.0, 1.0)
    assert not RECIPES["dcgan64-folder"].conditional
    assert not RECIPES["wgangp64-folder"].conditional
    assert RECIPES["cgan64-folder"].conditional
    assert RECIPES["condgen64-folder"].conditional


@pytest.mark.parametrize("name", FOLDER_RECIPES)
def test_networks_map_z_and_labels_to_64px_images_and_scores(name: str) -> None:
    recipe = _with_classes(RECIPES[name], 8)
    gen, disc = recipe.build(recipe)
    assert disc is not None
    label = torch.tensor([0, 3, 7]) if recipe.conditional else None
    with torch.no_grad():
        out = gen.eval()(torch.randn(3, recipe.z_dim), label)
        assert out.shape == (3, 3, 64, 64)
        assert float(out.abs().max()) <= 1.0  # tanh
        assert disc.eval()(out, label).shape == (3,)


def test_dcgan64_uses_keras_batchnorm_momentum_dropout_and_noisy_labels() -> None:
    recipe = RECIPES["dcgan64-folder"]
    gen, disc = recipe.build(recipe)
    assert disc is not None
    norms = [m for m in disc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 3  # none on the first block
    assert all(m.momentum == pytest.approx(0.1) for m in norms)  # Keras momentum 0.9
    assert [m.p for m in disc.modules() if isinstance(m, nn.Dropout)] == [0.3] * 4
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]
    assert all(c.stride == (2, 2) and c.kernel_size == (4, 4) for c in convs)
    deconvs = [m for m in gen.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in deconvs] == [512, 256, 128, 64, 3]
    assert (recipe.loss, recipe.real_target) == ("bce", 0.9)


def test_wgangp64_critic_has_no_batchnorm_and_the_paper_settings() -> None:
    recipe = RECIPES["wgangp64-folder"]
    _, critic = recipe.build(recipe)
    assert critic is not None
    assert not any(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in critic.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in critic.modules()) == 3
    assert recipe.loss == "wgan-gp"
    assert (recipe.gp_weight, recipe.critic_steps, recipe.lr_g, recipe.lr_d) == (10.0, 5, 1e-4, 1e-4)
    assert recipe.betas == (0.0, 0.9)
    # Per-sample critic, even in training mode (no dropout either): a sample's score does not
    # depend on what else is in the batch, as the per-sample gradient penalty assumes.
    critic.train()
    x = torch.randn(4, 3, 64, 64)
    torch.testing.assert_close(critic(x, None)[:1], critic(x[:1], None))


def test_cgan64_conditions_both_networks_on_the_class() -> None:
    recipe = RECIPES["cgan64-folder"].with_classes(4)
    gen, disc = recipe.build(recipe)
    assert disc is not None
    first_g = next(m for m in gen.modules() if isinstance(m, nn.ConvTranspose2d))
    assert first_g.in_channels == 100 + 4  # z ⊕ one-hot
    first_d = next(m for m in disc.modules() if isinstance(m, nn.Conv2d))
    assert first_d.in_channels == 3 + 4  # image beside one map per class
    gen.eval()
    disc.eval()
    z = torch.randn(1, 100).repeat(4, 1)
    with torch.no_grad():
        images = gen(z, torch.arange(4))
        scores = disc(images[:1].repeat(4, 1, 1, 1), torch.arange(4))
    assert all(not torch.equal(images[0], images[k]) for k in (1, 2, 3))
    assert len(set(scores.tolist())) == 4
    with pytest.raises(ValueError, match="conditional"):
        gen(z, None)


def test_training_data_takes_classes_from_the_attribute_table_or_subfolders(
    folder: Path, tmp_path: Path
) -> None:
    recipe = RECIPES["cgan64-folder"]
    options = {"attributes": ATTRIBUTES}
    cfg = TrainConfig(run_dir=tmp_path, data_dir=folder, limit=LIMIT, folder_options=options)
    x, y, overrides = training_data(recipe, cfg)
    assert x.shape == (LIMIT, 3, 64, 64)
    assert x.dtype == torch.uint8  # kept compact; scaled batch by batch
    scaled = to_range(x, recipe.value_range)
    assert -1.0 <= float(scaled.min()) < float(scaled.max()) <= 1.0
    assert y is not None
    assert set(y.tolist()) == {0, 1, 2, 3}
    assert overrides == {"num_classes": 4, "class_names": CLASS_NAMES}
    # Without attributes, the class subfolders are the classes; a folder without them is refused.
    _, _, by_folder = training_data(recipe, replace(cfg, folder_options={}))
    assert by_folder == {"num_classes": 2, "class_names": ["a", "b"]}
    with pytest.raises(ValueError, match=r"no class subfolders.*--attributes"):
        training_data(recipe, replace(cfg, data_dir=folder / "a", folder_options={}))
    with pytest.raises(ValueError, match="--data-dir"):
        training_data(recipe, replace(cfg, data_dir=None))


@dataclass(frozen=True)
class Exported:
    name: str
    models_dir: Path
    card: ModelCard
    state: RunState


@pytest.fixture(scope="module", params=FOLDER_RECIPES)
def exported(
    request: pytest.FixtureRequest, folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Exported:
    """A tiny real training run of one recipe, exported through the parity gate."""
    name: str = request.param
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp(f"run-{name}")
    cfg = TrainConfig(
        run_dir=run,
        epochs=1,
        max_steps=3,
        data_dir=folder,
        limit=LIMIT,
        threads=1,
        folder_options=_options(name),
    )
    ckpt, state = train(name, cfg)
    models = tmp_path_factory.mktemp(f"exported-{name}")
    dest = export_checkpoint(ckpt, models)  # raises unless ONNX Runtime matches torch
    return Exported(name, models, load_card(dest), state)


def test_a_short_run_trains_and_exports_a_valid_card(exported: Exported, folder: Path) -> None:
    recipe = RECIPES[exported.name]
    assert exported.state.step == 1  # 16 images < one batch of 64: one step per epoch
    assert exported.state.finished
    losses = exported.state.history[-1]
    assert np.isfinite([v for k, v in losses.items() if k.endswith("loss")]).all()
    card = exported.card
    assert card.name == exported.name
    assert (card.image.channels, card.image.height, card.image.width) == (3, 64, 64)
    assert card.latent.dim == recipe.z_dim
    assert card.dataset == folder.name  # the folder's own name: it has no manifest.json
    assert card.training is not None
    assert card.training.hyperparameters["real_target"] == recipe.real_target
    if recipe.conditional:
        assert card.labels == CLASS_NAMES
        assert card.onnx.label_input == "label"
    else:
        assert card.labels is None
        assert card.onnx.label_input is None
    rows = len(CLASS_NAMES) if recipe.conditional else 8  # label × z grid, or 8 × 8 latents
    with Image.open(exported.models_dir / exported.name / "samples.png") as samples:
        assert samples.height == 2 * (rows * 66 + 2)  # 64 px cells, 2 px gaps, drawn at 2×


async def test_the_service_serves_the_exported_model(
    exported: Exported, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("CONDGEN_")]:
        monkeypatch.delenv(key)  # settings come from the test, not the shell
    conditional = exported.card.labels is not None
    body: dict[str, Any] = {"model": exported.name, "seed": 1}
    if conditional:
        body["label"] = "Red_Shape+Round"
    async with serve_app(make_settings(exported.models_dir)) as (_, client):
        resp = await client.post("/generate", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(resp.content)) as img:
            assert (img.size, img.mode) == ((64, 64), "RGB")
        again = await client.post("/generate", json=body)
        assert again.content == resp.content  # same seed → same bytes
        if conditional:
            by_id = await client.post("/generate", json={**body, "label": 3})
            assert by_id.content == resp.content  # class 3 is "Red_Shape+Round"
            other = await client.post("/generate", json={**body, "label": "none"})
            assert other.status_code == 200
            assert other.content != resp.content
        else:
            refused = await client.post("/generate", json={**body, "label": 1})
            assert refused.status_code == 422


def test_the_zoo_64_recipes_are_the_folder_recipes_at_half_width() -> None:
    lego = ("dcgan64-lego", "cdcgan64-lego")
    faces = ("wgangp64-faces", "cgan64-faces")
    for name in (*lego, *faces):
        recipe = RECIPES[name]
        assert recipe.dataset == "folder"
        assert recipe.image_size == 64
        assert recipe.channels == (1 if name in lego else 3)
        assert recipe.net.channels == recipe.channels  # type: ignore[union-attr]
    assert RECIPES["cdcgan64-lego"].num_classes == 50
    assert RECIPES["cdcgan64-lego"].loss == "hinge"
    assert RECIPES["cdcgan64-lego"].ema_decay > 0
    assert RECIPES["wgangp64-faces"].loss == "wgan-gp"
    assert RECIPES["wgangp64-faces"].critic_steps == 5
    for name in ("dcgan64-lego", *faces):
        net = RECIPES[name].net
        assert (net.g_width, net.d_width) == (32, 32)  # type: ignore[union-attr]


def test_the_64px_flagship_conditions_every_block_and_projects_the_label() -> None:
    recipe = RECIPES["cdcgan64-lego"]
    gen, disc = recipe.build()
    assert disc is not None
    gen.eval()
    disc.eval()
    z = torch.randn(1, recipe.z_dim).repeat(2, 1)
    with torch.no_grad():
        for block in gen.blocks:  # type: ignore[union-attr]
            nn.init.normal_(block.norm.gain.weight, 0.0, 0.5)  # trained gains differ per class
        out = gen(z, torch.tensor([0, 49]))
        assert out.shape == (2, 1, 64, 64)
        assert not torch.equal(out[0], out[1])  # same z, another part: another image
        same = out[:1].repeat(2, 1, 1, 1)
        scores = disc(same, torch.tensor([0, 49]))
        assert scores.shape == (2,)
        assert scores[0] != scores[1]  # the projection reads the label
