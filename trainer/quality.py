"""Sample-quality figures on feature vectors: accuracy, k-NN precision/recall, diversity, intra-FID.

Pure numpy; the features come from any extractor (the domain classifier's penultimate layer in
practice). Every function takes the *generated* set first and the *real* set second.
"""

from __future__ import annotations

import numpy as np

from .fid import fid_from_features

PR_K = 5  # neighbours for the k-NN manifold radii (Kynkäänniemi et al. 2019 use k = 3 or 5)
_CHUNK = 2048  # rows per distance block: 2048 × 10,000 float64 = 160 MB at most


def label_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of images the classifier assigns to the label they were generated (or drawn) for."""
    if len(labels) == 0:
        raise ValueError("no images")
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def pairwise_sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances |a_i − b_j|², clipped at 0 against rounding."""
    d = _sq_norms(a)[:, None] + _sq_norms(b)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def knn_radii(features: np.ndarray, k: int = PR_K) -> np.ndarray:
    """Squared distance from each point to its k-th nearest other point of the same set."""
    x = np.asarray(features, dtype=np.float64)
    if len(x) <= k:
        raise ValueError(f"need more than k={k} points, got {len(x)}")
    out = np.empty(len(x))
    for i in range(0, len(x), _CHUNK):
        d = pairwise_sq_distances(x[i : i + _CHUNK], x)
        # Column k of the sorted row: column 0 is the point itself (distance 0).
        out[i : i + _CHUNK] = np.partition(d, k, axis=1)[:, k]
    return out


def _coverage(queries: np.ndarray, manifold: np.ndarray, radii: np.ndarray) -> float:
    """Fraction of ``queries`` inside at least one ball (manifold_j, radius_j)."""
    inside = 0
    for i in range(0, len(queries), _CHUNK):
        d = pairwise_sq_distances(queries[i : i + _CHUNK], manifold)
        inside += int((d <= radii[None, :]).any(axis=1).sum())
    return inside / len(queries)


def precision_recall(generated: np.ndarray, real: np.ndarray, k: int = PR_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Precision: the share of generated samples inside the real manifold (the union of balls around
    each real sample reaching its k-th nearest real neighbour); recall: the share of real samples
    inside the generated manifold.
    """
    g = np.asarray(generated, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    precision = _coverage(g, r, knn_radii(r, k))
    recall = _coverage(r, g, knn_radii(g, k))
    return precision, recall


def mean_pairwise_distance(features: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """Mean Euclidean distance over distinct pairs (a fixed random subset past ``max_points``)."""
    x = np.asarray(features, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("need at least 2 points")
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    d = np.sqrt(pairwise_sq_distances(x, x))
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def diversity_ratio(
    generated: np.ndarray,
    generated_labels: np.ndarray | None,
    real: np.ndarray,
    real_labels: np.ndarray | None,
) -> tuple[float, dict[int, float]]:
    """z-diversity: mean pairwise feature distance among generated images of one label ÷ the same
    among real images of that label, averaged over labels (one pool when unconditional).

    1 means the generator varies as much within a class as the data does; well below 1 means mode
    collapse (many z, few distinct images); above 1, images spread wider than the class (often
    noise or off-class samples).
    """
    if generated_labels is None or real_labels is None:
        return mean_pairwise_distance(generated) / mean_pairwise_distance(real), {}
    per_class: dict[int, float] = {}
    for c in np.unique(generated_labels):
        g = generated[generated_labels == c]
        r = real[real_labels == c]
        if len(g) >= 2 and len(r) >= 2:
            per_class[int(c)] = mean_pairwise_distance(g) / mean_pairwise_distance(r)
    if not per_class:
        raise ValueError("no label has two generated and two real images")
    return float(np.mean(list(per_class.values()))), per_class


def intra_fid(
    generated: np.ndarray, generated_labels: np.ndarray, real: np.ndarray, real_labels: np.ndarray
) -> tuple[float, dict[int, float]]:
    """Per-class FID (generated images of label c vs real images of class c), and their mean."""
    per_class: dict[int, float] = {}
    for c in np.unique(generated_labels):
        g = generated[generated_labels == c]
        r = real[real_labels == c]
        if len(g) >= 2 and len(r) >= 2:
            per_class[int(c)] = fid_from_features(g, r)
    if not per_class:
        raise ValueError("no label has two generated and two real images")
    return float(np.mean(list(per_class.values()))), per_class
