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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from . import losses
from .checkpoint import (
    CHECKPOINT,
    EPOCHS_DIR,
    checkpoint_recipe,
    generator_part,
    library_versions,
    load_checkpoint,
    save_checkpoint,
)

# Callers that rebuild a generator have long imported it from here.
from .checkpoint import generator_from_checkpoint as generator_from_checkpoint
from .data import CLASS_NAMES, load_split, resize_images
from .device import configure, describe, resolve_device
from .nets.auxiliary import AuxClassifier
from .nets.cvae import CVAE
from .plots import loss_curves, sample_grid
from .recipes import Recipe, get_recipe
from .run_data import DataRecord, fingerprint, folder_identity, refuse_other_data

log = logging.getLogger(__name__)

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
    # The card's dataset name and description (image folders; default: the folder's manifest.json,
    # else the folder's name).
    dataset_name: str | None = None
    dataset_description: str | None = None


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
        options = dict(cfg.folder_options)
        # Without attributes, a conditional recipe's classes are the folder's class subfolders.
        options.setdefault("class_folders", recipe.conditional and not options.get("attributes"))
        folder = load_image_folder(
            cfg.data_dir,
            image_size=recipe.image_size,
            channels=recipe.channels,
            limit=cfg.limit,
            **options,
        )
        images_u8, labels_np = folder.images, folder.labels
        if recipe.conditional:
            if folder.class_names is None or labels_np is None:
                raise ValueError(
                    f"recipe {recipe.name} is conditional: give it class subfolders or --attributes"
                )
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


def data_record(
    recipe: Recipe, cfg: TrainConfig, x: Tensor, y: Tensor | None, overrides: dict[str, Any]
) -> DataRecord:
    """What this run trains on, as its checkpoint and ``run.json`` record it."""
    classes = overrides.get("class_names") if recipe.conditional else None
    if recipe.dataset == "folder":
        assert cfg.data_dir is not None  # training_data has refused a folder recipe without one
        name, description = folder_identity(cfg.data_dir, cfg.dataset_name, cfg.dataset_description)
        attributes = cfg.folder_options.get("attributes")
        labels_from = f"attributes: {','.join(attributes)}" if attributes else "class folders"
    else:
        name, description, labels_from = recipe.dataset, cfg.dataset_description, "dataset labels"
    return DataRecord(
        dir=None if cfg.data_dir is None else Path(cfg.data_dir).as_posix(),
        images=int(x.shape[0]),
        classes=list(classes) if classes is not None else None,
        labels_from=labels_from if classes is not None else None,
        fingerprint=fingerprint(x.numpy(), y.numpy() if y is not None else None),
        name=name,
        description=description,
    )


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


