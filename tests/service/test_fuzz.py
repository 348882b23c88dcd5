"""Property-based fuzzing of the whole OpenAPI schema with schemathesis, against the ASGI app.

Every operation the schema documents gets generated requests, valid and invalid (wrong types,
missing fields, out-of-range numbers, odd strings), with the models of the fixture zoo loaded.
Each response must be no server error, have a documented status code and content type, and match
the documented schema for that status (the error statuses are documented with the one error
body). Examples are bounded and derandomized, so a CI run is reproducible: the same inputs each
time, with a budget that keeps the whole module to seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.app import create_app
from service.config import Settings
from tests.service.conftest import GRAY, RGB, UNCOND, make_settings

# Per operation; enough to reach every field's edge cases with derandomize=True, small enough that
# the module runs in seconds on a busy 2-core machine.
MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def fuzz_app(zoo: Path) -> FastAPI:
    # A small body limit so that the fuzzer's large bodies reach the 413 path too.
    return create_app(make_settings(zoo, max_body_bytes=16 * 1024, request_timeout_s=5.0))


# How invalid data may be refused: schemathesis's own list, plus 413, which the small body limit
# above gives any large body before it is read, valid or not.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]


@pytest.fixture(scope="module")
def api_schema(fuzz_app: FastAPI) -> Any:
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}}
    )
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app, config=config)


# Schema keys that describe a value without constraining it.
_ANNOTATIONS = {"type", "title", "description", "examples"}


def _operations() -> list[Any]:
    """Every documented operation as "METHOD /path", with the ways to fuzz it.

    Read from an app that never starts (no models needed at collection time). An operation whose
    only inputs are plain strings in the path has no invalid input to generate (every path segment
    is a string): it is fuzzed with valid ones only.
    """
    doc = create_app(Settings(models_dir=Path("unused"))).openapi()
    params = []
    for path, methods in sorted(doc["paths"].items()):
        for method, operation in methods.items():
            label = f"{method.upper()} {path}"
            params.append(pytest.param(label, GenerationMode.POSITIVE, id=f"{label}-valid"))
            if operation.get("requestBody") or any(
                param.get("schema", {}).get("type") != "string" or set(param.get("schema", {})) - _ANNOTATIONS
                for param in operation.get("parameters", [])
            ):
                params.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"{label}-invalid"))
    return params


def _aim_at_the_zoo(pair: tuple[schemathesis.Case, str | None]) -> schemathesis.Case:
    """Most valid cases name a model that exists, so they get past the lookup into planning,
    batching, inference and encoding; the rest keep the generated (unknown) name."""
    case, model = pair
    if model is None:
        return case
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = model
    if case.path_parameters and "name" in case.path_parameters:
        case.path_parameters["name"] = model
    return case


@pytest.mark.parametrize(("label", "mode"), _operations())
def test_every_operation_conforms_to_its_schema(api_schema: Any, label: str, mode: GenerationMode) -> None:
    operation = api_schema.find_operation_by_label(label)
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        strategy = st.tuples(strategy, st.sampled_from([GRAY, RGB, UNCOND, None])).map(_aim_at_the_zoo)

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        # Valid by the schema is not always valid for the model: a label out of the card's range,
        # a latent of the wrong size, z and seed together. Those are honest 422s, so the check that
        # schema-valid data is accepted does not apply; every other check does.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    check()
