"""Hostile connections against a real ``python -m service``: heads and bodies that never finish,
heads too large, more sockets than the cap, malformed HTTP (service/connections.py).

Every exchange is raw bytes on a socket to 127.0.0.1, bounded in time; the server is small-limited
(1 s timeouts, 20 connections) so each case takes a second or two.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pydantic import ValidationError
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from service.config import Settings
from service.connections import FD_RESERVE, JOINED_BODY_MAX_BYTES, OneWriteCycle, connection_cap
from tests.service.conftest import UNCOND
from tests.service.process import ServiceProcess, run_service

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0
CAP = 20
HEAD_LIMIT = 4096
URL_LIMIT = 1024
# A deadline is honoured within one sweep (a tenth of the timeout), plus a loaded machine's slack.
LATE_S = 1.0


@pytest.fixture(scope="module")
def service(zoo: Path) -> Iterator[ServiceProcess]:
    with run_service(
        zoo,
        header_timeout_s=TIMEOUT_S,
        body_timeout_s=TIMEOUT_S,
        max_connections=CAP,
        max_header_bytes=HEAD_LIMIT,
        max_url_bytes=URL_LIMIT,
    ) as running:
        yield running


def _connect(service: ServiceProcess) -> socket.socket:
    port = int(service.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_all(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    """Everything until the server closes (a reset after its answer counts as a close)."""
    sock.settimeout(timeout_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _assert_error(raw: bytes, status: int, error_type: str) -> dict[str, str]:
    assert raw, "the server closed without an answer"
    got, headers, body = _parse(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert len(headers["x-request-id"]) == 32
    error = json.loads(body)["error"]
    assert error["type"] == error_type, error
    assert error["message"], error
    return headers


def _healthz_s(service: ServiceProcess) -> float:
    started = time.perf_counter()
    assert httpx.get(f"{service.url}/healthz", timeout=5.0).status_code == 200
    return time.perf_counter() - started


def _wait_readable(sock: socket.socket, service: ServiceProcess, limit_s: float) -> tuple[float, float]:
    """Wait for the server to answer or close ``sock``, probing /healthz meanwhile; returns the
    wait and the slowest probe."""
    started = time.monotonic()
    slowest = 0.0
    while not select.select([sock], [], [], 0.1)[0]:
        slowest = max(slowest, _healthz_s(service))
        assert time.monotonic() - started < limit_s, "no answer in time"
    return time.monotonic() - started, slowest


@pytest.mark.parametrize(
    ("request_bytes", "status", "error_type"),
    [
        (b"GE T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request"),
        (b"BREW /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "bad_request"),  # TLS to a plain port
        (b"GET /h\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400, "bad_request"),
        (
            b"POST /generate HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"GET /" + b"a" * URL_LIMIT + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nCookie: " + b"c" * HEAD_LIMIT + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * (HEAD_LIMIT // 8) + b"\r\n", 431, "headers_too_large"),
    ],
    ids=[
        "space-in-method",
        "unknown-method",
        "tls",
        "non-ascii-path",
        "control-in-header",
        "bad-content-length",
        "bad-chunk-size",
        "long-target",
        "long-field",
        "many-fields",
    ],
)
def test_malformed_or_oversized_requests_get_the_json_error_shape(
    service: ServiceProcess, request_bytes: bytes, status: int, error_type: str
) -> None:
    with _connect(service) as sock:
        sock.sendall(request_bytes)
        _assert_error(_read_all(sock), status, error_type)


def test_a_head_that_never_finishes_is_cut_with_408_while_others_are_served(service: ServiceProcess) -> None:
    with _connect(service) as stalled, _connect(service) as trickling:
        stalled.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        trickling.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        slowest = 0.0
        # A byte every 100 ms keeps the connection busy: the timeout is for the whole head.
        while not select.select([trickling], [], [], 0.1)[0]:
            trickling.sendall(b"X")
            slowest = max(slowest, _healthz_s(service))
            assert time.monotonic() - started < TIMEOUT_S + LATE_S, "the trickled head was not cut"
        waited = time.monotonic() - started
        assert TIMEOUT_S * 0.9 <= waited <= TIMEOUT_S + LATE_S
        _assert_error(_read_all(trickling), 408, "request_timeout")
        _assert_error(_read_all(stalled), 408, "request_timeout")
        assert slowest < 0.5, f"/healthz took {slowest:.3f} s while heads were stalled"


def test_a_keep_alive_connections_next_head_is_timed_too(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\n")
        _wait_readable(sock, service, TIMEOUT_S + LATE_S)
        raw = _read_all(sock)
        first, _, rest = raw.partition(b'{"status":"ok"}')
        assert _parse(first)[0] == 200
        _assert_error(rest, 408, "request_timeout")


def test_a_socket_that_sends_nothing_is_closed_without_an_answer(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        waited, _ = _wait_readable(sock, service, TIMEOUT_S + LATE_S)
        assert _read_all(sock) == b""
        assert waited >= TIMEOUT_S * 0.9


def test_a_stalled_body_is_cut_with_408_and_a_slow_one_is_not(service: ServiceProcess) -> None:
    body = json.dumps({"model": UNCOND, "seed": 1}).encode()
    head = (
        b"POST /generate HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    )
    with _connect(service) as stalled, _connect(service) as slow:
        stalled.sendall(head % len(body) + body[:5])
        slow.sendall(head % len(body))
        started = time.monotonic()
        # One byte every 0.3 s is slow but never pauses for the timeout: it is served.
        for i, byte in enumerate(body):
            time.sleep(0.3 * TIMEOUT_S if i < 5 else 0.0)
            slow.sendall(bytes([byte]))
        _wait_readable(stalled, service, TIMEOUT_S + LATE_S)
        _assert_error(_read_all(stalled), 408, "request_timeout")
        assert time.monotonic() - started <= TIMEOUT_S + LATE_S + 2.0
        slow.settimeout(5.0)
        status, headers, _ = _parse(slow.recv(65536))
        assert status == 200
        assert headers["content-type"] == "image/png"


def test_an_endless_header_gets_431_after_the_limit_without_memory_growth(service: ServiceProcess) -> None:
    process = psutil.Process(service.pid)
    before = process.memory_info().rss
    sent = 0
    budget = 8 << 20  # unbounded before: the whole budget would be buffered (and copied per read)
    started = time.monotonic()
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Endless: ")
        try:
            while sent < budget and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"a" * 4096)
                sent += 4096
                time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = _read_all(sock)
    elapsed = time.monotonic() - started
    grown = process.memory_info().rss - before
    _assert_error(raw, 431, "headers_too_large")
    assert sent <= HEAD_LIMIT + (512 << 10), f"answered only after {sent} bytes"
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert grown < (4 << 20), f"RSS +{grown} bytes"


def test_heads_under_the_limit_and_bodies_past_it_are_served(service: ServiceProcess) -> None:
    cookie = b"c" * (HEAD_LIMIT - 200)
    body = json.dumps({"model": UNCOND, "seed": 1}).encode() + b" " * (4 * HEAD_LIMIT)
    requests = [
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nCookie: " + cookie + b"\r\n\r\n",
        b"GET /healthz?" + b"q" * (URL_LIMIT - 20) + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        # A head and a body larger than the head limit in one read: only the head is measured.
        b"POST /generate HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body,
    ]
    for request in requests:
        with _connect(service) as sock:
            sock.sendall(request)
            sock.settimeout(5.0)
            assert _parse(sock.recv(65536))[0] == 200


def test_pipelined_requests_are_answered_in_order(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n" * 2
            + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        raw = _read_all(sock)
    assert raw.count(b"HTTP/1.1 200 OK") == 3


def test_idle_sockets_beyond_the_cap_are_refused_and_the_server_recovers(service: ServiceProcess) -> None:
    process = psutil.Process(service.pid)
    fds_before = process.num_fds()
    idle = [_connect(service) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        refused = [_connect(service) for _ in range(3 * CAP)]
        for sock in refused:
            assert _assert_error(_read_all(sock, 5.0), 503, "too_many_connections")["retry-after"] == "1"
            sock.close()
        assert process.num_fds() <= fds_before + CAP + 2
        assert httpx.get(f"{service.url}/healthz", timeout=5.0).status_code == 503
        # The idle sockets time out as heads that never came; then a client gets in again.
        started = time.monotonic()
        while (status := httpx.get(f"{service.url}/healthz", timeout=5.0).status_code) != 200:
            assert status == 503
            assert time.monotonic() - started < TIMEOUT_S + LATE_S, "the idle sockets were kept"
            time.sleep(0.05)
        assert all(_read_all(sock, 5.0) == b"" for sock in idle)
    finally:
        for sock in idle:
            sock.close()


def test_settings_validate_the_connection_limits() -> None:
    defaults = Settings()
    assert (defaults.header_timeout_s, defaults.body_timeout_s) == (10.0, 30.0)
    limits = (defaults.max_url_bytes, defaults.max_header_bytes, defaults.max_connections)
    assert limits == (8192, 16384, 1024)
    with pytest.raises(ValidationError, match="max_url_bytes"):
        Settings(max_url_bytes=20_000, max_header_bytes=16_384)
    bad: list[dict[str, Any]] = [
        {"header_timeout_s": 0},
        {"body_timeout_s": -1},
        {"max_connections": 0},
        {"max_header_bytes": 10},
    ]
    for values in bad:
        with pytest.raises(ValidationError):
            Settings(**values)


def test_the_connection_cap_stays_below_the_file_limit() -> None:
    assert connection_cap(1024, 1 << 20) == 1024
    assert connection_cap(1024, 1024) == 1024 - FD_RESERVE
    assert connection_cap(1024, -1) == 1024
    assert connection_cap(1024, 10) == 1


# ------------------------------------------------------------------------ one write per response
class RecordingTransport(asyncio.Transport):
    """The socket's side of a cycle: what was written, in how many writes, and whether it closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:  # an empty write sends nothing (uvloop and asyncio return at once)
            self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _cycle(
    cls: type[RequestResponseCycle], method: str = "POST", keep_alive: bool = True
) -> RequestResponseCycle:
    transport = RecordingTransport()
    scope: Any = {"type": "http", "method": method, "path": "/generate", "http_version": "1.1"}
    return cls(
        scope=scope,
        transport=transport,
        flow=FlowControl(transport),
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[(b"server", b"condgen")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


async def _exchange(cycle: RequestResponseCycle, messages: list[dict[str, Any]]) -> RecordingTransport:
    for message in messages:
        await cycle.send(message)  # type: ignore[arg-type]
    assert isinstance(cycle.transport, RecordingTransport)  # the stand-ins are gone
    return cycle.transport


def _response(body: bytes, length: bool = True) -> list[dict[str, Any]]:
    headers = [(b"content-type", b"image/png")]
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    return [
        {"type": "http.response.start", "status": 200, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


@pytest.mark.parametrize(
    ("method", "body", "length", "keep_alive", "writes"),
    [
        ("POST", b"\x89PNG" + b"x" * 300, True, True, 1),  # the common case: one write
        ("POST", b"x" * 300, True, False, 1),  # Connection: close, then closed
        ("POST", b"x" * (JOINED_BODY_MAX_BYTES + 1), True, True, 2),  # not copied to join
        ("POST", b"x" * 300, False, True, 2),  # chunked: the head goes at once
        ("HEAD", b"x" * 300, True, True, 1),  # the head alone
        ("POST", b"", True, True, 1),  # an empty body
    ],
)
async def test_a_response_leaves_in_one_write_with_the_bytes_uvicorn_would_send(
    method: str, body: bytes, length: bool, keep_alive: bool, writes: int
) -> None:
    plain = await _exchange(_cycle(RequestResponseCycle, method, keep_alive), _response(body, length))
    joined = await _exchange(_cycle(OneWriteCycle, method, keep_alive), _response(body, length))
    assert b"".join(joined.writes) == b"".join(plain.writes)
    assert len(joined.writes) == writes
    assert joined.closed == plain.closed == (not keep_alive)


async def test_a_streamed_body_gets_its_head_before_the_first_part() -> None:
    cycle = _cycle(OneWriteCycle)
    start, _ = _response(b"", length=False)
    transport = await _exchange(cycle, [start])
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    await cycle.send({"type": "http.response.body", "body": b"part", "more_body": True})
    assert len(transport.writes) == 2


@pytest.mark.parametrize("size", [10, JOINED_BODY_MAX_BYTES + 1])
async def test_a_head_held_for_a_client_that_left_is_dropped(size: int) -> None:
    cycle = _cycle(OneWriteCycle)
    start, body = _response(b"x" * size)
    transport = await _exchange(cycle, [start])
    assert transport.writes == []  # held for the body
    cycle.disconnected = True
    await cycle.send(body)  # type: ignore[arg-type]
    assert transport.writes == []


def test_the_server_serves_through_the_one_write_cycle(service: ServiceProcess) -> None:
    """End to end: every request of a keep-alive connection answered whole, in order."""
    with httpx.Client(base_url=service.url, timeout=10.0) as client:
        for seed in range(3):
            response = client.post("/generate", json={"model": UNCOND, "seed": seed})
            assert response.status_code == 200
            assert response.content.startswith(b"\x89PNG")
            assert int(response.headers["content-length"]) == len(response.content)
        refused = client.post("/generate", json={"model": "no-such-model"})
        assert refused.status_code == 404
        assert refused.json()["error"]["type"] == "unknown_model"
        assert client.head("/healthz").status_code == 405  # a head alone: no body to wait for
