"""Spreading new connections over a pod's gevent workers (docs/performance.md, "Latency under
load").

A gevent worker keeps every keep-alive connection it accepted, and serves them one after the
other, a turn of its event loop each. So a worker that holds more connections than another makes
each of them wait longer, and a burst of new connections (a client's pool opening, wrk starting)
lands on whichever worker wakes first, unevenly (docs/performance.md, "Latency under load").
gunicorn spreads them its way, one connection per turn of the loop, which makes the last of a
burst wait for as many turns as there were connections before it.

Here each worker writes the number of connections it holds into memory shared with gunicorn's
master and the other workers. A worker holding more than ACCEPT_AHEAD connections (or a
sixteenth of the count) beyond the worker holding the fewest leaves a new connection to the
others for up to ACCEPT_DEFER seconds, looking again every ACCEPT_POLL; one that is not ahead
accepts every connection waiting. The connections the others left waiting
that long are accepted one per ACCEPT_DEFER while the worker deferred to accepts or serves (it is
only busy), and all at once when it did neither for ACCEPT_STALLS deferrals in a row (it is
stopped or stuck): a stopped worker costs a new connection ACCEPT_DEFER at most, and never stops
the others accepting. A worker that stops accepting (it is shutting down) leaves the shares
at once.

gunicorn's master claims a slot for each worker before forking it (Worker.__init__ runs there)
and frees it when the worker is gone (gunicorn.conf.py's child_exit). Without a slot (more than
64 workers), a worker accepts as gunicorn does.
"""

import mmap
import os
import time

from gevent.server import StreamServer

ACCEPT_AHEAD = 1  # connections a worker may hold beyond the fewest another worker holds
# Seconds a worker ahead leaves a new connection to the others: long enough for a busy worker to
# finish a turn of its loop (about 1 ms per connection it serves) and accept.
ACCEPT_DEFER = 0.02
# Seconds between two looks at the shares while deferring: two workers can both be deferring,
# each to the other as it was a moment ago; the first to see it is no longer ahead accepts.
ACCEPT_POLL = 0.001
# Deferrals in a row with no progress of the worker deferred to before it counts as stuck: a
# single one can be a worker that was deferring too.
ACCEPT_STALLS = 3
ACCEPT_BURST = 100  # connections accepted in one turn of the loop at most (gevent's default)
_SLOTS = 64


class ConnectionShares:
    """Per worker slot: the worker's pid (0 free, -1 claimed and not started), the number of
    connections it holds, and the number of requests it served (it is not stuck while that
    moves). Anonymous shared memory, made in the master, inherited by every worker forked after
    it. Each slot is written by one process at a time."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 24 * _SLOTS)
        view = memoryview(self._memory).cast("q")
        self.pids, self.counts, self.served = (
            view[:_SLOTS],
            view[_SLOTS : 2 * _SLOTS],
            view[2 * _SLOTS :],
        )

    def claim(self) -> int | None:
        """In the master: a free slot for a worker about to be forked, or None if all are taken."""
        for slot in range(_SLOTS):
            if self.pids[slot] == 0:
                self.pids[slot] = -1
                self.counts[slot] = 0
                return slot
        return None

    def start(self, slot: int) -> None:
        """In the worker, once forked: from now on the others leave connections to it."""
        self.counts[slot] = 0
        self.pids[slot] = os.getpid()

    def release(self, slot: int) -> None:
        """In the master, once the worker is gone."""
        self.pids[slot] = 0
        self.counts[slot] = 0

    def ahead_of(self, slot: int) -> int | None:
        """The other started worker holding the fewest connections, if the worker of `slot`
        holds more than ACCEPT_AHEAD connections beyond it (or a sixteenth of its count, when
        that is more: among hundreds of idle connections, an exact split gains nothing and the
        accepting slows a burst down); else None."""
        fewest = None
        for other in range(_SLOTS):
            if (
                other != slot
                and self.pids[other] > 0
                and (fewest is None or self.counts[other] < self.counts[fewest])
            ):
                fewest = other
        if fewest is None:
            return None
        least = self.counts[fewest]
        return fewest if self.counts[slot] > least + max(ACCEPT_AHEAD, least // 16) else None

    def progress(self, slot: int) -> tuple[int, int]:
        """What moves while the worker of `slot` accepts or serves."""
        return self.counts[slot], self.served[slot]


_shares: ConnectionShares | None = None


def connection_shares() -> ConnectionShares:
    """The shares of this master and its workers, made at the first worker's creation."""
    global _shares
    if _shares is None:
        _shares = ConnectionShares()
    return _shares


class SharingServer(StreamServer):
    """gevent's StreamServer, accepting by the rules above for the worker of `slot`. The worker
    counts a connection out (`shares.counts[slot] -= 1`) when it is done with it."""

    def __init__(self, *args, shares: ConnectionShares, slot: int, **kwargs) -> None:
        self._shares = shares
        self._slot = slot
        self._resume_timer = None
        self._defer_until = 0.0
        self._left_to: tuple[int, tuple[int, int]] | None = None  # a worker, and its progress
        self._stalls = 0  # deferrals in a row to a worker that made no progress
        super().__init__(*args, **kwargs)

    @property
    def max_accept(self) -> int:
        return ACCEPT_BURST

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        """gunicorn asks for one connection per turn with several workers, its way of spreading
        them; the shares spread them here, so this worker takes every connection it should."""

    def do_read(self):
        other = self._shares.ahead_of(self._slot)
        if other is not None:
            self._left_to = (other, self._shares.progress(other))
            self._defer_until = time.monotonic() + ACCEPT_DEFER
            self.stop_accepting()
            self._resume_timer = self.loop.timer(ACCEPT_POLL, ACCEPT_POLL)
            self._resume_timer.start(self._deferring)
            return None  # gevent's accept loop stops here for this turn
        self._stalls = 0
        return self._accept()

    def _accept(self):
        accepted = super().do_read()
        if accepted is not None:
            self._shares.counts[self._slot] += 1
        return accepted

    def _deferring(self) -> None:
        """Every ACCEPT_POLL while deferring: once no longer ahead (the others took connections,
        or let theirs go), accept by the rules again; after ACCEPT_DEFER, resume."""
        if self._shares.ahead_of(self._slot) is None:
            self._stalls = 0
            self._stop_timer()
            if self.started:
                self.start_accepting()
        elif time.monotonic() >= self._defer_until:
            self._stop_timer()
            self._resume()

    def _resume(self) -> None:
        """ACCEPT_DEFER later: a connection still waiting was left by the others. Take it, and
        go on by the rules; if the worker deferred to neither accepted nor served during the
        last ACCEPT_STALLS deferrals (stopped or stuck), take every connection waiting."""
        if not self.started:  # closed meanwhile (the worker is stopping)
            return
        other, progress = self._left_to
        stalled = self._shares.progress(other) == progress or self._shares.pids[other] <= 0
        self._stalls = self._stalls + 1 if stalled else 0
        for _ in range(ACCEPT_BURST if self._stalls >= ACCEPT_STALLS else 1):
            if self.full():
                break
            try:
                accepted = self._accept()
            except OSError:  # gevent's own accept loop meets it again and handles it
                break
            if accepted is None:
                break
            self.do_handle(*accepted)
        self.start_accepting()

    def close(self) -> None:
        """No more accepting: the others no longer leave connections to this worker."""
        self._shares.pids[self._slot] = -1
        super().close()

    def stop_accepting(self) -> None:
        self._stop_timer()
        super().stop_accepting()

    def _stop_timer(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.stop()
            self._resume_timer.close()
            self._resume_timer = None
