"""The training loops (GAN and VAE), with checkpoints, resume, progress bars and sample grids.

A run lives in ``runs/<recipe>/``: ``checkpoint.pt`` (rewritten atomically after every epoch, so a
killed run resumes from its last finished epoch), ``epochs/epoch_NNN.pt`` (the generator alone
after each epoch, for quality-against-epoch curves), ``samples/epoch_NNN.png`` (the label × z grid
after each epoch), ``losses.png`` and ``run.json`` at the end.
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from . import losses
from .data import CLASS_NAMES, load_split, resize_images
from .device import configure, describe, resolve_device
from .nets.auxiliary import AuxClassifier
from .nets.cvae import CVAE
from .plots import loss_curves, sample_grid
from .recipes import Recipe, get_recipe

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
EPOCHS_DIR = "epochs"  # per-epoch generator snapshots
AUX_LR = 1e-3  # the auxiliary classifier's learning rate (recipes with aux_weight)


@dataclass(frozen=True)
class TrainConfig:
    run_dir: Path
    epochs: int | None = None  # None → the recipe's default
    minutes: float | None = None  # wall-clock budget, checked between epochs (an epoch is never cut)
    seed: int = 0
    data_dir: Path | None = None
    download: bool = False
    limit: int | None = None  # train on the first N images only (smoke tests)
    max_steps: int | None = None  # stop after N optimiser steps (smoke tests)
    threads: int | None = None  # torch intra-op threads; None → torch's default
    device: str = "auto"  # auto (CUDA when torch sees one), cpu, cuda, cuda:N
    resume: bool = True
    keep_epochs: bool = True  # also keep the generator after every epoch, in epochs/epoch_NNN.pt
    log_every: int = 50  # steps between loss-history points
    folder_options: dict[str, Any] = field(default_factory=dict)  # image-folder recipes only


@dataclass
class RunState:
    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    finished: bool = False
    # Every device the run has trained on, in order (a run resumed elsewhere lists both).
    devices: list[str] = field(default_factory=list)
    epochs: int = 0  # the epoch count the run was last trained towards (0: not recorded)
    # Epochs after which a run that had reached its planned end was trained on: the learning-rate
    # schedule starts again there (rates restored, the closing decay moved to the new end).
    continued_at: list[int] = field(default_factory=list)


def library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if torch.version.cuda and torch.cuda.is_available():
        versions["cuda"] = torch.version.cuda
    return versions


def resolve_recipe(name: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """The registered recipe with data-dependent fields (class names of a folder) filled in."""
    recipe = get_recipe(name)
    return replace(recipe, **overrides) if overrides else recipe


def training_data(recipe: Recipe, cfg: TrainConfig) -> tuple[Tensor, Tensor | None, dict[str, Any]]:
    """The whole training set in memory at the recipe's image size.

    Returns images uint8 N×C×S×S (``to_range`` scales a batch), labels int64 N (or None) and the
    recipe overrides the data implies (class names for folders). MNIST takes 47 MB this way, and
    in-memory batches avoid a DataLoader's per-batch overhead on a 2-core machine.
    """
    overrides: dict[str, Any] = {}
    if recipe.dataset == "folder":
        from .imagefolder import load_image_folder

        if cfg.data_dir is None:
            raise ValueError(f"recipe {recipe.name} trains on an image folder: pass --data-dir FOLDER")
        folder = load_image_folder(
            cfg.data_dir,
            image_size=recipe.image_size,
            channels=recipe.channels,
            limit=cfg.limit,
            **cfg.folder_options,
        )
        images_u8, labels_np = folder.images, folder.labels
        if recipe.conditional:
            if folder.class_names is None or labels_np is None:
                raise ValueError(f"recipe {recipe.name} is conditional: give it attributes (--attributes)")
            overrides = {"num_classes": len(folder.class_names), "class_names": folder.class_names}
    else:
        split = load_split(recipe.dataset, "train", cfg.data_dir, cfg.download)
        images_u8, labels_np = split.images[:, None], split.labels
        if cfg.limit is not None:
            images_u8, labels_np = images_u8[: cfg.limit], labels_np[: cfg.limit]
        overrides = {"class_names": CLASS_NAMES[recipe.dataset]} if recipe.conditional else {}
    # Kept as uint8 (a quarter of float32's memory: a CelebA-sized folder stays a few GB) and
    # scaled batch by batch. The copy also detaches it from the IDX reader's read-only buffer.
    x = torch.from_numpy(np.array(resize_images(images_u8, recipe.image_size), dtype=np.uint8))
    y = torch.from_numpy(np.ascontiguousarray(labels_np)).long() if labels_np is not None else None
    return x, (y if recipe.conditional else None), overrides


def to_range(batch: Tensor, value_range: tuple[float, float]) -> Tensor:
    """uint8 images → float32 in the generator's output range (e.g. [-1, 1] for tanh)."""
    lo, hi = value_range
    return batch.float().mul_((hi - lo) / 255.0).add_(lo)


