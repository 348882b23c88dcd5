from __future__ import annotations

import pytest

from bench.profile import categorise, render_markdown, short_frame, summarise

_MAIN = "thread (1): MainThread;run (uvicorn/main.py:1)"
_ROUTE = _MAIN + ";handle (fastapi/routing.py:2)"
_WORKER = "thread (9): condgen-m_0;_worker (concurrent/futures/thread.py:8);run (service/runtime.py:9)"
STACKS = "\n".join(
    [
        _ROUTE + ";generate (service/app.py:3);png_of_batch (service/encode.py:4);save (PIL/Image.py:5) 30",
        _ROUTE + ";validate (pydantic/main.py:6) 20",
        _MAIN + ";data_received (uvicorn/protocols/http/httptools_impl.py:7) 10",
        _WORKER + ";raw (service/runtime.py:10);run (onnxruntime/capi/session.py:11) 40",
    ]
)


def test_summary_buckets_add_up_and_rank_frames() -> None:
    summary = summarise(STACKS)
    assert summary["samples"] == 100
    cats = {c["name"]: c["percent"] for c in summary["categories"]}  # type: ignore[attr-defined]
    assert cats == {
        "per batch: ORT session run": 40.0,
        "per request: PNG encode (zlib, PIL)": 30.0,
        "per request: validation (pydantic)": 20.0,
        "HTTP: uvicorn protocol (httptools)": 10.0,
    }
    threads = {t["name"]: t["percent"] for t in summary["threads"]}  # type: ignore[attr-defined]
    assert threads == {"MainThread": 60.0, "condgen-m": 40.0}
    top_self = summary["top_self"][0]  # type: ignore[index]
    assert top_self["name"] == "run (onnxruntime/capi/session.py)"
    inclusive = {r["name"]: r["samples"] for r in summary["top_inclusive"]}  # type: ignore[attr-defined]
    assert inclusive["run (uvicorn/main.py)"] == 60
    assert "ORT session run" in render_markdown(summary, "t")


def test_sync_dependencies_and_bare_threads() -> None:
    text = "\n".join(
        [
            "thread (1): MainThread;solve_dependencies (fastapi/dependencies/utils.py:1);"
            "run_in_threadpool (starlette/concurrency.py:2);notify (threading.py:3) 3",
            "thread (5): AnyIO worker thread;wait (threading.py:4) 1",
            "thread (1): MainThread 7",
        ]
    )
    summary = summarise(text)
    assert summary["samples"] == 4  # the bare thread frame is not a Python sample
    cats = {c["name"]: c["samples"] for c in summary["categories"]}  # type: ignore[attr-defined]
    assert cats == {"per request: sync FastAPI dependency → thread pool": 4}


@pytest.mark.parametrize(
    ("frame", "short"),
    [
        ("f (/x/lib/python3.11/site-packages/starlette/routing.py:12)", "f (starlette/routing.py)"),
        ("g (service/app.py:3)", "g (service/app.py)"),
        ("<module> (<frozen runpy>)", "<module> (<frozen runpy>)"),
    ],
)
def test_short_frame(frame: str, short: str) -> None:
    assert short_frame(frame) == short


def test_unknown_stacks_are_other() -> None:
    assert categorise(["main (mything.py:1)"]) == "other"
