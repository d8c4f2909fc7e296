"""Waiting for a lock without stopping the other connections of a gevent worker.

A gevent worker serves all its connections from one thread, so a C call that blocks (SQLite's
busy handler sleeping while another writer holds the database, a blocking `flock`) would stall
every one of them, the kubelet's probes included. Nothing here blocks the event loop in C:

- SQLite is told not to wait (busy timeout 0 in settings.py) and a busy statement is retried
  here, with `time.sleep` (cooperative under gevent) between attempts;
- a file lock is tried without blocking; when another process holds it, a gevent worker waits
  for it in a thread of gevent's pool, blocked in `flock`, which the kernel wakes as soon as
  the lock is released. The event loop waits for that thread, blocked, for at most
  FLOCK_HANDOFF (another worker's visit holds the lock for tens of microseconds), then serves
  its other connections until the lock is free and tries again. A process holds the lock
  only while it uses it: a lock that the thread took while the event loop was busy elsewhere
  would be held for a whole turn of the loop, with the other worker's visits queued behind
  it (docs/performance-history.md, "Latency under load").
  Without gevent (sync workers, management commands, in-process tests) the tries and sleeps
  remain: nothing else waits on that thread.
"""

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from django.db import OperationalError

from counter.concurrency import ThreadCall, gevent_active, os_lock

T = TypeVar("T")

LOCK_WAIT = 5.0  # seconds; then the caller fails (a visit answers 503)
# Seconds the event loop waits, blocked, for a lock another process holds: most waits for the
# other worker's visit end within it (docs/performance-history.md, "Latency under load").
FLOCK_HANDOFF = 0.002
_BUSY = ("database is locked", "database table is locked", "database schema is locked")


def _pause(attempt: int) -> None:
    """Yield at once for the first attempts (a visit holds the lock for tens of microseconds),
    then back off up to 20 ms."""
    time.sleep(0 if attempt < 20 else min(0.02, 0.0005 * 2 ** (attempt - 20)))


def sqlite_retry(run: Callable[[], T]) -> T:
    """run(), retried while SQLite answers busy, for at most LOCK_WAIT seconds."""
    deadline = time.monotonic() + LOCK_WAIT
    attempt = 0
    while True:
        try:
            return run()
        except (sqlite3.OperationalError, OperationalError) as error:
            if not str(error).startswith(_BUSY) or time.monotonic() > deadline:
                raise
        _pause(attempt)
        attempt += 1


def sqlite_retry_wrapper(execute, sql, params, many, context):
    """Django's execute wrapper (connection.execute_wrappers) for sqlite_retry: every ORM
    statement, BEGIN IMMEDIATE included, waits for the database this way."""
    return sqlite_retry(lambda: execute(sql, params, many, context))


def flock_exclusive(fd: int, *, what: str) -> None:
    """Take an exclusive flock on `fd` within LOCK_WAIT seconds, or raise TimeoutError."""
    deadline = time.monotonic() + LOCK_WAIT
    attempt = 0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} still held after {LOCK_WAIT} s") from None
        _pause(attempt)
        attempt += 1


class _FlockWaiter:
    """A thread of gevent's pool blocked in `flock` on `fd`. The caller waits for it with
    `handed()`; if the thread takes the lock after the caller stopped waiting, it releases it
    at once: `done` then only says that the lock was free."""

    def __init__(self, fd: int) -> None:
        self._state = os_lock()
        self._taken = os_lock()
        self._taken.acquire()
        self._handed = False
        self._caller_left = False
        self.done = ThreadCall(self._take, fd)

    def _take(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with self._state:
            if not self._caller_left:
                self._handed = True
                self._taken.release()
                return
        fcntl.flock(fd, fcntl.LOCK_UN)

    def handed(self, timeout: float) -> bool:
        """Whether the thread took the lock for the caller within `timeout` seconds (the
        calling thread blocks meanwhile, the GIL released)."""
        if self._taken.acquire(timeout=timeout):
            return True
        with self._state:
            self._caller_left = True
            return self._handed


class FileLock:
    """An exclusive lock on a file, for threads (or greenlets) and processes alike: a thread
    lock within the process, then a `flock` across processes. The file stays open, one per
    path: opening it for every visit cost more than the visit's statement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        # gevent: a pool thread still blocked in flock for a caller that stopped waiting (a
        # thread cannot be stopped); the next caller waits for it to end before trying.
        self._waiter: _FlockWaiter | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if gevent_active():
                self._flock_off_loop()
            else:
                flock_exclusive(self._fd, what=str(self.path))
        except BaseException:
            self._thread_lock.release()
            raise

    def _flock_off_loop(self) -> None:
        """Take the flock within LOCK_WAIT seconds without stalling the event loop for longer
        than FLOCK_HANDOFF at a time: at once if it is free, else from a pool thread blocked
        in flock; when that takes longer, serve the other connections until the lock was free,
        then try again."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            waiter = self._waiter
            if waiter is not None:
                try:
                    ended = waiter.done.wait(timeout=max(0.0, deadline - time.monotonic()))
                finally:
                    # Only a thread that is gone is forgotten: one still blocked in flock (this
                    # wait timed out, or this greenlet was interrupted) takes the lock later.
                    if waiter.done.ended():  # returned, or failed (then raised here)
                        self._waiter = None
                if not ended:
                    raise TimeoutError(f"{self.path} still held after {LOCK_WAIT} s")
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.path} still held after {LOCK_WAIT} s") from None
            waiter = _FlockWaiter(self._fd)
            if waiter.handed(FLOCK_HANDOFF):
                return
            self._waiter = waiter

    def __exit__(self, *exc_info: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
