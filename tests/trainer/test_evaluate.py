"""The evaluator: metric maths on real features, and scoring a tiny real ONNX model into its card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.card import Metric, load_card, sha256_file
from tests.service.onnx_fixtures import edit_card, write_model
from trainer import cli
from trainer.classifier import load_classifier, predict
from trainer.curves import continuation_marks, curve_marks, curve_panels, evaluate_checkpoints, plot_curve
from trainer.data import LabeledImages, load_split, resize_images
from trainer.evaluate import (
    EvalConfig,
    OnnxGenerator,
    evaluate_images,
    evaluate_model,
    inception_fid,
    merge_metrics,
    merge_reference,
    write_metrics,
)
from trainer.fid import fid_from_features
from trainer.quality import diversity_ratio, intra_fid, knn_radii, label_accuracy, precision_recall
from trainer.quality_doc import quality_table, write_quality_doc
from trainer.recipes import get_recipe

DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def mnist_test() -> LabeledImages:
    from tests.trainer.conftest import REPO

    split = load_split("mnist", "test", REPO / "data" / "mnist")
    return LabeledImages(split.images[:2000], split.labels[:2000], split.source)


@pytest.fixture(scope="module")
def real_features(mnist_test: LabeledImages) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, features, labels) of 2,000 real MNIST test images under the committed classifier."""
    logits, feats = predict(load_classifier("mnist"), mnist_test.images[:, None])
    return logits, feats, mnist_test.labels


def _by_half(n: int) -> tuple[slice, slice]:
    return slice(0, n // 2), slice(n // 2, n)


def test_precision_and_recall_of_a_set_against_itself_are_one(real_features: tuple[np.ndarray, ...]) -> None:
    feats = real_features[1][:1000]
    assert precision_recall(feats, feats, k=5) == (1.0, 1.0)


def test_precision_recall_see_a_collapsed_set() -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((600, 8))
    collapsed = real[:20].repeat(30, axis=0) + 1e-3 * rng.standard_normal((600, 8))
    precision, recall = precision_recall(collapsed, real, k=5)
    assert precision > 0.95  # every sample is realistic...
    assert recall < 0.3  # ...but the set covers little of the data


def test_knn_radius_skips_the_point_itself() -> None:
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    np.testing.assert_allclose(knn_radii(x, k=1), [1.0, 1.0, 4.0, 9.0])


def test_diversity_of_real_vs_real_is_about_one(real_features: tuple[np.ndarray, ...]) -> None:
    _, feats, labels = real_features
    a, b = _by_half(len(feats))
    ratio, per_class = diversity_ratio(feats[a], labels[a], feats[b], labels[b])
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert sorted(per_class) == list(range(10))
    # A generator that draws one image per label has no diversity at all.
    one_each = np.concatenate([feats[a][labels[a] == c][:1].repeat(20, 0) for c in range(10)])
    collapsed, _ = diversity_ratio(one_each, np.repeat(np.arange(10), 20), feats[b], labels[b])
    assert collapsed == pytest.approx(0.0, abs=1e-6)


def test_intra_fid_of_real_halves_is_small_and_of_swapped_labels_large(
    real_features: tuple[np.ndarray, ...],
) -> None:
    _, feats, labels = real_features
    a, b = _by_half(len(feats))
    same, per_class = intra_fid(feats[a], labels[a], feats[b], labels[b])
    swapped, _ = intra_fid(feats[a], (labels[a] + 1) % 10, feats[b], labels[b])
    assert len(per_class) == 10
    assert swapped > 10 * same


def test_label_accuracy_on_real_test_images_is_the_classifiers_own(
    real_features: tuple[np.ndarray, ...], mnist_test: LabeledImages
) -> None:
    logits, _, labels = real_features
    model = load_classifier("mnist")
    direct = float((predict(model, mnist_test.images[:500, None])[0].argmax(1) == labels[:500]).mean())
    assert label_accuracy(logits[:500], labels[:500]) == direct
    assert label_accuracy(logits, labels) > 0.99


def test_evaluate_images_names_extractor_and_n(
    in_repo: Path, mnist_dir: Path, mnist_test: LabeledImages
) -> None:
    cfg = EvalConfig(n_inception=0, n_classifier=300, classifier_real_n=600, data_dir=mnist_dir)
    metrics = evaluate_images(mnist_test.images[1000:1300, None], mnist_test.labels[1000:1300], "mnist", cfg)
    by_name = {m.name: m for m in metrics}
    assert set(by_name) == {
        "label_accuracy",
        "fid_classifier",
        "intra_fid_classifier",
        "precision",
        "recall",
        "z_diversity",
    }
    for m in metrics:
        assert m.n_samples == 300
        assert "mnist classifier" in (m.feature_extractor or "")
        assert m.reference == "mnist test split, 600 images"
    assert by_name["label_accuracy"].value > 0.97
    assert by_name["precision"].value > 0.8
    assert by_name["z_diversity"].value == pytest.approx(1.0, abs=0.1)


def test_inception_metric_uses_cached_real_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_repo: Path, mnist_dir: Path
) -> None:
    monkeypatch.setenv("CONDGEN_CACHE_DIR", str(tmp_path))
    calls: list[int] = []

    class PixelMeans:  # a cheap stand-in extractor: per-row means of the image
        key, name = "pixel-rows", "row means (test stand-in)"

        def __call__(self, images: np.ndarray, desc: str = "") -> np.ndarray:
            calls.append(len(images))
            return images.reshape(len(images), 28, 28).mean(axis=2).astype(np.float64)

    cfg = EvalConfig(n_inception=50, real_n=200, data_dir=mnist_dir)
    real = load_split("mnist", "test", mnist_dir).images
    first = inception_fid(real[:50, None], "mnist", cfg, extractor=PixelMeans())
    second = inception_fid(np.roll(real[:50, None], 5, axis=2), "mnist", cfg, extractor=PixelMeans())
    assert calls == [200, 50, 50]  # the real statistics were computed once
    assert (tmp_path / "fid" / "mnist-test-n200-pixel-rows.npz").is_file()
    assert first.name == "fid_inception"
    assert first.n_samples == 50
    assert first.reference == "mnist test split, first 200 images"
    assert first.feature_extractor == "row means (test stand-in)"
    assert second.value > first.value


