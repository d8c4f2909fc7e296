"""The `visits` file beside the database: the total as plain text, for `cat`.

Visits never touch it: replacing a file costs far more than counting a visit (ext4 starts writeback
on rename, docs/performance-history.md). Instead every worker process runs a FileKeeper that, every
PERIOD seconds, reads the total and the file and replaces the file when they differ. So the file
trails the database by about PERIOD, and a file an operator deleted or overwrote is rebuilt just as
fast, visits or not. Each replacement is a temporary file renamed over the old one, so a reader
never sees it empty or partial, made under `.visits.lock` with the total read under that lock, so it
never goes backwards whichever process writes it. A worker also syncs the file when it exits
(gunicorn.conf.py's worker_exit), and `prepare` rebuilds it at start.
"""

import logging
import threading
import time
from dataclasses import dataclass

from django.db import DatabaseError

from counter.exceptions import CountBackwardsError, StoreError
from counter.process_local import ProcessLocal
from counter.store.database import store_database_close
from counter.store.files import (
    VISITS_FILE,
    VISITS_LOCK,
    data_path,
    file_replace,
    visits_file_read,
)
from counter.store.guard import counting_stopped, data_files_watch
from counter.store.locks import FileLock
from counter.store.visits import visits_total

logger = logging.getLogger(__name__)

PERIOD = 0.25  # well inside the second the file may trail the database
# A keeper that has not begun a check for this long is stuck or gone (a check waits at most
# 5 s for the file's lock and 5 s for the database's): /readyz then says so.
LATE = 15.0


def visits_file_sync(*, backwards_ok: bool = False) -> int:
    """Make the visits file hold the database's total; return that total.

    A total below the file's is refused with CountBackwardsError, the file left as it is: the
    file only ever follows the database, so the database lost visits (its WAL deleted, an older
    copy put in its place). Only `prepare` passes `backwards_ok`, after its own check.
    Raises OSError when the file cannot be written (a directory in its place, no permission,
    disk full), DatabaseError or CounterMissingError when the total cannot be read.
    """
    path = data_path(VISITS_FILE)
    lock = FileLock(data_path(VISITS_LOCK))
    try:
        with lock:
            total = visits_total()
            try:
                current = visits_file_read(path)
            except (ValueError, IsADirectoryError):
                current = None
            if current is not None and total < current and not backwards_ok:
                raise CountBackwardsError(
                    f"the database counts {total} visits, fewer than the {current} of the visits"
                    f" file {path}: it lost visits (was a database file deleted or replaced?)"
                )
            if current != total:
                file_replace(path, f"{total}\n")
            return total
    finally:
        lock.close()


class FileKeeper:
    """Syncs the visits file every `period` seconds, in a daemon thread (a greenlet in a gevent
    worker) of this process, after the guard's watch over the database files
    (counter/store/guard.py). A failure is logged once, when it starts, and again when it ends,
    and /readyz reports it (visits_file_problem). Once this process stopped counting, it leaves
    the file alone: what it reads may be a database that lost visits."""

    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self.problem: str | None = None
        self.began_at = time.monotonic()  # the last check's start
        self._stopped = threading.Event()

    def check(self) -> None:
        self.began_at = time.monotonic()
        data_files_watch()
        if counting_stopped() is not None:
            return
        try:
            visits_file_sync()
        except (DatabaseError, OSError, StoreError) as error:
            if isinstance(error, DatabaseError):
                # A fresh one next time, once the cause is gone. Not for a file that cannot be
                # written: retried every PERIOD, it would close the worker's connection as often.
                store_database_close()
            # OSError's text names the random temporary file: its strerror is the same each time.
            reason = getattr(error, "strerror", None) or error
            problem = f"cannot update the visits file {data_path(VISITS_FILE)}: {reason}"
            if problem != self.problem:
                logger.error("%s; retrying every %s s", problem, self.period)
            self.problem = problem
        else:
            if self.problem is not None:
                logger.info("the visits file is up to date again")
            self.problem = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="visits-file-keeper", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.period):
            self.check()


@dataclass
class _Keeping(ProcessLocal):
    keeper: FileKeeper | None = None  # this process's, once it keeps the file

    def close(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()


_process = _Keeping()


def visits_file_keep(period: float = PERIOD) -> FileKeeper:
    """Start this process's FileKeeper (every worker runs one: gunicorn.conf.py)."""
    _process.keeper = FileKeeper(period)
    _process.keeper.start()
    return _process.keeper


def visits_file_problem() -> str | None:
    """Why this process's keeper cannot keep the visits file up to date, if it cannot; None
    where no keeper runs (management commands, tests that start none)."""
    keeper = _process.keeper
    if keeper is None:
        return None
    late = time.monotonic() - keeper.began_at
    if late > LATE:
        return f"the visits file has not been checked for {late:.0f} s"
    return keeper.problem
