"""Where the server's time goes under load: ``py-spy record`` in raw (collapsed-stack) format, summarised.

``py-spy`` samples the server's Python stacks from outside (no code change, no restart) at
``rate`` Hz; each sample pauses the server for a few microseconds (non-blocking mode would
not, but then tears stacks). py-spy is pinned with the load generator, off the server's core.

Every sample is put in one bucket, the first of :data:`CATEGORIES` whose marker appears
anywhere in its stack (most specific first), so the buckets add up to 100 % of the sampled
active time; idle samples (a thread waiting in epoll or on a lock) are dropped by py-spy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from bench.load import pin_prefix

# (bucket, markers): a sample goes to the first bucket any of whose markers occurs in its stack.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("ORT session run", ("(onnxruntime/", "raw (service/runtime.py")),
    ("float→uint8", ("to_uint8",)),
    ("PNG encode (zlib, PIL)", ("png_bytes", "png_of_batch", "(PIL/")),
    ("latents (seed → z)", ("service/latents.py",)),
    ("batch assembly / split", ("service/batcher.py",)),
    ("metrics (prometheus_client)", ("(prometheus_client/",)),
    ("request validation (pydantic)", ("(pydantic/", "(pydantic_core", "service/schemas.py")),
    ("plan / card checks", ("service/plan.py",)),
    ("JSON (orjson / json)", ("orjson", "(json/")),
    ("service handlers / middleware", ("(service/",)),
    ("FastAPI routing + dependencies", ("(fastapi/",)),
    ("Starlette request / response", ("(starlette/",)),
    ("uvicorn HTTP protocol", ("(uvicorn/",)),
    ("asyncio / uvloop scheduling", ("(asyncio/", "uvloop", "run_forever")),
    ("threads / executors", ("(concurrent/", "(threading.py")),
]
OTHER = "other"

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy_available() -> bool:
    return shutil.which("py-spy") is not None


def record_command(
    pid: int, seconds: float, out: Path, rate: int = 100, cpus: str | None = None
) -> list[str]:
    return [
        *pin_prefix(cpus),
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
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


def categorise(frames: list[str]) -> str:
    stack = ";".join(short_frame(f) for f in frames)
    for name, markers in CATEGORIES:
        if any(marker in stack for marker in markers):
            return name
    return OTHER


def summarise(text: str, top: int = 15) -> dict[str, object]:
    samples = parse_collapsed(text)
    total = sum(c for _, c in samples)
    by_thread: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in samples:
        thread = frames[0] if frames and frames[0].startswith("thread") else "?"
        body = frames[1:] if thread != "?" else frames
        by_thread[_thread_label(thread)] += count
        by_category[categorise(body)] += count
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
