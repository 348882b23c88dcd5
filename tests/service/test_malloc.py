"""glibc malloc tuning: freed run memory stays mapped, measured as page faults in a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service.malloc import MAX_MMAP_THRESHOLD_MB, trim_heap, tune_malloc

# What a session run does to memory, on a worker thread like the batcher's: allocate a few
# MiB of activations, touch them, free them, again and again. Prints the minor page faults.
_WORKLOAD = """
import json, resource, sys, threading
import numpy as np
from service.malloc import tune_malloc
tuned = tune_malloc(int(sys.argv[1]))
def runs():
    for _ in range(40):
        blocks = [np.ones(size, dtype=np.uint8) for size in (3 << 20, 1 << 20, 5 << 19)]
        del blocks
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
worker = threading.Thread(target=runs)
worker.start()
worker.join()
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(threshold_mb: int) -> dict[str, int | bool]:
    command = [sys.executable, "-c", _WORKLOAD, str(threshold_mb)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    result: dict[str, int | bool] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_tuned_malloc_stops_refaulting_freed_run_memory() -> None:
    default = _faults(0)
    tuned = _faults(32)
    assert default["tuned"] is False
    assert tuned["tuned"] is True
    # 40 rounds of 4.5 MiB: about 46,000 faults when each round's memory is handed back, a
    # round's worth (about 1,150) when it stays mapped.
    assert int(default["faults"]) > 20_000
    assert int(tuned["faults"]) < int(default["faults"]) // 5


def test_an_impossible_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        tune_malloc(MAX_MMAP_THRESHOLD_MB + 1)


def test_trim_heap_hands_freed_heap_pages_back() -> None:
    chunks = [bytearray(64 * 1024) for _ in range(800)]  # 50 MiB in blocks glibc keeps on the heap
    del chunks
    assert trim_heap() is True  # malloc_trim(0) says it released memory
