"""The playground page: served self-contained, and driven in headless Chromium against a real server.

The browser tests run the system Chromium, cut off from every other host (:mod:`tests.service.browser`).
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.routes.playground import STATIC_DIR
from tests.service.browser import launched, offline_page
from tests.service.conftest import GRAY, RGB, UNCOND
from tests.service.live import live_zoo

# A grid of 10 labels × 8 columns is 80 images: over this limit, so the page must show the API's
# error; 10 × 6 = 60 fits.
MAX_GRID_IMAGES = 64


# --------------------------------------------------------------------------- served self-contained
class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in {"src", "href"} and v is not None]


async def test_page_and_static_files_are_served_same_origin_only(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    parser = _Refs()
    parser.feed(page.text)
    assert parser.refs, "the page references its script and stylesheet"
    for ref in parser.refs:
        assert ref.startswith(("/", "#")), f"{ref} is not same-origin"
        if ref.startswith("/static/"):
            asset = await client.get(ref)
            assert asset.status_code == 200, ref
    for path in (p for p in STATIC_DIR.iterdir() if p.is_file()):  # vendor/: the API docs' files
        # An XML namespace is a name, not a fetch.
        text = re.sub(r'xmlns="[^"]*"', "", path.read_text(encoding="utf-8"))
        # No CDN, no web font, no analytics: nothing outside the service is ever fetched.
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), path.name
    js = await client.get("/static/playground.js")
    assert js.headers["content-type"].startswith("text/javascript")
    missing = await client.get("/static/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    escape = await client.get("/static/..%2Fapp.py")
    assert escape.status_code == 404
    assert "openapi" in (await client.get("/openapi.json")).text  # the page adds no API routes
    assert "/" not in (await client.get("/openapi.json")).json()["paths"]


# --------------------------------------------------------------------------- in a real browser
@pytest.fixture(scope="module")
def server_url(zoo: Path) -> Iterator[str]:
    with live_zoo(zoo, max_grid_images=MAX_GRID_IMAGES) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any, server_url: str) -> Iterator[Any]:
    # The grid limit error is expected (the API answers 422).
    with offline_page(browser, server_url, expected_statuses=(422,)) as page:
        yield page


PIXELS_JS = """(id) => {
  const img = document.getElementById(id);
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  return {
    width: canvas.width,
    height: canvas.height,
    data: Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data),
  };
}"""


def pixels(page: Any, img_id: str) -> np.ndarray:
    """The <img>'s decoded pixels at natural size, as (H, W, 4) RGBA."""
    got = page.evaluate(PIXELS_JS, img_id)
    return np.asarray(got["data"], dtype=np.uint8).reshape(got["height"], got["width"], 4)


def renders(page: Any, img_id: str) -> int:
    return int(page.get_attribute(f"#{img_id}", "data-renders"))


def wait_rendered(page: Any, img_id: str, more_than: int) -> None:
    """Until ``img_id`` has shown a new image and no request of its panel is in flight."""
    page.wait_for_function(
        """([id, n]) => {
          const img = document.getElementById(id);
          return Number(img.dataset.renders) > n && !img.closest("[aria-busy='true']");
        }""",
        arg=[img_id, more_than],
    )


def generate_npy(url: str, body: dict[str, Any]) -> np.ndarray:
    return npy_of(url, "/generate", body)


