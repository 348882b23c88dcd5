"""glibc malloc tuning, so that session runs stop page-faulting their activations in every run.

Sessions run without ONNX Runtime's memory arena (see :func:`service.runtime.session_options`), so
each run mallocs its activations and frees them at the end. On a worker thread those blocks come
from one of glibc's per-thread arenas, and glibc hands the freed top of such an arena back to the
kernel (``MADV_DONTNEED``) once it exceeds the trim threshold, a few hundred KiB by default; the
next run touches the same memory again and takes a page fault per 4 KiB page. Measured here
(``bench.raw_ort``, ``cdcgan-mnist``, one thread): about a million minor faults in 30 s, and batch
64 at 1,379 images/s against 2,119 with the thresholds below (batch 16, small enough to stay under
the default threshold, ran at about 2,150 either way).

Raising the mmap and trim thresholds keeps freed run memory mapped for the next run. Resident
memory then holds each worker thread's largest run, which is what the arena kept too, but shared
by every session on that thread rather than per session.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit.
MAX_MMAP_THRESHOLD_MB = 32


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (``find_library`` runs ``ldconfig``)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _libc_mallopt() -> Callable[[int, int], int] | None:
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)  # not glibc (musl, macOS): nothing to tune
    if mallopt is None:
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def tune_malloc(mmap_threshold_mb: int) -> bool:
    """Keep blocks under ``mmap_threshold_mb`` MiB on the heap and freed memory mapped for reuse.

    The trim threshold is set to four times the mmap threshold. Process-wide and not undoable;
    0 leaves glibc's defaults. Returns True when glibc accepted both settings.
    """
    if mmap_threshold_mb <= 0:
        return False
    if mmap_threshold_mb > MAX_MMAP_THRESHOLD_MB:
        raise ValueError(
            f"mmap threshold must be at most {MAX_MMAP_THRESHOLD_MB} MiB, got {mmap_threshold_mb}"
        )
    mallopt = _libc_mallopt()
    if mallopt is None:
        logger.info("malloc tuning skipped: this C library has no mallopt")
        return False
    threshold = mmap_threshold_mb << 20
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, 4 * threshold))
    if not ok:
        logger.warning("malloc tuning refused by the C library (mmap threshold %d MiB)", mmap_threshold_mb)
    return ok


def _libc_malloc_trim() -> Callable[[int], int] | None:
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is None:
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return malloc_trim


def trim_heap() -> bool:
    """Hand free heap pages back to the kernel (glibc's ``malloc_trim``); False where there is none.

    With the thresholds above glibc keeps freed memory mapped, which is right for session runs but
    leaves the peak of a burst of large request bodies resident for good; a trim after such a burst
    costs the next session run one round of page faults.
    """
    malloc_trim = _libc_malloc_trim()
    return malloc_trim is not None and bool(malloc_trim(0))
