"""Request bodies: what a malformed body costs is bounded by its first bad item or its length cap."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from service.schemas import MAX_LATENT_DIM, MAX_LIST_ITEMS, GenerateRequest, GridRequest, InterpolateRequest


@pytest.mark.parametrize(("field", "item"), [("labels", True), ("labels", []), ("z", []), ("z", "a")])
@pytest.mark.parametrize("model", [GenerateRequest, GridRequest])
def test_a_long_list_of_items_is_one_error(
    model: type[GenerateRequest | GridRequest], field: str, item: object
) -> None:
    # ~2 MB of items, valid ones ([] is a latent) or not: the first bad item or the cap ends it.
    body = json.dumps({"model": "m", field: [item] * (MAX_LIST_ITEMS * 40)})
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(body)
    assert len(caught.value.errors()) == 1
    if field == "z" and item == []:  # every item is a valid latent: only the cap stops it
        assert caught.value.errors()[0]["type"] == "too_long"


def test_a_list_of_bad_items_within_the_cap_stops_at_the_first() -> None:
    with pytest.raises(ValidationError) as caught:
        GenerateRequest.model_validate_json(json.dumps({"model": "m", "labels": [True] * MAX_LIST_ITEMS}))
    [only] = caught.value.errors()
    assert only["loc"] == ("labels", 0)


def test_a_latent_longer_than_any_model_takes_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        InterpolateRequest.model_validate_json(
            json.dumps({"model": "m", "z": [[0.0] * (MAX_LATENT_DIM + 1), [0.0]]})
        )
    assert [e["type"] for e in caught.value.errors()] == ["too_long"]
    ok = InterpolateRequest.model_validate_json(json.dumps({"model": "m", "z": [[0.0] * 512, [0.0] * 512]}))
    assert ok.z is not None
    assert len(ok.z[0]) == 512
