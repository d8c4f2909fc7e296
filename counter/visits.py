"""Counting visits: the database is the source of truth, the `visits` file a mirror of it.

Hot path (every GET /): writers are serialized by a `flock` before they reach SQLite, then one
autocommit upsert counts the visit in today's row and, through triggers, in the total. SQLite's
own busy handler sleeps 1, 2, 5, 10 ... ms when the lock is taken instead of waking the waiter
when it frees; the flock wakes waiters at once (docs/performance.md has the measurements).

The `visits` file is replaced atomically (temp file + rename) at most every FILE_SYNC_DELAY per
process (by a visit, or by a background thread after the last visits), under a second flock and
from a fresh read of the database, so every replacement writes the newest committed total: the
file never goes backwards, readers never see it empty or partial, and it trails the database by
about FILE_SYNC_DELAY. Replacing a file costs far more than a visit (ext4 starts writeback on
rename), so it is not done per visit.
"""

import contextlib
import fcntl
import logging
import os
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor

from counter.models import DailyVisits, VisitCounter

logger = logging.getLogger(__name__)

COUNTER_ID = 1
FILE_SYNC_DELAY = 0.25  # well inside the 1 s the file may trail the database
MAX_COUNT = 2**63 - 1

# RETURNING reports values as the statement saw them, before AFTER triggers ran
# (sqlite.org/lang_returning.html): the subquery is the total without this visit.
_VISIT = (  # run on the sqlite3 connection itself, hence `?`
    f"INSERT INTO {DailyVisits._meta.db_table} (day, visits) VALUES (?, 1)"
    " ON CONFLICT (day) DO UPDATE SET visits = visits + 1"
    f" RETURNING visits, (SELECT total FROM {VisitCounter._meta.db_table} WHERE id = {COUNTER_ID})"
)
_TOTAL = f"SELECT total FROM {VisitCounter._meta.db_table} WHERE id = {COUNTER_ID}"
_CURRENT = (
    f"SELECT total, (SELECT visits FROM {DailyVisits._meta.db_table} WHERE day = %s)"
    f" FROM {VisitCounter._meta.db_table} WHERE id = {COUNTER_ID}"
)
_PAST_DAYS = f"SELECT day, visits FROM {DailyVisits._meta.db_table} WHERE day >= %s AND day < %s"
PAST_DAYS_TTL = 10.0


class CounterMissingError(RuntimeError):
    """The counter row does not exist: `manage.py prepare` has not run on this database."""


class DataDirError(RuntimeError):
    """The data directory or something in it cannot be used; the message says why."""


@dataclass(frozen=True)
class VisitTally:
    total: int
    today: int


def data_path(name: str) -> Path:
    return Path(settings.VISITS_DATA_DIR) / name


# --- counting ---------------------------------------------------------------------------------


class _WriterLock:
    """The data directory's writer lock: a thread lock within a process, `flock` across them.

    The lock file stays open per process and per data directory (tests change it). A forked
    child must not reuse its parent's descriptor: a flock belongs to the open file, which the
    two would share, so each would think it holds the lock alone.
    """

    def __init__(self) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._directory: object = None
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the parent's open file: this process opens its own
        self._thread_lock = threading.Lock()
        self._fd = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._directory != settings.VISITS_DATA_DIR or self._fd is None:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                path = data_path(".count.lock")
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._directory = settings.VISITS_DATA_DIR
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


_writer_lock = _WriterLock()


def visit_record(*, day: date) -> VisitTally:
    """Count one visit on `day` and return the new totals.

    One autocommit statement: the upsert of the day's row, whose triggers add the visit to the
    total (migration 0001). It returns the total from before its triggers ran; writers are
    serialized, so this visit's total is exactly one more.

    The statement runs on the sqlite3 connection under Django's, inside Django's translation
    of database errors: through Django's cursor, counting took 32.6 us in a loop, this way 20 us,
    of which the statement is 14 us (docs/performance.md).
    """
    db = connections[DEFAULT_DB_ALIAS]  # one lookup of this thread's connection, not three
    db.ensure_connection()
    with db.wrap_database_errors, _writer_lock:
        today, total_before = db.connection.execute(_VISIT, (day.isoformat(),)).fetchone()
    _file_syncer.visited()
    return VisitTally(total=total_before + 1, today=today)


