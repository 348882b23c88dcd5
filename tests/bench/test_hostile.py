"""bench.hostile: a short run of two classes on the tiny zoo, and the pure parts (env, verdicts)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from bench.hostile import CRITERIA, RunConfig, parse_env, run_all, table
from bench.hostile_cases import CASES, CaseOptions, amplifying_bodies, status_key
from tests.bench.conftest import GRAY


def test_env_applies_to_all_classes_or_one() -> None:
    env = parse_env(["CONDGEN_MAX_N=8", "4:CONDGEN_PROBE=false"])
    assert env == {0: {"CONDGEN_MAX_N": "8"}, 4: {"CONDGEN_PROBE": "false"}}
    with pytest.raises(SystemExit):
        parse_env(["MAX_N=8"])


def test_status_keys_tell_retry_after_apart() -> None:
    assert status_key(503, {"Retry-After": "1"}) == "503"
    assert status_key(429, {}) == "429-no-RA"
    assert status_key(422, {}) == "422"


def test_amplifying_bodies_are_about_two_megabytes_of_json() -> None:
    for body in amplifying_bodies(GRAY).values():
        assert 1_900_000 < len(body) < 2_097_152
        assert json.loads(body)["model"] == GRAY


def test_short_run_measures_and_judges_each_class(
    tiny_zoo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("CONDGEN_")]:
        monkeypatch.delenv(key)  # the shell's settings must not change what is served
    options = CaseOptions(seconds=1.5, max_n=8)
    cfg = RunConfig(tiny_zoo, GRAY, options, env={0: {"CONDGEN_DRAIN_TIMEOUT_S": "3"}})
    results = asyncio.run(run_all([1, 6], cfg, tmp_path))

    assert [r["class"] for r in results] == [1, 6]
    for r in results:
        assert r["canary_probes"] >= 20  # a probe pair every 50 ms for at least 1.5 s
        assert 0 < r["canary_ms"]["p50"] <= r["canary_ms"]["p99"] <= r["canary_ms"]["max"]
        assert sum(r["canary_statuses"].values()) == r["canary_probes"]
        assert sum(r["hostile_statuses"].values()) > 0
        assert 10 < r["rss_mb"]["idle"] <= r["rss_mb"]["peak"]
        assert 0 < r["fds"]["idle"] <= r["fds"]["peak"]
        assert r["sigterm"]["bound_s"] == 4.0
        assert r["sigterm"]["exit_s"] is not None
        assert r["sigterm"]["exit_s"] < 4.0
        assert set(r["verdicts"]) == set(CRITERIA)
        assert r["pass"] == all(r["verdicts"].values())
    by_kind = results[1]["by_kind"]
    assert set(by_kind) >= {"hang-up mid-body", "bad method", "request line 64 KB"}
    assert by_kind["bad method"].keys() <= {"400", "closed", "reset"}

    saved = json.loads((tmp_path / "hostile.json").read_text())
    assert [c["name"] for c in saved["classes"]] == [CASES[1].name, CASES[6].name]
    markdown = (tmp_path / "HOSTILE.md").read_text()
    assert table(results) in markdown
    assert "canary_p99 " in markdown
