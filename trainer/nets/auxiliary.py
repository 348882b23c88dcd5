"""The auxiliary classifier of AC-GAN-style training (Odena et al. 2017), kept apart from the critic.

A conditional critic sees the label (as an input channel or a projection), so a class head on its
features could read the label instead of the image. This small network sees the image alone: it
learns the classes from real training images only (never from fakes, whose labels it would take
on trust while they are still noise), and the generator is pushed to make images it assigns to
the class they were drawn for. It is trained from scratch inside each run, on the training split,
and is not the domain classifier the evaluator scores with.
"""

from __future__ import annotations

from torch import Tensor, nn


class AuxClassifier(nn.Module):
    def __init__(
        self, channels: int, image_size: int, num_classes: int, width: int = 32, dropout: float = 0.3
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        layers: list[nn.Module] = []
        side, cin, cout = image_size, channels, width
        # Stride-2 convolutions down to a map of at most 8×8 (28 → 7, 32 → 8 in two; 64 → 8 in
        # three): with two at 64×64 the read-out saw 16×16 maps, which the generator learned to
        # satisfy with textures the evaluator's classifier did not take for the part.
        while side > 8 and side % 2 == 0:
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
            side, cin, cout = side // 2, cout, cout * 2
        self.net = nn.Sequential(
            *layers,
            nn.Dropout(dropout),
            # A linear read-out of the whole map, not global pooling: on MNIST it learns several
            # times faster in the first hundred steps, when the generator first needs its signal.
            nn.Flatten(),
            nn.Linear(cin * side * side, num_classes),
        )
        # PyTorch's default (Kaiming) initialisation, not DCGAN's N(0, 0.02): a classifier needs
        # logits that move from the first steps, and nothing here must stay balanced against a generator.

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, ``(B, num_classes)``."""
        out: Tensor = self.net(x)
        return out
