"""Every trainable recipe, by name: architecture, data, loss and optimiser settings in one record.

A recipe is an explicit, frozen description (:mod:`.recipe`); the families are recorded in
:mod:`.mnist`, :mod:`.fashion`, :mod:`.flagship` and :mod:`.folder64` and gathered by
:mod:`.registry`. ``python -m trainer list`` prints them and ``python -m trainer train <name>``
runs one.
"""

from .recipe import CardField, DatasetKind, Recipe
from .registry import RECIPES, get_recipe

__all__ = ["RECIPES", "CardField", "DatasetKind", "Recipe", "get_recipe"]
