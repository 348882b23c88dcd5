from __future__ import annotations

import pytest
import torch

from trainer.losses import LOSSES, d_loss, g_loss, gradient_penalty, mode_seeking


@pytest.mark.parametrize("name", LOSSES)
def test_a_discriminator_that_separates_scores_lower_than_one_that_is_fooled(name: str) -> None:
    good = d_loss(name, torch.full((8,), 3.0), torch.full((8,), -3.0))
    fooled = d_loss(name, torch.full((8,), -3.0), torch.full((8,), 3.0))
    assert float(good) < float(fooled)


@pytest.mark.parametrize("name", LOSSES)
def test_generator_loss_falls_as_fakes_score_higher(name: str) -> None:
    assert float(g_loss(name, torch.full((8,), 2.0))) < float(g_loss(name, torch.full((8,), -2.0)))


def test_hinge_is_zero_beyond_the_margin() -> None:
    assert float(d_loss("hinge", torch.full((4,), 1.5), torch.full((4,), -1.5))) == 0.0


def test_label_smoothing_moves_the_bce_optimum() -> None:
    real = torch.full((4,), 10.0)
    fake = torch.full((4,), -10.0)
    assert float(d_loss("bce", real, fake, real_target=0.9)) > float(d_loss("bce", real, fake)) + 0.1


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        d_loss("nope", torch.zeros(1), torch.zeros(1))  # type: ignore[arg-type]


def test_gradient_penalty_vanishes_for_a_unit_norm_linear_critic() -> None:
    w = torch.randn(1, 16)
    w = w / w.norm()

    def critic(x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return (x.flatten(1) @ w.T).view(-1)

    real, fake = torch.randn(32, 1, 4, 4), torch.randn(32, 1, 4, 4)
    assert float(gradient_penalty(critic, real, fake, None)) < 1e-10

    def steep(x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return 3.0 * critic(x, labels)

    assert float(gradient_penalty(steep, real, fake, None)) == pytest.approx(4.0, rel=1e-4)


def test_mode_seeking_term_falls_when_images_follow_z() -> None:
    z_a, z_b = torch.zeros(4, 5), torch.ones(4, 5)
    same = torch.zeros(4, 1, 8, 8)
    apart = torch.ones(4, 1, 8, 8)
    assert float(mode_seeking(same, apart, z_a, z_b)) < float(mode_seeking(same, same + 0.01, z_a, z_b))
