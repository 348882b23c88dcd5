"""The OpenAPI document as the service behaves, corrected where FastAPI's generation says otherwise.

* Exact integer bounds: FastAPI passes the schema through its own models, which hold bounds as
  floats, so the largest seed, 2**63 - 1, would read 9.223372036854776e18 (2**63, a seed the
  service refuses).
* Under ``/v2`` a request that does not validate is answered 400 in the protocol's
  ``{"error": "..."}`` shape (:func:`service.errors.error_response`), never with FastAPI's 422
  body, so the 422 entries FastAPI adds to those routes are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.latents import MAX_SEED
from service.paths import is_v2

# The integer bounds a float cannot hold, by the float FastAPI's models turn them into.
EXACT_INTEGERS = {float(MAX_SEED): MAX_SEED}
_INTEGER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
# FastAPI's validation-error schemas, kept only while some operation still refers to them.
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def exact_integer_bounds(node: Any) -> None:
    """In place: the bounds of every integer schema under ``node`` as JSON integers."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in _INTEGER_BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = EXACT_INTEGERS.get(value, int(value))
        for child in node.values():
            exact_integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            exact_integer_bounds(child)


def drop_v2_validation_errors(schema: dict[str, Any]) -> None:
    """In place: no 422 entries under ``/v2``, and FastAPI's 422 schemas once nothing uses them."""
    for path, path_item in schema.get("paths", {}).items():
        if is_v2(path):
            for operation in path_item.values():
                operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        rest = {k: v for k, v in components.items() if k != name}
        if name in components and f"#/components/schemas/{name}" not in repr((schema.get("paths"), rest)):
            del components[name]


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``, ``/docs``, ``/redoc``) the corrected document."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        exact_integer_bounds(schema)
        drop_v2_validation_errors(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
