"""The `visits` file beside the database: the total as plain text, for `cat`.

Visits never touch it: replacing a file costs far more than counting a visit (ext4 starts
writeback on rename, docs/performance.md). Instead every worker process runs a FileKeeper that,
every PERIOD seconds, reads the total and the file and replaces the file when they differ. So
the file trails the database by about PERIOD, and a file an operator deleted or overwrote is
rebuilt just as fast, visits or not. Each replacement is a temporary file renamed over the old
one, so a reader never sees it empty or partial, made under `.visits.lock` with the total read
under that lock, so it never goes backwards whichever process writes it. A worker also syncs
the file when it exits (gunicorn.conf.py's worker_exit), and `prepare` rebuilds it at start.
"""

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from django.db import DatabaseError

from counter import process
from counter.exceptions import CountBackwardsError, StoreError
from counter.store.files import VISITS_FILE, VISITS_LOCK, data_path, file_replace
from counter.store.locks import FileLock
from counter.store.visits import MAX_COUNT, store_database_close, visits_total

logger = logging.getLogger("counter.visits_file")  # the name its log lines always had

PERIOD = 0.25  # well inside the second the file may trail the database


def visits_file_read(path: Path) -> int | None:
    """The count a visits file holds; None if there is no file. Raises ValueError if garbage."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    value = text.strip()
    if not value.isdigit() or int(value) > MAX_COUNT:
        raise ValueError(f"{path} holds {text[:40]!r}, not a count of visits")
    return int(value)


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
    worker) of this process, after `watch` (the check of counter/store/data_files.py). A failure
    is logged once, when it starts, and again when it ends. Once this process stopped counting,
    it leaves the file alone: what it reads may be a database that lost visits."""

    def __init__(self, period: float = PERIOD, watch: Callable[[], None] | None = None) -> None:
        self.period = period
        self.watch = watch
        self.problem: str | None = None
        self._stopped = threading.Event()

    def check(self) -> None:
        if self.watch is not None:
            self.watch()
        if process.state.data_files_problem is not None:
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
