"""condgen.images: what is not a uint8 N×C×H×W .npy answer is a typed error, not a traceback."""

from __future__ import annotations

import io

import numpy as np
import pytest

from condgen.errors import CondgenError
from condgen.images import decode_npy


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_uint8_batch_decodes() -> None:
    batch = np.arange(2 * 1 * 3 * 3, dtype=np.uint8).reshape(2, 1, 3, 3)
    assert np.array_equal(decode_npy(_npy(batch)), batch)


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b"",
        _npy(np.zeros((2, 3), np.uint8)),
        _npy(np.zeros((1, 1, 2, 2))),
    ],
    ids=["html", "empty", "two-dims", "float"],
)
def test_anything_else_is_a_condgen_error(body: bytes) -> None:
    with pytest.raises(CondgenError) as raised:
        decode_npy(body)
    assert raised.value.error_type == "bad_answer"