class PooledMeans:
    """A cheap stand-in extractor for any image size: 7×7 block means (49-d)."""

    key, name = "pooled-7", "7×7 block means (test stand-in)"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, ...]] = []

    def __call__(self, images: np.ndarray, desc: str = "") -> np.ndarray:
        import torch

        self.sizes.append(images.shape)
        x = torch.from_numpy(np.asarray(images, dtype=np.float32))
        return torch.nn.functional.adaptive_avg_pool2d(x, 7).reshape(len(x), -1).double().numpy()


def test_a_32px_set_is_compared_with_real_images_resampled_like_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_repo: Path, mnist_dir: Path
) -> None:
    """Real test images brought to 32×32 the way training does are a perfect 32px generator's
    output: they score 0 against the test split, and would not against the sharp 28×28 set."""
    monkeypatch.setenv("CONDGEN_CACHE_DIR", str(tmp_path))
    cfg = EvalConfig(n_inception=300, real_n=300, data_dir=mnist_dir)
    real = load_split("mnist", "test", mnist_dir).images[:300, None]
    as_trained = resize_images(real, 32)
    extractor = PooledMeans()
    metric = inception_fid(as_trained, "mnist", cfg, extractor=extractor)
    assert metric.value == pytest.approx(0.0, abs=1e-6)
    assert extractor.sizes == [(300, 1, 32, 32), (300, 1, 32, 32)]  # real, then generated
    assert (tmp_path / "fid" / "mnist-test-32px-n300-pooled-7.npz").is_file()
    assert "real test images resized 28→32 as in training" in (metric.notes or "")
    assert "TF1 bilinear resize 32→299" in (metric.notes or "")
    # The 28×28 statistics are another cache entry, and the resampling alone is a distance.
    sharp = inception_fid(real, "mnist", cfg, extractor=extractor)
    assert sharp.value == pytest.approx(0.0, abs=1e-6)
    stand_in = PooledMeans()
    assert fid_from_features(stand_in(as_trained), stand_in(real)) > 1.0