def visits_total() -> int:
    with connection.cursor() as cursor:
        cursor.execute(_TOTAL)
        row = cursor.fetchone()
    if row is None:
        raise CounterMissingError("the visit counter does not exist: run manage.py prepare")
    return row[0]


def visits_current(*, day: date) -> VisitTally:
    """The totals as they are, without counting (one statement, so they agree)."""
    with connection.cursor() as cursor:
        cursor.execute(_CURRENT, [day])
        row = cursor.fetchone()
    if row is None:
        raise CounterMissingError("the visit counter does not exist: run manage.py prepare")
    return VisitTally(total=row[0], today=row[1] or 0)


@dataclass(frozen=True)
class PastDays:
    """The days before `today` in a history window, oldest first. They no longer change (but
    for visits that were in flight at midnight), so each process reads them every few seconds
    rather than on every visit."""

    today: date
    days: tuple[tuple[date, int], ...]
    read_at: float


_past_days: PastDays | None = None


def visits_past_days(*, today: date, days: int = 13) -> PastDays:
    """The `days` days before `today` with their visits, zeros included."""
    global _past_days
    cached = _past_days
    if (
        cached is not None
        and cached.today == today
        and len(cached.days) == days
        and time.monotonic() - cached.read_at < PAST_DAYS_TTL
    ):
        return cached
    first = today - timedelta(days=days)
    with connection.cursor() as cursor:
        cursor.execute(_PAST_DAYS, [first, today])
        counts = dict(cursor.fetchall())  # Django converts DATE columns to date objects
    window = tuple((first + timedelta(n), counts.get(first + timedelta(n), 0)) for n in range(days))
    _past_days = PastDays(today=today, days=window, read_at=time.monotonic())
    return _past_days


# --- the visits file --------------------------------------------------------------------------


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