@dataclass
class _Run:
    """Everything one training run works on: the recipe, its data, networks, optimisers and state."""

    recipe: Recipe
    cfg: TrainConfig
    device: torch.device
    overrides: dict[str, Any]
    data: DataRecord
    epochs: int  # the epoch count this invocation trains towards
    x: Tensor
    y: Tensor | None
    model: nn.Module
    disc: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    ema: _EMA | None
    aux: nn.Module | None
    opt_aux: torch.optim.Optimizer | None
    # The order of the batches; not the generator network's, nor the latents' (torch's global RNG).
    batch_rng: torch.Generator
    state: RunState = field(default_factory=RunState)

    @property
    def ckpt_path(self) -> Path:
        return self.cfg.run_dir / CHECKPOINT

    def aux_on(self) -> bool:
        return self.state.epoch >= self.recipe.aux_start_epoch

    def optimisers(self) -> list[tuple[torch.optim.Optimizer | None, float]]:
        """Each optimiser with its base learning rate."""
        return [(self.opt_g, self.recipe.lr_g), (self.opt_d, self.recipe.lr_d), (self.opt_aux, AUX_LR)]


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
    data = data_record(recipe, cfg, x, y, overrides)
    log.info("%s: training on %s", recipe.name, data.summary())
    recipe = recipe.with_overrides(overrides)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = None
    if cfg.resume and (cfg.run_dir / CHECKPOINT).exists():
        ckpt = load_checkpoint(cfg.run_dir / CHECKPOINT)
        if ckpt["recipe"] != recipe.name:
            raise ValueError(
                f"{cfg.run_dir / CHECKPOINT} belongs to recipe {ckpt['recipe']!r}, not {recipe.name!r}"
            )
        if ckpt.get("overrides", {}).get("class_names") != overrides.get("class_names"):
            raise ValueError(
                f"{cfg.run_dir / CHECKPOINT} was trained on other classes than this data's "
                f"({ckpt.get('overrides', {}).get('class_names')} vs {overrides.get('class_names')}); "
                "train a new run (another --run-dir) or pass the same data"
            )
        refuse_other_data(ckpt.get("data"), data, cfg.run_dir / CHECKPOINT)
        recipe = checkpoint_recipe(ckpt, recipe)  # the networks the run was started with
    run = _build(recipe, cfg, device, overrides, data, x, y)
    if ckpt is not None:
        _resume(run, ckpt)
    run.state.epochs = run.epochs
    where = describe(device)
    if not run.state.devices or run.state.devices[-1] != where:
        run.state.devices.append(where)
    log.info("%s: training on %s", recipe.name, where)
    started = time.monotonic() - run.state.seconds
    while run.state.epoch < run.epochs:
        if cfg.minutes is not None and time.monotonic() - started >= cfg.minutes * 60:
            log.info("%s: %.1f min budget used after %d epochs", recipe.name, cfg.minutes, run.state.epoch)
            break
        if _epoch(run, started):
            break
    _finish(run, started)
    return run.ckpt_path, run.state


def _build(
    recipe: Recipe,
    cfg: TrainConfig,
    device: torch.device,
    overrides: dict[str, Any],
    data: DataRecord,
    x: Tensor,
    y: Tensor | None,
) -> _Run:
    """Networks, optimisers, EMA copy and auxiliary classifier, fresh, on ``device``."""
    model, disc = recipe.build()
    # On the device before the optimisers and the EMA copy are made from their parameters. The
    # data stays in host memory as uint8 and goes over one batch at a time.
    model.to(device)
    if disc is not None:
        disc.to(device)
    aux = None
    if recipe.aux_weight > 0:
        aux = AuxClassifier(recipe.channels, recipe.image_size, recipe.num_classes).to(device)
    return _Run(
        recipe=recipe,
        cfg=cfg,
        device=device,
        overrides=overrides,
        data=data,
        epochs=cfg.epochs if cfg.epochs is not None else recipe.epochs,
        x=x,
        y=y,
        model=model,
        disc=disc,
        opt_g=torch.optim.Adam(model.parameters(), lr=recipe.lr_g, betas=recipe.betas),
        opt_d=torch.optim.Adam(disc.parameters(), lr=recipe.lr_d, betas=recipe.betas) if disc else None,
        ema=_EMA(model, recipe.ema_decay) if recipe.ema_decay > 0 else None,
        aux=aux,
        # A classifier's usual Adam (not the GAN's β1 = 0.5): it has no adversary to keep pace with.
        opt_aux=torch.optim.Adam(aux.parameters(), lr=AUX_LR) if aux is not None else None,
        batch_rng=torch.Generator().manual_seed(cfg.seed),
    )


def _resume(run: _Run, ckpt: dict[str, Any]) -> None:
    """Load weights, optimiser moments, random states and run state from a checkpoint."""
    recipe = run.recipe
    run.model.load_state_dict(ckpt["model"])
    run.opt_g.load_state_dict(ckpt["opt_g"])
    if run.disc is not None and run.opt_d is not None:
        run.disc.load_state_dict(ckpt["disc"])
        run.opt_d.load_state_dict(ckpt["opt_d"])
    if run.ema is not None and ckpt.get("ema") is not None:
        run.ema.module.load_state_dict(ckpt["ema"])
    run.state = state = RunState(**ckpt["state"])
    if run.aux is not None and run.opt_aux is not None:
        if ckpt.get("aux") is not None:
            _load_aux(run.aux, run.opt_aux, ckpt, recipe.name)
        elif state.epoch > recipe.aux_start_epoch:
            raise ValueError(
                f"{run.ckpt_path} was trained without the auxiliary classifier this recipe uses from "
                f"epoch {recipe.aux_start_epoch + 1}: train it afresh (--restart) or in another --run-dir"
            )
    torch.set_rng_state(ckpt["torch_rng"])
    if run.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ckpt["cuda_rng"], run.device)
    run.batch_rng.set_state(ckpt["batch_rng"])
    log.info("resumed %s at epoch %d (step %d)", recipe.name, state.epoch, state.step)
    if 0 < state.epochs <= state.epoch < run.epochs:
        state.continued_at.append(state.epoch)
        log.info(
            "%s: continuing a finished %d-epoch run to %d epochs; the rate schedule starts again",
            recipe.name,
            state.epochs,
            run.epochs,
        )


