"""The gunicorn worker class of the pod's server (gunicorn.conf.py): gunicorn's gevent worker,
with the limits that keep a pod answering when its clients are slow, idle or too many.

A connection costs a greenlet, not a worker, so clients that send slowly or not at all can no
longer take every worker, and the probes with them, as they did with sync and gthread workers
(docs/performance-history.md, "The server model under hostile clients"). The limits:

- the request head must arrive within gunicorn's `keepalive` (5 s) of the connection opening or
  of the previous answer, else the connection is closed (gunicorn's gevent worker);
- a worker holds at most `worker_connections` (1000) connections: one more gets 503 and is
  closed at once, instead of waiting unanswered in the listen queue;
- a client must take its answer within SEND_TIMEOUT seconds (a file's, each part of it), else
  the connection is closed: one that never reads would hold its connection for ever;
- after each request every other ready connection of the worker has its turn;
- request bodies are read within their limits by the WSGI application's guard
  (visits_site/body_guard.py).

No Django import here, nor of the store (`make lint` checks it): gunicorn's master loads the
worker class, before Django is set up.
"""

import contextlib
import math
import os
import socket
import sys
import time
from pathlib import Path

import gevent
from gunicorn.workers import ggevent

from counter import metrics
from visits_site.body_guard import half_close

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
    giving every ready connection its turn after each request. New connections are accepted as
    gunicorn does: sharing them out between the workers measured no better
    (docs/performance-history.md, "The shared accept, removed")."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.open_connections = 0
        self.refused_logged_at = 0.0
        self.not_taken_logged_at = 0.0
        self.quitting = False
        # The connection pool gets room beyond the cap, so refusals are answered too.
        self.worker_connections = self.cfg.worker_connections + _REFUSE_ROOM

    def handle(self, listener: socket.socket, client: socket.socket, addr: object) -> None:
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

    def handle_quit(self, sig: int, frame: object) -> None:
        """SIGINT and SIGQUIT: stop at once, without a traceback.

        Ctrl-C in a terminal sends SIGINT to the whole process group: each worker gets it from
        the terminal, then SIGQUIT from the master. gunicorn's gevent worker spawns a greenlet
        for each that calls `sys.exit`; the first exit ends the worker, and the second, raised
        while it is already exiting, printed `SystemExit: 0` with a traceback. Here a quit only
        sets flags, however many arrive: the worker's own loop stops within its next tick
        (a second), and leaves from the main greenlet (notify), not waiting for the open
        connections as a graceful stop (SIGTERM) does. Nothing blocks in a signal handler."""
        self.alive = False
        self.quitting = True

    def notify(self) -> None:
        """gunicorn's heartbeat, called by the worker's loop about every second, in the main
        greenlet; after a quit, the worker exits here (worker_exit still runs)."""
        super().notify()
        if self.quitting:
            self.cfg.worker_int(self)
            sys.exit(0)

    def run(self) -> None:
        super().run()  # returns once no connection is open, if it saw no notify after a quit
        if self.quitting:
            self.notify()

    def handle_request(self, listener_name, req, sock, addr):
        """Serve one request, then let every other ready connection have its turn. A client
        that sends its next request at once would otherwise find it already read and be served
        again and again, while other connections (the probes among them) wait their turn.

        The turn is taken at the next iteration of the event loop, after it polled the sockets
        (any positive sleep; gevent.sleep's documentation). `sleep(0)` only queues the greenlet
        behind the others that yielded: a worker whose connections all have their next request
        waiting runs that queue before it polls, so the connections that need the poll (a new
        one, one whose request just arrived) wait behind all of them
        (docs/performance-history.md, "Latency under load")."""
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
        gevent.sleep(_NEXT_LOOP_TURN)
        return result


def cores_available(root: Path = Path("/")) -> int:
    """The cores this process may keep busy: the CPUs it may run on, or fewer if a cgroup on
    its way to the root has a smaller CPU limit (a Kubernetes limit, `docker run --cpus`),
    rounded down; at least 1."""
    cores = len(os.sched_getaffinity(0))
    for line in (root / "proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2, alone or beside v1 (then under unified/)
            mounts = [root / "sys/fs/cgroup", root / "sys/fs/cgroup/unified"]
        elif "cpu" in controllers.split(","):
            mounts = [root / "sys/fs/cgroup" / controllers]
        else:
            continue
        for mount in mounts:
            folder = mount / path.lstrip("/")
            for cgroup in [folder, *folder.parents]:
                limit = _cpu_limit(cgroup)
                if limit is not None:
                    cores = min(cores, math.floor(limit))
                if cgroup == mount:
                    break
    return max(1, cores)


def _cpu_limit(cgroup: Path) -> float | None:
    """The CPU limit in cores set on one cgroup (v2's cpu.max, v1's quota), if any."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (cgroup / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota = int((cgroup / "cpu.cfs_quota_us").read_text())
        return None if quota < 0 else quota / int((cgroup / "cpu.cfs_period_us").read_text())
    return None
