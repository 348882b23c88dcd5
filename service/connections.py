"""HTTP/1.1 connections: uvicorn's httptools protocol with the limits of a server that faces clients.

uvicorn reads a request's head and body with no deadline, keeps every connection it accepts, and
lets httptools gather a header field of any size by copying it on every read (its cost grows with
the square of its size). ``make run``, the container and the Kubernetes Service expose this server
directly, so it defends itself, per connection, the way nginx, Envoy and gunicorn do:

- the request head (request line and header fields) must be complete ``header_timeout_s`` after
  its first byte, or after the connection was accepted for its first request: 408, then close.
  A connection that sent nothing at all is only closed (a client's idle pre-connected socket
  must not read an answer to a request it never sent);
- the request body may pause at most ``body_timeout_s`` between two reads: 408, or only a close
  once the app has started answering; a body the app has not asked for yet never times out;
- the request target is at most ``max_url_bytes`` (414) and the whole head at most
  ``max_header_bytes`` (431), checked as the bytes arrive, so a slow endless header costs at most
  the limit (plus one read) in memory and time;
- beyond ``max_connections`` open connections a new one gets 503 with ``Retry-After`` and is
  closed at once, so idle or half-open sockets cannot use up the process's file descriptors (the
  one answer written before a request: a refusal a client can retry on, where a bare close or
  reset reads as a server fault);
- malformed HTTP (bad method, bad chunk size, a header line llhttp refuses) gets 400.

Each answer from this layer has the service's JSON error shape, a generated ``X-Request-ID`` and
``Connection: close``. Where no answer can be written (the app already answering, or a pipelined
request still ahead of it), the connection is only closed.

Deadlines are checked by one timer per server that sweeps the open connections, never by a timer
per request: a request pays for two stores and one clock read per read of its socket.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from service.config import Settings
from service.errors import ERROR_MEDIA_TYPE, error_payload
from service.middleware import new_request_id

logger = logging.getLogger(__name__)

# File descriptors kept for what is not a client connection: the listener, model files being
# (re)loaded, log streams, the event loop's own, ONNX Runtime's and Python's.
FD_RESERVE = 128
# How often the deadlines are checked, at most and at least (a tenth of the shortest timeout).
_SWEEP_MAX_S = 1.0
_SWEEP_MIN_S = 0.05
# A response head waits for its body and goes out with it in one write when the body is at most
# this long; a longer body is not copied to join it (the head is written first, as uvicorn does).
JOINED_BODY_MAX_BYTES = 64 * 1024
# uvicorn's callbacks, called directly: half the cost of super() on the per-request path.
_message_begin = HttpToolsProtocol.on_message_begin
_headers_complete = HttpToolsProtocol.on_headers_complete


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_url_bytes: int
    max_header_bytes: int
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings, max_connections: int | None = None) -> ConnectionLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_connections=max_connections or settings.max_connections,
        )


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one, as nginx's ``worker_rlimit_nofile`` and
    Go's runtime do; returns the soft limit now in force (-1 if unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):  # a hard limit the kernel will not grant (e.g. unlimited)
            pass
    return soft if soft != resource.RLIM_INFINITY else -1


def connection_cap(wanted: int, fd_limit: int) -> int:
    """``wanted`` connections, or fewer where the file-descriptor limit cannot hold them."""
    if fd_limit < 0:
        return wanted
    return max(1, min(wanted, fd_limit - FD_RESERVE))


class _HeadCapture:
    """Stands in for the transport while uvicorn writes a response head: keeps it, sends nothing."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head = b""

    def write(self, data: bytes) -> None:
        self.head += data

    def is_closing(self) -> bool:  # the cycle's receive() may ask while send() awaits a drain
        return self.transport.is_closing()