def test_classifier_metrics_of_a_32px_set_see_the_real_set_through_the_same_resampling(
    in_repo: Path, mnist_dir: Path, mnist_test: LabeledImages
) -> None:
    cfg = EvalConfig(n_inception=0, n_classifier=500, classifier_real_n=500, data_dir=mnist_dir)
    images, labels = resize_images(mnist_test.images[:500, None], 32), mnist_test.labels[:500]
    by_name = {m.name: m for m in evaluate_images(images, labels, "mnist", cfg)}
    assert by_name["fid_classifier"].value == pytest.approx(0.0, abs=1e-3)
    assert by_name["precision"].value == by_name["recall"].value == 1.0
    assert by_name["z_diversity"].value == pytest.approx(1.0, abs=1e-6)
    assert by_name["label_accuracy"].value > 0.97
    assert "real test images resized 28→32 as in training" in (by_name["fid_classifier"].notes or "")


def _tiny_mnist_model(root: Path) -> Path:
    model_dir = write_model(root, "tiny", dim=16, height=28, width=28, labels=DIGITS, seed=7, samples=True)
    edit_card(model_dir, dataset="mnist")
    return model_dir


def test_generation_matches_the_services_seeds_and_balanced_labels(tmp_path: Path) -> None:
    from service.latents import latents_for
    from tests.service.onnx_fixtures import reference_images

    model_dir = _tiny_mnist_model(tmp_path)
    images, labels = OnnxGenerator(model_dir).generate(25, seed=3, batch=10)
    assert labels is not None
    np.testing.assert_array_equal(labels, np.arange(25) % 10)
    np.testing.assert_array_equal(images, reference_images(model_dir, latents_for(3, 25, 16), labels))


def test_evaluate_writes_metrics_into_the_card_and_leaves_the_onnx_alone(
    tmp_path: Path, in_repo: Path, mnist_dir: Path
) -> None:
    model_dir = _tiny_mnist_model(tmp_path)
    onnx_before = (model_dir / "model.onnx").read_bytes()
    old = Metric(name="fid_inception", value=99.0, n_samples=10, feature_extractor="x")
    write_metrics(model_dir, [old])
    cfg = EvalConfig(n_inception=0, n_classifier=200, classifier_real_n=500, data_dir=mnist_dir)
    metrics = evaluate_model(model_dir, cfg)
    card = write_metrics(model_dir, metrics)
    assert (model_dir / "model.onnx").read_bytes() == onnx_before
    assert sha256_file(model_dir / "model.onnx") == card.onnx.sha256
    reread = load_card(model_dir)
    names = [m.name for m in reread.metrics]
    assert names[0] == "fid_inception"  # kept: this run did not measure it
    assert "label_accuracy" in names
    assert all(m.n_samples == 200 for m in reread.metrics[1:])
    # A random linear "generator" draws no digits: the judge says so.
    assert next(m for m in reread.metrics if m.name == "label_accuracy").value < 0.5
    assert not list(model_dir.glob(".model-*"))  # no temporary file left behind


