"""Naive peer: FastAPI + PyTorch eager, one forward per request, no batching.

The way models like these usually end up behind a UI: load the trainer's generator, and in a
plain ``def`` endpoint (FastAPI runs it on its thread pool) draw the latents, run the module,
convert to uint8 and encode a PNG. The latents and the PNG encoder are condgen's, so the answer
has the same format (one image, or the same grid for n > 1) and, up to float rounding between
torch and ONNX Runtime, the same pixels.

The generator comes from a training checkpoint (``--checkpoint runs/<name>/checkpoint.pt``, via
``trainer.training.generator_from_checkpoint``). Without one, ``--recipe NAME`` builds the same
architecture with freshly initialised weights: the images are noise, the compute per request is
the same, which is all a throughput comparison needs (the results say which was used).

``python -m bench.peers.torch_server --checkpoint runs/cdcgan-mnist/checkpoint.pt --port 8001``
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from starlette.responses import Response
from torch import nn

from service.encode import png_of_batch
from service.latents import latents_for

logger = logging.getLogger(__name__)

MAX_N = 64
PNG_COMPRESS_LEVEL = 1  # condgen's default, so the comparison is about serving, not zlib


class GenerateBody(BaseModel):
    model: str
    label: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1, le=MAX_N)


def load_generator(
    checkpoint: Path | None, recipe_name: str | None
) -> tuple[nn.Module, str, int, int, tuple[float, float]]:
    """(generator in eval mode, recipe name, z dim, classes, value range)."""
    if checkpoint is not None:
        from trainer.training import generator_from_checkpoint

        generator, recipe, _ = generator_from_checkpoint(checkpoint)
    elif recipe_name is not None:
        from trainer.recipes import get_recipe

        recipe = get_recipe(recipe_name)
        built, _ = recipe.build(recipe)
        generator = getattr(built, "decoder", built)  # the VAE serves its decoder
    else:
        raise ValueError("give --checkpoint or --recipe")
    return generator.eval(), recipe.name, recipe.z_dim, recipe.num_classes, recipe.value_range


def create_app(
    generator: nn.Module, name: str, z_dim: int, num_classes: int, value_range: tuple[float, float]
) -> FastAPI:
    app = FastAPI(title=f"naive torch: {name}")
    lo, hi = value_range
    scale = 255.0 / (hi - lo)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/generate")
    def generate(body: GenerateBody) -> Response:
        if body.model != name:
            raise HTTPException(404, f"unknown model {body.model!r}; this peer serves {name!r}")
        if num_classes and body.label >= num_classes:
            raise HTTPException(422, f"label must be < {num_classes}")
        z = torch.from_numpy(latents_for(body.seed, body.n, z_dim))
        labels = torch.full((body.n,), body.label, dtype=torch.int64) if num_classes else None
        with torch.no_grad():
            out = generator(z, labels) if labels is not None else generator(z)
            pixels = ((out - lo) * scale).clamp_(0.0, 255.0).round_().to(torch.uint8)
        return Response(png_of_batch(pixels.numpy(), None, PNG_COMPRESS_LEVEL), media_type="image/png")

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers.torch_server", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a trainer checkpoint (runs/<name>/checkpoint.pt)")
    source.add_argument("--recipe", help="no checkpoint: this recipe's architecture, untrained weights")
    parser.add_argument("--name", help="model name to answer to (default: the recipe's)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    generator, recipe_name, z_dim, num_classes, value_range = load_generator(args.checkpoint, args.recipe)
    app = create_app(generator, args.name or recipe_name, z_dim, num_classes, value_range)
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
