"""Network configs → networks, and configs to and from the plain dicts a checkpoint stores.

A checkpoint records its networks' config by class name and fields, so it rebuilds the same
networks after a recipe's settings change; :func:`build_networks` turns any config into them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from .cdcgan import CDCGANConfig, CDCGANDiscriminator, CDCGANGenerator
from .cgan64 import CGAN64Config, CGAN64Discriminator, CGAN64Generator
from .cgan_fashion import CGANFashionConfig, CGANFashionDiscriminator, CGANFashionGenerator
from .condgen import CondGenConfig, CondGenDiscriminator, CondGenGenerator
from .condgen64 import CondGen64Config, CondGen64Discriminator, CondGen64Generator
from .cvae import CVAE, CVAEConfig
from .dcgan32 import DCGAN32Config, DCGAN32Discriminator, DCGAN32Generator
from .dcgan64 import DCGAN64Config, DCGAN64Discriminator, DCGAN64Generator
from .mlpgan import MLPDiscriminator, MLPGANConfig, MLPGenerator

NetConfig = (
    CDCGANConfig
    | CGAN64Config
    | CGANFashionConfig
    | CondGenConfig
    | CondGen64Config
    | CVAEConfig
    | DCGAN32Config
    | DCGAN64Config
    | MLPGANConfig
)

Builder = Callable[[Any], nn.Module]
# config class → (generator or VAE, discriminator or None); keyed by exact class (CGAN64Config
# extends DCGAN64Config).
_NETWORKS: dict[type, tuple[Builder, Builder | None]] = {
    CDCGANConfig: (CDCGANGenerator, CDCGANDiscriminator),
    CGAN64Config: (CGAN64Generator, CGAN64Discriminator),
    CGANFashionConfig: (CGANFashionGenerator, CGANFashionDiscriminator),
    CondGenConfig: (CondGenGenerator, CondGenDiscriminator),
    CondGen64Config: (CondGen64Generator, CondGen64Discriminator),
    CVAEConfig: (CVAE, None),
    DCGAN32Config: (DCGAN32Generator, DCGAN32Discriminator),
    DCGAN64Config: (DCGAN64Generator, DCGAN64Discriminator),
    MLPGANConfig: (MLPGenerator, MLPDiscriminator),
}
_BY_NAME = {cls.__name__: cls for cls in _NETWORKS}


def build_networks(cfg: NetConfig) -> tuple[nn.Module, nn.Module | None]:
    """(generator, discriminator) for a GAN config, (CVAE, None) for the VAE's."""
    try:
        generator, critic = _NETWORKS[type(cfg)]
    except KeyError:
        raise TypeError(f"no networks for {type(cfg).__name__}") from None
    return generator(cfg), critic(cfg) if critic is not None else None


def config_to_dict(cfg: NetConfig) -> dict[str, Any]:
    """``{"type": <config class>, "fields": {...}}``: plain values, loadable without this code's classes."""
    return {"type": type(cfg).__name__, "fields": dataclasses.asdict(cfg)}


def config_from_dict(stored: dict[str, Any]) -> NetConfig:
    cls = _BY_NAME.get(stored["type"])
    if cls is None:
        raise ValueError(f"unknown network config {stored['type']!r}; known: {', '.join(sorted(_BY_NAME))}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(stored["fields"]) - set(known)
    if unknown:
        raise ValueError(f"{stored['type']}: fields this code does not have: {', '.join(sorted(unknown))}")
    # Sequences come back as tuples, as the frozen configs declare them.
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in stored["fields"].items()}
    cfg: NetConfig = cls(**fields)
    return cfg
