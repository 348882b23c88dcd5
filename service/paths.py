"""Which paths are which, written once: generation, the protocol's, the protected, the quiet."""

from __future__ import annotations

GENERATE = "/generate"
GRID = "/grid"
INTERPOLATE = "/interpolate"
GENERATION_PATHS = frozenset({GENERATE, GRID, INTERPOLATE})

V2_PREFIX = "/v2"

# Probes hit these every few seconds; their access lines go to debug, not info.
QUIET_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", f"{V2_PREFIX}/health/live", f"{V2_PREFIX}/health/ready"}
)


def is_v2(path: str) -> bool:
    """Under the Open Inference Protocol's routes, whose errors take that protocol's shape."""
    return path.startswith(f"{V2_PREFIX}/")


def is_v2_infer(path: str) -> bool:
    return path.startswith(f"{V2_PREFIX}/models/") and path.rstrip("/").endswith("/infer")


def is_generation(path: str) -> bool:
    """Requests that run a model: counted in ``condgen_requests_total`` by model and status."""
    return path in GENERATION_PATHS or is_v2_infer(path)


def is_protected(path: str) -> bool:
    """Paths that need the API key: generation (ours and KServe v2's infer) and administration."""
    return is_generation(path) or path.startswith("/admin/")