class _EMA:
    """Exponential moving average of a module's weights; buffers (BN statistics) are copied."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        # Warm-up: early in training the average would be dominated by the random initialisation.
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        for pe, p in zip(self.module.parameters(), module.parameters(), strict=True):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(self.module.buffers(), module.buffers(), strict=True):
            be.copy_(b)


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt


def generator_from_checkpoint(path: Path) -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """Rebuild the generator a checkpoint holds (its EMA weights when the recipe keeps them)."""
    ckpt = load_checkpoint(path)
    recipe = resolve_recipe(ckpt["recipe"], ckpt.get("overrides"))
    model, _ = recipe.build(recipe)
    model.load_state_dict(ckpt["model"])
    if ckpt.get("ema") is not None:
        model.load_state_dict(ckpt["ema"])
    generator = model.decoder if isinstance(model, CVAE) else model
    return generator.eval(), recipe, ckpt


@dataclass(frozen=True)
class LinearDecay:
    """Learning-rate factor: 1 until the last ``decay_steps`` of ``total_steps``, then linear to 0.

    A function of the step alone, so a resumed run picks the schedule up where it left off.
    """

    total_steps: int
    decay_steps: int

    def factor(self, step: int) -> float:
        if self.decay_steps <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.total_steps - step) / self.decay_steps))


def _progress(total: int, desc: str) -> tqdm:
    # In a log file (not a terminal) a bar redrawn every 100 ms would flood it: redraw every 30 s.
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, mininterval=0.5 if interactive else 30.0, dynamic_ncols=True)


def train(recipe_name: str, cfg: TrainConfig) -> tuple[Path, RunState]:
    """Train (or resume) a recipe; returns the checkpoint path and the final run state."""
    device = resolve_device(cfg.device)
    configure(device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    recipe = get_recipe(recipe_name)
    x, y, overrides = training_data(recipe, cfg)
    recipe = replace(recipe, **overrides) if overrides else recipe
    epochs = cfg.epochs if cfg.epochs is not None else recipe.epochs
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = cfg.run_dir / CHECKPOINT
    epochs_dir = cfg.run_dir / EPOCHS_DIR
    if cfg.keep_epochs:
        epochs_dir.mkdir(exist_ok=True)

    model, disc = recipe.build(recipe)
    # On the device before the optimisers and the EMA copy are made from their parameters. The
    # data stays in host memory as uint8 and goes over one batch at a time.
    model.to(device)
    if disc is not None:
        disc.to(device)
    is_vae = isinstance(model, CVAE)
    opt_g = torch.optim.Adam(model.parameters(), lr=recipe.lr_g, betas=recipe.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=recipe.lr_d, betas=recipe.betas) if disc else None
    ema = _EMA(model, recipe.ema_decay) if recipe.ema_decay > 0 else None
    aux = None
    if recipe.aux_weight > 0:
        aux = AuxClassifier(recipe.channels, recipe.image_size, recipe.num_classes).to(device)
    # A classifier's usual Adam (not the GAN's β1 = 0.5): it has no adversary to keep pace with.
    opt_aux = torch.optim.Adam(aux.parameters(), lr=AUX_LR) if aux is not None else None
    state = RunState()
    gen = torch.Generator().manual_seed(cfg.seed)

    if cfg.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["recipe"] != recipe.name:
            raise ValueError(f"{ckpt_path} belongs to recipe {ckpt['recipe']!r}, not {recipe.name!r}")
        model.load_state_dict(ckpt["model"])
        opt_g.load_state_dict(ckpt["opt_g"])
        if disc is not None and opt_d is not None:
            disc.load_state_dict(ckpt["disc"])
            opt_d.load_state_dict(ckpt["opt_d"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.module.load_state_dict(ckpt["ema"])
        state = RunState(**ckpt["state"])
        if aux is not None and opt_aux is not None:
            if ckpt.get("aux") is not None:
                aux.load_state_dict(ckpt["aux"])
                opt_aux.load_state_dict(ckpt["opt_aux"])
            elif state.epoch > recipe.aux_start_epoch:
                raise ValueError(
                    f"{ckpt_path} was trained without the auxiliary classifier this recipe uses from "
                    f"epoch {recipe.aux_start_epoch + 1}: train it afresh (--restart) or in another --run-dir"
                )
        torch.set_rng_state(ckpt["torch_rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        gen.set_state(ckpt["batch_rng"])
        log.info("resumed %s at epoch %d (step %d)", recipe.name, state.epoch, state.step)
        if 0 < state.epochs <= state.epoch < epochs:
            state.continued_at.append(state.epoch)
            log.info(
                "%s: continuing a finished %d-epoch run to %d epochs; the rate schedule starts again",
                recipe.name,
                state.epochs,
                epochs,
            )
    state.epochs = epochs
    where = describe(device)
    if not state.devices or state.devices[-1] != where:
        state.devices.append(where)
    log.info("%s: training on %s", recipe.name, where)

    def aux_on() -> bool:
        return state.epoch >= recipe.aux_start_epoch

    def save(finished: bool) -> None:
        state.finished = finished
        # The generator as it is now: all that quality-against-epoch curves score
        # (``trainer evaluate --checkpoints``); the checkpoint adds what resuming needs.
        generator = {
            "recipe": recipe.name,
            "overrides": overrides,
            "model": model.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "state": state.__dict__,
            "seed": cfg.seed,
            "libraries": library_versions(),
        }
        resumable = {
            "disc": disc.state_dict() if disc is not None else None,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict() if opt_d is not None else None,
            # Not before its start epoch: a run made before the recipe had the classifier has
            # none either, and is resumed into one (a fresh classifier) there.
            "aux": aux.state_dict() if aux is not None and aux_on() else None,
            "opt_aux": opt_aux.state_dict() if opt_aux is not None and aux_on() else None,
            "torch_rng": torch.get_rng_state(),
            # The latents of a CUDA run are drawn on the GPU, from its own generator.
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "batch_rng": gen.get_state(),
        }
        _atomic_save({**generator, **resumable}, ckpt_path)
        if cfg.keep_epochs:
            _atomic_save(generator, epochs_dir / f"epoch_{state.epoch:03d}.pt")

    def grid(epoch: int) -> None:
        shown = ema.module if ema is not None else model
        net = shown.decoder if isinstance(shown, CVAE) else shown
        was_training = net.training
        net.eval()

        @torch.no_grad()
        def generate(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
            lab = torch.from_numpy(labels).to(device) if labels is not None else None
            out: np.ndarray = net(torch.from_numpy(z).to(device), lab).cpu().numpy()
            return out

        sample_grid(
            generate,
            recipe.z_dim,
            recipe.num_classes,
            recipe.value_range,
            cfg.run_dir / "samples" / f"epoch_{epoch:03d}.png",
        )
        net.train(was_training)

    n = x.shape[0]
    steps_per_epoch = max(1, n // recipe.batch_size)
    schedule = LinearDecay(epochs * steps_per_epoch, recipe.lr_decay_epochs * steps_per_epoch)
    started = time.monotonic() - state.seconds
    stop = False
    while state.epoch < epochs and not stop:
        if cfg.minutes is not None and time.monotonic() - started >= cfg.minutes * 60:
            log.info("%s: %.1f min budget used after %d epochs", recipe.name, cfg.minutes, state.epoch)
            break
        epoch_start = time.monotonic()
        model.train()
        critic = None
        if disc is not None and opt_d is not None:
            critic = _Critic(disc, opt_d, aux, opt_aux) if aux_on() else _Critic(disc, opt_d)
            for module in critic.modules():
                module.train()
        order = torch.randperm(n, generator=gen)
        # Per-key sums and counts: with several critic steps per generator step, g_loss is
        # logged on fewer steps than d_loss.
        sums: dict[str, float | Tensor] = {}  # float64 tensors after a step
        counts: dict[str, int] = {}
        count = 0
        bar = _progress(steps_per_epoch, f"{recipe.name} epoch {state.epoch + 1}/{epochs}")
        for i in range(steps_per_epoch):
            idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
            xb = to_range(x[idx].to(device, non_blocking=True), recipe.value_range)
            yb = y[idx].to(device, non_blocking=True) if y is not None else None
            scale = schedule.factor(state.step)
            for opt, base in ((opt_g, recipe.lr_g), (opt_d, recipe.lr_d), (opt_aux, AUX_LR)):
                if opt is not None:
                    for group in opt.param_groups:
                        group["lr"] = base * scale
            if is_vae:
                assert isinstance(model, CVAE)
                assert yb is not None
                loss, parts = model.loss(xb, yb)  # the VAE recipe's value range is [0, 1]
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                metrics = {"loss": loss.detach(), **parts}
            else:
                assert critic is not None
                metrics = _gan_step(recipe, model, critic, opt_g, ema, xb, yb, state.step)
            state.step += 1
            # Losses stay tensors until a history point: reading one (.item()) waits for the
            # device, and a GPU that is waited for every step idles between them. Summed in
            # float64, as the Python floats they replace were.
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v.double()
                counts[k] = counts.get(k, 0) + 1
            count += 1
            if count == cfg.log_every or i == steps_per_epoch - 1:
                avg = {k: float(v) / counts[k] for k, v in sums.items()}
                state.history.append({"step": float(state.step), "epoch": float(state.epoch), **avg})
                bar.set_postfix({k: f"{v:.3f}" for k, v in avg.items()}, refresh=False)
                sums, counts, count = {}, {}, 0
            bar.update(1)
            if cfg.max_steps is not None and state.step >= cfg.max_steps:
                stop = True
                break
        bar.close()
        state.epoch += 1
        epoch_seconds = time.monotonic() - epoch_start
        state.seconds = time.monotonic() - started
        grid(state.epoch)
        save(finished=False)
        log.info(
            "%s: epoch %d/%d in %.0f s (%.0f s total)",
            recipe.name,
            state.epoch,
            epochs,
            epoch_seconds,
            state.seconds,
        )
    state.seconds = time.monotonic() - started
    save(finished=True)
    loss_curves(state.history, cfg.run_dir / "losses.png", f"{recipe.name}: losses")
    (cfg.run_dir / "run.json").write_text(
        json.dumps(
            {
                "recipe": recipe.name,
                "epochs": state.epoch,
                "steps": state.step,
                "seconds": round(state.seconds, 1),
                "devices": state.devices,
                "seed": cfg.seed,
                "libraries": library_versions(),
            },
            indent=2,
        )
        + "\n"
    )
    return ckpt_path, state


@dataclass(frozen=True)
class _Critic:
    """What judges the generator: the discriminator and, with ``aux_weight``, the auxiliary classifier."""

    disc: nn.Module
    opt_d: torch.optim.Optimizer
    aux: nn.Module | None = None
    opt_aux: torch.optim.Optimizer | None = None

    def modules(self) -> list[nn.Module]:
        return [self.disc] if self.aux is None else [self.disc, self.aux]


def _gan_step(
    recipe: Recipe,
    gen_net: nn.Module,
    critic: _Critic,
    opt_g: torch.optim.Optimizer,
    ema: _EMA | None,
    real: Tensor,
    labels: Tensor | None,
    step: int,
) -> dict[str, Tensor]:
    """One discriminator step, and a generator step every ``critic_steps`` steps.

    Fakes for the discriminator share the real batch's labels, so a conditional critic (and the
    WGAN-GP interpolates between real and fake) always compares like with like. The auxiliary
    classifier, when the recipe has one, takes a step on the real batch alongside the
    discriminator's, and adds its class loss on the fakes to the generator's.
    """
    disc, opt_d = critic.disc, critic.opt_d
    b = real.shape[0]
    z = torch.randn(b, recipe.z_dim, device=real.device)
    with torch.no_grad():
        fake = gen_net(z, labels)
    d_real = disc(real, labels)
    d_fake = disc(fake, labels)
    loss_d = losses.d_loss(recipe.loss, d_real, d_fake, recipe.real_target)  # type: ignore[arg-type]
    out = {"d_loss": loss_d.detach()}
    if recipe.gp_weight > 0:
        gp = losses.gradient_penalty(disc, real, fake, labels)
        loss_d = loss_d + recipe.gp_weight * gp
        out["gp"] = gp.detach()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    if critic.aux is not None and critic.opt_aux is not None and labels is not None:
        loss_aux = F.cross_entropy(critic.aux(real), labels)
        out["aux_real"] = loss_aux.detach()
        critic.opt_aux.zero_grad(set_to_none=True)
        loss_aux.backward()
        critic.opt_aux.step()

    if step % recipe.critic_steps == 0:
        for module in critic.modules():  # the generator step needs no gradients for the critics
            module.requires_grad_(False)
        if recipe.ms_weight > 0:
            # Two latents per label: the halves differ only in z, which the mode-seeking term rewards.
            half = b // 2
            z = torch.randn(2 * half, recipe.z_dim, device=real.device)
            g_labels = torch.cat([labels[:half], labels[:half]]) if labels is not None else None
        else:
            z = torch.randn(b, recipe.z_dim, device=real.device)
            g_labels = labels
        fake = gen_net(z, g_labels)
        loss_g = losses.g_loss(recipe.loss, disc(fake, g_labels))  # type: ignore[arg-type]
        out["g_loss"] = loss_g.detach()
        if recipe.ms_weight > 0:
            half = z.shape[0] // 2
            ms = losses.mode_seeking(fake[:half], fake[half:], z[:half], z[half:])
            loss_g = loss_g + recipe.ms_weight * ms
            out["ms"] = ms.detach()
        if critic.aux is not None and g_labels is not None:
            aux_fake = F.cross_entropy(critic.aux(fake), g_labels)
            loss_g = loss_g + recipe.aux_weight * aux_fake
            out["aux_fake"] = aux_fake.detach()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for module in critic.modules():
            module.requires_grad_(True)
        if ema is not None:
            ema.update(gen_net, step)
    return out
