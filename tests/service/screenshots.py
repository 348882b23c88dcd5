"""Retake the README's playground screenshots from the bundled zoo, in headless Chromium.

``python -m tests.service.screenshots [--models exported] [--out docs] [--port 8000]`` serves the
models on 127.0.0.1 and writes ``playground.png`` (the flagship, label 3 from seed 7: image, card,
grid, interpolation, the "Use via API" panel) and ``playground-sliders.png`` (cdcgan-mnist's 5-D
latent on sliders).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tests.service.browser import launched, offline_page
from tests.service.conftest import make_settings
from tests.service.live import threaded_server

logger = logging.getLogger(__name__)

VIEWPORT = (1360, 760)
SLIDERS = {0: 0.25, 2: -0.2, 3: 0.35}  # cdcgan-mnist's latent, a few steps off zero


def _rendered(page: Any, img_id: str) -> None:
    page.wait_for_function(
        """(id) => {
          const img = document.getElementById(id);
          return Number(img.dataset.renders) > 0 && !img.closest("[aria-busy='true']");
        }""",
        arg=img_id,
    )


def _flagship(page: Any, out: Path) -> None:
    page.goto("/#model=condgen-mnist&label=3&seed=7")
    for img_id in ("image", "grid", "interp"):
        _rendered(page, img_id)
    page.wait_for_function("() => document.querySelector('#card-body img.samples')?.complete")
    page.wait_for_function("() => document.getElementById('api-python').textContent !== ''")
    page.locator("#image-meta").click()  # no focus ring on any control
    page.screenshot(path=str(out / "playground.png"), full_page=True)


def _sliders(page: Any, out: Path) -> None:
    page.goto("/#model=cdcgan-mnist&label=3")
    _rendered(page, "image")
    for dim, value in SLIDERS.items():
        slider = page.get_by_label(f"latent dimension {dim}")
        slider.focus()
        key = "ArrowRight" if value > 0 else "ArrowLeft"
        for _ in range(round(abs(value) / 0.05)):  # the sliders' step
            page.keyboard.press(key)
    page.wait_for_function(
        "(v) => document.getElementById('z-3').value === v && "
        "document.getElementById('stage').getAttribute('aria-busy') === 'false'",
        arg=str(SLIDERS[3]),
    )
    page.wait_for_function("() => document.querySelector('#card-body img.samples')?.complete")
    page.screenshot(path=str(out / "playground-sliders.png"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("exported"), help="model repository")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go")
    # The port `make run` serves on, as the "Use via API" panel shows it.
    parser.add_argument("--port", type=int, default=8000, help="loopback port to serve on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    with threaded_server(make_settings(args.models.resolve()), port=args.port) as url, launched() as browser:
        with offline_page(browser, url, viewport=VIEWPORT) as page:
            _flagship(page, args.out)
        with offline_page(browser, url, viewport=VIEWPORT) as page:
            _sliders(page, args.out)
    logger.info("wrote %s and %s", args.out / "playground.png", args.out / "playground-sliders.png")


if __name__ == "__main__":
    main()
