"""Imported generators served by a real ``python -m service`` (as ``make run MODELS=DIR`` starts it).

One foreign signature per adapter, plus TorchScript, a PyTorch class with its state_dict and a
Keras generator exported with tf2onnx. Each is imported with ``python -m trainer import`` and its
options, then ``POST /generate`` with explicit ``z`` and ``labels`` must return the source model's
own output (torch's, or Keras' recorded one), mapped through the value range to uint8, to within
one level on at least 99.9% of pixels. The playground page and ``/v2`` serve them too.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from service.card import load_card
from service.latents import latents_for
from tests.service.process import ServiceProcess, run_service
from tests.trainer.fixtures.seed_generators import (
    CLASSES,
    NZ,
    cdcgan_output,
    mlp_output,
    write_variant,
)
from trainer.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
AGREEMENT = 0.999  # share of pixels within one level of the source's own output

Reference = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (z, labels) → float N×C×H×W


def _keras_reference(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    recorded = np.load(FIXTURES / "keras_cgan_reference.npz")
    assert np.array_equal(z, recorded["z"])
    assert np.array_equal(labels, recorded["labels"])
    images: np.ndarray = recorded["images"].transpose(0, 3, 1, 2)  # Keras' own NHWC output
    return images


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # a variant of seed_generators, or a path under fixtures/
    options: tuple[str, ...]
    reference: Reference
    value_range: tuple[float, float]
    batch: str = "dynamic"


CASES = [
    Case("index-int32", "index-int32", ("--label-encoding", "index"), cdcgan_output, (-1, 1)),
    Case(
        "index-column",
        "index-column",
        ("--z-input", "noise", "--label-input", "label", "--num-classes", "10"),
        cdcgan_output,
        (-1, 1),
    ),
    Case("onehot", "onehot", ("--labels", ",".join(f"digit-{i}" for i in range(10))), cdcgan_output, (-1, 1)),
    Case("onehot-4d", "onehot-4d", (), cdcgan_output, (-1, 1)),
    Case("concat", "concat", ("--num-classes", "10"), mlp_output, (0, 1)),  # sigmoid: range inferred
    Case("nhwc", "nhwc", ("--layout", "nhwc", "--value-range=-1,1"), cdcgan_output, (-1, 1)),
    Case(
        "flat",
        "flat",
        ("--num-classes", "10", "--image", "1,28,28", "--value-range", "0,1"),
        mlp_output,
        (0, 1),
    ),
    Case("fixed-batch", "fixed-batch", (), cdcgan_output, (-1, 1), "made dynamic"),
    Case("fixed-batch-rows", "fixed-batch-rows", ("--num-classes", "10"), mlp_output, (0, 1), "row by row"),
    Case(
        "torchscript",
        "cdcgan_scripted.pt",
        (),
        lambda z, labels: cdcgan_output(z, labels, seed=1),
        (-1, 1),
    ),
    Case(
        "pytorch-class",
        "seed_generators.py:CDCGANGenerator",
        ("--weights", str(FIXTURES / "cdcgan_state.pt"), "--kwargs", '{"nz": 16, "ngf": 16}'),
        cdcgan_output,
        (-1, 1),
    ),
    Case("keras-tf2onnx", "keras_cgan.onnx", ("--dataset", "random weights"), _keras_reference, (-1, 1)),
]


def _source(case: Case, scratch: Path) -> str:
    if ":" in case.source:
        return str(FIXTURES / case.source)
    if (FIXTURES / case.source).is_file():
        return str(FIXTURES / case.source)
    return str(write_variant(case.source, scratch / f"{case.name}.onnx"))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case imported with ``python -m trainer import`` into one models directory."""
    scratch = tmp_path_factory.mktemp("sources")
    out = tmp_path_factory.mktemp("models")
    torch.set_num_threads(1)
    for case in CASES:
        code = main(["import", _source(case, scratch), "--name", case.name, "--out", str(out), *case.options])
        assert code == 0, case.name
    return out


@pytest.fixture(scope="module")
def service(models: Path) -> Iterator[ServiceProcess]:
    with run_service(models) as proc:
        yield proc


