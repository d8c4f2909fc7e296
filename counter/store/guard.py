"""The database's files deleted or replaced under a running server, by an operator's mistake.

A process keeps using the files it opened: delete `db.sqlite3-wal` and its connections go on
writing the deleted file, while a connection opened afterwards finds no WAL, makes a new one,
and can reset the shared index to it: every connection then sees the database without the
visits that were in the WAL, and once the old connections close, those visits are gone.

So each worker process keeps one connection of its own, the anchor, open for its lifetime, and
remembers which files it opened. Before any new connection opens (the engine's
connection_checks, store/sqlite/base.py) and before each batch of visits is counted
(store/visits.py), `stat` checks that the database, its WAL and its index at their paths are
still those; at every tick of the FileKeeper (visits_file.py), every descriptor the process
holds on them is checked against its path too. When one was deleted or replaced, the process

- stops counting and opens no new connection (a visit answers 503), and /readyz says why, so
  nothing more goes into a file that is about to be lost;
- saves what the anchor still reads, through SQLite's backup API, and stages that copy as
  `restore.sqlite3` when it holds at least the count of the visits file, so the next start
  applies it (counter/store/snapshots.py); a smaller copy is kept aside, never staged;
- writes why in `counting-stopped` beside the database, so a worker started later (one that
  replaces a crashed one) stops too, and opens nothing; `prepare` removes it at the next start;
- logs what happened and what to do: restart the pod.

What each case keeps is tested by tests/test_data_files.py and written in docs/kubernetes.md.
"""

import contextlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError

from counter.exceptions import CountingStoppedError, SnapshotError
from counter.process_local import ProcessLocal
from counter.store.database import visits_writer_lock
from counter.store.files import (
    COUNTING_STOPPED,
    STAGED_SNAPSHOT,
    VISITS_FILE,
    data_path,
    database_aside,
    database_files,
    database_path,
    file_replace,
    visits_file_read,
)
from counter.store.snapshots import database_connect, snapshot_check, snapshot_write
from counter.store.sqlite.base import connection_checks

logger = logging.getLogger(__name__)


@dataclass
class _Guard(ProcessLocal):
    problem: str | None = None  # why this process stopped counting: set once, for good
    anchor: sqlite3.Connection | None = None  # open for the process's lifetime
    anchor_names: tuple = ()  # the paths of the database, WAL and index it opened, resolved
    anchor_files: tuple = ()  # (st_dev, st_ino) of those files

    def close(self) -> None:
        if self.anchor is not None:
            self.anchor.close()


_process = _Guard()


def counting_stopped() -> str | None:
    """Why this process stopped counting, if it did (then it never counts again)."""
    return _process.problem


def _database() -> str:
    return os.path.realpath(database_path())  # as /proc/self/fd shows it


def _identity(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _identities(names: tuple[str, ...]) -> tuple:
    return tuple(_identity(name) for name in names)


def data_files_changed() -> str | None:
    """Which database file this process holds open is no longer the file at its path, if any.

    Reads /proc/self/fd (Linux): elsewhere there is nothing to check and this says None. It
    runs without yielding to another greenlet, so no descriptor is closed and reused meanwhile.
    """
    names = set(_process.anchor_names or database_files(_database()))
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return None
    for entry in os.listdir(fd_dir):
        try:
            name = os.readlink(fd_dir / entry).removesuffix(" (deleted)")
            if name not in names:
                continue
            held = os.fstat(int(entry))
        except OSError:  # closed meanwhile, or listdir's own descriptor
            continue
        if _identity(name) != (held.st_dev, held.st_ino):
            # A WAL deleted is soon made again by SQLite: the two cases look the same here.
            return f"{Path(name).name} was deleted or replaced under the running server"
    return None


def data_files_anchor() -> None:
    """Open this process's anchor connection, if it has none, and remember its files."""
    if _process.anchor is not None or not settings.VISITS_DATABASE_MUST_EXIST:
        return
    with contextlib.suppress(FileNotFoundError):  # a worker started after a rescue opens nothing
        _process.problem = data_path(COUNTING_STOPPED).read_text().strip()
        return
    anchor = database_connect()
    anchor.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL
    # Resolved once: `realpath` makes a `stat` per component of the path, and the guard runs
    # before every batch of visits.
    _process.anchor_names = tuple(database_files(_database()))
    _process.anchor_files = _identities(_process.anchor_names)
    _process.anchor = anchor


def data_files_guard() -> None:
    """Before a new connection opens or visits are counted: refuse once counting stopped, or
    when the files at the paths are not the anchor's (and then stop counting). Three `stat`s
    when nothing changed."""
    unchanged = (
        _process.anchor is None or _identities(_process.anchor_names) == _process.anchor_files
    )
    if _process.problem is None and not unchanged:
        data_files_rescue(data_files_changed() or "the database's files were changed")
    if _process.problem is not None:
        raise CountingStoppedError(_process.problem)


connection_checks.append(data_files_guard)


def data_files_watch() -> None:
    """One check, from the FileKeeper: rescue once when a file is found changed."""
    if _process.problem is not None:
        return
    data_files_anchor()
    problem = data_files_changed()
    if problem is not None:
        data_files_rescue(problem)


def data_files_rescue(problem: str) -> None:
    """Stop counting in this process, save what its anchor still reads, and say what to do.

    Under the writer lock: every visit of this process is in the copy or refused, and a later
    rescue (another worker's, which also saw its own last visits) only replaces a smaller copy.
    """
    copy = database_aside(f"rescued-{os.getpid()}")
    staged = data_path(STAGED_SNAPSHOT)
    try:
        with visits_writer_lock():
            if _process.problem is not None:  # another greenlet's rescue came first
                return
            _process.problem = problem
            file_replace(data_path(COUNTING_STOPPED), f"{problem}\n")
            if _process.anchor is None:
                raise DatabaseError("this process had no connection open before")
            snapshot_write(copy, source=_process.anchor)
            rescued = snapshot_check(copy).total
            known = visits_file_read(data_path(VISITS_FILE)) or 0
            already = None
            with contextlib.suppress(SnapshotError):
                already = snapshot_check(staged).total if staged.exists() else None
            if rescued < known:
                saved = (
                    f"it could read only {rescued} of the {known} visits the visits file"
                    f" records, kept in {copy} (not staged)"
                )
            elif already is not None and already >= rescued:
                os.unlink(copy)
                saved = f"{staged} already holds {already} visits"
            else:
                os.replace(copy, staged)
                saved = f"the {rescued} visits it could still read are staged in {staged}"
    except (DatabaseError, sqlite3.DatabaseError, SnapshotError, OSError, ValueError) as error:
        _process.problem = problem
        saved = f"nothing could be saved ({error})"
    logger.error(
        "%s. This process stopped counting so that no visit goes into a lost file; %s."
        " Restart the pod (kubectl delete pod %s): the next start applies a staged copy, and"
        " refuses a database whose count is below the visits file (docs/kubernetes.md).",
        problem,
        saved,
        settings.POD_NAME,
    )


def data_files_stopped_clear() -> str | None:
    """At start (`prepare`): why counting had stopped, if it had; it starts again."""
    marker = data_path(COUNTING_STOPPED)
    try:
        reason = marker.read_text().strip()
    except FileNotFoundError:
        return None
    marker.unlink()
    return reason
