"""The gunicorn worker class of the pod's server (gunicorn.conf.py): gunicorn's gevent worker,
with the limits that keep a pod answering when its clients are slow, idle or too many.

A connection costs a greenlet, not a worker, so clients that send slowly or not at all can no
longer take every worker, and the probes with them, as they did with sync and gthread workers
(docs/performance.md, "The server model under hostile clients"). The limits:

- the request head must arrive within gunicorn's `keepalive` (5 s) of the connection opening or
  of the previous answer, else the connection is closed (gunicorn's gevent worker);
- a worker holds at most `worker_connections` (1000) connections: one more gets 503 and is
  closed at once, instead of waiting unanswered in the listen queue;
- after each request every other ready connection of the worker has its turn;
- request bodies are read within their limits by the WSGI application's guard
  (visits_site/body_guard.py).

No Django import here, nor of the store (`make lint` checks it): gunicorn's master loads the
worker class, before Django is set up.
"""

import contextlib
import functools
import socket
import time

import gevent
from gunicorn.workers import ggevent

from counter import metrics
from visits_site.accept import SharingServer, connection_shares
from visits_site.body_guard import half_close

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
                half_close(client)
                # Nobody else reads this connection: discard what the client still sends until
                # it closes, for a second at most.
                client.settimeout(1)
                deadline = time.monotonic() + 1
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
        again and again, while other connections (the probes among them) wait their turn.

        The turn is taken at the next iteration of the event loop, after it polled the sockets
        (any positive sleep; gevent.sleep's documentation). `sleep(0)` only queues the greenlet
        behind the others that yielded: a worker whose connections all have their next request
        waiting runs that queue before it polls, so the connections that need the poll (a new
        one, one whose request just arrived) wait behind all of them (docs/performance.md,
        "Latency under load")."""
        result = super().handle_request(listener_name, req, sock, addr)
        if self.slot is not None:
            self.shares.served[self.slot] += 1
        gevent.sleep(_NEXT_LOOP_TURN)
        return result
