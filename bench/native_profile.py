"""The server's on-CPU time by library: ``perf record`` samples, ``perf report --sort dso``.

py-spy (``bench/profile.py``) reads Python stacks and counts a thread as active whenever the OS
calls it runnable. On a server pinned to one core that includes a thread that has been woken and
is waiting its turn for the CPU: it shows up busy in whatever frame it woke in (the executor's
``queue.get``, the event loop's poll), so py-spy's "hand-off" and "event loop" buckets hold
waiting as well as work. perf samples what the CPU actually executes, native code included, and
so answers what the raw-limit goals turn on: what share of the server's CPU ONNX Runtime gets,
and what everything else (Python, numpy, zlib, the kernel) costs beside it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.load import pin_prefix

# (bucket, markers in the shared object's name); the first bucket with a marker wins.
LIBRARIES: list[tuple[str, tuple[str, ...]]] = [
    ("ONNX Runtime (session runs)", ("onnxruntime",)),
    ("Python interpreter", ("libpython", "python3")),
    ("zlib (PNG)", ("libz.", "zlib.", "libdeflate", "_imaging")),
    (
        "numpy (latents, float→uint8)",
        ("_multiarray", "bit_generator", "_generator", "_common.", "_pcg64", "_bounded", "libopenblas"),
    ),
    ("libc (memset, memcpy, malloc)", ("libc.so", "libc-", "libm.so", "libstdc++", "ld-linux")),
    ("HTTP: uvloop, httptools", ("loop.cpython", "parser.cpython", "url_parser", "_asyncio")),
    ("pydantic, orjson", ("_pydantic_core", "orjson")),
    ("kernel (syscalls, scheduling, page faults)", ("[kernel", "[vdso]")),
]
OTHER = "other"

# "    87.44%  onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so"
_ROW = re.compile(r"^\s*(?P<percent>\d+(?:\.\d+)?)%\s+(?P<dso>\S.*?)\s*$")


def perf_problem() -> str | None:
    """Why perf cannot profile here (not installed, or not permitted), or None when it can."""
    if shutil.which("perf") is None:
        return "perf is not installed (Debian: linux-perf)"
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run(
            ["perf", "record", "--quiet", "--output", str(Path(tmp) / "probe.data"), "--", "true"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if probe.returncode != 0:
        # Most often kernel.perf_event_paranoid forbidding an unprivileged user.
        return f"perf record is not permitted here: {probe.stderr.strip()[-300:]}"
    return None


def record_command(
    pid: int, seconds: float, out: Path, freq: int = 499, cpus: str | None = None
) -> list[str]:
    """Sample ``pid``'s threads at ``freq`` Hz for ``seconds`` (no call graphs: by library only)."""
    return [
        *pin_prefix(cpus),
        "perf",
        "record",
        "--freq",
        str(freq),
        "--pid",
        str(pid),
        "--output",
        str(out),
        "--quiet",
        "--",
        "sleep",
        f"{max(seconds, 0.1):g}",
    ]


def start_record(
    pid: int, seconds: float, out: Path, freq: int = 499, cpus: str | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        record_command(pid, seconds, out, freq, cpus), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def report(data: Path) -> str:
    """``perf report`` of a recording, one line per shared object, percent of all samples."""
    argv = ["perf", "report", "--input", str(data), "--sort", "dso", "--stdio", "-g", "none"]
    done = subprocess.run(
        [*argv, "--percent-limit", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"perf report failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def parse_report(text: str) -> list[tuple[str, float]]:
    """``perf report --sort dso`` lines → (shared object, percent), comments and blanks skipped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _ROW.match(line)
        if m:
            rows.append((m.group("dso"), float(m.group("percent"))))
    return rows


def library_of(dso: str) -> str:
    for name, markers in LIBRARIES:
        if any(marker in dso for marker in markers):
            return name
    return OTHER


def summarise(rows: list[tuple[str, float]], top: int = 12) -> dict[str, object]:
    """Percents by library bucket (ranked) and the top shared objects, renormalised to 100 %."""
    total = sum(p for _, p in rows)
    by_library: dict[str, float] = {}
    for dso, percent in rows:
        library = library_of(dso)
        by_library[library] = by_library.get(library, 0.0) + percent

    def share(p: float) -> float:
        return round(100.0 * p / total, 2) if total else 0.0

    ranked = sorted(by_library.items(), key=lambda kv: -kv[1])
    return {
        "libraries": [{"name": k, "percent": share(v)} for k, v in ranked],
        "top_dsos": [{"name": d, "percent": share(p)} for d, p in sorted(rows, key=lambda r: -r[1])[:top]],
    }


def render_markdown(summary: dict[str, object], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "On-CPU samples of the server process by library (`perf record`, every thread).",
        "",
        "| % | library |",
        "| ---: | --- |",
    ]
    for row in summary.get("libraries") or []:  # type: ignore[attr-defined]
        lines.append(f"| {row['percent']} | {row['name']} |")
    lines += ["", "| % | shared object |", "| ---: | --- |"]
    for row in summary.get("top_dsos") or []:  # type: ignore[attr-defined]
        lines.append(f"| {row['percent']} | `{row['name']}` |")
    lines.append("")
    return "\n".join(lines)