def test_cli_evaluates_a_model_dir_and_writes_the_table(
    tmp_path: Path, in_repo: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    _tiny_mnist_model(models)
    write_model(models, "other-data", labels=None)  # dataset "synthetic": skipped by `all`
    doc = tmp_path / "docs" / "quality.md"
    argv = ["evaluate", "score", "all", "--models", str(models), "--n", "0", "--classifier-n", "100"]
    argv += ["--classifier-real-n", "300", "--doc", str(doc), "--data-dir", str(mnist_dir)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "tiny: label_accuracy=" in out
    text = doc.read_text()
    assert "| `tiny` | mnist |" in text
    assert "![tiny](../models/tiny/samples.png)" in text
    assert "other-data" not in text
    card = json.loads((models / "tiny" / "model.json").read_text())
    assert {m["name"] for m in card["metrics"]} >= {"label_accuracy", "precision", "recall", "z_diversity"}

    argv[1:3] = ["reference", "mnist"]
    assert cli.main(argv) == 0
    refs = json.loads(doc.with_suffix(".json").read_text())
    assert {m["name"] for m in refs["mnist"]} >= {"label_accuracy", "precision", "recall", "z_diversity"}
    assert all(m["n_samples"] == 100 for m in refs["mnist"])
    assert "| *real train (reference)* | mnist |" in doc.read_text()

    doc.unlink()
    assert cli.main(["evaluate", "doc", "--models", str(models), "--doc", str(doc)]) == 0
    assert "| `tiny` | mnist |" in doc.read_text()
    doc.unlink()  # the older spelling still re-renders the same document
    assert cli.main(["evaluate", "all", "--models", str(models), "--doc", str(doc), "--doc-only"]) == 0
    assert "| `tiny` | mnist |" in doc.read_text()


def test_a_digest_mismatch_is_refused(tmp_path: Path, mnist_dir: Path) -> None:
    from trainer.evaluate import EvaluationError

    model_dir = _tiny_mnist_model(tmp_path)
    edit_card(model_dir, onnx__sha256="0" * 64)
    with pytest.raises(EvaluationError, match="sha256"):
        evaluate_model(model_dir, EvalConfig(n_inception=0, n_classifier=10, data_dir=mnist_dir))


def test_merge_replaces_by_name_and_table_shows_reference_row() -> None:
    a = Metric(name="precision", value=0.5, n_samples=10)
    b = Metric(name="recall", value=0.4, n_samples=10)
    a2 = Metric(name="precision", value=0.7, n_samples=20)
    assert merge_metrics([a, b], [a2]) == [b, a2]
    fid = Metric(name="fid_classifier", value=1.5, n_samples=20, reference="mnist test split, 10000 images")
    table = quality_table([], {"mnist": [a2, fid]}, "../exported/")
    assert "*real train (reference)* | mnist" in table
    assert "| 0.7 |" in table
    assert "| 20 / 10000 |" in table


def test_checkpoints_give_a_curve(tmp_path: Path, in_repo: Path, mnist_dir: Path) -> None:
    from trainer.training import TrainConfig, train

    ckpt, _ = train(
        "cgan-mnist",
        TrainConfig(
            run_dir=tmp_path / "run", epochs=1, limit=128, max_steps=2, data_dir=mnist_dir, threads=1
        ),
    )
    cfg = EvalConfig(n_inception=0, n_classifier=100, classifier_real_n=300, data_dir=mnist_dir)
    out = evaluate_checkpoints([ckpt], cfg, tmp_path / "curves", "cgan-mnist")
    points = json.loads(out.read_text())
    assert points[0]["epoch"] == 1
    assert any(m["name"] == "label_accuracy" for m in points[0]["metrics"])
    assert (tmp_path / "curves" / "cgan-mnist-curve.png").stat().st_size > 1000
    # A run continued later is scored for its new epochs only: --append keeps the others.
    earlier = {**points[0], "epoch": 0, "checkpoint": "epoch_000.pt"}
    out.write_text(json.dumps([earlier, *points]))
    appended = json.loads(
        evaluate_checkpoints([ckpt], cfg, tmp_path / "curves", "cgan-mnist", True).read_text()
    )
    assert [p["epoch"] for p in appended] == [0, 1]
    assert appended[1] == points[0]  # epoch 1 scored again: replaced, not doubled
    out.write_text(json.dumps([earlier, *points]))
    assert [
        p["epoch"]
        for p in json.loads(evaluate_checkpoints([ckpt], cfg, tmp_path / "curves", "cgan-mnist").read_text())
    ] == [1]
    # The comparison table beside the curves shows them, with the command that made them.
    (tmp_path / "models").mkdir()
    write_quality_doc(tmp_path / "models", tmp_path / "curves.md", tmp_path / "no-references.json")
    doc = (tmp_path / "curves.md").read_text()
    assert "![cgan-mnist-curve](curves/cgan-mnist-curve.png)" in doc
    assert "evaluate curve <name>" in doc


def test_a_continued_run_is_marked_where_its_rates_were_restored() -> None:
    decaying, flat = get_recipe("dcgan-mnist"), get_recipe("gan-mnist")
    assert decaying.lr_decay_epochs > 0
    assert flat.lr_decay_epochs == 0
    state = {"epoch": 20, "continued_at": [7]}
    assert continuation_marks(state, decaying) == {7: "run continued, rates restored"}
    assert continuation_marks(state, flat) == {7: "run continued"}
    assert continuation_marks({"epoch": 7}, decaying) == {}  # a checkpoint from before the record


def test_a_run_continued_where_its_class_term_joins_keeps_both_marks() -> None:
    flagship = get_recipe("condgen-mnist")
    joins = flagship.aux_start_epoch
    assert joins > 0
    assert curve_marks({"epoch": 18, "continued_at": [joins]}, flagship) == {
        joins: "class term joins\nrun continued, rates restored"
    }
    assert curve_marks({"epoch": 30, "continued_at": [15]}, flagship) == {
        joins: "class term joins",
        15: "run continued, rates restored",
    }
    assert curve_marks({"epoch": 20, "continued_at": [7]}, get_recipe("gan-mnist")) == {7: "run continued"}


def test_an_unconditional_curve_plots_classifier_fid_beside_inception(tmp_path: Path) -> None:
    def point(epoch: int, **values: float) -> dict[str, object]:
        return {
            "epoch": epoch,
            "metrics": [{"name": k, "value": v, "n_samples": 100} for k, v in values.items()],
        }

    conditional = [point(1, fid_inception=60.0, label_accuracy=0.9, fid_classifier=8.0)]
    unconditional = [point(1, fid_inception=60.0, fid_classifier=8.0), point(2, fid_classifier=7.0)]
    assert [m for m, _ in curve_panels(conditional)] == ["fid_inception", "label_accuracy"]
    assert [m for m, _ in curve_panels(unconditional)] == ["fid_inception", "fid_classifier"]
    # A curve scored without Inception FID (--n 0) shows only what it measured.
    assert [m for m, _ in curve_panels([point(1, fid_classifier=8.0)])] == ["fid_classifier"]
    assert [m for m, _ in curve_panels([point(1, label_accuracy=0.9)])] == ["label_accuracy"]
    assert len(curve_panels([point(1)])) == 2
    png = plot_curve(unconditional, tmp_path / "u-curve.png", "u")
    assert png.stat().st_size > 1000


def test_a_32px_model_is_judged_at_28px(tmp_path: Path, mnist_dir: Path) -> None:
    model_dir = write_model(tmp_path, "tiny32", dim=8, height=32, width=32, labels=None, seed=3)
    edit_card(model_dir, dataset="mnist")
    cfg = EvalConfig(n_inception=0, n_classifier=60, classifier_real_n=200, data_dir=mnist_dir)
    metrics = evaluate_model(model_dir, cfg)
    assert "label_accuracy" not in {m.name for m in metrics}  # unconditional
    assert all("32×32 images resized to 28" in (m.notes or "") for m in metrics)


def test_the_reference_keeps_an_inception_fid_per_sample_size() -> None:
    clf = Metric(
        name="fid_classifier", value=0.12, n_samples=10000, reference="mnist test split, 10000 images"
    )
    small = Metric(
        name="fid_inception", value=10.05, n_samples=1000, reference="mnist test split, 4000 images"
    )
    large = Metric(
        name="fid_inception", value=1.2, n_samples=10000, reference="mnist test split, 10000 images"
    )
    again = Metric(
        name="fid_inception", value=1.3, n_samples=10000, reference="mnist test split, 10000 images"
    )
    kept = merge_reference(merge_reference([clf, small], [large]), [again])
    assert kept == [clf, small, again]
    rows = [r for r in quality_table([], {"mnist": kept}, "../exported/").splitlines() if "reference" in r]
    assert len(rows) == 2  # one per N, the larger first, each with the classifier figures
    assert "| 1.3 | 10000 / 10000 |" in rows[0]
    assert "| 10.05 | 1000 / 4000 |" in rows[1]
    assert all("| 0.12 |" in r for r in rows)


# ---------------------------------------------------------------------------------------------
# The 64×64 image-folder datasets: tiny held-out folders and tiny classifiers


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.trainer.heldout_fixtures import write_data_root

    return write_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def folder_judges(folder_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.trainer.heldout_fixtures import train_tiny_classifiers

    return train_tiny_classifiers(folder_root, tmp_path_factory.mktemp("classifiers"))


def _folder_cfg(root: Path, judges: Path, n: int, real_n: int | None = None) -> EvalConfig:
    return EvalConfig(
        n_inception=0,
        n_classifier=n,
        classifier_real_n=real_n,
        data_dir=root,
        classifier_root=judges,
        progress=False,
    )


def test_held_out_renders_scored_as_generated_match_themselves(
    folder_root: Path, folder_judges: Path
) -> None:
    from trainer.eval_data import held_out, load_judge

    real, _ = held_out("lego-bricks", folder_root)
    metrics = evaluate_images(
        real.images, real.labels, "lego-bricks", _folder_cfg(folder_root, folder_judges, 36)
    )
    by_name = {m.name: m for m in metrics}
    assert set(by_name) == {
        "label_accuracy",
        "fid_classifier",
        "intra_fid_classifier",
        "precision",
        "recall",
        "z_diversity",
    }
    assert by_name["fid_classifier"].value == pytest.approx(0.0, abs=1e-3)
    assert by_name["precision"].value == by_name["recall"].value == 1.0
    assert by_name["z_diversity"].value == pytest.approx(1.0, abs=1e-6)
    judge = load_judge("lego-bricks", folder_judges)
    direct = float((predict(judge.model, real.images)[0].argmax(1) == real.labels).mean())
    assert by_name["label_accuracy"].value == pytest.approx(direct, abs=1e-4)
    for m in metrics:
        assert m.n_samples == 36
        assert m.feature_extractor == judge.name
        assert m.reference == "lego-bricks held-out folder lego-test, 36 images"


def _folder_model(root: Path, name: str, dataset: str, channels: int, labels: list[str] | None) -> Path:
    model_dir = write_model(root, name, dim=8, channels=channels, height=64, width=64, labels=labels, seed=5)
    edit_card(model_dir, dataset=dataset)
    return model_dir


def test_a_conditional_lego_model_is_scored_against_the_held_out_folder(
    tmp_path: Path, folder_root: Path, folder_judges: Path
) -> None:
    from tests.trainer.heldout_fixtures import LEGO_CLASSES
    from trainer.eval_data import held_out

    model_dir = _folder_model(tmp_path, "tiny-lego", "lego-bricks", 1, LEGO_CLASSES)
    onnx_before = (model_dir / "model.onnx").read_bytes()
    cfg = _folder_cfg(folder_root, folder_judges, 30, real_n=24)
    card = write_metrics(model_dir, evaluate_model(model_dir, cfg))
    assert (model_dir / "model.onnx").read_bytes() == onnx_before
    by_name = {m.name: m for m in card.metrics}
    assert set(by_name) >= {"label_accuracy", "fid_classifier", "precision", "recall", "z_diversity"}
    assert all(m.n_samples == 30 for m in card.metrics)
    reference = "lego-bricks held-out folder lego-test, 24 images (a fixed random subset of 36)"
    assert all(m.reference == reference for m in card.metrics)
    # A random linear "generator" draws noise, nothing like the held-out renders.
    real, _ = held_out("lego-bricks", folder_root, 30)
    floor = {m.name: m for m in evaluate_images(real.images, real.labels, "lego-bricks", cfg)}
    assert by_name["fid_classifier"].value > floor["fid_classifier"].value


def test_labels_other_than_the_classifiers_are_refused(
    tmp_path: Path, folder_root: Path, folder_judges: Path
) -> None:
    from tests.trainer.heldout_fixtures import LEGO_CLASSES
    from trainer.evaluate import EvaluationError

    model_dir = _folder_model(tmp_path, "reordered", "lego-bricks", 1, LEGO_CLASSES[::-1])
    with pytest.raises(EvaluationError, match="label 0 is '3 Disc', not '1 Bar'"):
        evaluate_model(model_dir, _folder_cfg(folder_root, folder_judges, 12))
    fewer = _folder_model(tmp_path, "fewer", "lego-bricks", 1, LEGO_CLASSES[:2])
    with pytest.raises(EvaluationError, match="its 2 labels are not the 3 classes"):
        evaluate_model(fewer, _folder_cfg(folder_root, folder_judges, 12))
    # Without classifier metrics there is no judge to disagree with.
    assert evaluate_model(fewer, EvalConfig(n_inception=0, n_classifier=0, data_dir=folder_root)) == []


def test_an_idx_models_labels_need_only_be_as_many_as_the_classes(tmp_path: Path, mnist_dir: Path) -> None:
    from trainer.evaluate import EvaluationError, check_labels

    model_dir = _tiny_mnist_model(tmp_path)
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    card = load_card(model_dir).model_copy(update={"labels": words})
    cfg = EvalConfig(n_inception=0, n_classifier=10, data_dir=mnist_dir)
    check_labels(card, cfg)  # digits by any name are still the classifier's ten classes
    refused = r"its 9 labels are not the 10 classes of the mnist classifier$"
    with pytest.raises(EvaluationError, match=refused):
        check_labels(card.model_copy(update={"labels": words[:9]}), cfg)


def test_a_faces_model_is_judged_on_blond_hair_and_its_reference_on_real_faces(
    tmp_path: Path, folder_root: Path, folder_judges: Path
) -> None:
    from trainer.evaluate import reference_metrics

    cgan = _folder_model(tmp_path, "tiny-cgan", "synthetic-faces", 3, ["no Blond_Hair", "Blond_Hair"])
    cfg = _folder_cfg(folder_root, folder_judges, 20)
    metrics = {m.name: m for m in evaluate_model(cgan, cfg)}
    assert "label_accuracy" in metrics
    assert "(no Blond_Hair: " in (metrics["intra_fid_classifier"].notes or "")
    assert metrics["fid_classifier"].reference == "synthetic-faces held-out folder faces-test, 24 images"
    wgan = _folder_model(tmp_path, "tiny-wgan", "synthetic-faces", 3, None)
    assert "label_accuracy" not in {m.name for m in evaluate_model(wgan, cfg)}
    reference = {m.name: m for m in reference_metrics("synthetic-faces", cfg)}
    assert (reference["label_accuracy"].notes or "").startswith("real train images as the 'generated' set")
    assert reference["fid_classifier"].value < metrics["fid_classifier"].value
    assert reference["precision"].value >= metrics["precision"].value


def test_folder_inception_fid_sees_gray_tiled_and_rgb_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder_root: Path
) -> None:
    from trainer.eval_data import held_out

    monkeypatch.setenv("CONDGEN_CACHE_DIR", str(tmp_path))
    cfg = EvalConfig(n_inception=12, real_n=12, data_dir=folder_root, progress=False)
    extractor = PooledMeans()
    lego, _ = held_out("lego-bricks", folder_root, 12)
    gray = inception_fid(lego.images, "lego-bricks", cfg, extractor=extractor)
    assert gray.value == pytest.approx(0.0, abs=1e-6)  # the same fixed subset as the statistics
    assert gray.reference == "lego-bricks held-out folder lego-test, 12 images (a fixed random subset of 36)"
    assert "gray tiled to RGB, TF1 bilinear resize 64→299" in (gray.notes or "")
    assert (tmp_path / "fid" / "lego-bricks-test-n12-pooled-7.npz").is_file()
    faces, _ = held_out("synthetic-faces", folder_root, 12)
    rgb = inception_fid(faces.images[::-1].copy(), "synthetic-faces", cfg, extractor=extractor)
    assert rgb.value == pytest.approx(0.0, abs=1e-6)  # the same images in another order
    assert "; RGB, TF1 bilinear resize 64→299" in (rgb.notes or "")
    assert extractor.sizes[-1] == (12, 3, 64, 64)
    with pytest.raises(Exception, match="exceeds the 36 lego-bricks test images"):
        inception_fid(
            lego.images, "lego-bricks", EvalConfig(real_n=37, data_dir=folder_root), extractor=extractor
        )


def test_folder_inception_fid_with_the_real_network_at_a_tiny_n(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder_root: Path
) -> None:
    from trainer.fid import INCEPTION_NAME, InceptionUnavailableError, inception_weights_path

    try:
        inception_weights_path()
    except InceptionUnavailableError as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv("CONDGEN_CACHE_DIR", str(tmp_path))
    model_dir = _folder_model(tmp_path, "tiny-rgb", "synthetic-faces", 3, None)
    cfg = EvalConfig(n_inception=4, real_n=6, n_classifier=0, data_dir=folder_root, progress=False)
    (metric,) = evaluate_model(model_dir, cfg)
    assert metric.name == "fid_inception"
    assert metric.feature_extractor == INCEPTION_NAME
    assert metric.n_samples == 4
    assert metric.value > 0.0
    assert (
        metric.reference
        == "synthetic-faces held-out folder faces-test, 6 images (a fixed random subset of 24)"
    )
    assert (tmp_path / "fid" / "synthetic-faces-test-n6-inception-fidhelper-default1.npz").is_file()


def test_a_model_directory_is_scored_by_its_path(
    tmp_path: Path, folder_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.classifier import weights_path

    if not weights_path("lego").is_file():
        pytest.fail("the committed lego classifier is missing: python -m trainer classifier lego")
    model_dir = _folder_model(tmp_path / "elsewhere", "dcgan-tiny", "lego-bricks", 1, None)
    argv = ["evaluate", "score", str(model_dir), "--models", str(tmp_path / "none"), "--n", "0"]
    argv += ["--classifier-n", "20", "--data-dir", str(folder_root), "--no-doc"]
    assert cli.main(argv) == 0
    assert "dcgan-tiny: fid_classifier=" in capsys.readouterr().out
    card = load_card(model_dir)
    assert {m.name for m in card.metrics} == {"fid_classifier", "precision", "recall", "z_diversity"}
    assert all("condgen lego classifier" in (m.feature_extractor or "") for m in card.metrics)


def test_the_doc_has_rows_for_the_folder_datasets(tmp_path: Path) -> None:
    from tests.trainer.heldout_fixtures import LEGO_CLASSES

    model_dir = _folder_model(tmp_path / "models", "cdcgan64-tiny", "lego-bricks", 1, LEGO_CLASSES)
    edit_card(model_dir, family="condgen64")
    ref = "lego-bricks held-out folder lego-test, 10000 images"
    write_metrics(
        model_dir,
        [
            Metric(name="label_accuracy", value=0.61, n_samples=10000, reference=ref),
            Metric(name="fid_classifier", value=3.25, n_samples=10000, reference=ref),
        ],
    )
    refs = {"lego-bricks": [Metric(name="fid_classifier", value=0.4, n_samples=10000, reference=ref)]}
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "quality.json").write_text(
        json.dumps({k: [m.model_dump() for m in v] for k, v in refs.items()})
    )
    write_quality_doc(
        tmp_path / "models", tmp_path / "docs" / "quality.md", tmp_path / "docs" / "quality.json"
    )
    text = (tmp_path / "docs" / "quality.md").read_text()
    row = next(line for line in text.splitlines() if "`cdcgan64-tiny`" in line)
    assert row.startswith("| `cdcgan64-tiny` | lego-bricks | ")
    assert "| cond. BN + projection D |" in row
    assert "| 61.0% |" in row
    assert "| 3.25 |" in row
    assert "| 10000 / 10000 |" in row
    assert "| *real train (reference)* | lego-bricks |" in text
    assert text.index("*real train (reference)* | lego-bricks") < text.index("`cdcgan64-tiny`")
    # The committed classifiers are listed with their held-out accuracy and where their labels come from.
    assert "- `lego.pt`: " in text
    assert "lego-bricks test images" in text
    assert "labels from class subfolders)" in text
    assert "labels from attribute Blond_Hair)" in text