class _HeadFirst:
    """Stands in for the transport while uvicorn writes a body: puts the held head before it."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        self.transport.write(self.head + data)

    def close(self) -> None:
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request cycle, sending a response with a Content-Length in one socket write.

    uvicorn writes the status line and headers on ``http.response.start`` and the body on
    ``http.response.body``: two writes, and on loopback two passes through the TCP stack on the
    server's core, for every response. Here the head is held until the body's first message and
    written with it (``JOINED_BODY_MAX_BYTES``); uvicorn's own ``send`` still does all the
    checks and the bookkeeping, writing to a stand-in transport for the two messages.
    """

    held: bytes | None = None  # a response head not written yet

    async def send(self, message: ASGISendEvent) -> None:
        transport = self.transport
        if self.held is not None:
            head, self.held = self.held, None
            body = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if not 0 < len(body) <= JOINED_BODY_MAX_BYTES:
                if not self.disconnected:
                    transport.write(head)
                await super().send(message)
                return
            self.transport = _HeadFirst(transport, head)  # type: ignore[assignment]
        elif message["type"] == "http.response.start" and not self.response_started:
            capture = _HeadCapture(transport)
            self.transport = capture  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if (
                self.chunked_encoding is False
                and self.expected_content_length > 0
                and self.scope["method"] != "HEAD"
            ):
                self.held = capture.head  # a body follows: it takes the head along
            elif capture.head:
                transport.write(capture.head)
            return
        try:
            await super().send(message)
        finally:
            self.transport = transport


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the answer is in ``protocol._refusal``."""


class Sweeper:
    """One timer per server: checks every open connection's deadline, then re-arms while any is
    open. Also reports refused connections, once per sweep rather than once per connection."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        shortest = min(limits.header_timeout_s, limits.body_timeout_s)
        self.interval = min(_SWEEP_MAX_S, max(_SWEEP_MIN_S, shortest / 10))
        self.handle: asyncio.TimerHandle | None = None
        self.refused = 0

    def watch(self, protocol: LimitedHttpProtocol) -> None:
        if self.handle is None:
            loop, connections = protocol.loop, protocol.connections
            self.handle = loop.call_later(self.interval, self.sweep, loop, connections)

    def sweep(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        now = loop.time()
        for protocol in list(connections):
            if isinstance(protocol, LimitedHttpProtocol):
                protocol.check_deadlines(now)
        if self.refused:
            logger.warning(
                "refused %d connection(s) over the limit of %d open connections (max_connections)",
                self.refused,
                self.limits.max_connections,
            )
            self.refused = 0
        self.handle = loop.call_later(self.interval, self.sweep, loop, connections) if connections else None


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, size limits and a connection cap.

    Use :func:`protocol_class` to get one bound to a set of limits.
    """

    sweeper: ClassVar[Sweeper]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.sweeper.limits
        self.max_url = limits.max_url_bytes
        self.max_head = limits.max_header_bytes
        self.url = b""  # uvicorn sets it at a message's first byte; the limit checks read it earlier
        self.read_at = -1.0  # loop time of the latest read; -1: nothing read yet
        self.head_at: float | None = None  # when the head being read began; None: none is
        self.head_bytes = 0  # bytes of the head being read, from earlier reads
        self.head_fresh = False  # the head began in the read being parsed
        self.chunk = 0  # size of the read being parsed
        self.refusal: tuple[int, str, str] | None = None

    # --- connections ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_at = self.loop.time()
        limits = self.sweeper.limits
        if len(self.connections) > limits.max_connections:
            self.sweeper.refused += 1
            self.answer(503, "too_many_connections", "the server has too many open connections", log=False)
            return
        self.sweeper.watch(self)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, plus the read's time and size and the head-size check.
        self._unset_keepalive_if_required()
        self.read_at = self.loop.time()
        self.chunk = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            self.parse_failed(exc)
            return
        if self.head_at is not None:
            self.head_read()

    # --- parser callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        _message_begin(self)
        if self.head_at is None:  # a keep-alive connection's next request: its head starts now
            self.head_at = self.read_at
        self.head_bytes = 0
        self.head_fresh = True

    def on_headers_complete(self) -> None:
        self.head_at = None
        # Only a long target or a head that may have outgrown the limit in this read is measured.
        if len(self.url) > self.max_url or self.head_bytes + self.chunk > self.max_head:
            self.check_head(complete=True)
        _headers_complete(self)
        if type(self.cycle) is RequestResponseCycle:
            # uvicorn builds the cycle inside its callback, with no hook for the class.
            self.cycle.__class__ = OneWriteCycle

    # --- limits ---------------------------------------------------------------------------------
    def head_size(self) -> int:
        """The head's bytes parsed so far: target, and each field's name and value with ": " and
        CRLF (the method and version are a few bytes more; a field still arriving is not counted)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers or ())

    def head_read(self) -> None:
        """After a read that left the head incomplete: count it, refuse a head over a limit."""
        if self.head_fresh:  # part of this read may be the previous request's: measure, not count
            self.head_bytes = self.head_size()
            self.head_fresh = False
        else:
            self.head_bytes += self.chunk
        if len(self.url) > self.max_url or self.head_bytes > self.max_head:
            self.check_head(complete=False)
            if self.refusal is not None:
                self.answer(*self.refusal)

    def check_head(self, *, complete: bool) -> None:
        """Sets ``refusal`` when the head is over a limit; from a parser callback, also stops it."""
        if len(self.url) > self.max_url:
            message = f"the request target is longer than {self.max_url} bytes"
            self.refusal = (414, "uri_too_long", message)
        elif not complete or self.head_size() > self.max_head:
            message = f"the request head (request line and header fields) is over {self.max_head} bytes"
            self.refusal = (431, "headers_too_large", message)
        if complete and self.refusal is not None:
            raise _Refused

    def parse_failed(self, exc: httptools.HttpParserError) -> None:
        if self.refusal is not None:  # a limit, raised from a callback
            self.answer(*self.refusal)
            return
        cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
        if cause is not None:  # uvicorn's own callbacks refused the request (e.g. a non-ASCII path)
            logger.info("invalid request head: %s: %s", type(cause).__name__, cause)
            self.answer(400, "bad_request", "malformed HTTP request")
            return
        # llhttp's messages are fixed strings ("Invalid method encountered"), never client bytes.
        self.answer(400, "bad_request", f"malformed HTTP request: {exc}")

    def check_deadlines(self, now: float) -> None:
        """Called by the sweeper: time out a head or a stalled body."""
        if self.transport.is_closing():
            return
        limits = self.sweeper.limits
        if self.head_at is not None:
            if now - self.head_at > limits.header_timeout_s:
                if self.read_at < 0:  # nothing was ever sent: no request to answer
                    self.transport.close()
                    return
                message = f"the request head did not arrive within {limits.header_timeout_s:g} s"
                self.answer(408, "request_timeout", message)
            return
        if self.flow.read_paused:  # the app is not reading yet: the client is not at fault,
            self.read_at = now  # and its pause is counted from when the app reads again
            return
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.more_body
            and not cycle.waiting_for_100_continue  # the client waits for us, rightly
            and now - self.read_at > limits.body_timeout_s
        ):
            message = f"the request body paused for longer than {limits.body_timeout_s:g} s"
            self.answer(408, "request_timeout", message)

    # --- answers --------------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        # uvicorn's plain-text 400, in the service's shape.
        self.answer(400, "bad_request", "malformed HTTP request")

    def can_answer(self) -> bool:
        """Whether an answer written now is read as the answer to the failing request: not while
        the app is answering, nor while a request ahead of it is still unanswered."""
        cycle = self.cycle
        if cycle is None:
            return True
        if cycle.more_body:  # the failing request is this cycle's own: its body is being read
            return not cycle.response_started
        return cycle.response_complete  # a next request: only once the one ahead is answered

    def answer(self, status: int, error_type: str, message: str, *, log: bool = True) -> None:
        """Write a JSON error and close the connection (or only close it where no answer fits)."""
        self.head_at = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if not self.can_answer():
            self.transport.close()
            if log:
                logger.info(
                    "%d %s: %s; connection closed", status, error_type, message, extra={"client": self.peer()}
                )
            return
        if cycle is not None and not cycle.response_complete:
            # The app is still reading this request: it now sees the client gone and writes nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        request_id = new_request_id()
        body = orjson.dumps(error_payload(error_type, message))
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: " + ERROR_MEDIA_TYPE.encode() + b"\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: " + request_id.encode() + b"\r\n",
        ]
        if status == 503:
            head.append(b"retry-after: 1\r\n")
        head += [b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self.transport.close()
        if log:
            logger.info(
                "%d %s: %s",
                status,
                error_type,
                message,
                extra={"request_id": request_id, "status": status, "client": self.peer()},
            )

    def peer(self) -> str | None:
        return f"{self.client[0]}:{self.client[1]}" if self.client else None


def protocol_class(limits: ConnectionLimits) -> type[LimitedHttpProtocol]:
    """A :class:`LimitedHttpProtocol` bound to ``limits``, for ``uvicorn.Config(http=...)``, which
    builds one protocol per connection from a class."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"sweeper": Sweeper(limits)})
