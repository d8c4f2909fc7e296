"""Waiting for a lock without stopping the other connections of a gevent worker.

A gevent worker serves all its connections from one thread, so a C call that blocks (SQLite's
busy handler sleeping while another writer holds the database, a blocking `flock`) would stall
every one of them, the kubelet's probes included. Nothing here blocks in C: SQLite is told not
to wait (busy timeout 0 in settings.py) and a busy statement is retried here, and file locks are
tried without blocking. Between attempts `time.sleep`, which gevent makes cooperative, lets the
other connections run. Without gevent (management commands, in-process tests) it just sleeps.
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

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            flock_exclusive(self._fd, what=str(self.path))
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
