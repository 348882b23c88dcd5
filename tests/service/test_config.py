"""Settings: CONDGEN_* environment variables, validation, derived values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.__main__ import parse_args, settings_from_args
from service.config import Settings


def test_defaults_suit_a_small_box() -> None:
    s = Settings()
    assert s.models_dir == Path("exported")
    assert s.png_compress_level == 1
    assert 1 <= s.effective_intra_op_threads <= 4
    assert s.inter_op_threads == 1
    assert s.max_wait_s == 0.0  # a lone request never waits for company
    assert s.run_batch_size <= s.max_batch_size
    assert s.fast_path
    assert s.providers[-1] == "CPUExecutionProvider"


def test_environment_variables_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDGEN_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("CONDGEN_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("CONDGEN_MAX_WAIT_MS", "2.5")
    monkeypatch.setenv("CONDGEN_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("CONDGEN_INTRA_OP_THREADS", "3")
    s = Settings()
    assert s.models_dir == Path("/srv/models")
    assert s.max_batch_size == 16
    assert s.max_wait_s == pytest.approx(0.0025)
    assert s.providers == ["CPUExecutionProvider"]
    assert s.effective_intra_op_threads == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CUDAExecutionProvider, CPUExecutionProvider", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        ('["CPUExecutionProvider"]', ["CPUExecutionProvider"]),
    ],
)
def test_providers_accept_commas_or_json(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("CONDGEN_PROVIDERS", raw)
    assert Settings().providers == expected


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="max_queue_images"):
        Settings(max_queue_images=10, max_n=64)
    with pytest.raises(ValidationError):
        Settings(png_compress_level=10)
    with pytest.raises(ValidationError):
        Settings(providers=[])


def test_command_line_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDGEN_PORT", "9000")
    monkeypatch.setenv("CONDGEN_MAX_N", "8")
    s = settings_from_args(parse_args(["--models", "zoo", "--host", "0.0.0.0"]))
    assert s.models_dir == Path("zoo")
    assert s.host == "0.0.0.0"
    assert s.port == 9000
    assert s.max_n == 8
    assert settings_from_args(parse_args(["--port", "8123"])).port == 8123
