"""The in-process cost of a request: real app and sessions, or blank batches, on the tiny zoo."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.app_cost import main, measure


@pytest.mark.parametrize("session", [True, False])
def test_requests_are_served_and_costed(tiny_zoo: Path, session: bool) -> None:
    cost = measure(tiny_zoo, "cond-gray", label=3, n=4, concurrency=4, seconds=0.3, session=session)
    assert cost.requests > 0
    assert cost.session is session
    assert cost.cpu_us_per_request > 0
    assert cost.requests_per_s == pytest.approx(cost.requests / cost.seconds, rel=0.01)
    if session:  # the session's own CPU per image, counted on the thread its runs use
        assert cost.session_cpu_us_per_image is not None
        assert 0 < cost.session_cpu_us_per_image * 4 < cost.cpu_us_per_request
    else:
        assert cost.session_cpu_us_per_image is None


def test_an_unconditional_model_takes_no_label(tiny_zoo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--models-dir", str(tiny_zoo), "--model", "uncond", "--label", "-1", "--seconds", "0.3"])
    assert '"model": "uncond"' in capsys.readouterr().out


def test_a_request_the_app_refuses_stops_the_measurement(tiny_zoo: Path) -> None:
    with pytest.raises(RuntimeError, match="answered 422"):
        measure(tiny_zoo, "uncond", label=3, concurrency=1, seconds=0.3)  # a label for an unconditional model
