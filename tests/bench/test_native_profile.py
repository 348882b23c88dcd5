from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.native_profile import (
    OTHER,
    library_of,
    parse_report,
    perf_problem,
    render_markdown,
    report,
    start_record,
    summarise,
)

# The shape of `perf report --sort dso --stdio -g none`, from a condgen server at n=64.
REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 4K of event 'cpu-clock:ppp'
# Event count (approx.): 1212121200
#
# Overhead  Shared Object
# ........  ..........................................................
#
    87.44%  onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so
     5.30%  libpython3.11.so.1.0
     2.00%  libc.so.6
     1.51%  libz.so.1.2.13
     1.38%  _multiarray_umath.cpython-311-x86_64-linux-gnu.so
     1.05%  [kernel.kallsyms]
     0.51%  loop.cpython-311-x86_64-linux-gnu.so
     0.38%  bit_generator.cpython-311-x86_64-linux-gnu.so
     0.09%  _pydantic_core.cpython-311-x86_64-linux-gnu.so
     0.02%  mystery.so
"""


def test_a_report_is_bucketed_by_library_and_adds_up() -> None:
    rows = parse_report(REPORT)
    assert len(rows) == 10
    assert rows[0] == ("onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so", 87.44)
    summary = summarise(rows)
    libraries = {r["name"]: r["percent"] for r in summary["libraries"]}  # type: ignore[attr-defined]
    assert summary["libraries"][0]["name"] == "ONNX Runtime (session runs)"  # type: ignore[index]
    assert libraries["ONNX Runtime (session runs)"] == pytest.approx(100 * 87.44 / 99.68, abs=0.01)
    assert libraries["numpy (latents, float→uint8)"] == pytest.approx(100 * 1.76 / 99.68, abs=0.01)
    assert libraries[OTHER] == pytest.approx(0.02, abs=0.01)
    assert sum(libraries.values()) == pytest.approx(100.0, abs=0.05)
    markdown = render_markdown(summary, "cdcgan-mnist n=64 c=32")
    assert "| 87.72 | ONNX Runtime (session runs) |" in markdown
    assert "`libz.so.1.2.13`" in markdown


def test_shared_objects_map_to_their_library() -> None:
    assert library_of("libpython3.11.so.1.0") == "Python interpreter"
    assert library_of("python3.11") == "Python interpreter"  # a statically linked interpreter
    assert library_of("[kernel.kallsyms]") == "kernel (syscalls, scheduling, page faults)"
    assert library_of("_pcg64.cpython-311-x86_64-linux-gnu.so") == "numpy (latents, float→uint8)"
    assert library_of("libz-ng.so.2") == OTHER


def test_perf_profiles_a_real_python_process(tmp_path: Path) -> None:
    problem = perf_problem()
    if problem is not None:
        pytest.skip(problem)
    loop = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: sum(range(1000))"
    busy = subprocess.Popen([sys.executable, "-c", loop])
    try:
        data = tmp_path / "perf.data"
        recorder = start_record(busy.pid, 1.0, data)
        _, err = recorder.communicate(timeout=60)
        assert recorder.returncode == 0, err
    finally:
        busy.kill()
        busy.wait()
    summary = summarise(parse_report(report(data)))
    libraries = {r["name"]: r["percent"] for r in summary["libraries"]}  # type: ignore[attr-defined]
    # A pure-Python loop: the interpreter holds most of the samples, ONNX Runtime none.
    assert libraries.get("Python interpreter", 0.0) > 50.0
    assert "ONNX Runtime (session runs)" not in libraries
