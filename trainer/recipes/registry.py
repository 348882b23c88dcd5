"""Every trainable recipe, by name, gathered from the modules that record them."""

from __future__ import annotations

from . import fashion, flagship, folder64, mnist, zoo64
from .recipe import Recipe


def _index(recipes: list[Recipe]) -> dict[str, Recipe]:
    index: dict[str, Recipe] = {}
    for recipe in recipes:
        if recipe.name in index:
            raise ValueError(f"recipe {recipe.name!r} recorded twice")
        index[recipe.name] = recipe
    return index


# In `python -m trainer list` order: MNIST families, FashionMNIST, flagships, 64×64 folders, the zoo's 64×64.
RECIPES: dict[str, Recipe] = _index(
    [*mnist.RECIPES, *fashion.RECIPES, *flagship.RECIPES, *folder64.RECIPES, *zoo64.RECIPES]
)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; `python -m trainer list` shows the known ones") from None
