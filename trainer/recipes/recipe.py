"""A recipe: architecture (its network config), data, loss and optimiser settings in one record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from torch import nn

from ..losses import LossName
from ..nets.build import NetConfig, build_networks

DatasetKind = Literal["mnist", "fashion-mnist", "folder"]


@dataclass(frozen=True)
class CardField:
    """A network-config field the model card lists among the training hyperparameters."""

    field: str
    key: str = ""  # the card's name for it; empty: the field's own
    # Listed only where it departs from the config class's default: cards of models trained before
    # the knob existed lack it, and must still describe the recipe.
    only_changed: bool = False


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    kind: Literal["gan", "vae-decoder"]
    dataset: DatasetKind
    description: str
    # The networks: latent size and classes come from it, and every checkpoint stores it.
    net: NetConfig
    image_size: int = 28
    channels: int = 1
    value_range: tuple[float, float] = (-1.0, 1.0)
    loss: LossName | Literal["elbo"] = "bce"
    epochs: int = 20  # what `trainer train` runs and what the zoo's model was trained for
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    critic_steps: int = 1  # discriminator steps per generator step
    gp_weight: float = 0.0  # WGAN-GP λ
    real_target: float = 1.0  # < 1: one-sided label smoothing ("noisy labels")
    ms_weight: float = 0.0  # mode-seeking term weight
    # Weight of the auxiliary class loss on generated images (AC-GAN; trainer/nets/auxiliary.py).
    # 0 → no auxiliary classifier. Conditional GANs only.
    aux_weight: float = 0.0
    # The epoch the auxiliary class loss joins at (0 → from the start). Later: the plain GAN
    # learns the data first, and the class term then sharpens the labels of a converged generator.
    aux_start_epoch: int = 0
    ema_decay: float = 0.0  # 0 → no EMA generator
    # Both learning rates fall linearly to 0 over the last this-many epochs of a run (0 → constant);
    # counted from the run's own end, so a run extended later decays over its new last epochs.
    lr_decay_epochs: int = 0
    # Export ends the graph with a tone curve fitted to the training split (trainer/tone.py):
    # for a tanh generator whose background never quite reaches black.
    tone_curve: bool = False
    reproduces: str | None = None
    class_names: list[str] | None = None  # for folder datasets: filled from the data
    card_fields: tuple[CardField, ...] = ()

    def __post_init__(self) -> None:
        if self.aux_weight < 0:
            raise ValueError(f"recipe {self.name}: aux_weight must be >= 0, got {self.aux_weight}")
        if self.aux_weight > 0 and (self.kind != "gan" or not self.conditional):
            raise ValueError(f"recipe {self.name}: an auxiliary class loss needs a conditional GAN")
        if self.aux_start_epoch < 0 or (self.aux_start_epoch > 0 and self.aux_weight == 0):
            raise ValueError(
                f"recipe {self.name}: aux_start_epoch must be >= 0 and needs aux_weight > 0, "
                f"got {self.aux_start_epoch}"
            )

    @property
    def z_dim(self) -> int:
        return self.net.z_dim

    @property
    def num_classes(self) -> int:
        """0 → unconditional."""
        return int(getattr(self.net, "num_classes", 0))

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def build(self, recipe: Recipe | None = None) -> tuple[nn.Module, nn.Module | None]:
        """(generator, discriminator) for a GAN, (CVAE, None) for the VAE, from ``recipe``'s
        network config (this recipe's by default)."""
        return build_networks((recipe or self).net)

    def with_classes(self, num_classes: int, class_names: list[str] | None = None) -> Recipe:
        """The recipe for a dataset with ``num_classes`` classes (folder recipes learn it from the data)."""
        if not self.conditional:
            raise ValueError(f"recipe {self.name} is unconditional: it takes no classes")
        # Only the conditional configs have the field, which the check above ensures.
        net = replace(cast(Any, self.net), num_classes=num_classes)
        return replace(self, net=net, class_names=class_names or self.class_names)

    def with_overrides(self, overrides: dict[str, Any] | None) -> Recipe:
        """Apply what the data implied (``num_classes``, ``class_names``), as a checkpoint records it."""
        overrides = dict(overrides or {})
        num_classes = overrides.pop("num_classes", None)
        recipe = self.with_classes(num_classes) if num_classes is not None else self
        return replace(recipe, **overrides) if overrides else recipe

    def net_hyperparameters(self) -> dict[str, Any]:
        """The :attr:`card_fields` of the network config, under the card's names."""
        defaults = {f.name: f.default for f in dataclasses.fields(type(self.net))}
        out: dict[str, Any] = {}
        for card_field in self.card_fields:
            value = getattr(self.net, card_field.field)
            if card_field.only_changed and value == defaults[card_field.field]:
                continue
            out[card_field.key or card_field.field] = value
        return out

    def hyperparameters(self) -> dict[str, float | int | str | bool | None]:
        return {
            "lr_g": self.lr_g,
            "lr_d": self.lr_d,
            "beta1": self.betas[0],
            "beta2": self.betas[1],
            "critic_steps": self.critic_steps,
            "gp_weight": self.gp_weight,
            "real_target": self.real_target,
            "ms_weight": self.ms_weight,
            "aux_weight": self.aux_weight,
            **({"aux_start_epoch": self.aux_start_epoch} if self.aux_start_epoch else {}),
            "ema_decay": self.ema_decay,
            "lr_decay_epochs": self.lr_decay_epochs,
            **({"tone_curve": True} if self.tone_curve else {}),
            "z_dim": self.z_dim,
            **self.net_hyperparameters(),
        }