def _file_replace(path: Path, value: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".visits.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as tmp_file:
            tmp_file.write(f"{value}\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def visits_file_sync() -> int:
    """Make the visits file hold the database's total; return that total.

    The total is read under the file lock, so replacements happen in commit order and the file
    never goes backwards, whichever process writes it.
    """
    path = data_path("visits")
    lock_fd = os.open(data_path(".visits.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        total = visits_total()
        try:
            current = visits_file_read(path)
        except ValueError:
            current = None
        if current != total:
            _file_replace(path, total)
        return total
    finally:
        os.close(lock_fd)


def visits_file_resync() -> None:
    """visits_file_sync for gunicorn's master after a worker exits (gunicorn.conf.py): the
    connection is closed again, so none is carried into the next fork."""
    try:
        visits_file_sync()
    finally:
        connections.close_all()


class _FileSyncer:
    """Keeps the visits file within about FILE_SYNC_DELAY of the database, for one process.

    A visit that finds this process's last sync FILE_SYNC_DELAY old syncs the file itself, after
    its commit; the others only note that a sync is owed. A daemon thread pays what is still owed
    once visits stop: FILE_SYNC_DELAY after the last one. While visits keep coming it only wakes
    to see that, and that is the point: a thread making file and database calls while the
    request thread serves makes the two hand the GIL to each other on every call, which cost
    more per visit than the syncs themselves (docs/performance.md).
    """

    def __init__(self) -> None:
        self._forget()
        # After a fork the parent's thread does not exist in the child: it starts its own.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._start_lock = threading.Lock()
        self._started = False
        self._wake = threading.Event()
        self._next_at = 0.0  # monotonic time from which a visit syncs
        self._covered_at = 0.0  # when the last successful sync began (it read the total after)
        self._owed_at = -1.0  # when a visit last left a sync to the thread

    def visited(self) -> None:
        """Call after each committed visit."""
        now = time.monotonic()
        if now >= self._next_at:
            self._sync(now)
        else:
            self._owe(now)

    def _owe(self, now: float) -> None:
        self._owed_at = now
        if not self._wake.is_set():  # setting an Event takes its lock: only when needed
            if not self._started:
                self._start()
            self._wake.set()

    def _sync(self, now: float) -> None:
        self._next_at = now + FILE_SYNC_DELAY
        try:
            visits_file_sync()
        except (DatabaseError, OSError, CounterMissingError):
            logger.exception("could not update the visits file; retrying in 1 s")
            connection.close()
            self._next_at = now + 1.0
            self._owe(now)
        else:
            self._covered_at = now

    def _start(self) -> None:
        with self._start_lock:
            if not self._started:
                threading.Thread(target=self._run, name="visits-file-sync", daemon=True).start()
                self._started = True

    def _thread_due_at(self) -> float:
        """When the thread syncs: once visits stop (they sync themselves meanwhile), or when a
        failed sync's retry is due."""
        return max(self._next_at, self._owed_at + FILE_SYNC_DELAY)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            while (wait := self._thread_due_at() - time.monotonic()) > 0:
                time.sleep(wait)
            self._wake.clear()
            # Anything a visit noted before this clear is visible here (it set the flag first).
            if self._owed_at >= self._covered_at:
                self._sync(time.monotonic())


_file_syncer = _FileSyncer()


# --- start-up ---------------------------------------------------------------------------------


def data_dir_check() -> None:
    """Create the data directory if needed and prove it is writable, or raise DataDirError."""
    directory = Path(settings.VISITS_DATA_DIR)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(b"ok")
    except OSError as error:
        raise DataDirError(
            f"data directory {directory} is not writable by uid {os.getuid()}: {error}"
        ) from error
    for stale in directory.glob(".visits.*.tmp"):  # left by a process killed mid-replace
        stale.unlink(missing_ok=True)


def database_check(*, path: Path) -> None:
    """Refuse a database SQLite cannot read or whose integrity check fails.

    Never replace it: a new empty database would silently reset the count to zero. Checked with
    a plain connection before Django opens (and would start using) the file.
    """
    if not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check") if row[0] != "ok"]
    except sqlite3.DatabaseError as error:
        problems = [str(error)]
    if problems:
        raise DataDirError(
            f"database {path} is damaged ({'; '.join(problems[:3])}). Refusing to start rather"
            " than replace it with an empty one: restore it from a backup or move it aside."
        )


def counter_initialize() -> int | None:
    """Create the counter row if this database has none; return the adopted legacy count.

    A `visits` file found next to a new database was left by an earlier version of the app:
    its number becomes the starting count, once. Garbage in it stops the start-up rather than
    silently starting from zero.
    """
    with transaction.atomic():
        if VisitCounter.objects.filter(pk=COUNTER_ID).exists():
            return None
        legacy_path = data_path("visits")
        try:
            legacy = visits_file_read(legacy_path)
        except ValueError as error:
            raise DataDirError(
                f"{error}. The database is new, so that file would be its starting count:"
                " fix the number or delete the file to start from 0."
            ) from error
        VisitCounter.objects.create(pk=COUNTER_ID, total=legacy or 0)
    return legacy


# --- health -----------------------------------------------------------------------------------

_migrations_applied = False


def readiness_problem() -> str | None:
    """Why this process should not get traffic, or None when it is ready."""
    global _migrations_applied
    try:  # reading the total proves the database answers and the counter exists
        if not _migrations_applied:
            executor = MigrationExecutor(connection)
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                return "database migrations are not applied"
            _migrations_applied = True
        visits_total()
    except (DatabaseError, CounterMissingError) as error:
        connection.close()
        return f"database unavailable: {error}"
    if not os.access(settings.VISITS_DATA_DIR, os.W_OK):
        return f"data directory {settings.VISITS_DATA_DIR} is not writable"
    return None
