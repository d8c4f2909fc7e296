"""The WSGI application's guard (visits_site/wsgi.py): request bodies are read here, into
memory and within their limits, so Django never waits on a slow client and never spools an
upload to disk.

- a body larger than `max_body` (VISITS_MAX_BODY_BYTES) is refused with 413 before any of it is
  read (Content-Length), or as soon as a chunked body grows past it;
- the body must arrive within BODY_GRACE seconds plus one second per BODY_RATE bytes, else 408
  (in a gevent worker, the server's model; elsewhere, tests in one process, no deadline).

Either way the server then sends nothing more on the connection (half_close).
"""

import contextlib
import io
import logging
import socket

from counter import metrics
from counter.concurrency import gevent_active

logger = logging.getLogger(__name__)

BODY_GRACE = 10.0  # seconds any body gets
BODY_RATE = 8192  # bytes per second a larger body must keep up on average


def half_close(client: socket.socket) -> None:
    """Send nothing more on a refused connection, but let the client read the answer: closing
    a connection whose request is still unread resets it, and a reset can destroy the answer
    before the client reads it. What the client still sends is discarded by whoever holds the
    connection, for a bounded time, before it closes it."""
    with contextlib.suppress(OSError):
        client.shutdown(socket.SHUT_WR)


class BodyTooSlowError(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise BodyTooSlowError if the block takes longer than `seconds`, in a gevent worker."""
    if not gevent_active():
        yield
        return
    from gevent import Timeout  # loaded already in a gevent worker

    timeout = Timeout(seconds, BodyTooSlowError)
    timeout.start()
    try:
        yield
    finally:
        timeout.close()


class _Refusal:
    """A short plain-text answer after which the server sends nothing more on the connection:
    once it is sent, it half-closes it, and gunicorn discards what the client still sends, for
    at most its `keepalive` seconds, then closes it."""

    def __init__(self, environ: dict, start_response, status: str, text: str) -> None:
        body = text.encode()
        start_response(
            status,
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        self.body = [body]
        self.client = environ.get("gunicorn.socket")

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        if self.client is not None:
            half_close(self.client)


class RequestBodyGuard:
    """WSGI middleware: reads a request's body into memory within its limits, or refuses it."""

    def __init__(self, app, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    def __call__(self, environ: dict, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        length = int(environ.get("CONTENT_LENGTH") or 0)  # gunicorn has validated it
        if not length and not chunked:
            return self.app(environ, start_response)
        if length > self.max_body:
            return self._refuse(environ, start_response, "413 Content Too Large", length)
        expected = length if not chunked else self.max_body
        try:
            with _deadline(BODY_GRACE + expected / BODY_RATE):
                body = self._read(environ["wsgi.input"], length if not chunked else None)
        except BodyTooSlowError:
            return self._refuse(environ, start_response, "408 Request Timeout", expected)
        if len(body) > self.max_body:
            return self._refuse(environ, start_response, "413 Content Too Large", len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))  # Django reads no more than this
        return self.app(environ, start_response)

    def _read(self, stream, length: int | None) -> bytes:
        """`length` bytes, or with None (chunked) up to one byte past the limit."""
        wanted = length if length is not None else self.max_body + 1
        parts, received = [], 0
        while received < wanted:
            part = stream.read(min(65536, wanted - received))
            if not part:
                break
            parts.append(part)
            received += len(part)
        return b"".join(parts)

    def _refuse(self, environ: dict, start_response, status: str, size: int) -> _Refusal:
        reason = (
            f"request body too slow: the server reads at least {BODY_RATE} bytes/s after"
            f" {BODY_GRACE:.0f} s"
            if status.startswith("408")
            else f"request body of {size} bytes, over the limit of {self.max_body} bytes"
        )
        too_slow = status.startswith("408")
        metrics.refusal_count(metrics.BODY_TOO_SLOW if too_slow else metrics.BODY_TOO_LARGE)
        logger.warning(
            "%s %s %s from %s: %s",
            status.split()[0],
            environ.get("REQUEST_METHOD"),
            environ.get("PATH_INFO"),
            environ.get("REMOTE_ADDR"),
            reason,
        )
        return _Refusal(environ, start_response, status, f"{status[4:]}: {reason}.\n")