def _inputs(case: Case) -> tuple[np.ndarray, np.ndarray]:
    if case.name == "keras-tf2onnx":
        recorded = np.load(FIXTURES / "keras_cgan_reference.npz")
        return recorded["z"], recorded["labels"]
    return latents_for(2024, CLASSES, NZ), np.arange(CLASSES, dtype=np.int64)[::-1].copy()


def expected_uint8(raw: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    return np.clip(np.rint((raw.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def agreement(served: np.ndarray, expected: np.ndarray) -> float:
    assert served.shape == expected.shape
    return float(np.mean(np.abs(served.astype(np.int16) - expected.astype(np.int16)) <= 1))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_served_pixels_are_the_source_models_own(case: Case, models: Path, service: ServiceProcess) -> None:
    card = load_card(models / case.name)
    assert card.image.value_range == case.value_range
    assert card.source is not None
    assert card.source.batch == case.batch
    z, labels = _inputs(case)
    expected = expected_uint8(case.reference(z, labels), case.value_range)
    resp = httpx.post(
        f"{service.url}/generate",
        json={"model": case.name, "z": z.tolist(), "labels": labels.tolist()},
        headers={"accept": "application/x-npy"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    served = np.load(io.BytesIO(resp.content), allow_pickle=False)
    assert served.shape == (len(labels), 1, 28, 28)
    assert agreement(served, expected) >= AGREEMENT
    # One image as PNG, its label by name.
    name = card.labels[int(labels[3])] if card.labels else None
    png = httpx.post(
        f"{service.url}/generate", json={"model": case.name, "z": z[3].tolist(), "label": name}, timeout=30
    )
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(png.content)))
    assert agreement(pixels[None, None], expected[3:4]) >= AGREEMENT


def test_v2_infers_an_imported_model(service: ServiceProcess) -> None:
    z, labels = _inputs(CASES[0])
    meta = httpx.get(f"{service.url}/v2/models/nhwc", timeout=10).json()
    assert [i["name"] for i in meta["inputs"]] == ["z", "label"]
    body = {
        "inputs": [
            {"name": "z", "datatype": "FP32", "shape": list(z.shape), "data": z.ravel().tolist()},
            {"name": "label", "datatype": "INT64", "shape": [len(labels)], "data": labels.tolist()},
        ]
    }
    resp = httpx.post(f"{service.url}/v2/models/nhwc/infer", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    out = resp.json()["outputs"][0]
    served = np.asarray(out["data"], dtype=np.uint8).reshape(out["shape"])
    assert agreement(served, expected_uint8(cdcgan_output(z, labels), (-1, 1))) >= AGREEMENT


def test_models_lists_the_imported_cards_with_their_source(service: ServiceProcess) -> None:
    cards = {c["name"]: c for c in httpx.get(f"{service.url}/models", timeout=10).json()["models"]}
    assert set(cards) >= {c.name for c in CASES}
    keras = httpx.get(f"{service.url}/models/keras-tf2onnx", timeout=10).json()
    assert keras["source"]["file"] == "keras_cgan.onnx"
    assert keras["source"]["inputs"][0]["name"] == "noise"
    assert any("Transpose" in a for a in keras["source"]["adapters"])
    ready = httpx.get(f"{service.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text


def _chromium() -> str:
    if os.environ.get("CONDGEN_SKIP_BROWSER") == "1":
        pytest.skip("CONDGEN_SKIP_BROWSER=1")
    path = os.environ.get("CONDGEN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("the playground check needs Chromium: `apt-get install -y chromium`", pytrace=False)
    return path


def test_the_playground_shows_an_imported_model(service: ServiceProcess) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{service.url}/#model=keras-tf2onnx")
            page.wait_for_function(
                "() => Number(document.getElementById('image').dataset.renders) > 0", timeout=20_000
            )
            assert page.evaluate("() => document.getElementById('image').naturalWidth") > 0
            assert page.locator("#model").input_value() == "keras-tf2onnx"
            assert not errors
        finally:
            browser.close()