def _load_aux(aux: nn.Module, opt_aux: torch.optim.Optimizer, ckpt: dict[str, Any], name: str) -> None:
    """The auxiliary classifier and its optimiser from ``ckpt``; afresh if its shapes have changed.

    It is a training aid, not part of the exported model: a run made with an earlier shape of it
    goes on with a new one, which learns the classes again from the real images within an epoch.
    """
    saved, current = ckpt["aux"], aux.state_dict()
    if saved.keys() != current.keys() or any(saved[k].shape != v.shape for k, v in current.items()):
        log.warning("%s: the auxiliary classifier has a new shape; it starts afresh", name)
        return
    aux.load_state_dict(saved)
    opt_aux.load_state_dict(ckpt["opt_aux"])


def _save(run: _Run, finished: bool) -> None:
    run.state.finished = finished
    # The generator as it is now: all that quality-against-epoch curves score
    # (``trainer evaluate curve``); the checkpoint adds what resuming needs.
    ema = run.ema.module if run.ema is not None else None
    generator = generator_part(run.recipe, run.overrides, run.model, ema, run.state.__dict__, run.cfg.seed)
    generator["data"] = run.data.as_dict()  # export names the card's dataset from it
    aux_on = run.aux_on()
    resumable = {
        "disc": run.disc.state_dict() if run.disc is not None else None,
        "opt_g": run.opt_g.state_dict(),
        "opt_d": run.opt_d.state_dict() if run.opt_d is not None else None,
        # Not before its start epoch: a run made before the recipe had the classifier has
        # none either, and is resumed into one (a fresh classifier) there.
        "aux": run.aux.state_dict() if run.aux is not None and aux_on else None,
        "opt_aux": run.opt_aux.state_dict() if run.opt_aux is not None and aux_on else None,
        "torch_rng": torch.get_rng_state(),
        # The latents of a CUDA run are drawn on the GPU, from its own generator.
        "cuda_rng": torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None,
        "batch_rng": run.batch_rng.get_state(),
    }
    save_checkpoint({**generator, **resumable}, run.ckpt_path)
    if run.cfg.keep_epochs:
        epochs_dir = run.cfg.run_dir / EPOCHS_DIR
        epochs_dir.mkdir(exist_ok=True)
        save_checkpoint(generator, epochs_dir / f"epoch_{run.state.epoch:03d}.pt")


