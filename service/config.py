"""Service settings: one pydantic-settings class, read from ``CONDGEN_*`` environment variables.

Every knob the service has lives here, so ``python -m service``, the container image and the tests
all configure the same object (``Settings(max_wait_ms=20)`` in a test, ``CONDGEN_MAX_WAIT_MS=20`` in
a deployment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


def default_intra_op_threads() -> int:
    """Half the cores, at least 1 and at most 4.

    The other half is left to the event loop (request parsing, PNG encoding) and to a second model's
    session; past about 4 threads the small generators served here stop getting faster.
    """
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONDGEN_", extra="ignore", validate_default=True)

    # --- where and how to listen -------------------------------------------------------------
    models_dir: Path = Field(
        default=Path("exported"), description="Directory holding <name>/model.onnx + model.json."
    )
    host: str = Field(default="127.0.0.1", description="Bind address (0.0.0.0 inside a container).")
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: LogLevel = "info"

    # --- ONNX Runtime --------------------------------------------------------------------------
    # Preference order; providers this onnxruntime build lacks are dropped (and logged), and the CPU
    # provider is always appended as the fallback. Comma-separated or a JSON list in the env var.
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    # Threads per session for one operator; 0 picks default_intra_op_threads().
    intra_op_threads: int = Field(default=0, ge=0, le=256)
    # Graphs here are a single chain of operators: parallel branches would gain nothing.
    inter_op_threads: int = Field(default=1, ge=1, le=64)
    warmup: bool = Field(default=True, description="Run each session once at load so no client pays for it.")
    # A conditional model runs every label id of its card once at load; a card listing labels
    # its graph cannot embed is refused then, not when a client asks for one of them.
    probe_labels: bool = True
    # IOBinding: inputs are bound from host memory and the output is allocated on the device the
    # session runs on, then copied to the host once. auto: on when a device provider (CUDA) runs
    # the session; off on the CPU provider, where a plain run already copies nothing. on: always
    # (the binding path on whatever device the session has).
    io_binding: Literal["auto", "on", "off"] = "auto"
    # glibc's mmap threshold, MiB (the trim threshold is 4x): session runs free their activations
    # and reuse them next run instead of page-faulting them back in (service/malloc.py). Applied
    # process-wide when the first model loads; 0 keeps the C library's defaults.
    malloc_threshold_mb: int = Field(default=32, ge=0, le=32)

    # --- dynamic batching (per model) ----------------------------------------------------------
    max_batch_size: int = Field(default=64, ge=1, le=4096, description="Images per batch.")
    # A batch runs as ONNX Runtime runs of at most this many rows, so a run's activations stay
    # within the CPU caches: per image, 28x28 generators gain nothing past a few dozen rows, and
    # larger images lose (raw figures per batch size: bench/results/RESULTS.md). One thread
    # hand-off per batch still serves all its runs.
    run_batch_size: int = Field(default=32, ge=1, le=4096, description="Rows per ONNX Runtime run.")
    # How long the first request of a batch may wait for company, in milliseconds. 0: none. Under
    # load batches form anyway: requests that arrive while a run is in flight (and those that
    # arrive in the same event-loop turn) make up the next batch. A window only delays lone
    # requests, and more than its length on a busy box: 1 ms took a single client from ~240 to
    # ~70 requests/s while other work shared the cores (5 ms cost 35% at 8 clients, n=1).
    max_wait_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    max_queue_images: int = Field(default=1024, ge=1, description="Images waiting per model before 429.")
    max_queue_requests: int = Field(default=512, ge=1, description="Requests waiting per model before 429.")

    # --- request limits -----------------------------------------------------------------------
    max_n: int = Field(default=64, ge=1, le=4096, description="Largest n (images) of one /generate request.")
    max_grid_images: int = Field(default=256, ge=1, le=16384, description="Largest /grid or /interpolate.")
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, description="Request body limit in bytes.")
    request_timeout_s: float = Field(default=30.0, gt=0.0, description="Longest wait for a result, seconds.")
    # A request still queued (its run not started) this long after it arrived is dropped before it
    # costs compute and answered 503 queue_timeout: under overload, answering late is worse than
    # answering "retry". None: the request timeout. Never longer than the request timeout.
    queue_timeout_s: float | None = Field(
        default=None, gt=0.0, description="Longest wait in the queue before a run starts, seconds."
    )
    drain_timeout_s: float = Field(
        default=10.0,
        ge=0.0,
        description="Shutdown grace: after SIGTERM, how long in-flight and queued work may take, seconds.",
    )

    # Serve well-formed generation requests without FastAPI's per-request routing and dependency
    # machinery (service/fastpath.py); answers are identical either way. Off: every request takes
    # the FastAPI routes (for comparison and debugging).
    fast_path: bool = Field(default=True, description="Generation requests skip FastAPI's routing.")
    # FastAPI's own OpenTelemetry spans, metrics and logs for every request. They export only
    # where the process has configured an OpenTelemetry provider (e.g. under
    # ``opentelemetry-instrument``); off, FastAPI also skips asking for one on every request
    # (about 5 µs each). The Prometheus metrics on /metrics are there either way.
    otel_telemetry: bool = Field(default=False, description="FastAPI's OpenTelemetry instrumentation.")
    # A request's wait for its result watches for the client hanging up (so a queued request is
    # withdrawn before compute) only once it has waited this long: the watcher costs more than
    # a fast answer's own bookkeeping, and a run this short is not worth saving.
    disconnect_watch_after_ms: float = Field(default=100.0, ge=0.0, le=60_000.0)

    # --- connections (service/connections.py) -------------------------------------------------
    # A tenth of nginx's 60 s: any real client sends its head in one packet.
    header_timeout_s: float = Field(
        default=10.0, gt=0.0, le=3600.0, description="Longest wait for a request head (408), seconds."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0.0, le=3600.0, description="Longest pause between reads of a body (408), seconds."
    )
    max_url_bytes: int = Field(
        default=8192, ge=256, le=1 << 20, description="Longest request target (414), bytes."
    )
    max_header_bytes: int = Field(
        default=16384, ge=1024, le=1 << 20, description="Largest request head, line and fields (431), bytes."
    )
    # Lowered at start-up to what the file-descriptor limit can hold.
    max_connections: int = Field(
        default=1024, ge=1, le=1 << 20, description="Most open connections; beyond: 503 and close."
    )

    # --- fault handling -----------------------------------------------------------------------
    # A session run that takes longer is treated as hung: its requests fail (503), and the model
    # is marked not ready while its session is re-created. Generous next to the milliseconds a
    # batch of these generators takes, even on a busy CPU.
    run_timeout_s: float = Field(default=10.0, gt=0.0, description="Longest one session run may take.")
    # Consecutive failed runs (exceptions or malformed output) after which the session is re-created.
    failure_threshold: int = Field(default=3, ge=1, le=1000)
    recovery_backoff_s: float = Field(
        default=1.0, gt=0.0, le=600.0, description="First pause between re-creation tries (doubles, to 60 s)."
    )

    # --- security and logs --------------------------------------------------------------------
    # Bearer token for /generate, /grid, /interpolate, the v2 infer endpoints and /admin/*. Health,
    # readiness, metrics, model cards and docs stay open. None: no authentication.
    api_key: SecretStr | None = Field(default=None, description="Bearer API key (CONDGEN_API_KEY).")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="json: one object per line (ts, level, logger, msg, request_id, ...); text: for a "
        "terminal; auto: text when stderr is a terminal, json otherwise.",
    )

    # --- encoding -----------------------------------------------------------------------------
    # 0 stores the pixels uncompressed (2-4x the bytes of 1 on generator output, at a quarter
    # of the encoding time); 1..9 deflate them with zlib's run-length strategy, which gives the
    # same bytes at every level (service/encode.py).
    png_compress_level: int = Field(default=1, ge=0, le=9)

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [p.strip() for p in text.split(",") if p.strip()]
        return value

    @field_validator("providers")
    @classmethod
    def _known_shape(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("providers must name at least one execution provider")
        return value

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Settings:
        largest = max(self.max_n, self.max_grid_images)
        if self.max_queue_images < largest:
            raise ValueError(
                f"max_queue_images ({self.max_queue_images}) must be >= the largest request "
                f"(max(max_n, max_grid_images) = {largest}), or such a request could never be queued"
            )
        return self

    @model_validator(mode="after")
    def _target_fits_the_head(self) -> Settings:
        if self.max_url_bytes > self.max_header_bytes:
            raise ValueError(
                f"max_url_bytes ({self.max_url_bytes}) must be <= max_header_bytes "
                f"({self.max_header_bytes}): the request target is part of the head"
            )
        return self

    @property
    def effective_intra_op_threads(self) -> int:
        return self.intra_op_threads or default_intra_op_threads()

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0

    @property
    def effective_queue_timeout_s(self) -> float:
        if self.queue_timeout_s is None:
            return self.request_timeout_s
        return min(self.queue_timeout_s, self.request_timeout_s)

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        # CONDGEN_API_KEY= (set but empty) must not mean "the key is the empty string".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_key")
    @classmethod
    def _key_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("api_key must be at least 16 characters")
        return value