def npy_of(url: str, path: str, body: dict[str, Any]) -> np.ndarray:
    resp = httpx.post(f"{url}{path}", json=body, headers={"accept": "application/x-npy"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return np.load(io.BytesIO(resp.content), allow_pickle=False)


def test_sliders_move_the_image_live(page: Any, server_url: str) -> None:
    page.goto(f"/#model={RGB}")
    wait_rendered(page, "image", 0)
    # 8 latent dimensions: one keyboard-usable slider each, labelled.
    assert page.locator("#sliders input[type=range]").count() == 8
    assert page.is_checked("#mode-sliders")
    assert page.is_hidden("#seed-field")
    page.select_option("#label", label="blue (2)")
    wait_rendered(page, "image", 1)
    before = pixels(page, "image")
    count = renders(page, "image")

    slider = page.get_by_label("latent dimension 0")
    slider.focus()
    for _ in range(10):  # 10 × 0.05 = 0.5, debounced into one or a few requests
        page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('z-0').value === '0.5'")
    wait_rendered(page, "image", count)
    page.wait_for_function("() => document.querySelector('#z-0 + output').textContent === '0.50'")
    after = pixels(page, "image")
    assert after.shape == (6, 10, 4)
    assert not np.array_equal(before, after), "moving a slider must change the image"
    # Exactly the pixels /generate gives for that z and label (RGB channels; alpha is opaque).
    z = [[0.5, 0, 0, 0, 0, 0, 0, 0]]
    expected = generate_npy(server_url, {"model": RGB, "label": 2, "z": z})[0].transpose(1, 2, 0)
    assert np.array_equal(after[..., :3], expected)
    assert (after[..., 3] == 255).all()
    assert np.array_equal(
        before[..., :3],
        generate_npy(server_url, {"model": RGB, "label": 2, "z": [[0] * 8]})[0].transpose(1, 2, 0),
    )

    # The image is upscaled without smoothing, and the download is the PNG itself.
    assert page.eval_on_selector("#image", "el => getComputedStyle(el).imageRendering") == "pixelated"
    assert page.eval_on_selector("#image", "el => el.getBoundingClientRect().width") >= 200
    link = page.locator("#download")
    assert link.get_attribute("aria-disabled") == "false"
    assert (link.get_attribute("download") or "").endswith(".png")
    with page.expect_download() as download:
        link.click()
    saved = Path(download.value.path()).read_bytes()
    assert saved.startswith(b"\x89PNG\r\n\x1a\n")
    assert download.value.suggested_filename == f"{RGB}-blue-z.png"

    # Grid (3 labels × 8 latents) and interpolation strip (10 steps) rendered on model choice.
    wait_rendered(page, "grid", 0)
    wait_rendered(page, "interp", 0)
    assert page.eval_on_selector("#grid", "el => [el.naturalWidth, el.naturalHeight]") == [
        8 * 12 + 2,
        3 * 8 + 2,
    ]
    assert page.eval_on_selector("#interp", "el => [el.naturalWidth, el.naturalHeight]") == [
        10 * 12 + 2,
        6 + 4,
    ]
    assert page.is_hidden("#grid-error")


def test_seed_mode_card_grid_error_and_interpolation(page: Any, server_url: str) -> None:
    page.goto("/")
    wait_rendered(page, "image", 0)
    assert page.input_value("#model") == GRAY  # the first ready model
    # 16 latent dimensions: seeds, not sliders.
    page.wait_for_function("() => document.getElementById('seed-field').hidden === false")
    assert page.is_hidden("#mode-field")
    assert page.is_hidden("#sliders-field")
    page.wait_for_function("() => !document.getElementById('stage').matches('[aria-busy=true]')")
    count = renders(page, "image")
    page.select_option("#label", label="seven (7)")
    page.fill("#seed", "123")
    page.wait_for_function(
        "([n]) => Number(document.getElementById('image').dataset.renders) > n "
        "&& document.getElementById('status').textContent.startsWith('seed 123')",
        arg=[count],
    )
    wait_rendered(page, "image", count)
    seeded = pixels(page, "image")
    expected = generate_npy(server_url, {"model": GRAY, "label": "seven", "seed": 123})[0, 0]
    assert np.array_equal(seeded[..., 0], expected)
    assert "label=seven" in page.evaluate("location.hash")

    count = renders(page, "image")
    page.click("#seed-random")
    wait_rendered(page, "image", count)
    assert page.input_value("#seed") != "123"
    assert not np.array_equal(pixels(page, "image"), seeded)

    # Truncation: the slider is enabled by its checkbox and changes the latent.
    assert page.is_disabled("#truncation")
    count = renders(page, "image")
    page.check("#truncate")
    wait_rendered(page, "image", count)
    assert page.is_enabled("#truncation")
    count = renders(page, "image")
    page.uncheck("#truncate")
    wait_rendered(page, "image", count)

    # The card: dataset, and the sample grid committed with the model.
    card = page.locator("#card-body")
    assert "synthetic" in card.inner_text()
    page.wait_for_function("() => document.querySelector('#card-body img.samples')?.naturalWidth === 4")

    # 10 labels × 8 columns is over this server's grid limit: the API's error shows in the page.
    error = page.locator("#grid-error")
    error.wait_for(state="visible")
    assert "invalid_request" in error.inner_text()
    assert "more than the limit of 64" in error.inner_text()
    count = renders(page, "grid")
    page.fill("#grid-columns", "6")
    page.click("#grid-run")
    wait_rendered(page, "grid", count)
    assert page.is_hidden("#grid-error")
    assert page.eval_on_selector("#grid", "el => [el.naturalWidth, el.naturalHeight]") == [
        6 * 10 + 2,
        10 * 10 + 2,
    ]

    # Interpolation between two seeds: its ends are the seeds' images (image 0 of each).
    count = renders(page, "interp")
    page.fill("#interp-a", "5")
    page.fill("#interp-b", "6")
    page.fill("#interp-steps", "4")
    page.click("#interp-run")
    wait_rendered(page, "interp", count)
    strip = pixels(page, "interp")[..., 0]
    assert strip.shape == (12, 4 * 10 + 2)
    first = generate_npy(server_url, {"model": GRAY, "label": 7, "seed": 5})[0, 0]
    last = generate_npy(server_url, {"model": GRAY, "label": 7, "seed": 6})[0, 0]
    assert np.array_equal(strip[2:10, 2:10], first)
    assert np.array_equal(strip[2:10, 32:40], last)

    # An unconditional model: no label picker, a plain sample grid.
    page.select_option("#model", UNCOND)
    page.wait_for_function("() => document.getElementById('label-field').hidden === true")
    page.wait_for_function("() => document.getElementById('grid-title').textContent === 'Samples'")


def test_a_service_with_an_api_key_asks_for_it(browser: Any, zoo: Path) -> None:
    key = "playground-test-key-0123456789"
    with live_zoo(zoo, api_key=key) as url, offline_page(browser, url, expected_statuses=(401,)) as page:
        page.goto(f"/#model={UNCOND}")
        error = page.locator("#image-error")
        error.wait_for(state="visible")
        assert "unauthorized" in error.inner_text()
        assert page.is_visible("#key-field")
        page.fill("#api-key", key)
        page.press("#api-key", "Enter")
        wait_rendered(page, "image", 0)
        wait_rendered(page, "grid", 0)
        assert page.is_hidden("#image-error")
        # Kept for this tab: a reload generates at once.
        page.reload()
        wait_rendered(page, "image", 0)
        assert page.input_value("#api-key") == key


# --------------------------------------------------------------------------- seeds past 2^53, the URL
SEED_PAST_DOUBLE = 2**53 + 1  # the first seed a JavaScript Number cannot hold: it would read 2^53
DOWNLOADS = {"image": "#download", "grid": "#grid-download", "interp": "#interp-download"}


def shown_png(page: Any, panel: str) -> bytes:
    """The PNG a panel shows, byte for byte: its download link points at the same blob."""
    with page.expect_download() as download:
        page.click(DOWNLOADS[panel])
    return Path(download.value.path()).read_bytes()


def generate_png(url: str, body: dict[str, Any]) -> bytes:
    resp = httpx.post(f"{url}/generate", json=body, headers={"accept": "image/png"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.content


def run_python(snippet: str) -> np.ndarray:
    """The panel's Python, run as shown (the condgen client against the live server): its images."""
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # the page's own text: what a user would paste
    images: np.ndarray = namespace["images"]
    return images


def wait_status(page: Any, text: str) -> None:
    page.wait_for_function(
        "([t]) => document.getElementById('status').textContent.startsWith(t)"
        " && document.getElementById('stage').getAttribute('aria-busy') === 'false'",
        arg=[text],
    )


def test_seeds_past_2_53_reproduce_byte_for_byte(page: Any, server_url: str) -> None:
    # From the URL, with the label given by its class id.
    page.goto(f"/#model={GRAY}&label=3&seed={SEED_PAST_DOUBLE}")
    wait_status(page, f"seed {SEED_PAST_DOUBLE} ")
    assert page.input_value("#label") == "3"
    assert page.input_value("#seed") == str(SEED_PAST_DOUBLE)
    expected = generate_png(server_url, {"model": GRAY, "label": 3, "seed": SEED_PAST_DOUBLE})
    assert shown_png(page, "image") == expected
    rounded = generate_png(server_url, {"model": GRAY, "label": 3, "seed": 2**53})
    assert rounded != expected, "the test needs seeds whose images differ"
    # The URL keeps the seed exactly (and the label by name).
    assert f"seed={SEED_PAST_DOUBLE}" in page.evaluate("location.hash")
    assert "label=three" in page.evaluate("location.hash")

    # Typed into the box: the largest seed the API takes, then one past it.
    top = 2**63 - 1
    page.fill("#seed", str(top))
    wait_status(page, f"seed {top} ")
    assert shown_png(page, "image") == generate_png(server_url, {"model": GRAY, "label": 3, "seed": top})
    assert f"seed={top}" in page.evaluate("location.hash")
    page.fill("#seed", str(top + 1))
    error = page.locator("#image-error")
    error.wait_for(state="visible")
    assert f"Seed must be a whole number from 0 to {top}" in error.inner_text()

    # The grid and interpolation seeds too.
    page.fill("#interp-a", str(top))
    page.fill("#interp-b", str(SEED_PAST_DOUBLE))
    count = renders(page, "interp")
    page.click("#interp-run")
    wait_rendered(page, "interp", count)
    strip = pixels(page, "interp")[..., 0]
    first = generate_npy(server_url, {"model": GRAY, "label": 3, "seed": top})[0, 0]
    last = generate_npy(server_url, {"model": GRAY, "label": 3, "seed": SEED_PAST_DOUBLE})[0, 0]
    steps = int(page.input_value("#interp-steps"))
    assert np.array_equal(strip[2:10, 2:10], first)
    assert np.array_equal(strip[2:10, (steps - 1) * 10 + 2 : steps * 10], last)


def test_a_label_in_the_url_by_name_or_id(page: Any) -> None:
    for label, expected in (("7", "7"), ("SEVEN", "7"), ("10", "0"), ("nope", "0")):
        page.goto(f"/#model={GRAY}&label={label}&seed=1")
        page.reload()  # a new hash alone does not restart the page
        wait_status(page, "seed 1 ")
        assert page.input_value("#label") == expected, label


# --------------------------------------------------------------------------- use via API
def test_the_api_panel_gives_the_request_on_screen(page: Any, server_url: str, tmp_path: Path) -> None:
    page.goto(f"/#model={GRAY}&label=seven&seed={SEED_PAST_DOUBLE}")
    wait_status(page, f"seed {SEED_PAST_DOUBLE} ")
    python = page.inner_text("#api-python")
    assert python == (
        "from condgen import Client\n"
        f'images = Client("{server_url}")'
        f'.generate("{GRAY}", label="seven", n=1, seed={SEED_PAST_DOUBLE}).images'
    )
    # The curl command, run as shown, writes the very PNG on screen.
    curl = page.inner_text("#api-curl")
    assert curl.startswith(f"curl -s {server_url}/generate ")
    subprocess.run(["bash", "-c", curl], cwd=tmp_path, check=True, timeout=30)
    assert (tmp_path / "image.png").read_bytes() == shown_png(page, "image")
    # And the Python call gives the same pixels.
    seeded = {"model": GRAY, "label": 7, "seed": SEED_PAST_DOUBLE}
    assert np.array_equal(run_python(python), npy_of(server_url, "/generate", seeded))

    # Truncation shows in both.
    page.check("#truncate")
    wait_status(page, f"seed {SEED_PAST_DOUBLE} ")
    assert page.inner_text("#api-python").endswith(f"seed={SEED_PAST_DOUBLE}, truncation=1).images")
    assert '"truncation":1' in page.inner_text("#api-curl")

    # The grid: every label, by name.
    page.click("label[for=api-for-grid]")
    assert page.inner_text("#api-python") == ""  # 10 × 8 is over this server's limit: nothing shown
    page.fill("#grid-columns", "6")
    page.click("#grid-run")
    wait_rendered(page, "grid", 0)
    grid_python = page.inner_text("#api-python")
    assert f'.grid("{GRAY}", labels=["zero", "one", ' in grid_python
    assert grid_python.endswith('"nine"], columns=6, seed=7, truncation=1).images')
    grid_body = {"model": GRAY, "columns": 6, "seed": 7, "truncation": 1.0}
    assert np.array_equal(run_python(grid_python), npy_of(server_url, "/grid", grid_body))
    assert f"{server_url}/grid " in page.inner_text("#api-curl")

    # The interpolation, run through curl again.
    page.click("label[for=api-for-interp]")
    wait_rendered(page, "interp", 0)
    # What is on screen: the strip was drawn before truncation was turned on, until it is run again.
    assert "steps=10).images" in page.inner_text("#api-python")
    count = renders(page, "interp")
    page.click("#interp-run")
    wait_rendered(page, "interp", count)
    assert f'.interpolate("{GRAY}", label="seven", seeds=(1, 2), steps=10, truncation=1)' in page.inner_text(
        "#api-python"
    )
    subprocess.run(["bash", "-c", page.inner_text("#api-curl")], cwd=tmp_path, check=True, timeout=30)
    assert (tmp_path / "interpolation.png").read_bytes() == shown_png(page, "interp")
    path_body = {"model": GRAY, "label": 7, "seeds": [1, 2], "steps": 10, "truncation": 1.0}
    assert np.array_equal(
        run_python(page.inner_text("#api-python")), npy_of(server_url, "/interpolate", path_body)
    )

    # Slider mode: the explicit latent.
    page.goto(f"/#model={RGB}")
    page.reload()
    wait_rendered(page, "image", 0)
    page.click("label[for=api-for-image]")
    page.wait_for_function("() => document.getElementById('api-python').textContent.includes('z=[[')")
    assert f'.generate("{RGB}", label="red", z=[[0, 0, 0, 0, 0, 0, 0, 0]]).images' in page.inner_text(
        "#api-python"
    )


def test_the_bundled_flagship_opens_first(browser: Any, zoo: Path, tmp_path: Path) -> None:
    """With the bundled zoo's flagship among the models, the page opens on it (else the first
    ready model, as above); a seed past 2^53 reproduces on it too."""
    exported = Path(__file__).resolve().parents[2] / "exported"
    for model in (*sorted(p.name for p in zoo.iterdir() if p.is_dir()), "condgen-mnist"):
        (tmp_path / model).symlink_to((exported if model == "condgen-mnist" else zoo) / model)
    with live_zoo(tmp_path) as url, offline_page(browser, url) as page:
        page.goto(f"/#label=3&seed={SEED_PAST_DOUBLE}")
        wait_status(page, f"seed {SEED_PAST_DOUBLE} ")
        assert page.input_value("#model") == "condgen-mnist"
        body = {"model": "condgen-mnist", "label": 3, "seed": SEED_PAST_DOUBLE}
        assert shown_png(page, "image") == generate_png(url, body)
        assert page.evaluate("location.hash") == f"#model=condgen-mnist&label=3&seed={SEED_PAST_DOUBLE}"