def _grid(run: _Run) -> None:
    """The label × z grid of the generator as it is now (its EMA copy where kept)."""
    shown = run.ema.module if run.ema is not None else run.model
    net = shown.decoder if isinstance(shown, CVAE) else shown
    was_training = net.training
    net.eval()

    @torch.no_grad()
    def generate(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        lab = torch.from_numpy(labels).to(run.device) if labels is not None else None
        out: np.ndarray = net(torch.from_numpy(z).to(run.device), lab).cpu().numpy()
        return out

    recipe = run.recipe
    path = run.cfg.run_dir / "samples" / f"epoch_{run.state.epoch:03d}.png"
    sample_grid(generate, recipe.z_dim, recipe.num_classes, recipe.value_range, path)
    net.train(was_training)


class _LossLog:
    """Per-key sums and counts between history points: with several critic steps per generator
    step, g_loss is logged on fewer steps than d_loss.

    Losses stay tensors until a history point: reading one (.item()) waits for the device, and a
    GPU that is waited for every step idles between them. Summed in float64, as the Python floats
    they replace were.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0  # steps since the last history point

    def add(self, metrics: dict[str, Tensor]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums[k] + v.double() if k in self.sums else v.double()
            self.counts[k] = self.counts.get(k, 0) + 1
        self.steps += 1

    def take(self) -> dict[str, float]:
        """The mean of each loss since the last history point; starts the next one."""
        avg = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts, self.steps = {}, {}, 0
        return avg


def _epoch(run: _Run, started: float) -> bool:
    """Train one epoch, then draw its grid and save; True when ``max_steps`` stopped it short."""
    recipe, cfg, state = run.recipe, run.cfg, run.state
    epoch_start = time.monotonic()
    n = run.x.shape[0]
    steps_per_epoch = max(1, n // recipe.batch_size)
    schedule = LinearDecay(run.epochs * steps_per_epoch, recipe.lr_decay_epochs * steps_per_epoch)
    critic = _critic(run)
    order = torch.randperm(n, generator=run.batch_rng)
    losses_log = _LossLog()
    stopped = False
    bar = _progress(steps_per_epoch, f"{recipe.name} epoch {state.epoch + 1}/{run.epochs}")
    for i in range(steps_per_epoch):
        idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
        xb = to_range(run.x[idx].to(run.device, non_blocking=True), recipe.value_range)
        yb = run.y[idx].to(run.device, non_blocking=True) if run.y is not None else None
        scale = schedule.factor(state.step)
        for opt, base in run.optimisers():
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = base * scale
        losses_log.add(_step(run, critic, xb, yb))
        state.step += 1
        if losses_log.steps == cfg.log_every or i == steps_per_epoch - 1:
            avg = losses_log.take()
            state.history.append({"step": float(state.step), "epoch": float(state.epoch), **avg})
            bar.set_postfix({k: f"{v:.3f}" for k, v in avg.items()}, refresh=False)
        bar.update(1)
        if cfg.max_steps is not None and state.step >= cfg.max_steps:
            stopped = True
            break
    bar.close()
    state.epoch += 1
    state.seconds = time.monotonic() - started
    _grid(run)
    _save(run, finished=False)
    log.info(
        "%s: epoch %d/%d in %.0f s (%.0f s total)",
        recipe.name,
        state.epoch,
        run.epochs,
        time.monotonic() - epoch_start,
        state.seconds,
    )
    return stopped


def _critic(run: _Run) -> _Critic | None:
    """The epoch's critic (with the auxiliary classifier once it has joined), in train mode."""
    run.model.train()
    if run.disc is None or run.opt_d is None:
        return None
    critic = (
        _Critic(run.disc, run.opt_d, run.aux, run.opt_aux) if run.aux_on() else _Critic(run.disc, run.opt_d)
    )
    for module in critic.modules():
        module.train()
    return critic


def _step(run: _Run, critic: _Critic | None, xb: Tensor, yb: Tensor | None) -> dict[str, Tensor]:
    """One optimiser step of the VAE, or one GAN step; returns its losses."""
    if isinstance(run.model, CVAE):
        assert yb is not None
        loss, parts = run.model.loss(xb, yb)  # the VAE recipe's value range is [0, 1]
        run.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        run.opt_g.step()
        return {"loss": loss.detach(), **parts}
    assert critic is not None
    return _gan_step(run.recipe, run.model, critic, run.opt_g, run.ema, xb, yb, run.state.step)


def _finish(run: _Run, started: float) -> None:
    """The final checkpoint, the loss curves and ``run.json``."""
    recipe, state = run.recipe, run.state
    state.seconds = time.monotonic() - started
    _save(run, finished=True)
    loss_curves(state.history, run.cfg.run_dir / "losses.png", f"{recipe.name}: losses")
    summary = {
        "recipe": recipe.name,
        "epochs": state.epoch,
        "steps": state.step,
        "seconds": round(state.seconds, 1),
        "devices": state.devices,
        "seed": run.cfg.seed,
        "data": run.data.as_dict(),
        "libraries": library_versions(),
    }
    (run.cfg.run_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")


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
