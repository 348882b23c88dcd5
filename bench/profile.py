"""Where the server's time goes under load: ``py-spy record`` in raw (collapsed-stack) format, summarised.

``py-spy`` samples the server's Python stacks from outside (no code change, no restart) at
``rate`` Hz, in non-blocking mode: the server is never paused (blocking mode, which stops every
thread per sample, cut a 1-core server's throughput several-fold here), at the price of a few
torn stacks. py-spy is pinned with the load generator, off the server's core.

Every sample is put in one bucket, the first of :data:`CATEGORIES` whose marker appears
anywhere in its stack (most specific first), so the buckets add up to 100 % of the sampled
active time; idle samples (a thread asleep in epoll or on a lock) are dropped by py-spy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.load import pin_prefix

# (bucket, markers). Specific work is found anywhere in a stack (the first bucket in this order
# wins); the generic layers (handlers, FastAPI, Starlette, uvicorn, the loop, threads), which
# also sit under everything else, count only for the frame nearest the leaf that names one.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("per batch: ORT session run", ("(onnxruntime/", "raw (service/runtime.py")),
    ("per batch: float→uint8", ("to_uint8",)),
    ("per batch: batch assembly / split", ("service/batcher.py",)),
    ("per request: PNG encode (zlib, PIL)", ("png_bytes", "png_of_batch", "(PIL/")),
    ("per request: latents (seed → z)", ("service/latents.py",)),
    (
        "per request: sync FastAPI dependency → thread pool",
        ("run_in_threadpool", "(anyio/to_thread.py", "AnyIO worker thread"),
    ),
    ("per request: validation (pydantic)", ("(pydantic/", "(pydantic_core", "service/schemas.py")),
    ("per request: metrics (prometheus_client)", ("(prometheus_client/",)),
    ("per request: plan / card checks", ("service/plan.py",)),
    ("per request: JSON (orjson / json)", ("orjson", "(json/")),
]
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("per request: service handlers / middleware", ("(service/",)),
    ("HTTP: FastAPI routing + dependencies", ("(fastapi/",)),
    ("HTTP: Starlette request / response", ("(starlette/",)),
    ("HTTP: uvicorn protocol (httptools)", ("(uvicorn/protocols",)),
    ("event loop: uvloop / asyncio internals", ("(asyncio/", "uvloop", "(uvicorn/", "(anyio/")),
    ("thread hand-off / wake-up", ("(threading.py", "(concurrent/futures/", "(queue.py")),
]
OTHER = "other"

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy_path() -> str | None:
    """py-spy next to this interpreter (a venv not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def py_spy_available() -> bool:
    return py_spy_path() is not None


def record_command(
    pid: int, seconds: float, out: Path, rate: int = 100, cpus: str | None = None
) -> list[str]:
    return [
        *pin_prefix(cpus),
        py_spy_path() or "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "--threads",
        "--output",
        str(out),
    ]


def start_record(
    pid: int, seconds: float, out: Path, rate: int = 100, cpus: str | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        record_command(pid, seconds, out, rate, cpus), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """``frame;frame;...;leaf count`` lines → (frames root first, count)."""
    samples = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            samples.append((m.group("stack").split(";"), int(m.group("count"))))
    return samples


def short_frame(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` → ``func (pkg/mod.py)``."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    if "site-packages/" in path:  # py-spy usually prints module-relative paths already
        path = path.split("site-packages/", 1)[1]
    return f"{m.group('func')} ({path})"


def categorise(frames: list[str], thread: str = "") -> str:
    """The bucket of one stack (``frames`` root first; ``thread`` is its thread's name)."""
    short = [short_frame(f) for f in frames]
    stack = thread + ";" + ";".join(short)
    for name, markers in CATEGORIES:
        if any(marker in stack for marker in markers):
            return name
    for frame in reversed(short):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


def summarise(text: str, top: int = 15) -> dict[str, object]:
    samples = parse_collapsed(text)
    total = 0
    by_thread: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in samples:
        thread = frames[0] if frames and frames[0].startswith("thread") else "?"
        body = [f for f in (frames[1:] if thread != "?" else frames) if f.strip()]
        if not body:
            continue  # a thread caught outside any Python frame
        total += count
        by_thread[_thread_label(thread)] += count
        by_category[categorise(body, _thread_label(thread))] += count
        if body:
            self_time[short_frame(body[-1])] += count
        for frame in {short_frame(f) for f in body}:
            inclusive[frame] += count

    def pct(counter: Counter[str], n: int | None = None) -> list[dict[str, object]]:
        return [
            {"name": k, "samples": v, "percent": round(100.0 * v / total, 1) if total else 0.0}
            for k, v in counter.most_common(n)
        ]

    return {
        "samples": total,
        "threads": pct(by_thread),
        "categories": pct(by_category),
        "top_self": pct(self_time, top),
        "top_inclusive": pct(inclusive, top),
    }


def _thread_label(frame: str) -> str:
    # py-spy --threads roots look like 'thread (12345): MainThread'; keep the name without the
    # id, and fold numbered pool threads ('condgen-m_0', 'AnyIO worker thread') together.
    name = frame.split("): ", 1)[1] if "): " in frame else frame
    return re.sub(r"_\d+$", "", name)


def render_markdown(summary: dict[str, object], title: str) -> str:
    lines = [f"### {title}", "", f"{summary['samples']} samples of active (non-idle) Python stacks.", ""]
    for key, heading in (
        ("categories", "Where the time goes (each sample in its most specific bucket)"),
        ("top_self", "Top frames by self time"),
        ("top_inclusive", "Top frames by inclusive time"),
    ):
        rows = summary.get(key) or []
        lines += [f"**{heading}**", "", "| % | samples | frame |", "| ---: | ---: | --- |"]
        for row in rows:  # type: ignore[attr-defined]
            name = str(row["name"]).replace("|", "\\|")
            lines.append(f"| {row['percent']} | {row['samples']} | `{name}` |")
        lines.append("")
    return "\n".join(lines)
