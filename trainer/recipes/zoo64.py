"""The 64×64 models of the zoo: the folder recipes, sized for a 2-core CPU, on the offline datasets.

``dcgan64-lego`` and ``cdcgan64-lego`` train on ``condgen data lego`` (50 LDraw parts, gray
renders); ``wgangp64-faces`` and ``cgan64-faces`` on ``condgen data faces`` (synthetic faces with
a CelebA-format attribute table; ``cgan64-faces`` is conditioned with ``--attributes Blond_Hair``).
The seed recipes' networks are half the seed's width (512 → 256 channels at 4×4), and the
flagship's generator starts at 192: a quarter of the compute (36–95 min per 6 epochs on one
thread of a shared 2-core CPU; cdcgan64-lego's 18 took 186 min) and of the bytes in
``exported/``. The faces models train on the first 60,000 (CGAN) and 40,000 (WGAN-GP) faces, the
steps this machine could give them. ``make train-64`` runs all four with the zoo's options.
"""

from __future__ import annotations

from dataclasses import replace

from ..nets.cgan64 import CGAN64Config
from ..nets.condgen64 import CondGen64Config
from ..nets.dcgan64 import DCGAN64Config
from .folder64 import CGAN64, CONDGEN64, DCGAN64, WGANGP64
from .recipe import Recipe

HALF = 32  # g_width / d_width: the seed's 64 halved

RECIPES: list[Recipe] = [
    replace(
        DCGAN64,
        name="dcgan64-lego",
        channels=1,
        net=DCGAN64Config(channels=1, g_width=HALF, d_width=HALF),
        epochs=3,
    ),
    replace(
        CONDGEN64,
        name="cdcgan64-lego",
        channels=1,
        net=CondGen64Config(channels=1, num_classes=50, g_channels=192, d_channels=32),
        # The zoo's model: 3 epochs, continued to 6 and then to 18 (`--epochs 18`, 2 threads), each
        # leg ending in its decay; docs/recipes.md has the legs and what each measured.
        epochs=18,
        aux_start_epoch=1,
        lr_decay_epochs=1,
    ),
    replace(
        WGANGP64,
        name="wgangp64-faces",
        net=DCGAN64Config(critic_norm="layer", dropout=0.0, g_width=HALF, d_width=HALF),
        epochs=2,
    ),
    replace(
        CGAN64,
        name="cgan64-faces",
        net=CGAN64Config(g_width=HALF, d_width=HALF),
        epochs=1,
    ),
]
