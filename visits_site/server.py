"""What keeps one pod's server answering when its clients are slow, idle, greedy or oversized.

gunicorn runs gevent workers (gunicorn.conf.py): a connection costs a greenlet, not a worker,
so clients that send slowly or not at all can no longer take every worker, and the probes with
them, as they did with sync and gthread workers (docs/performance.md). The limits:

- the request head must arrive within gunicorn's `keepalive` (5 s) of the connection opening or
  of the previous answer, else the connection is closed (gunicorn's gevent worker);
- a body larger than `max_body` is refused with 413 before any of it is read (Content-Length),
  or as soon as a chunked body grows past it; the body must arrive within BODY_GRACE seconds
  plus one second per BODY_RATE bytes, else 408. Either way the connection is then closed.
  Bodies are read here, into memory, so Django never waits on a client and never spools to disk;
- a worker holds at most `worker_connections` (1000) connections: one more gets 503 and is
  closed at once, instead of waiting unanswered in the listen queue;
- a client must take its answer within SEND_TIMEOUT seconds (a file's, each part of it), else
  the connection is closed: one that never reads would hold its connection for ever.

A request whose target names a host (absolute form, `GET http://name/ HTTP/1.1`) is checked
against ALLOWED_HOSTS by that host, not by its Host header (AbsoluteFormHost).

No Django import here (counter.metrics needs no set-up): gunicorn's master loads the worker
class.
"""

import contextlib
import functools
import io
import logging
import socket
import time
import urllib.parse

import gevent
from gunicorn.workers import ggevent

from counter import metrics
from visits_site.accept import SharingServer, connection_shares

logger = logging.getLogger("visits_site.server")

BODY_GRACE = 10.0  # seconds any body gets
BODY_RATE = 8192  # bytes per second a larger body must keep up on average
SEND_TIMEOUT = 30.0  # seconds a client has to take its answer
_REFUSE_ROOM = 100  # connections beyond the cap that can still be answered 503
_NEXT_LOOP_TURN = 1e-6  # seconds: any delay above 0 waits for the loop's next poll
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 48\r\n\r\n"
    b"Service unavailable: too many open connections.\n"
)


class Worker(ggevent.GeventWorker):
    """gunicorn's gevent worker, answering 503 beyond `worker_connections` open connections and
    sharing new connections with the other workers (visits_site/accept.py)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        """In gunicorn's master, before the fork: the worker's slot in the connection shares."""
        super().__init__(*args, **kwargs)
        self.open_connections = 0
        self.refused_logged_at = 0.0
        self.not_taken_logged_at = 0.0
        # The connection pool gets room beyond the cap, so refusals are answered too.
        self.worker_connections = self.cfg.worker_connections + _REFUSE_ROOM
        self.shares = connection_shares()
        self.slot = self.shares.claim()

    def init_process(self) -> None:
        if self.slot is not None:
            self.shares.start(self.slot)
            # gunicorn's run() makes its listening servers from this name, in this process only.
            ggevent.StreamServer = functools.partial(
                SharingServer, shares=self.shares, slot=self.slot
            )
        super().init_process()

    def release_slot(self) -> None:
        """In the master, once the worker is gone (gunicorn.conf.py's child_exit)."""
        if self.slot is not None:
            self.shares.release(self.slot)
            self.slot = None

    def handle(self, listener: socket.socket, client: socket.socket, addr: object) -> None:
        try:
            self._handle(listener, client, addr)
        finally:
            if self.slot is not None:
                self.shares.counts[self.slot] -= 1

    def _handle(self, listener: socket.socket, client: socket.socket, addr: object) -> None:
        if self.open_connections >= self.cfg.worker_connections:
            with contextlib.suppress(OSError):
                client.sendall(_BUSY)
                # Half-close and let the client read the answer before the connection goes:
                # closing with its request unread would reset it and lose the answer.
                client.shutdown(socket.SHUT_WR)
                client.settimeout(1)
                deadline = time.monotonic() + 1  # a client that keeps sending gets no longer
                while client.recv(4096) and time.monotonic() < deadline:
                    pass
            client.close()
            metrics.refusal_count(metrics.TOO_MANY_CONNECTIONS)
            if time.monotonic() - self.refused_logged_at > 10:  # one line per 10 s at most
                self.refused_logged_at = time.monotonic()
                self.log.warning(
                    "503: %s connections open, the cap (worker_connections)",
                    self.cfg.worker_connections,
                )
            return
        self.open_connections += 1
        try:
            super().handle(listener, client, addr)
        finally:
            self.open_connections -= 1

    def handle_request(self, listener_name, req, sock, addr):
        """Serve one request, then let every other ready connection have its turn. A client
        that sends its next request at once would otherwise find it already read and be served
        again and again, while other connections (the probes among them) wait their turn for
        hundreds of milliseconds.

        The turn is taken at the next iteration of the event loop, after it polled the sockets
        (any positive sleep; gevent.sleep's documentation). `sleep(0)` only queues the greenlet
        behind the others that yielded: a worker whose connections all have their next request
        waiting runs that queue for tens of callbacks before it polls, so the connections that
        need the poll (a new one, one whose request just arrived) wait for hundreds of
        milliseconds under load (docs/performance.md, "Latency under load")."""
        sock.settimeout(SEND_TIMEOUT)  # the head's wait is keepalive's, the body's its own
        try:
            result = super().handle_request(listener_name, req, sock, addr)
        except TimeoutError:  # gunicorn would log it with a traceback, as a socket error
            metrics.refusal_count(metrics.ANSWER_NOT_TAKEN)
            if time.monotonic() - self.not_taken_logged_at > 10:  # one line per 10 s at most
                self.not_taken_logged_at = time.monotonic()
                self.log.warning(
                    "closed the connection of %s: it took no part of its answer for %.0f s",
                    addr[0] if isinstance(addr, tuple) else addr,
                    SEND_TIMEOUT,
                )
            raise StopIteration from None  # gunicorn closes the connection, quietly
        if self.slot is not None:
            self.shares.served[self.slot] += 1
        gevent.sleep(_NEXT_LOOP_TURN)
        return result


class AbsoluteFormHost:
    """WSGI middleware: the host of a request whose target is in absolute form (`GET
    http://name/ HTTP/1.1`) is the target's, and its Host header is ignored (RFC 9112, 3.2.2).
    gunicorn passes the Host header on as it came, so a target naming another authority was
    answered, and counted, as if it named this one; now ALLOWED_HOSTS judges the target's."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response):
        target = environ.get("RAW_URI", "")
        # Origin form (`/path?next=http://x`) starts with a slash; only a scheme makes it absolute.
        if not target.startswith("/") and (parts := urllib.parse.urlsplit(target)).scheme:
            environ["HTTP_HOST"] = parts.netloc  # none at all (`http:/x`): Django's 400
        return self.app(environ, start_response)


class BodyTooSlowError(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise BodyTooSlowError if the block takes longer than `seconds`: under gevent only,
    the server's model. Elsewhere (runserver-style use, tests in one process) no deadline."""
    from gevent import Timeout, monkey

    if not monkey.is_module_patched("socket"):
        yield
        return
    timeout = Timeout(seconds, BodyTooSlowError)
    timeout.start()
    try:
        yield
    finally:
        timeout.close()


class _Refusal:
    """A short plain-text answer after which the server sends nothing more on the connection:
    it half-closes it, then gunicorn discards what the client still sends, for at most its
    `keepalive` seconds, and closes. Closing at once with unread data would reset the
    connection, and a reset can destroy the answer before the client reads it."""

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
            with contextlib.suppress(OSError):
                self.client.shutdown(socket.SHUT_WR)


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
