"""The OpenAPI document says what the service does: every example succeeds against a real server on
the bundled zoo, integer bounds are exact, ``z`` takes one vector or a list, /v2 documents no 422."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.latents import MAX_SEED
from tests.service.conftest import GRAY, make_settings
from tests.service.live import threaded_server

EXPORTED = Path(__file__).resolve().parents[2] / "exported"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # The document does not depend on the models: an empty repository will do.
    app = create_app(make_settings(tmp_path_factory.mktemp("empty")))
    document: dict[str, Any] = json.loads(json.dumps(app.openapi()))
    return document


def _first_example(holder: dict[str, Any]) -> Any:
    if "example" in holder:
        return holder["example"]
    examples = holder.get("examples") or {}
    return next(iter(examples.values()))["value"] if examples else None


def example_requests(spec: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(method, URL path, example name, JSON body or None) for every example in the document.

    Path parameters take their own example; an operation without a body example is sent once when
    its path parameters all have one."""
    out: list[tuple[str, str, str, Any]] = []
    for template, path_item in spec["paths"].items():
        for method, operation in path_item.items():
            path = template
            complete = True
            for parameter in operation.get("parameters", []):
                value = _first_example(parameter)
                if parameter["in"] != "path":
                    continue
                if value is None:
                    complete = False
                    break
                path = path.replace("{" + parameter["name"] + "}", str(value))
            if not complete:
                continue
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            bodies = {name: e["value"] for name, e in content.get("examples", {}).items()}
            if "example" in content:
                bodies["example"] = content["example"]
            if bodies:
                out += [(method, path, name, body) for name, body in bodies.items()]
            elif path != template:
                out.append((method, path, "path", None))
    return out


def _model_names(node: Any, spec_models: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "model" and isinstance(value, str):
                spec_models.add(value)
            _model_names(value, spec_models)
    elif isinstance(node, list):
        for value in node:
            _model_names(value, spec_models)


def test_every_example_succeeds_against_a_real_server(spec: dict[str, Any], tmp_path: Path) -> None:
    requests = example_requests(spec)
    named = {"/generate", "/grid", "/interpolate", "/v2/models/{name}/infer"}
    assert {p for p in spec["paths"] if p in named} == named
    assert len([r for r in requests if r[3] is not None]) >= 8
    # A repository of just the bundled models the examples name (loading the whole zoo is slower).
    models: set[str] = set()
    _model_names([body for *_, body in requests], models)
    models |= {path.split("/")[3] for _, path, _, _ in requests if path.startswith("/v2/models/")}
    repository = tmp_path / "models"
    repository.mkdir()
    for name in sorted(models):
        assert (EXPORTED / name / "model.json").is_file(), f"examples name {name}, not in exported/"
        (repository / name).symlink_to(EXPORTED / name)
    with threaded_server(make_settings(repository)) as url, httpx.Client(base_url=url, timeout=30) as client:
        ready = client.get("/models").json()["models"]
        assert {m["name"] for m in ready if m["status"] == "ready"} == models
        for method, path, name, body in requests:
            resp = client.request(method.upper(), path, json=body)
            assert 200 <= resp.status_code < 300, f"{method} {path} example {name}: {resp.text[:300]}"
            if body is not None and method == "post" and not path.startswith("/v2/"):
                assert resp.headers["content-type"] == "image/png", (path, name)


def test_seed_bounds_are_exact_integers(spec: dict[str, Any]) -> None:
    text = json.dumps(spec)
    assert "9.223372036854776e+18" not in text
    for name in ("GenerateRequest", "GridRequest"):
        seed = spec["components"]["schemas"][name]["properties"]["seed"]
        integer = next(s for s in seed["anyOf"] if s.get("type") == "integer")
        assert integer["maximum"] == MAX_SEED == 2**63 - 1
        assert integer["minimum"] == 0
        assert isinstance(integer["minimum"], int)
    seeds = spec["components"]["schemas"]["InterpolateRequest"]["properties"]["seeds"]
    assert next(s for s in seeds["anyOf"] if s.get("type") == "array")["items"]["maximum"] == MAX_SEED
    # Every integer bound in the document is a JSON integer.
    assert '"minimum": 1.0' not in text


def test_z_is_one_vector_or_a_list_of_vectors(spec: dict[str, Any]) -> None:
    for name in ("GenerateRequest", "GridRequest"):
        forms = spec["components"]["schemas"][name]["properties"]["z"]["anyOf"]
        kinds = [(f.get("type"), f.get("items", {}).get("type")) for f in forms]
        assert kinds == [("array", "number"), ("array", "array"), ("null", None)], name
        assert forms[1]["items"]["items"] == {"type": "number"}
    pair = spec["components"]["schemas"]["InterpolateRequest"]["properties"]["z"]["anyOf"][0]
    assert pair["items"]["type"] == "array"  # two vectors, no shorthand
    assert pair["minItems"] == pair["maxItems"] == 2


def test_v2_routes_document_their_own_error_shape(spec: dict[str, Any]) -> None:
    v2 = {p: item for p, item in spec["paths"].items() if p.startswith("/v2/")}
    assert v2
    for path, item in v2.items():
        for operation in item.values():
            # A /v2 request that does not validate is a 400 in the protocol's shape, never a 422.
            assert "422" not in operation["responses"], path
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]["responses"]["400"]
    assert infer["content"]["application/json"]["schema"]["properties"] == {"error": {"type": "string"}}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # Our own routes keep theirs, in the service's error body.
    generate = spec["paths"]["/generate"]["post"]["responses"]["422"]
    assert generate["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_a_v2_validation_failure_is_a_400_in_the_protocol_shape(spec: dict[str, Any], zoo: Path) -> None:
    """What the document says about /v2 errors is what the server does."""
    with threaded_server(make_settings(zoo)) as url:
        resp = httpx.post(f"{url}/v2/models/{GRAY}/infer", content=b"{not json", timeout=10)
    assert resp.status_code == 400
    assert set(resp.json()) == {"error"}
    assert isinstance(resp.json()["error"], str)
