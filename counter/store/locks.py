"""Waiting for a lock without stopping the other connections of a gevent worker.

A gevent worker serves all its connections from one thread, so a C call that blocks (SQLite's
busy handler sleeping while another writer holds the database, a blocking `flock`) would stall
every one of them, the kubelet's probes included. Nothing here blocks the event loop in C:

- SQLite is told not to wait (busy timeout 0 in settings.py) and a busy statement is retried
  here, with `time.sleep` (cooperative under gevent) between attempts;
- a file lock is tried without blocking; when another process holds it, a gevent worker waits
  for it in a thread of gevent's pool, blocked in `flock`, which the kernel wakes as soon as
  the lock is released. Retrying with sleeps in between, as before, let the holder's process
  take the lock again and again while this one slept (waits of 0.15 to 0.5 s under load,
  docs/performance.md, "Latency under load"). Without gevent (sync workers, management
  commands, in-process tests) the tries and sleeps remain: nothing else waits on that thread.
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

from counter import process

T = TypeVar("T")

LOCK_WAIT = 5.0  # seconds; then the caller fails (a visit answers 503)
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


class FileLock:
    """An exclusive lock on a file, for threads (or greenlets) and processes alike: a thread
    lock within the process, then a `flock` across processes. The file stays open, one per
    path: opening it for every visit cost more than the visit's statement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        # gevent: the pool thread blocked in flock for this lock, and whether a greenlet waits
        # for it. A thread cannot be stopped: a caller that gives up leaves it to the next one.
        self._flock_thread = None
        self._flock_awaited = False

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if process.gevent_active():
                self._flock_off_loop()
            else:
                flock_exclusive(self._fd, what=str(self.path))
        except BaseException:
            self._thread_lock.release()
            raise

    def _flock_off_loop(self) -> None:
        """Take the flock without blocking the event loop: at once if it is free, else in a
        thread of gevent's pool, for at most LOCK_WAIT seconds."""
        import gevent

        if self._flock_thread is None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            self._flock_thread = gevent.get_hub().threadpool.spawn(
                fcntl.flock, self._fd, fcntl.LOCK_EX
            )
            self._flock_thread.rawlink(self._flock_thread_done)
        thread = self._flock_thread
        self._flock_awaited = True
        try:
            thread.get(timeout=LOCK_WAIT)
        except gevent.Timeout:
            raise TimeoutError(f"{self.path} still held after {LOCK_WAIT} s") from None
        finally:
            self._flock_awaited = False
            if thread.ready():
                self._flock_thread = None

    def _flock_thread_done(self, thread) -> None:
        """In the event loop, when the pool thread returns: if no caller waits for it any more,
        release the lock it took, or this process would hold it with nobody to release it."""
        if self._flock_awaited:
            return
        self._flock_thread = None
        if thread.successful() and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __exit__(self, *exc_info: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
